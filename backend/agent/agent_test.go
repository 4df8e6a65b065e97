package agent_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/afero"
	"go.uber.org/goleak"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/upgate/upgate/backend"
	"github.com/upgate/upgate/backend/agent"
	"github.com/upgate/upgate/backend/agentpb"
	"github.com/upgate/upgate/internal/agenttest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// settle bounds every wait for the agent to notice a stream's end.
const settle = 5 * time.Second

// start runs a real agent over dir (a fresh temp dir when empty) and returns
// it with the raw generated client on its authenticated connection.
func start(t *testing.T, dir string) (*agenttest.Agent, agentpb.AgentClient) {
	t.Helper()
	a := agenttest.Start(t, dir)
	return a, agentpb.NewAgentClient(a.Conn)
}

// testCtx bounds a test's calls so that a hang fails instead of blocking.
func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// fileStream is one raw Open stream.
type fileStream struct {
	t      *testing.T
	s      agentpb.Agent_OpenClient
	cancel context.CancelFunc
	id     uint64
}

// openStream starts an Open stream and sends op; it returns the stream and
// the agent's first response (which carries either Opened or Error).
func openStream(t *testing.T, c agentpb.AgentClient, op *agentpb.OpenOp) (*fileStream, *agentpb.FileResponse) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	s, err := c.Open(ctx)
	if err != nil {
		t.Fatalf("Open(%q): %v", op.GetPath(), err)
	}
	fst := &fileStream{t: t, s: s, cancel: cancel, id: 1}
	resp := fst.do(&agentpb.FileRequest{Op: &agentpb.FileRequest_Open{Open: op}})
	return fst, resp
}

// openOK is openStream for an open that must succeed.
func openOK(t *testing.T, c agentpb.AgentClient, op *agentpb.OpenOp) (*fileStream, *agentpb.FileInfo) {
	t.Helper()
	fst, resp := openStream(t, c, op)
	if resp.GetError() != nil {
		t.Fatalf("open %q: %v", op.GetPath(), resp.GetError())
	}
	info := resp.GetOpened()
	if info == nil {
		t.Fatalf("open %q: first response has no Opened: %v", op.GetPath(), resp)
	}
	return fst, info
}

// do sends one request and returns its response, checking the id.
func (f *fileStream) do(req *agentpb.FileRequest) *agentpb.FileResponse {
	f.t.Helper()
	f.id++
	req.Id = f.id
	if err := f.s.Send(req); err != nil {
		f.t.Fatalf("send %T: %v", req.GetOp(), err)
	}
	resp, err := f.s.Recv()
	if err != nil {
		f.t.Fatalf("recv reply to %T: %v", req.GetOp(), err)
	}
	if resp.GetId() != req.GetId() {
		f.t.Fatalf("reply id %d, want %d", resp.GetId(), req.GetId())
	}
	return resp
}

// ok is do for a request that must succeed.
func (f *fileStream) ok(req *agentpb.FileRequest) *agentpb.FileResponse {
	f.t.Helper()
	resp := f.do(req)
	if resp.GetError() != nil {
		f.t.Fatalf("%T: %v", req.GetOp(), resp.GetError())
	}
	return resp
}

func (f *fileStream) write(off int64, data string) {
	f.t.Helper()
	resp := f.ok(&agentpb.FileRequest{Op: &agentpb.FileRequest_Write{Write: &agentpb.WriteOp{Offset: off, Data: []byte(data)}}})
	if got := resp.GetWrite().GetWritten(); got != int64(len(data)) {
		f.t.Fatalf("write at %d: written %d, want %d", off, got, len(data))
	}
}

func (f *fileStream) read(off int64, n int32) *agentpb.ReadResult {
	f.t.Helper()
	resp := f.ok(&agentpb.FileRequest{Op: &agentpb.FileRequest_Read{Read: &agentpb.ReadOp{Offset: off, Length: n}}})
	if resp.GetRead() == nil {
		f.t.Fatalf("read: no ReadResult in %v", resp)
	}
	return resp.GetRead()
}

// close sends CloseOp and expects Done followed by the end of the stream.
func (f *fileStream) close(abort bool) {
	f.t.Helper()
	resp := f.ok(&agentpb.FileRequest{Op: &agentpb.FileRequest_Close{Close: &agentpb.CloseOp{Abort: abort}}})
	if resp.GetDone() == nil {
		f.t.Fatalf("close: reply %v, want Done", resp)
	}
	f.expectEOF()
}

// expectEOF waits for the agent to end the stream cleanly.
func (f *fileStream) expectEOF() {
	f.t.Helper()
	if resp, err := f.s.Recv(); !errors.Is(err, io.EOF) {
		f.t.Fatalf("after the last reply: got %v, %v; want io.EOF", resp, err)
	}
}

func flags(fl ...agentpb.OpenFlag) uint32 {
	var u uint32
	for _, f := range fl {
		u |= uint32(f)
	}
	return u
}

const (
	fRead   = agentpb.OpenFlag_OPEN_FLAG_READ
	fWrite  = agentpb.OpenFlag_OPEN_FLAG_WRITE
	fAppend = agentpb.OpenFlag_OPEN_FLAG_APPEND
	fCreate = agentpb.OpenFlag_OPEN_FLAG_CREATE
	fExcl   = agentpb.OpenFlag_OPEN_FLAG_EXCL
	fTrunc  = agentpb.OpenFlag_OPEN_FLAG_TRUNC
)

// waitClean polls until dir holds no temp file and the agent no open file,
// for at most settle.
func waitClean(t *testing.T, a *agenttest.Agent, dir string) {
	t.Helper()
	deadline := time.Now().Add(settle)
	for {
		temps := agenttest.TempFiles(t, dir)
		n := a.Server.OpenHandles()
		if len(temps) == 0 && n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: temp files %q, open handles %d; want none", settle, temps, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// writeFile writes content with exactly mode perm (the umask does not
// apply).
func writeFile(t *testing.T, name, content string, perm fs.FileMode) {
	t.Helper()
	if err := os.WriteFile(name, []byte(content), perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(name, perm); err != nil {
		t.Fatal(err)
	}
}

// listNames is a raw ReadDir of p through the agent.
func listNames(t *testing.T, ctx context.Context, c agentpb.AgentClient, p string) []string {
	t.Helper()
	s, err := c.ReadDir(ctx, &agentpb.PathRequest{Path: []byte(p)})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for range 1000 {
		resp, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return names
		}
		if err != nil {
			t.Fatalf("ReadDir(%q): %v", p, err)
		}
		for _, e := range resp.GetEntries() {
			names = append(names, string(e.GetName()))
		}
	}
	t.Fatalf("ReadDir(%q): more than 1000 batches", p)
	return nil
}

// errnoOf returns the errno name in a status's ErrorInfo detail.
func errnoOf(err error) string {
	st, _ := status.FromError(err)
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == agent.ErrorDomain {
			return info.GetReason()
		}
	}
	return ""
}

// snapshot describes everything below dir, except the subtree skip: file
// contents by sha256, modes, directories and link targets.
func snapshot(t *testing.T, dir, skip string) map[string]string {
	t.Helper()
	out := make(map[string]string)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == skip {
			return filepath.SkipDir
		}
		rel, _ := filepath.Rel(dir, p)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		desc := fmt.Sprintf("%v mtime=%d", fi.Mode(), fi.ModTime().UnixNano())
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			desc += fmt.Sprintf(" owner=%d:%d", st.Uid, st.Gid)
		}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			desc += " -> " + target
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			desc += " sha256=" + hex.EncodeToString(sum[:])
		}
		out[rel] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestPathEscapesRefused sends every path-taking call every form of path
// that leaves the root, then walks through symbolic links planted on disk
// that point outside, and checks that nothing outside the root changed.
func TestPathEscapesRefused(t *testing.T) {
	t.Run("os.Root", func(t *testing.T) { testPathEscapesRefused(t, false) })
	// The second way through (root.go), which the agent takes where
	// os.Root refuses a directory its user may search but not read, is
	// held to the same cases.
	t.Run("openat2", func(t *testing.T) { testPathEscapesRefused(t, true) })
}

func testPathEscapesRefused(t *testing.T, beneathOnly bool) {
	root := t.TempDir()
	outside := t.TempDir() // a sibling of root: snapshotting their parent covers both
	parent := filepath.Dir(root)
	if filepath.Dir(outside) != parent {
		t.Fatalf("temp dirs %q and %q do not share a parent", root, outside)
	}
	writeFile(t, filepath.Join(outside, "secret"), "top secret\n", 0o600)
	if err := os.Mkdir(filepath.Join(outside, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(outside, "sub", "x"), "outside x\n", 0o644)
	writeFile(t, filepath.Join(root, "f"), "inside\n", 0o644)
	if err := os.Mkdir(filepath.Join(root, "a"), 0o755); err != nil {
		t.Fatal(err)
	}
	relOut, err := filepath.Rel(root, outside)
	if err != nil {
		t.Fatal(err)
	}
	// rel leads outside through "..", abs through an absolute target,
	// absfile is an absolute link to a file and dangling to a file that does
	// not exist yet.
	for link, target := range map[string]string{
		"rel":      relOut,
		"abs":      outside,
		"absfile":  filepath.Join(outside, "secret"),
		"dangling": filepath.Join(outside, "planted"),
		"slash":    "/",
	} {
		if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
			t.Fatal(err)
		}
	}
	before := snapshot(t, parent, root)
	rootBefore := snapshot(t, root, "")

	a, c := start(t, root)
	if beneathOnly {
		if err := agent.BeneathOnly(a.Server); err != nil {
			// A kernel before 5.6, or a seccomp profile refusing it:
			// the agent then resolves with os.Root alone.
			if os.Getenv("UPGATE_REQUIRE_INTEROP") == "1" {
				t.Fatal(err)
			}
			t.Skip(err)
		}
	}
	ctx := testCtx(t)

	type call struct {
		name string
		// run makes the call with p in the position under test and
		// returns the error, for Open the first response's Error as a
		// status.
		run func(p string) error
	}
	openErr := func(p string, fl uint32) error {
		fst, resp := openStream(t, c, &agentpb.OpenOp{Path: []byte(p), Flags: fl, Perm: 0o644})
		e := resp.GetError()
		if e == nil {
			fst.close(true)
			return nil
		}
		fst.expectEOF()
		return status.Error(codes.Code(e.GetCode()), e.GetMessage())
	}
	readDirErr := func(p string) error {
		s, err := c.ReadDir(ctx, &agentpb.PathRequest{Path: []byte(p)})
		if err != nil {
			return err
		}
		for range 1000 {
			if _, err := s.Recv(); err != nil {
				if errors.Is(err, io.EOF) {
					return nil
				}
				return err
			}
		}
		return errors.New("ReadDir never ended")
	}
	pathCalls := []call{
		{"Stat", func(p string) error { _, err := c.Stat(ctx, &agentpb.PathRequest{Path: []byte(p)}); return err }},
		{"Lstat", func(p string) error { _, err := c.Lstat(ctx, &agentpb.PathRequest{Path: []byte(p)}); return err }},
		{"ReadDir", readDirErr},
		{"Open-read", func(p string) error { return openErr(p, flags(fRead)) }},
		{"Open-write-create", func(p string) error { return openErr(p, flags(fWrite, fCreate, fTrunc)) }},
		{"Open-write-inplace", func(p string) error { return openErr(p, flags(fWrite)) }},
		{"Open-append", func(p string) error { return openErr(p, flags(fWrite, fAppend, fCreate)) }},
		{"Mkdir", func(p string) error {
			_, err := c.Mkdir(ctx, &agentpb.MkdirRequest{Path: []byte(p), Perm: 0o755})
			return err
		}},
		{"MkdirAll", func(p string) error {
			_, err := c.Mkdir(ctx, &agentpb.MkdirRequest{Path: []byte(p), Perm: 0o755, All: true})
			return err
		}},
		{"Remove", func(p string) error { _, err := c.Remove(ctx, &agentpb.RemoveRequest{Path: []byte(p)}); return err }},
		{"RemoveAll", func(p string) error {
			_, err := c.Remove(ctx, &agentpb.RemoveRequest{Path: []byte(p), All: true})
			return err
		}},
		{"Rename-from", func(p string) error {
			_, err := c.Rename(ctx, &agentpb.RenameRequest{From: []byte(p), To: []byte("stolen")})
			return err
		}},
		{"Rename-to", func(p string) error {
			_, err := c.Rename(ctx, &agentpb.RenameRequest{From: []byte("f"), To: []byte(p)})
			return err
		}},
		{"Chmod", func(p string) error {
			_, err := c.Chmod(ctx, &agentpb.ChmodRequest{Path: []byte(p), Perm: 0o777})
			return err
		}},
		{"Chown", func(p string) error {
			_, err := c.Chown(ctx, &agentpb.ChownRequest{Path: []byte(p), Uid: 12345, Gid: 12345})
			return err
		}},
		{"Chtimes", func(p string) error {
			ns := time.Date(1999, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
			_, err := c.Chtimes(ctx, &agentpb.ChtimesRequest{Path: []byte(p), AtimeUnixNano: new(ns), MtimeUnixNano: new(ns)})
			return err
		}},
		{"Symlink-path", func(p string) error {
			_, err := c.Symlink(ctx, &agentpb.SymlinkRequest{Target: []byte("f"), Path: []byte(p)})
			return err
		}},
		{"Readlink", func(p string) error { _, err := c.Readlink(ctx, &agentpb.PathRequest{Path: []byte(p)}); return err }},
		{"Hash", func(p string) error {
			_, err := c.Hash(ctx, &agentpb.HashRequest{Path: []byte(p), Algorithm: agentpb.HashAlgorithm_HASH_ALGORITHM_SHA256})
			return err
		}},
		{"StatFS", func(p string) error { _, err := c.StatFS(ctx, &agentpb.PathRequest{Path: []byte(p)}); return err }},
	}
	symlinkTarget := call{"Symlink-target", func(p string) error {
		_, err := c.Symlink(ctx, &agentpb.SymlinkRequest{Target: []byte(p), Path: []byte("newlink")})
		return err
	}}

	badPaths := []string{"..", "../x", "a/../../x", "a/..", "/etc/passwd", "/", "x\x00y", "./../x", "a/./../../x"}
	check := func(t *testing.T, cl call, p string) {
		t.Helper()
		err := cl.run(p)
		code := status.Code(err)
		if code != codes.PermissionDenied && code != codes.InvalidArgument {
			t.Errorf("%s(%q): %v (code %v), want PermissionDenied or InvalidArgument", cl.name, p, err, code)
			return
		}
		msg := status.Convert(err).Message()
		if !strings.Contains(msg, p) && !strings.Contains(msg, strconv.Quote(p)) {
			t.Errorf("%s(%q): message %q does not name the path", cl.name, p, msg)
		}
	}
	for _, cl := range pathCalls {
		t.Run(cl.name, func(t *testing.T) {
			for _, p := range badPaths {
				check(t, cl, p)
			}
		})
	}
	t.Run("Symlink-target", func(t *testing.T) {
		for _, p := range badPaths {
			if p == "a/.." {
				// A link target is resolved from the link's directory:
				// "a/.." from the root is the root itself, a legitimate
				// target, unlike the path "a/.." which clean refuses.
				continue
			}
			check(t, symlinkTarget, p)
		}
	})

	// Walking through the planted links: every operation that follows them
	// must be refused by os.Root.
	viaLinks := []struct {
		call string
		path string
	}{
		{"Stat", "rel"}, {"Stat", "rel/secret"}, {"Stat", "abs"}, {"Stat", "abs/secret"}, {"Stat", "absfile"},
		{"Stat", "slash/etc/passwd"},
		{"Lstat", "rel/secret"}, {"Lstat", "abs/sub/x"},
		{"ReadDir", "rel"}, {"ReadDir", "abs/sub"}, {"ReadDir", "slash"},
		{"Open-read", "rel/secret"}, {"Open-read", "abs/secret"}, {"Open-read", "absfile"}, {"Open-read", "slash/etc/passwd"},
		{"Open-write-create", "rel/new"}, {"Open-write-create", "abs/secret"}, {"Open-write-create", "absfile"},
		{"Open-write-create", "dangling"}, {"Open-write-create", "abs/sub/new"},
		{"Open-write-inplace", "absfile"}, {"Open-append", "absfile"}, {"Open-append", "dangling"},
		{"Mkdir", "rel/newdir"}, {"Mkdir", "abs/newdir"}, {"MkdirAll", "rel/deep/er"},
		{"Remove", "rel/secret"}, {"Remove", "abs/sub/x"}, {"RemoveAll", "abs/sub"},
		{"Rename-from", "abs/secret"}, {"Rename-to", "rel/planted"},
		{"Chmod", "absfile"}, {"Chmod", "rel/secret"}, {"Chown", "absfile"}, {"Chtimes", "abs/secret"},
		{"Symlink-path", "rel/newlink"}, {"Readlink", "abs/sub"},
		{"Hash", "absfile"}, {"Hash", "rel/secret"}, {"StatFS", "abs"},
	}
	byName := make(map[string]call)
	for _, cl := range pathCalls {
		byName[cl.name] = cl
	}
	t.Run("symlinks", func(t *testing.T) {
		for _, v := range viaLinks {
			cl, ok := byName[v.call]
			if !ok {
				t.Fatalf("no call %q", v.call)
			}
			err := cl.run(v.path)
			if code := status.Code(err); code != codes.PermissionDenied {
				t.Errorf("%s(%q) through a link leading outside: %v (code %v), want PermissionDenied", v.call, v.path, err, code)
				continue
			}
			if msg := status.Convert(err).Message(); !strings.Contains(msg, v.path) {
				t.Errorf("%s(%q): message %q does not name the path", v.call, v.path, msg)
			}
		}
	})

	waitClean(t, a, root)
	if after := snapshot(t, parent, root); !maps.Equal(before, after) {
		t.Errorf("outside the root changed:\nbefore %v\nafter  %v", before, after)
	}
	// Inside the root nothing may have changed either: every call above
	// was refused before touching anything.
	if after := snapshot(t, root, ""); !maps.Equal(rootBefore, after) {
		t.Errorf("inside the root changed:\nbefore %v\nafter  %v", rootBefore, after)
	}
	if got := readFile(t, filepath.Join(outside, "secret")); got != "top secret\n" {
		t.Errorf("secret now %q", got)
	}
}

// staticMetadata sends a raw "authorization" value, for the forms
// backend.Dial never produces.
type staticMetadata string

func (m staticMetadata) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": string(m)}, nil
}
func (staticMetadata) RequireTransportSecurity() bool { return false }

// TestTokenRequired calls the agent with every kind of wrong credentials:
// each call kind answers Unauthenticated and nothing reaches the disk.
func TestTokenRequired(t *testing.T) {
	a, good := start(t, "")
	writeFile(t, filepath.Join(a.Dir, "existing"), "keep", 0o644)
	before := snapshot(t, a.Dir, "")

	otherToken := make([]byte, len(a.Token)/2)
	_, _ = rand.Read(otherToken)
	wrong := hex.EncodeToString(otherToken) // same length as a.Token
	if len(wrong) != len(a.Token) || wrong == a.Token {
		t.Fatalf("bad test token %q", wrong)
	}

	dialed := func(token string) func(t *testing.T) *grpc.ClientConn {
		return func(t *testing.T) *grpc.ClientConn {
			cc, err := backend.Dial(a.Addr, backend.DialOptions{Token: token})
			if err != nil {
				t.Fatal(err)
			}
			return cc
		}
	}
	raw := func(opts ...grpc.DialOption) func(t *testing.T) *grpc.ClientConn {
		return func(t *testing.T) *grpc.ClientConn {
			cc, err := grpc.NewClient(a.Addr, append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)...)
			if err != nil {
				t.Fatal(err)
			}
			return cc
		}
	}
	clients := []struct {
		name string
		dial func(t *testing.T) *grpc.ClientConn
	}{
		{"no token", raw()},
		{"empty token", dialed("")},
		{"wrong token", dialed(wrong)},
		{"longer token", dialed(a.Token + "0")},
		{"shorter token", dialed(a.Token[:len(a.Token)-1])},
		{"token prefix", dialed(a.Token[:8])},
		{"no Bearer prefix", raw(grpc.WithPerRPCCredentials(staticMetadata(a.Token)))},
		{"lower-case bearer", raw(grpc.WithPerRPCCredentials(staticMetadata("bearer " + a.Token)))},
		{"Bearer without token", raw(grpc.WithPerRPCCredentials(staticMetadata("Bearer ")))},
		{"Basic scheme", raw(grpc.WithPerRPCCredentials(staticMetadata("Basic " + a.Token)))},
	}
	for _, cl := range clients {
		t.Run(cl.name, func(t *testing.T) {
			cc := cl.dial(t)
			t.Cleanup(func() { cc.Close() })
			c := agentpb.NewAgentClient(cc)
			ctx := testCtx(t)
			wantUnauth := func(what string, err error) {
				t.Helper()
				if code := status.Code(err); code != codes.Unauthenticated {
					t.Errorf("%s: %v (code %v), want Unauthenticated", what, err, code)
				}
			}

			_, err := c.Stat(ctx, &agentpb.PathRequest{Path: []byte("existing")})
			wantUnauth("Stat", err)
			_, err = c.Status(ctx, &agentpb.StatusRequest{})
			wantUnauth("Status", err)
			_, err = c.Mkdir(ctx, &agentpb.MkdirRequest{Path: []byte("made"), Perm: 0o755})
			wantUnauth("Mkdir", err)
			_, err = c.Remove(ctx, &agentpb.RemoveRequest{Path: []byte("existing")})
			wantUnauth("Remove", err)
			_, err = c.Chmod(ctx, &agentpb.ChmodRequest{Path: []byte("existing"), Perm: 0o777})
			wantUnauth("Chmod", err)

			rd, err := c.ReadDir(ctx, &agentpb.PathRequest{Path: []byte("")})
			if err == nil {
				var resp *agentpb.ReadDirResponse
				resp, err = rd.Recv()
				if resp != nil {
					t.Errorf("ReadDir listed %v without a valid token", resp.GetEntries())
				}
			}
			wantUnauth("ReadDir", err)

			for _, name := range []string{"created", "existing"} {
				sctx, cancel := context.WithCancel(ctx)
				s, err := c.Open(sctx)
				if err == nil {
					// Send may already see the refusal as io.EOF; Recv
					// carries the status either way.
					_ = s.Send(&agentpb.FileRequest{Id: 1, Op: &agentpb.FileRequest_Open{Open: &agentpb.OpenOp{
						Path: []byte(name), Flags: flags(fWrite, fCreate, fTrunc), Perm: 0o644,
					}}})
					var resp *agentpb.FileResponse
					resp, err = s.Recv()
					if resp != nil {
						t.Errorf("Open(%q) answered %v without a valid token", name, resp)
					}
				}
				wantUnauth("Open "+name, err)
				cancel()
			}
			if n := a.Server.OpenHandles(); n != 0 {
				t.Errorf("OpenHandles = %d after refused opens", n)
			}
		})
	}

	if after := snapshot(t, a.Dir, ""); !maps.Equal(before, after) {
		t.Errorf("refused calls changed the disk:\nbefore %v\nafter  %v", before, after)
	}
	// The same calls with the right token do reach the disk.
	ctx := testCtx(t)
	if _, err := good.Mkdir(ctx, &agentpb.MkdirRequest{Path: []byte("made"), Perm: 0o755}); err != nil {
		t.Fatalf("Mkdir with the right token: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(a.Dir, "made")); err != nil || !fi.IsDir() {
		t.Fatalf("Mkdir with the right token made nothing: %v", err)
	}
}

// TestAtomicUpload replaces a file the way an IDE's upload on save does and
// checks that the old content stays visible until the clean close, that the
// mode of the replaced file survives and that times set during the upload
// win over the commit.
func TestAtomicUpload(t *testing.T) {
	a, c := start(t, "")
	ctx := testCtx(t)
	target := filepath.Join(a.Dir, "f")
	writeFile(t, target, "old", 0o640)

	fst, info := openOK(t, c, &agentpb.OpenOp{Path: []byte("f"), Flags: flags(fWrite, fCreate, fTrunc), Perm: 0o644})
	if string(info.GetName()) != "f" || info.GetSize() != 0 {
		t.Errorf("opened = %v, want name f, size 0", info)
	}
	if m := fs.FileMode(info.GetMode()); m != 0o640 {
		t.Errorf("open's reply: mode %v, want the replaced file's %v", m, fs.FileMode(0o640))
	}
	fst.write(0, "new ")
	fst.write(4, "content")

	// While the upload is open the target is untouched.
	if got := readFile(t, target); got != "old" {
		t.Errorf("target during upload = %q, want %q", got, "old")
	}
	if names := listNames(t, ctx, c, ""); !slices.Equal(names, []string{"f"}) {
		t.Errorf("agent listing during upload = %q, want [f]", names)
	}
	temps := agenttest.TempFiles(t, a.Dir)
	if len(temps) != 1 || !strings.HasSuffix(temps[0], "-f") {
		t.Fatalf("temp files on disk during upload = %q, want one %s…-f", temps, agent.TempPrefix)
	}
	if got := readFile(t, filepath.Join(a.Dir, temps[0])); got != "new content" {
		t.Errorf("temp file holds %q", got)
	}
	if fi, err := c.Stat(ctx, &agentpb.PathRequest{Path: []byte("f")}); err != nil || fi.GetSize() != 3 {
		t.Errorf("agent Stat(f) during upload = %v, %v; want size 3", fi, err)
	}
	rd, _ := openOK(t, c, &agentpb.OpenOp{Path: []byte("f"), Flags: flags(fRead)})
	if r := rd.read(0, 100); string(r.GetData()) != "old" || !r.GetEof() {
		t.Errorf("agent read of f during upload = %q eof=%v, want \"old\" eof", r.GetData(), r.GetEof())
	}
	rd.close(false)
	st, err := c.Status(ctx, &agentpb.StatusRequest{})
	if err != nil || st.GetUploadsInProgress() != 1 {
		t.Errorf("Status during upload = %v, %v; want 1 upload in progress", st, err)
	}

	// A path call acts on what the path names on disk, never on an upload
	// in progress: the writer's session acts on its upload through the
	// stream (SetTimesOp below), other sessions on the committed file.
	mtime := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	atime := time.Date(2001, 2, 3, 0, 0, 0, 0, time.UTC)
	if _, err := c.Chtimes(ctx, &agentpb.ChtimesRequest{Path: []byte("f"), AtimeUnixNano: new(atime.UnixNano()), MtimeUnixNano: new(mtime.UnixNano())}); err != nil {
		t.Fatalf("Chtimes during upload: %v", err)
	}
	if fi, err := os.Stat(target); err != nil || !fi.ModTime().Equal(mtime) {
		t.Errorf("old file's mtime after a path Chtimes = %v, %v; want %v", fi.ModTime(), err, mtime)
	}
	fst.close(false)

	if got := readFile(t, target); got != "new content" {
		t.Errorf("target after commit = %q, want %q", got, "new content")
	}
	fi, err := os.Stat(target)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode() != 0o640 {
		t.Errorf("mode after commit = %v, want %v", fi.Mode(), fs.FileMode(0o640))
	}
	if fi.ModTime().Equal(mtime) {
		t.Errorf("mtime after commit = %v: the path Chtimes reached the upload", fi.ModTime().UTC())
	}
	if temps := agenttest.TempFiles(t, a.Dir); len(temps) != 0 {
		t.Errorf("temp files after commit: %q", temps)
	}

	t.Run("SetTimesOp", func(t *testing.T) {
		mtime2 := time.Date(2010, 11, 12, 13, 14, 15, 0, time.UTC)
		fst, _ := openOK(t, c, &agentpb.OpenOp{Path: []byte("f"), Flags: flags(fWrite, fTrunc), Perm: 0o600})
		// sshj sends FSETSTAT before the last writes are acknowledged:
		// writes after it must not move the mtime.
		fst.write(0, "third")
		fst.ok(&agentpb.FileRequest{Op: &agentpb.FileRequest_SetTimes{SetTimes: &agentpb.SetTimesOp{
			AtimeUnixNano: new(mtime2.UnixNano()), MtimeUnixNano: new(mtime2.UnixNano()),
		}}})
		// Applied at once: a Stat of the open file shows it.
		if st := fst.ok(&agentpb.FileRequest{Op: &agentpb.FileRequest_Stat{Stat: &agentpb.StatOp{}}}).GetStat(); st.GetMtimeUnixNano() != mtime2.UnixNano() {
			t.Errorf("mtime of the open upload after SetTimesOp = %v, want %v", time.Unix(0, st.GetMtimeUnixNano()).UTC(), mtime2)
		}
		fst.write(5, " version")
		if got := readFile(t, target); got != "new content" {
			t.Errorf("target during second upload = %q", got)
		}
		fst.close(false)
		if got := readFile(t, target); got != "third version" {
			t.Errorf("target after second commit = %q, want %q", got, "third version")
		}
		fi, err := os.Stat(target)
		if err != nil {
			t.Fatal(err)
		}
		if !fi.ModTime().Equal(mtime2) {
			t.Errorf("mtime after SetTimesOp = %v, want %v", fi.ModTime().UTC(), mtime2)
		}
		if fi.Mode() != 0o640 {
			t.Errorf("mode after second commit = %v, want %v", fi.Mode(), fs.FileMode(0o640))
		}
		if temps := agenttest.TempFiles(t, a.Dir); len(temps) != 0 {
			t.Errorf("temp files after second commit: %q", temps)
		}
	})
	t.Run("SetTimesOpUntilWrite", func(t *testing.T) {
		// As futimens(2): the times stand unless the data changes after
		// them, and the commit sets nothing again.
		mtime3 := time.Date(2011, 1, 2, 3, 4, 5, 0, time.UTC)
		setTimes := &agentpb.FileRequest{Op: &agentpb.FileRequest_SetTimes{SetTimes: &agentpb.SetTimesOp{
			AtimeUnixNano: new(mtime3.UnixNano()), MtimeUnixNano: new(mtime3.UnixNano()), UntilWrite: true,
		}}}
		for _, tc := range []struct {
			name      string
			writeLast bool
		}{{"times last", false}, {"write after the times", true}} {
			fst, _ := openOK(t, c, &agentpb.OpenOp{Path: []byte("f"), Flags: flags(fWrite, fTrunc), Perm: 0o600})
			fst.write(0, "fourth")
			fst.ok(setTimes)
			if st := fst.ok(&agentpb.FileRequest{Op: &agentpb.FileRequest_Stat{Stat: &agentpb.StatOp{}}}).GetStat(); st.GetMtimeUnixNano() != mtime3.UnixNano() {
				t.Errorf("%s: mtime of the open upload after SetTimesOp = %v, want %v", tc.name, time.Unix(0, st.GetMtimeUnixNano()).UTC(), mtime3)
			}
			if tc.writeLast {
				fst.write(6, "!")
			}
			fst.close(false)
			fi, err := os.Stat(target)
			if err != nil {
				t.Fatal(err)
			}
			if got := fi.ModTime().Equal(mtime3); got == tc.writeLast {
				t.Errorf("%s: mtime after the commit = %v; the times set stand: %v, want %v", tc.name, fi.ModTime().UTC(), got, !tc.writeLast)
			}
			if st := fi.Sys().(*syscall.Stat_t); tc.writeLast && !time.Unix(st.Atim.Unix()).Equal(mtime3) {
				t.Errorf("%s: atime after the commit = %v, want %v (a write leaves it)", tc.name, time.Unix(st.Atim.Unix()).UTC(), mtime3)
			}
		}
	})
	t.Run("owner", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("giving a file another owner needs root")
		}
		// A save keeps the replaced file's owner and its sticky bit.
		if err := os.Chown(target, 4321, 4322); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(target, 0o604|fs.ModeSticky); err != nil {
			t.Fatal(err)
		}
		fst, info := openOK(t, c, &agentpb.OpenOp{Path: []byte("f"), Flags: flags(fWrite, fCreate, fTrunc), Perm: 0o644})
		if info.GetUid() != 4321 || info.GetGid() != 4322 || fs.FileMode(info.GetMode()) != 0o604|fs.ModeSticky {
			t.Errorf("open's reply: owner %d:%d mode %v, want 4321:4322 %v", info.GetUid(), info.GetGid(), fs.FileMode(info.GetMode()), 0o604|fs.ModeSticky)
		}
		fst.write(0, "fourth")
		fst.close(false)
		fi, err := os.Stat(target)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if st.Uid != 4321 || st.Gid != 4322 || fi.Mode() != 0o604|fs.ModeSticky || readFile(t, target) != "fourth" {
			t.Errorf("after the save: owner %d:%d mode %v content %q, want 4321:4322 %v \"fourth\"", st.Uid, st.Gid, fi.Mode(), readFile(t, target), 0o604|fs.ModeSticky)
		}
	})
	waitClean(t, a, a.Dir)
}

// TestOpenKeepsSticky creates files with the sticky bit, as open(2) does
// in OpenSSH's sftp-server: an atomic upload's temp file gets it and keeps
// it through the commit, an open in place too; setuid and setgid are
// never given.
func TestOpenKeepsSticky(t *testing.T) {
	a, c := start(t, "")
	const want = 0o755 | fs.ModeSticky
	for _, tc := range []struct {
		name    string
		inPlace bool
	}{{"atomic", false}, {"in-place", true}} {
		t.Run(tc.name, func(t *testing.T) {
			perm := uint32(0o755 | fs.ModeSticky | fs.ModeSetuid | fs.ModeSetgid)
			fst, info := openOK(t, c, &agentpb.OpenOp{Path: []byte(tc.name), Flags: flags(fWrite, fCreate, fTrunc), Perm: perm, InPlace: tc.inPlace})
			if m := fs.FileMode(info.GetMode()); m != want {
				t.Errorf("open's reply: mode %v, want %v", m, fs.FileMode(want))
			}
			fst.write(0, "x")
			fst.close(false)
			fi, err := os.Stat(filepath.Join(a.Dir, tc.name))
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode() != want {
				t.Errorf("after the close: mode %v, want %v", fi.Mode(), fs.FileMode(want))
			}
		})
	}
	waitClean(t, a, a.Dir)
}

// TestAtomicUploadAbort ends an upload every way but a clean close: the old
// file (or no file) stays and the temp file goes.
func TestAtomicUploadAbort(t *testing.T) {
	ways := []struct {
		name string
		end  func(t *testing.T, fst *fileStream)
	}{
		{"CloseOp abort", func(t *testing.T, fst *fileStream) { fst.close(true) }},
		{"CloseSend without CloseOp", func(t *testing.T, fst *fileStream) {
			if err := fst.s.CloseSend(); err != nil {
				t.Fatal(err)
			}
			fst.expectEOF()
		}},
		{"context cancelled mid-write", func(t *testing.T, fst *fileStream) {
			fst.cancel()
			if _, err := fst.s.Recv(); status.Code(err) != codes.Canceled {
				t.Fatalf("Recv after cancel: %v, want Canceled", err)
			}
		}},
	}
	for _, existing := range []bool{true, false} {
		for _, way := range ways {
			name := way.name + "/new file"
			if existing {
				name = way.name + "/existing file"
			}
			t.Run(name, func(t *testing.T) {
				a, c := start(t, "")
				if err := os.Mkdir(filepath.Join(a.Dir, "dir"), 0o755); err != nil {
					t.Fatal(err)
				}
				dir := filepath.Join(a.Dir, "dir")
				target := filepath.Join(dir, "new")
				if existing {
					target = filepath.Join(dir, "f")
					writeFile(t, target, "old", 0o640)
				}
				rel := "dir/" + filepath.Base(target)
				fst, _ := openOK(t, c, &agentpb.OpenOp{Path: []byte(rel), Flags: flags(fWrite, fCreate, fTrunc), Perm: 0o644})
				fst.write(0, "partial ")
				fst.write(8, "upload")
				if n := len(agenttest.TempFiles(t, dir)); n != 1 {
					t.Fatalf("%d temp files during upload, want 1", n)
				}
				if n := a.Server.OpenHandles(); n != 1 {
					t.Errorf("OpenHandles during upload = %d, want 1", n)
				}

				way.end(t, fst)
				waitClean(t, a, dir)

				if existing {
					if got := readFile(t, target); got != "old" {
						t.Errorf("target after abort = %q, want %q", got, "old")
					}
					if fi, err := os.Stat(target); err != nil || fi.Mode() != 0o640 {
						t.Errorf("target after abort: %v, %v; want mode 0640", fi, err)
					}
				} else if _, err := os.Lstat(target); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("aborted creation left %q: %v", target, err)
				}
				entries, err := os.ReadDir(dir)
				if err != nil {
					t.Fatal(err)
				}
				var names []string
				for _, e := range entries {
					names = append(names, e.Name())
				}
				want := []string{}
				if existing {
					want = []string{"f"}
				}
				if !slices.Equal(names, want) && !(len(names) == 0 && len(want) == 0) {
					t.Errorf("dir after abort holds %q, want %q", names, want)
				}
				if n := a.Server.UploadsInProgress(); n != 0 {
					t.Errorf("UploadsInProgress after abort = %d", n)
				}
			})
		}
	}
}

// TestInPlaceWrites covers the opens that must not go through a temp file:
// appends and resumed uploads write the target directly.
func TestInPlaceWrites(t *testing.T) {
	a, c := start(t, "")
	t.Run("append", func(t *testing.T) {
		target := filepath.Join(a.Dir, "log")
		writeFile(t, target, "hello", 0o644)
		fst, info := openOK(t, c, &agentpb.OpenOp{Path: []byte("log"), Flags: flags(fWrite, fAppend)})
		if info.GetSize() != 5 {
			t.Errorf("opened size %d, want 5", info.GetSize())
		}
		// The offset of an append is ignored: data goes to the end.
		fst.write(0, ", world")
		if got := readFile(t, target); got != "hello, world" {
			t.Errorf("target while appending = %q, want %q", got, "hello, world")
		}
		if temps := agenttest.TempFiles(t, a.Dir); len(temps) != 0 {
			t.Errorf("append made temp files %q", temps)
		}
		if n := a.Server.UploadsInProgress(); n != 0 {
			t.Errorf("append counts as %d atomic uploads", n)
		}
		fst.write(0, "!")
		fst.close(false)
		if got := readFile(t, target); got != "hello, world!" {
			t.Errorf("target after append = %q", got)
		}
	})
	t.Run("resume at offset", func(t *testing.T) {
		target := filepath.Join(a.Dir, "resume")
		writeFile(t, target, "abcdefgh", 0o644)
		fst, info := openOK(t, c, &agentpb.OpenOp{Path: []byte("resume"), Flags: flags(fWrite)})
		if info.GetSize() != 8 {
			t.Errorf("opened size %d, want 8", info.GetSize())
		}
		fst.write(3, "XY")
		if got := readFile(t, target); got != "abcXYfgh" {
			t.Errorf("target while writing = %q, want %q", got, "abcXYfgh")
		}
		if temps := agenttest.TempFiles(t, a.Dir); len(temps) != 0 {
			t.Errorf("in-place write made temp files %q", temps)
		}
		fst.write(8, "IJ")
		fst.close(false)
		if got := readFile(t, target); got != "abcXYfghIJ" {
			t.Errorf("target after resume = %q, want %q", got, "abcXYfghIJ")
		}
	})
	t.Run("in_place truncate", func(t *testing.T) {
		target := filepath.Join(a.Dir, "direct")
		writeFile(t, target, "old content", 0o644)
		fst, _ := openOK(t, c, &agentpb.OpenOp{Path: []byte("direct"), Flags: flags(fWrite, fTrunc), InPlace: true})
		if got := readFile(t, target); got != "" {
			t.Errorf("in_place truncating open left %q", got)
		}
		fst.write(0, "new")
		if temps := agenttest.TempFiles(t, a.Dir); len(temps) != 0 {
			t.Errorf("in_place open made temp files %q", temps)
		}
		fst.close(false)
		if got := readFile(t, target); got != "new" {
			t.Errorf("target = %q, want %q", got, "new")
		}
	})
	waitClean(t, a, a.Dir)
}

// TestExclusiveCreate: CREATE|EXCL on an existing file fails in the
// stream's first response and leaves the file alone.
func TestExclusiveCreate(t *testing.T) {
	a, c := start(t, "")
	target := filepath.Join(a.Dir, "f")
	writeFile(t, target, "mine", 0o644)
	for _, inPlace := range []bool{false, true} {
		t.Run(fmt.Sprintf("in_place=%v", inPlace), func(t *testing.T) {
			fst, resp := openStream(t, c, &agentpb.OpenOp{Path: []byte("f"), Flags: flags(fWrite, fCreate, fExcl), Perm: 0o644, InPlace: inPlace})
			e := resp.GetError()
			if e == nil {
				t.Fatalf("exclusive create of an existing file answered %v", resp)
			}
			if codes.Code(e.GetCode()) != codes.AlreadyExists || e.GetErrno() != "EEXIST" {
				t.Errorf("error = %v, want AlreadyExists/EEXIST", e)
			}
			if !strings.Contains(e.GetMessage(), "f") {
				t.Errorf("message %q does not name the file", e.GetMessage())
			}
			if resp.GetOpened() != nil {
				t.Errorf("failed open also carries Opened: %v", resp)
			}
			fst.expectEOF()
		})
	}
	t.Run("missing file", func(t *testing.T) {
		fst, _ := openOK(t, c, &agentpb.OpenOp{Path: []byte("g"), Flags: flags(fWrite, fCreate, fExcl), Perm: 0o644})
		fst.write(0, "fresh")
		fst.close(false)
		if got := readFile(t, filepath.Join(a.Dir, "g")); got != "fresh" {
			t.Errorf("g = %q", got)
		}
	})
	if got := readFile(t, target); got != "mine" {
		t.Errorf("target = %q after refused exclusive creates", got)
	}
	// EXCL without CREATE means nothing, as to open(2): a truncating
	// upload with it replaces the file (its commit used to refuse it as
	// an exclusive create's, EEXIST at the close).
	t.Run("EXCL without CREATE", func(t *testing.T) {
		fst, _ := openOK(t, c, &agentpb.OpenOp{Path: []byte("f"), Flags: flags(fWrite, fTrunc, fExcl)})
		fst.write(0, "replaced")
		fst.close(false)
		if got := readFile(t, target); got != "replaced" {
			t.Errorf("f = %q", got)
		}
	})
	waitClean(t, a, a.Dir)
}

// TestHash compares the agent's checksums with ones computed here.
func TestHash(t *testing.T) {
	a, c := start(t, "")
	ctx := testCtx(t)
	data := make([]byte, 4096+123)
	for i := range data {
		data[i] = byte(i*7 + i/251)
	}
	writeFile(t, filepath.Join(a.Dir, "blob"), string(data), 0o644)
	if err := os.Mkdir(filepath.Join(a.Dir, "dir"), 0o755); err != nil {
		t.Fatal(err)
	}

	sums := func(b []byte) map[agentpb.HashAlgorithm][]byte {
		s256, s1, s512, m5 := sha256.Sum256(b), sha1.Sum(b), sha512.Sum512(b), md5.Sum(b)
		return map[agentpb.HashAlgorithm][]byte{
			agentpb.HashAlgorithm_HASH_ALGORITHM_SHA256: s256[:],
			agentpb.HashAlgorithm_HASH_ALGORITHM_SHA1:   s1[:],
			agentpb.HashAlgorithm_HASH_ALGORITHM_SHA512: s512[:],
			agentpb.HashAlgorithm_HASH_ALGORITHM_MD5:    m5[:],
			agentpb.HashAlgorithm_HASH_ALGORITHM_CRC32:  binary.BigEndian.AppendUint32(nil, crc32.ChecksumIEEE(b)),
		}
	}
	ranges := []struct {
		name           string
		offset, length int64
		want           []byte
	}{
		{"whole", 0, 0, data},
		{"range 10+100", 10, 100, data[10:110]},
		{"from 10 to end", 10, 0, data[10:]},
		{"length past end", int64(len(data)) - 5, 100, data[len(data)-5:]},
	}
	for _, r := range ranges {
		for algo, want := range sums(r.want) {
			resp, err := c.Hash(ctx, &agentpb.HashRequest{Path: []byte("blob"), Algorithm: algo, Offset: r.offset, Length: r.length})
			if err != nil {
				t.Errorf("%s %v: %v", r.name, algo, err)
				continue
			}
			if !bytes.Equal(resp.GetSum(), want) {
				t.Errorf("%s %v = %x, want %x", r.name, algo, resp.GetSum(), want)
			}
		}
	}

	for _, algo := range []agentpb.HashAlgorithm{agentpb.HashAlgorithm_HASH_ALGORITHM_UNSPECIFIED, agentpb.HashAlgorithm(99)} {
		_, err := c.Hash(ctx, &agentpb.HashRequest{Path: []byte("blob"), Algorithm: algo})
		if code := status.Code(err); code != codes.InvalidArgument {
			t.Errorf("Hash with algorithm %v: %v, want InvalidArgument", algo, err)
		}
	}
	_, err := c.Hash(ctx, &agentpb.HashRequest{Path: []byte("blob"), Algorithm: agentpb.HashAlgorithm_HASH_ALGORITHM_SHA256, Offset: -1})
	if code := status.Code(err); code != codes.InvalidArgument {
		t.Errorf("Hash with a negative offset: %v, want InvalidArgument", err)
	}
	_, err = c.Hash(ctx, &agentpb.HashRequest{Path: []byte("dir"), Algorithm: agentpb.HashAlgorithm_HASH_ALGORITHM_SHA256})
	if code, errno := status.Code(err), errnoOf(err); code != codes.FailedPrecondition || errno != "EISDIR" {
		t.Errorf("Hash of a directory: %v (code %v, errno %q), want FailedPrecondition/EISDIR", err, code, errno)
	}
	_, err = c.Hash(ctx, &agentpb.HashRequest{Path: []byte("missing"), Algorithm: agentpb.HashAlgorithm_HASH_ALGORITHM_MD5})
	if code := status.Code(err); code != codes.NotFound {
		t.Errorf("Hash of a missing file: %v, want NotFound", err)
	}
}

// TestStatFSAndStatus checks the disk statistics and the health call's
// open-handle count.
func TestStatFSAndStatus(t *testing.T) {
	a, c := start(t, "")
	ctx := testCtx(t)
	writeFile(t, filepath.Join(a.Dir, "f"), "data", 0o644)

	st, err := c.StatFS(ctx, &agentpb.PathRequest{Path: []byte("")})
	if err != nil {
		t.Fatal(err)
	}
	if st.GetBlocks() == 0 || st.GetBlockSize() == 0 || st.GetNameMax() == 0 || st.GetBlocksFree() > st.GetBlocks() {
		t.Errorf("StatFS = %v: want nonzero blocks, block size and name max, free <= total", st)
	}
	if _, err := c.StatFS(ctx, &agentpb.PathRequest{Path: []byte("missing")}); status.Code(err) != codes.NotFound {
		t.Errorf("StatFS(missing): %v, want NotFound", err)
	}

	status0, err := c.Status(ctx, &agentpb.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if status0.GetVersion() == "" || status0.GetOpenHandles() != 0 || status0.GetUploadsInProgress() != 0 {
		t.Errorf("idle Status = %v, want a version and no handles", status0)
	}

	rd, _ := openOK(t, c, &agentpb.OpenOp{Path: []byte("f"), Flags: flags(fRead)})
	if s, err := c.Status(ctx, &agentpb.StatusRequest{}); err != nil || s.GetOpenHandles() != 1 || s.GetUploadsInProgress() != 0 {
		t.Errorf("Status with one reader = %v, %v; want 1 handle, 0 uploads", s, err)
	}
	up, _ := openOK(t, c, &agentpb.OpenOp{Path: []byte("f"), Flags: flags(fWrite, fTrunc)})
	if s, err := c.Status(ctx, &agentpb.StatusRequest{}); err != nil || s.GetOpenHandles() != 2 || s.GetUploadsInProgress() != 1 {
		t.Errorf("Status with a reader and an upload = %v, %v; want 2 handles, 1 upload", s, err)
	}
	up.close(true)
	rd.close(false)

	deadline := time.Now().Add(settle)
	for {
		s, err := c.Status(ctx, &agentpb.StatusRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if s.GetOpenHandles() == 0 && s.GetUploadsInProgress() == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Status after closing every stream = %v, want 0 handles", s)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestErrorsCarryErrno checks that the errno survives the wire in an
// ErrorInfo detail next to the right code.
func TestErrorsCarryErrno(t *testing.T) {
	a, c := start(t, "")
	ctx := testCtx(t)
	if err := os.MkdirAll(filepath.Join(a.Dir, "full", "child"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(a.Dir, "file"), "x", 0o644)

	cases := []struct {
		name  string
		call  func() error
		code  codes.Code
		errno string
		path  string
	}{
		{"Remove non-empty dir", func() error {
			_, err := c.Remove(ctx, &agentpb.RemoveRequest{Path: []byte("full")})
			return err
		}, codes.FailedPrecondition, "ENOTEMPTY", "full"},
		{"Mkdir existing", func() error {
			_, err := c.Mkdir(ctx, &agentpb.MkdirRequest{Path: []byte("full"), Perm: 0o755})
			return err
		}, codes.AlreadyExists, "EEXIST", "full"},
		{"Stat missing", func() error {
			_, err := c.Stat(ctx, &agentpb.PathRequest{Path: []byte("full/missing")})
			return err
		}, codes.NotFound, "ENOENT", "full/missing"},
		{"Mkdir under a file", func() error {
			_, err := c.Mkdir(ctx, &agentpb.MkdirRequest{Path: []byte("file/sub"), Perm: 0o755})
			return err
		}, codes.FailedPrecondition, "ENOTDIR", "file/sub"},
		{"ReadDir of a file", func() error {
			s, err := c.ReadDir(ctx, &agentpb.PathRequest{Path: []byte("file")})
			if err != nil {
				return err
			}
			_, err = s.Recv()
			return err
		}, codes.FailedPrecondition, "ENOTDIR", "file"},
		{"Readlink of a file", func() error {
			_, err := c.Readlink(ctx, &agentpb.PathRequest{Path: []byte("file")})
			return err
		}, codes.InvalidArgument, "EINVAL", "file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if code := status.Code(err); code != tc.code {
				t.Errorf("code %v (%v), want %v", code, err, tc.code)
			}
			if errno := errnoOf(err); errno != tc.errno {
				t.Errorf("errno %q (%v), want %q", errno, err, tc.errno)
			}
			if msg := status.Convert(err).Message(); !strings.Contains(msg, tc.path) {
				t.Errorf("message %q does not name %q", msg, tc.path)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(a.Dir, "full", "child")); err != nil {
		t.Errorf("refused calls disturbed the tree: %v", err)
	}
}

// TestCloseAfterFailedWriteAborts: the gateway sends its close right behind
// its writes without waiting for their replies, so a close that follows a
// failed write must not commit: the agent aborts, answers the write's
// error, and the old file stays.
func TestCloseAfterFailedWriteAborts(t *testing.T) {
	a, c := start(t, "")
	if err := os.WriteFile(filepath.Join(a.Dir, "f"), []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	fst, _ := openOK(t, c, &agentpb.OpenOp{Path: []byte("f"), Flags: flags(fWrite, fCreate, fTrunc), Perm: 0o644})
	fst.write(0, "new data")
	if resp := fst.do(&agentpb.FileRequest{Op: &agentpb.FileRequest_Write{Write: &agentpb.WriteOp{Offset: -1, Data: []byte("x")}}}); resp.GetError() == nil {
		t.Fatalf("write at -1: %v, want an error", resp)
	}
	resp := fst.do(&agentpb.FileRequest{Op: &agentpb.FileRequest_Close{Close: &agentpb.CloseOp{}}})
	if resp.GetError() == nil || !strings.Contains(resp.GetError().GetMessage(), "write") {
		t.Fatalf("close after a failed write: %v, want the write's error", resp)
	}
	if got, err := os.ReadFile(filepath.Join(a.Dir, "f")); err != nil || string(got) != "old" {
		t.Fatalf("f after the refused commit: %q %v", got, err)
	}
	if temps := agenttest.TempFiles(t, a.Dir); len(temps) != 0 {
		t.Fatalf("temp files left: %q", temps)
	}
	a.WaitIdle(t, settle)
}

// TestAgentRefusesPrivilege: whatever a gateway asks, the agent sets no
// setuid bit, no setgid bit but a directory's, and changes no owner (issue
// 14: FTP's SITE CHMOD once passed Go's setuid bit through and made a
// setuid-root program).
func TestAgentRefusesPrivilege(t *testing.T) {
	a, c := start(t, "")
	ctx := testCtx(t)
	target := filepath.Join(a.Dir, "prog")
	writeFile(t, target, "#!/bin/sh\n", 0o755)
	for _, perm := range []fs.FileMode{fs.ModeSetuid | 0o755, fs.ModeSetgid | 0o755} {
		if _, err := c.Chmod(ctx, &agentpb.ChmodRequest{Path: []byte("prog"), Perm: uint32(perm)}); status.Code(err) != codes.PermissionDenied {
			t.Errorf("Chmod %v: %v, want PermissionDenied", perm, err)
		}
	}
	if _, err := c.Chown(ctx, &agentpb.ChownRequest{Path: []byte("prog"), Uid: 0, Gid: 0}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("Chown: %v, want PermissionDenied", err)
	}
	fst, _ := openOK(t, c, &agentpb.OpenOp{Path: []byte("prog"), Flags: flags(fWrite)})
	if resp := fst.do(&agentpb.FileRequest{Op: &agentpb.FileRequest_Chmod{Chmod: &agentpb.ChmodOp{Perm: uint32(fs.ModeSetuid | 0o755)}}}); resp.GetError() == nil {
		t.Error("ChmodOp with setuid on an open file succeeded")
	}
	fst.close(false)
	if fi, err := os.Stat(target); err != nil || fi.Mode() != 0o755 {
		t.Errorf("prog after the refusals: %v, %v; want 0755", fi.Mode(), err)
	}
	// The sticky bit is allowed (a shared upload directory).
	if err := os.Mkdir(filepath.Join(a.Dir, "shared"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Chmod(ctx, &agentpb.ChmodRequest{Path: []byte("shared"), Perm: uint32(fs.ModeSticky | 0o777)}); err != nil {
		t.Errorf("Chmod 01777: %v", err)
	}
	// So is a directory's setgid bit (new entries take its group), also
	// through a link, and on a directory whose mode lets nobody in; a link
	// to a file does not pass, nor setuid with it.
	if err := os.Symlink("shared", filepath.Join(a.Dir, "toshared")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("prog", filepath.Join(a.Dir, "toprog")); err != nil {
		t.Fatal(err)
	}
	// Links out of the root, to a directory there: never followed.
	outside := filepath.Join(t.TempDir(), "outside")
	if err := os.Mkdir(outside, 0o755); err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(a.Dir, outside)
	if err != nil {
		t.Fatal(err)
	}
	for name, target := range map[string]string{"outabs": outside, "outrel": rel} {
		if err := os.Symlink(target, filepath.Join(a.Dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		path string
		perm fs.FileMode
		want codes.Code
		mode fs.FileMode // of shared after it, when it succeeds
	}{
		{"shared", fs.ModeSetgid | 0o775, codes.OK, fs.ModeDir | fs.ModeSetgid | 0o775},
		{"toshared", fs.ModeSetgid | fs.ModeSticky | 0o770, codes.OK, fs.ModeDir | fs.ModeSetgid | fs.ModeSticky | 0o770},
		{"shared", fs.ModeSetgid, codes.OK, fs.ModeDir | fs.ModeSetgid}, // 02000: nobody may enter
		{"shared", fs.ModeSetgid | 0o755, codes.OK, fs.ModeDir | fs.ModeSetgid | 0o755},
		{"shared", fs.ModeSetuid | fs.ModeSetgid | 0o755, codes.PermissionDenied, 0},
		{"toprog", fs.ModeSetgid | 0o755, codes.PermissionDenied, 0},
		{"missing", fs.ModeSetgid | 0o755, codes.NotFound, 0},
		{"outabs", fs.ModeSetgid | 0o755, codes.PermissionDenied, 0},
		{"outrel", fs.ModeSetgid | 0o755, codes.PermissionDenied, 0},
		{"prog/x", fs.ModeSetgid | 0o755, codes.FailedPrecondition, 0}, // ENOTDIR, as any chmod through a file
	} {
		_, err := c.Chmod(ctx, &agentpb.ChmodRequest{Path: []byte(tc.path), Perm: uint32(tc.perm)})
		if status.Code(err) != tc.want {
			t.Errorf("Chmod %s %v: %v, want %v", tc.path, tc.perm, err, tc.want)
			continue
		}
		if tc.want != codes.OK {
			continue
		}
		if fi, err := os.Lstat(filepath.Join(a.Dir, "shared")); err != nil || fi.Mode() != tc.mode {
			t.Errorf("shared after Chmod %s %v: %v, %v; want %v", tc.path, tc.perm, fi.Mode(), err, tc.mode)
		}
	}
	if fi, err := os.Stat(target); err != nil || fi.Mode() != 0o755 {
		t.Errorf("prog at the end: %v, %v; want 0755", fi.Mode(), err)
	}
	if fi, err := os.Stat(outside); err != nil || fi.Mode() != fs.ModeDir|0o755 {
		t.Errorf("the directory outside the root at the end: %v, %v; want drwxr-xr-x", fi.Mode(), err)
	}
}

// TestSymlinkChainsChecked: a link's target is checked through the links
// that exist, as a program following it would resolve it, not as text:
// sub/up -> .. and then chain -> sub/up/../bob used to be accepted, and
// led into a sibling's tree for every program that follows links.
func TestSymlinkChainsChecked(t *testing.T) {
	a, c := start(t, "")
	ctx := metadata.AppendToOutgoingContext(testCtx(t), agentpb.ScopeMetadata, "alice")
	for _, d := range []string{"alice/sub", "bob"} {
		if err := os.MkdirAll(filepath.Join(a.Dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(a.Dir, "bob", "secret"), "bob's", 0o644)
	if _, err := c.Symlink(ctx, &agentpb.SymlinkRequest{Target: []byte(".."), Path: []byte("alice/sub/up")}); err != nil {
		t.Fatalf("sub/up -> .. (inside alice's root): %v", err)
	}
	// sub/missing/../x stays inside now, but sub/missing can become a
	// link later (sub/missing -> ..): a ".." after a name is refused.
	for _, target := range []string{"sub/up/../bob", "sub/up/../bob/secret", "sub/up/sub/up/../bob", "sub/up/..", "sub/missing/../x"} {
		if _, err := c.Symlink(ctx, &agentpb.SymlinkRequest{Target: []byte(target), Path: []byte("alice/chain")}); status.Code(err) != codes.PermissionDenied {
			t.Errorf("chain -> %s: %v, want PermissionDenied", target, err)
		}
		if _, err := os.Lstat(filepath.Join(a.Dir, "alice", "chain")); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("chain -> %s was made", target)
		}
	}
	for _, target := range []string{"sub/up/sub", "sub", "./sub/", "sub/missing"} {
		if _, err := c.Symlink(ctx, &agentpb.SymlinkRequest{Target: []byte(target), Path: []byte("alice/ok")}); err != nil {
			t.Errorf("ok -> %s (stays inside): %v", target, err)
		}
		os.Remove(filepath.Join(a.Dir, "alice", "ok"))
	}
	if _, err := c.Symlink(ctx, &agentpb.SymlinkRequest{Target: []byte("a\nb"), Path: []byte("alice/ctl")}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("a target with a newline: %v, want InvalidArgument", err)
	}
}

// TestLinksKeepTheirShape: what the review found leading out of alice's
// root after a link was made inside it: moving a link to a shallower
// directory, a hard link of it there, a name its target passes through
// becoming a link, a directory holding a link moved up. Each is refused,
// and bob's secret stays out of reach through alice's tree; the moves and
// links that keep a link inside are served.
func TestLinksKeepTheirShape(t *testing.T) {
	a, c := start(t, "")
	ctx := metadata.AppendToOutgoingContext(testCtx(t), agentpb.ScopeMetadata, "alice")
	for _, d := range []string{"alice/sub/deep", "alice/other", "bob"} {
		if err := os.MkdirAll(filepath.Join(a.Dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(a.Dir, "bob", "secret"), "bob's", 0o644)
	ok := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Errorf("%s: %v", what, err)
		}
	}
	refused := func(what string, err error) {
		t.Helper()
		if status.Code(err) != codes.PermissionDenied {
			t.Errorf("%s: %v, want PermissionDenied", what, err)
		}
	}
	symlink := func(target, p string) error {
		_, err := c.Symlink(ctx, &agentpb.SymlinkRequest{Target: []byte(target), Path: []byte(p)})
		return err
	}
	rename := func(from, to string) error {
		_, err := c.Rename(ctx, &agentpb.RenameRequest{From: []byte(from), To: []byte(to)})
		return err
	}
	hardlink := func(target, p string) error {
		_, err := c.Link(ctx, &agentpb.LinkRequest{Target: []byte(target), Path: []byte(p)})
		return err
	}
	ok("sub/up -> ..", symlink("..", "alice/sub/up"))
	ok("sub/deep/up2 -> ../..", symlink("../..", "alice/sub/deep/up2"))
	refused("rename sub/up to up (a level up)", rename("alice/sub/up", "alice/up"))
	refused("hard link of sub/up as up", hardlink("alice/sub/up", "alice/up"))
	refused("rename sub/deep to deep (its up2 a level up)", rename("alice/sub/deep", "alice/deep"))
	ok("rename sub/up to sub/up1 (the same directory)", rename("alice/sub/up", "alice/sub/up1"))
	ok("rename sub/up1 to other/up (as deep)", rename("alice/sub/up1", "alice/other/up"))
	ok("hard link of other/up as sub/deep/up3 (deeper)", hardlink("alice/other/up", "alice/sub/deep/up3"))
	ok("rename sub/deep to other/deep (as deep)", rename("alice/sub/deep", "alice/other/deep"))
	ok("rename other to sub/other (deeper)", rename("alice/other", "alice/sub/other"))
	// A name a target passes through, made a link afterwards.
	refused("ok -> sub/missing/../bob", symlink("sub/missing/../bob", "alice/ok"))
	for _, p := range []string{"up", "deep/up2", "ok/secret", "up/bob/secret", "deep/up2/bob/secret"} {
		if _, err := os.ReadFile(filepath.Join(a.Dir, "alice", p)); err == nil && strings.Contains(p, "secret") {
			t.Errorf("alice/%s reads bob's secret", p)
		}
	}
	if _, err := os.Lstat(filepath.Join(a.Dir, "alice", "up")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("alice/up exists after refused moves: %v", err)
	}
	for _, p := range []string{"sub/other/up", "sub/other/deep/up3", "sub/other/deep/up2"} {
		if got, err := os.Readlink(filepath.Join(a.Dir, "alice", p)); err != nil {
			t.Errorf("alice/%s: %q, %v", p, got, err)
		}
	}
}

// TestLinksKeepTheirShapeAnyName: a directory moved to a shallower place
// is searched for links whatever its names' bytes (the first version
// walked it through os.Root's fs.FS, whose paths must be UTF-8, and
// skipped what it could not name: the review moved a/d\xff, holding x ->
// ../../bob, a level up, and x led into bob's tree).
func TestLinksKeepTheirShapeAnyName(t *testing.T) {
	a, c := start(t, "")
	ctx := metadata.AppendToOutgoingContext(testCtx(t), agentpb.ScopeMetadata, "alice")
	for _, d := range []string{"alice/a/d\xff", "alice/b/c/\xfe", "bob"} {
		if err := os.MkdirAll(filepath.Join(a.Dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, l := range [][2]string{{"../../bob", "alice/a/d\xff/x"}, {"../../../bob", "alice/b/c/\xfe/y"}} {
		if _, err := c.Symlink(ctx, &agentpb.SymlinkRequest{Target: []byte(l[0]), Path: []byte(l[1])}); err != nil {
			t.Fatalf("%q -> %s: %v", l[1], l[0], err)
		}
	}
	for _, mv := range [][2]string{{"alice/a/d\xff", "alice/d\xff"}, {"alice/b/c", "alice/c"}} {
		_, err := c.Rename(ctx, &agentpb.RenameRequest{From: []byte(mv[0]), To: []byte(mv[1])})
		if status.Code(err) != codes.PermissionDenied {
			t.Errorf("rename %q to %q (a link inside one level up, out of alice's root): %v, want PermissionDenied", mv[0], mv[1], err)
		}
		if _, err := os.Lstat(filepath.Join(a.Dir, mv[1])); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%q exists after the refused rename", mv[1])
		}
	}
	// One whose links stay inside a level up moves.
	if err := os.MkdirAll(filepath.Join(a.Dir, "alice/e/f\xfd"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Symlink(ctx, &agentpb.SymlinkRequest{Target: []byte("../g"), Path: []byte("alice/e/f\xfd/z")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Rename(ctx, &agentpb.RenameRequest{From: []byte("alice/e/f\xfd"), To: []byte("alice/f\xfd")}); err != nil {
		t.Errorf("rename e/f\\xfd to f\\xfd (its z -> ../g still inside): %v", err)
	}
}

// TestSymlinkCycles: a link into a cycle of links leads nowhere (the
// kernel answers ELOOP), so it is made, as sftp-server makes it (a test
// fixture in a git checkout over sshfs, rclone's link tests). A ".."
// after a cycle is refused: Python's os.path.realpath reads what follows
// a loop as text (3.11, 3.12) or from what it remembered of the cycle
// (3.13), and the two targets of the review that led into bob's tree
// that way are refused. A chain of more links than the kernel follows
// that is no cycle is refused: a program that follows more (Go's
// EvalSymlinks, 255) would get to its end, unchecked.
func TestSymlinkCycles(t *testing.T) {
	a, c := start(t, "")
	ctx := metadata.AppendToOutgoingContext(testCtx(t), agentpb.ScopeMetadata, "alice")
	for _, d := range []string{"alice/sub", "alice/x/y/z", "alice/a/b", "bob"} {
		if err := os.MkdirAll(filepath.Join(a.Dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	link := func(target, p string) error {
		_, err := c.Symlink(ctx, &agentpb.SymlinkRequest{Target: []byte(target), Path: []byte(p)})
		return err
	}
	for _, l := range [][2]string{{"self", "alice/self"}, {"q", "alice/p"}, {"p", "alice/q"}, {"../sub/deep", "alice/sub/deep"},
		{"x/y/z", "alice/L"}, {"a/b/X", "alice/Y"}, {"../../Y", "alice/a/b/X"}} {
		if err := link(l[0], l[1]); err != nil {
			t.Fatalf("%s -> %s (a cycle being made, or its parts): %v", l[1], l[0], err)
		}
	}
	for _, target := range []string{"self", "p", "q/x", "sub/deep", "sub/deep/x/y", "Y", "a/b/X/f"} {
		if err := link(target, "alice/into"); err != nil {
			t.Errorf("into -> %s (a cycle, or below one): %v", target, err)
		}
		os.Remove(filepath.Join(a.Dir, "alice", "into"))
	}
	for _, target := range []string{"self/../../bob", "p/../../bob/x", "sub/deep/../../../bob", "self/../sub", "p/../sub",
		"self/../L/../../bob", "Y/../a/b/X/../../bob"} {
		if err := link(target, "alice/out"); status.Code(err) != codes.PermissionDenied {
			t.Errorf("out -> %s (.. past a cycle): %v, want PermissionDenied", target, err)
		}
		if _, err := os.Lstat(filepath.Join(a.Dir, "alice", "out")); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("out -> %s was made", target)
		}
	}
	if got, err := os.Readlink(filepath.Join(a.Dir, "alice", "q")); err != nil || got != "p" {
		t.Fatalf("q: %q, %v", got, err)
	}
	// c0 -> c1 -> ... -> c41 -> sub: 42 links, no cycle.
	for i := range 42 {
		target := fmt.Sprintf("c%d", i+1)
		if i == 41 {
			target = "sub"
		}
		if err := os.Symlink(target, filepath.Join(a.Dir, "alice", fmt.Sprintf("c%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := link("c0", "alice/long"); status.Code(err) != codes.PermissionDenied {
		t.Errorf("long -> c0 (42 links, no cycle): %v, want PermissionDenied", err)
	}
	if err := link("c2", "alice/short"); err != nil {
		t.Errorf("short -> c2 (40 links, no cycle): %v", err)
	}
}

// TestAgentOpenFileLimit: the agent holds at most MaxOpenFiles files open
// for its streams, whatever the gateways ask (10,000 pipelined SFTP OPENs
// once took the embedded gateway to its descriptor limit): one more open
// is EMFILE, and a close makes room again.
func TestAgentOpenFileLimit(t *testing.T) {
	a := agenttest.StartWith(t, func(c *agent.Config) { c.MaxOpenFiles = 3 })
	c := agentpb.NewAgentClient(a.Conn)
	var open []*fileStream
	for i := range 3 {
		fst, _ := openOK(t, c, &agentpb.OpenOp{Path: []byte(fmt.Sprintf("f%d", i)), Flags: flags(fWrite, fCreate, fTrunc), Perm: 0o644})
		open = append(open, fst)
	}
	fst, resp := openStream(t, c, &agentpb.OpenOp{Path: []byte("f3"), Flags: flags(fWrite, fCreate, fTrunc), Perm: 0o644})
	if e := resp.GetError(); e == nil || e.GetErrno() != "EMFILE" || codes.Code(e.GetCode()) != codes.ResourceExhausted {
		t.Fatalf("a 4th open: %v, want EMFILE", resp)
	}
	fst.cancel()
	if a.Server.OpenHandles() != 3 {
		t.Errorf("open handles %d after a refusal, want 3", a.Server.OpenHandles())
	}
	open[0].close(false)
	fst, _ = openOK(t, c, &agentpb.OpenOp{Path: []byte("f3"), Flags: flags(fWrite, fCreate, fTrunc), Perm: 0o644})
	fst.close(false)
	for _, f := range open[1:] {
		f.close(false)
	}
}

// TestReplacedFileLetGoAfterReply: a commit that replaces a file holds the
// old one open across its rename and lets go of it once it has replied
// (the rename then does not free the old file's blocks while the client
// waits). Whatever the protocol: the target holds the new bytes as soon as
// the close is answered, a reader that had the old file open still reads
// the old bytes, nothing but the target is in the directory, and the agent
// holds no replaced file open afterwards.
func TestReplacedFileLetGoAfterReply(t *testing.T) {
	a, c := start(t, "")
	target := filepath.Join(a.Dir, "x.php")
	if err := os.WriteFile(target, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	old, err := os.Open(target)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	fsys := a.Fs(t, "")
	for i := range 20 {
		want := "v2 save " + strconv.Itoa(i)
		if i%2 == 1 {
			// The previous protocol's Open stream commits the same way.
			want = "v1 save " + strconv.Itoa(i)
			fst, _ := openOK(t, c, &agentpb.OpenOp{Path: []byte("x.php"), Flags: uint32(agentpb.OpenFlag_OPEN_FLAG_WRITE | agentpb.OpenFlag_OPEN_FLAG_CREATE | agentpb.OpenFlag_OPEN_FLAG_TRUNC), Perm: 0o644})
			fst.write(0, want)
			fst.close(false)
		} else if err := afero.WriteFile(fsys, "/x.php", []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		if got, err := os.ReadFile(target); err != nil || string(got) != want {
			t.Fatalf("save %d: x.php = %q, %v; want %q", i, got, err, want)
		}
		ents, err := os.ReadDir(a.Dir)
		if err != nil || len(ents) != 1 {
			t.Fatalf("save %d: the directory holds %v (%v); want only x.php", i, ents, err)
		}
	}
	var st syscall.Stat_t
	if err := syscall.Stat(target, &st); err != nil || st.Nlink != 1 {
		t.Fatalf("x.php has %d links (%v); want 1", st.Nlink, err)
	}
	if b, err := io.ReadAll(old); err != nil || string(b) != "old" {
		t.Fatalf("the reader of the replaced file read %q, %v; want %q", b, err, "old")
	}
	// The agent runs in this process: a replaced file it still held
	// would show among its descriptors as a deleted x.php (the test's
	// own reader, old, is one of them).
	deadline := time.Now().Add(settle)
	for {
		held := deletedOpen(t, target)
		if held <= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d descriptors of replaced x.php files are open; want only the test's reader", held)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// deletedOpen counts this process's descriptors of files once named p and
// since replaced or removed.
func deletedOpen(t *testing.T, p string) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && l == p+" (deleted)" {
			n++
		}
	}
	return n
}

// TestChtimesPresence: a time present in ChtimesRequest is set, 0 (the
// Unix epoch) included; a time left out is left unchanged, which is what
// a gateway from before FILE_FEATURE_EPOCH_TIMES sends for "unchanged"
// (proto3 never wrote its 0). The agent announces the feature.
func TestChtimesPresence(t *testing.T) {
	a, c := start(t, "")
	ctx := testCtx(t)
	if err := os.WriteFile(filepath.Join(a.Dir, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	mtimeOf := func() time.Time {
		t.Helper()
		fi, err := os.Stat(filepath.Join(a.Dir, "f"))
		if err != nil {
			t.Fatal(err)
		}
		return fi.ModTime()
	}
	if _, err := c.Chtimes(ctx, &agentpb.ChtimesRequest{Path: []byte("f"), AtimeUnixNano: new(int64(5e9)), MtimeUnixNano: new(int64(0))}); err != nil {
		t.Fatal(err)
	}
	if got := mtimeOf(); !got.Equal(time.Unix(0, 0)) {
		t.Errorf("mtime after a present 0: %v, want the epoch", got)
	}
	if _, err := c.Chtimes(ctx, &agentpb.ChtimesRequest{Path: []byte("f"), AtimeUnixNano: new(int64(7e9))}); err != nil {
		t.Fatal(err)
	}
	if got := mtimeOf(); !got.Equal(time.Unix(0, 0)) {
		t.Errorf("mtime after a request leaving it out: %v, want the epoch still", got)
	}
	s, err := c.Session(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(&agentpb.SessionRequest{Id: 1, Op: &agentpb.SessionRequest_Hello{Hello: &agentpb.SessionHello{Protocol: 2}}}); err != nil {
		t.Fatal(err)
	}
	h, err := s.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if h.GetHello().GetFeatures()&uint32(agentpb.FileFeature_FILE_FEATURE_EPOCH_TIMES) == 0 {
		t.Errorf("Hello features %#x lack FILE_FEATURE_EPOCH_TIMES", h.GetHello().GetFeatures())
	}
	s.CloseSend()
}

// TestRemoveKind: RemoveRequest.kind removes only an entry of its kind,
// in one step, as unlink(2) and rmdir(2): a directory is never unlinked,
// a file or a link to a directory never rmdir'ed; and a directory holding
// only a dead upload's temp file is removable as with any kind.
func TestRemoveKind(t *testing.T) {
	a, c := start(t, "")
	ctx := testCtx(t)
	for _, d := range []string{"d", "d2", "full", "tmpd"} {
		if err := os.Mkdir(filepath.Join(a.Dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(a.Dir, "f"), "file", 0o644)
	writeFile(t, filepath.Join(a.Dir, "full", "x"), "x", 0o644)
	writeFile(t, filepath.Join(a.Dir, "tmpd", agent.TempPrefix+"0123456789abcdef-gone"), "dead", 0o600)
	if err := os.Symlink("d", filepath.Join(a.Dir, "ld")); err != nil {
		t.Fatal(err)
	}
	file, dir := agentpb.RemoveKind_REMOVE_KIND_FILE, agentpb.RemoveKind_REMOVE_KIND_DIR
	for _, tc := range []struct {
		path  string
		kind  agentpb.RemoveKind
		errno string // "" succeeds
	}{
		{"d", file, "EISDIR"},
		{"f", dir, "ENOTDIR"},
		{"ld", dir, "ENOTDIR"},
		{"full", dir, "ENOTEMPTY"},
		{"missing", file, "ENOENT"},
		{"missing", dir, "ENOENT"},
		{"f/x", file, "ENOTDIR"},
		{"ld", file, ""}, // the link, not d
		{"f", file, ""},
		{"d2", dir, ""},
		{"tmpd", dir, ""},
	} {
		_, err := c.Remove(ctx, &agentpb.RemoveRequest{Path: []byte(tc.path), Kind: tc.kind})
		if got := errnoOf(err); got != tc.errno || tc.errno == "" && err != nil {
			t.Errorf("remove %s (%s): %v (errno %q), want errno %q", tc.path, tc.kind, err, got, tc.errno)
		}
	}
	for _, p := range []string{"d", "full/x"} {
		if _, err := os.Lstat(filepath.Join(a.Dir, p)); err != nil {
			t.Errorf("%s: %v, want it kept", p, err)
		}
	}
	for _, p := range []string{"f", "ld", "d2", "tmpd"} {
		if _, err := os.Lstat(filepath.Join(a.Dir, p)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: %v, want it removed", p, err)
		}
	}
}
