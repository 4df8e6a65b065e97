package agent_test

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/upgate/upgate/backend/agent"
	"github.com/upgate/upgate/backend/agentpb"
	"github.com/upgate/upgate/internal/agenttest"
)

// rawSession is one Session stream driven request by request.
type rawSession struct {
	t      *testing.T
	s      agentpb.Agent_SessionClient
	cancel context.CancelFunc
	id     uint64
}

// session opens a Session stream and says Hello with root; it returns the
// stream and the reply to Hello.
func session(t *testing.T, c agentpb.AgentClient, root string) (*rawSession, *agentpb.SessionResponse) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	s, err := c.Session(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rs := &rawSession{t: t, s: s, cancel: cancel}
	return rs, rs.do(&agentpb.SessionRequest{Op: &agentpb.SessionRequest_Hello{Hello: &agentpb.SessionHello{Protocol: agent.Protocol, Root: []byte(root)}}})
}

// send sends req with the next id and returns the id.
func (r *rawSession) send(req *agentpb.SessionRequest) uint64 {
	r.t.Helper()
	r.id++
	req.Id = r.id
	if err := r.s.Send(req); err != nil {
		r.t.Fatalf("send: %v", err)
	}
	return r.id
}

// do sends req and returns its reply; nothing else may be in flight.
func (r *rawSession) do(req *agentpb.SessionRequest) *agentpb.SessionResponse {
	r.t.Helper()
	id := r.send(req)
	resp, err := r.s.Recv()
	if err != nil {
		r.t.Fatalf("recv: %v", err)
	}
	if resp.GetId() != id {
		r.t.Fatalf("reply to %d carries id %d", id, resp.GetId())
	}
	return resp
}

// ok is do that fails the test on an error reply.
func (r *rawSession) ok(req *agentpb.SessionRequest) *agentpb.SessionResponse {
	r.t.Helper()
	resp := r.do(req)
	if e := resp.GetError(); e != nil {
		r.t.Fatalf("request %T: %s (%s)", req.GetOp(), e.GetMessage(), e.GetErrno())
	}
	return resp
}

func stat(p string) *agentpb.SessionRequest {
	return &agentpb.SessionRequest{Op: &agentpb.SessionRequest_Stat{Stat: &agentpb.PathRequest{Path: []byte(p)}}}
}

func fileReq(file uint64, req *agentpb.SessionRequest) *agentpb.SessionRequest {
	req.File = file
	return req
}

// TestSessionProtocol: a Session begins with Hello and answers with the
// agent's protocol and features; every request gets one reply with its
// id; requests naming no open file get EBADF without ending the stream;
// paths outside the Hello's root are refused.
func TestSessionProtocol(t *testing.T) {
	a, c := start(t, "")
	if err := os.MkdirAll(filepath.Join(a.Dir, "u", "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(a.Dir, "v"), "sibling\n", 0o644)

	// The first message must be Hello.
	ctx := testCtx(t)
	s, err := c.Session(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(stat("u")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("a Session opened without Hello: %v, want InvalidArgument", err)
	}

	// A root that does not exist fails Hello.
	_, hello := session(t, c, "nosuch")
	if hello.GetError() == nil || hello.GetError().GetErrno() != "ENOENT" {
		t.Fatalf("Hello with a missing root: %v", hello)
	}

	r, hello := session(t, c, "u")
	if e := hello.GetError(); e != nil {
		t.Fatal(e.GetMessage())
	}
	if h := hello.GetHello(); h.GetProtocol() != agent.Protocol ||
		h.GetFeatures()&uint32(agentpb.FileFeature_FILE_FEATURE_SESSION_VIEW) == 0 {
		t.Fatalf("HelloResult %v", h)
	}
	if info := r.ok(stat("u/d")).GetInfo(); !os.FileMode(info.GetMode()).IsDir() {
		t.Fatalf("stat u/d: mode %v", os.FileMode(info.GetMode()))
	}
	for _, p := range []string{"v", "u/../v", "/etc/passwd"} {
		if e := r.do(stat(p)).GetError(); e == nil || (codes.Code(e.GetCode()) != codes.PermissionDenied && codes.Code(e.GetCode()) != codes.InvalidArgument) {
			t.Errorf("stat %q outside the session's root: %v", p, e)
		}
	}
	// A request on a file that is not open.
	resp := r.do(fileReq(99, &agentpb.SessionRequest{Op: &agentpb.SessionRequest_Read{Read: &agentpb.ReadOp{Length: 10}}}))
	if e := resp.GetError(); e == nil || !strings.Contains(e.GetMessage(), "bad file descriptor") {
		t.Fatalf("read of a file that is not open: %v", resp)
	}
	// Hello again.
	if e := r.do(&agentpb.SessionRequest{Op: &agentpb.SessionRequest_Hello{Hello: &agentpb.SessionHello{Protocol: 2}}}).GetError(); e == nil {
		t.Fatal("a second Hello was accepted")
	}
	r.ok(stat("u")) // the stream goes on
}

// TestSessionFilesAndListings: files opened on a Session are written and
// committed by messages; requests pipelined without waiting are answered
// in order per file; a listing pages through a directory without the
// upload temp files; ending the stream aborts the uploads still open.
func TestSessionFilesAndListings(t *testing.T) {
	a, c := start(t, "")
	if err := os.Mkdir(filepath.Join(a.Dir, "u"), 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range 600 {
		writeFile(t, filepath.Join(a.Dir, "u", "f"+strings.Repeat("x", i%7)+string(rune('a'+i%26))+string(rune('0'+i/26%10))+string(rune('a'+i/260))), "", 0o644)
	}
	r, _ := session(t, c, "u")

	// Open, three writes and the close sent at once; replies in order.
	open := r.ok(&agentpb.SessionRequest{Op: &agentpb.SessionRequest_Open{Open: &agentpb.OpenOp{
		Path: []byte("u/new.txt"), Flags: flags(agentpb.OpenFlag_OPEN_FLAG_WRITE, agentpb.OpenFlag_OPEN_FLAG_CREATE, agentpb.OpenFlag_OPEN_FLAG_TRUNC), Perm: 0o640}}})
	fid := open.GetId()
	if open.GetUploadId() == "" {
		t.Fatal("an atomic upload's open carries no upload id")
	}
	var ids []uint64
	for i, part := range []string{"one ", "two ", "three\n"} {
		ids = append(ids, r.send(fileReq(fid, &agentpb.SessionRequest{Op: &agentpb.SessionRequest_Write{Write: &agentpb.WriteOp{Offset: int64(4 * i), Data: []byte(part)}}})))
	}
	ids = append(ids, r.send(fileReq(fid, &agentpb.SessionRequest{Op: &agentpb.SessionRequest_Close{Close: &agentpb.CloseOp{}}})))
	for _, id := range ids {
		resp, err := r.s.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetId() != id || resp.GetError() != nil {
			t.Fatalf("reply %d: want id %d, no error: %v", resp.GetId(), id, resp)
		}
	}
	if got := readFile(t, filepath.Join(a.Dir, "u", "new.txt")); got != "one two three\n" {
		t.Fatalf("committed %q", got)
	}
	if fi, err := os.Stat(filepath.Join(a.Dir, "u", "new.txt")); err != nil || fi.Mode().Perm() != 0o640 {
		t.Fatalf("mode %v, %v", fi.Mode(), err)
	}
	// The file is closed: its id names nothing now.
	if e := r.do(fileReq(fid, &agentpb.SessionRequest{Op: &agentpb.SessionRequest_Fstat{Fstat: &agentpb.StatOp{}}})).GetError(); e == nil {
		t.Fatal("fstat of a closed file succeeded")
	}

	// An upload left open, seen in a listing of its directory: not there.
	up := r.ok(&agentpb.SessionRequest{Op: &agentpb.SessionRequest_Open{Open: &agentpb.OpenOp{
		Path: []byte("u/open.txt"), Flags: flags(agentpb.OpenFlag_OPEN_FLAG_WRITE, agentpb.OpenFlag_OPEN_FLAG_CREATE, agentpb.OpenFlag_OPEN_FLAG_TRUNC), Perm: 0o644}}})
	r.ok(fileReq(up.GetId(), &agentpb.SessionRequest{Op: &agentpb.SessionRequest_Write{Write: &agentpb.WriteOp{Data: []byte("partial")}}}))
	dir := r.ok(&agentpb.SessionRequest{Op: &agentpb.SessionRequest_Open{Open: &agentpb.OpenOp{Path: []byte("u"), Flags: flags(agentpb.OpenFlag_OPEN_FLAG_READ)}}})
	if !os.FileMode(dir.GetInfo().GetMode()).IsDir() {
		t.Fatalf("open of a directory: %v", dir.GetInfo())
	}
	var names []string
	for pages := 0; ; pages++ {
		if pages > 20 {
			t.Fatal("the listing never ended")
		}
		resp := r.ok(fileReq(dir.GetId(), &agentpb.SessionRequest{Op: &agentpb.SessionRequest_Readdir{Readdir: &agentpb.ReadDirOp{Max: 100}}}))
		if n := len(resp.GetEntries().GetEntries()); n > 100 {
			t.Fatalf("a page of %d entries; asked for 100", n)
		}
		for _, e := range resp.GetEntries().GetEntries() {
			names = append(names, string(e.GetName()))
		}
		if resp.GetEof() {
			break
		}
	}
	r.ok(fileReq(dir.GetId(), &agentpb.SessionRequest{Op: &agentpb.SessionRequest_Close{Close: &agentpb.CloseOp{}}}))
	want, err := os.ReadDir(filepath.Join(a.Dir, "u"))
	if err != nil {
		t.Fatal(err)
	}
	var wantNames []string
	for _, e := range want {
		if !strings.HasPrefix(e.Name(), agent.TempPrefix) {
			wantNames = append(wantNames, e.Name())
		}
	}
	slices.Sort(names)
	if !slices.Equal(names, wantNames) || slices.Contains(names, "open.txt") {
		t.Fatalf("listing: %d names, want %d (the upload in progress hidden)", len(names), len(wantNames))
	}

	// The stream ends with the upload open: it aborts.
	if len(agenttest.TempFiles(t, filepath.Join(a.Dir, "u"))) != 1 {
		t.Fatal("the upload in progress has no temp file")
	}
	if err := r.s.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.s.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("after CloseSend: %v, want EOF", err)
	}
	waitClean(t, a, filepath.Join(a.Dir, "u"))
	if _, err := os.Stat(filepath.Join(a.Dir, "u", "open.txt")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the aborted upload is visible: %v", err)
	}
}

// TestSessionListingAttrs: fstat, fchmod and set_times on a listing act
// on the directory it opened, renamed since and another made at its old
// name, as fstat(2), fchmod(2) and futimens(2) of sftp-server's descriptor
// (FILE_FEATURE_LISTING_ATTRS); a setgid bit passes on a directory, a
// setuid bit is refused; what a listing cannot do is refused, naming the
// request.
func TestSessionListingAttrs(t *testing.T) {
	a, c := start(t, "")
	if err := os.Mkdir(filepath.Join(a.Dir, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	r, hello := session(t, c, "")
	if hello.GetHello().GetFeatures()&uint32(agentpb.FileFeature_FILE_FEATURE_LISTING_ATTRS) == 0 {
		t.Fatal("FILE_FEATURE_LISTING_ATTRS not announced")
	}
	for _, open := range []*agentpb.SessionRequest{
		{Op: &agentpb.SessionRequest_Open{Open: &agentpb.OpenOp{Path: []byte("d"), Flags: flags(agentpb.OpenFlag_OPEN_FLAG_READ)}}},
		{Op: &agentpb.SessionRequest_Opendir{Opendir: &agentpb.PathRequest{Path: []byte("d")}}},
	} {
		dir := r.ok(open).GetId()
		if err := os.Rename(filepath.Join(a.Dir, "d"), filepath.Join(a.Dir, "moved")); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(filepath.Join(a.Dir, "d"), 0o755); err != nil {
			t.Fatal(err)
		}
		mtime := time.Date(2004, 11, 9, 11, 33, 20, 0, time.UTC)
		r.ok(fileReq(dir, &agentpb.SessionRequest{Op: &agentpb.SessionRequest_Fchmod{Fchmod: &agentpb.ChmodOp{Perm: uint32(os.ModeSetgid | 0o750)}}}))
		r.ok(fileReq(dir, &agentpb.SessionRequest{Op: &agentpb.SessionRequest_SetTimes{SetTimes: &agentpb.SetTimesOp{MtimeUnixNano: new(mtime.UnixNano())}}}))
		info := r.ok(fileReq(dir, &agentpb.SessionRequest{Op: &agentpb.SessionRequest_Fstat{Fstat: &agentpb.StatOp{}}})).GetInfo()
		if got := os.FileMode(info.GetMode()); got != os.ModeDir|os.ModeSetgid|0o750 || info.GetMtimeUnixNano() != mtime.UnixNano() || string(info.GetName()) != "d" {
			t.Errorf("fstat of the listing: mode %v, mtime %v, name %q; want drwxr-s---, %v, \"d\"", got, time.Unix(0, info.GetMtimeUnixNano()).UTC(), info.GetName(), mtime)
		}
		for p, want := range map[string]os.FileMode{"moved": os.ModeDir | os.ModeSetgid | 0o750, "d": os.ModeDir | 0o755} {
			fi, err := os.Stat(filepath.Join(a.Dir, p))
			if err != nil || fi.Mode() != want {
				t.Errorf("%s on disk: %v, %v; want %v", p, fi.Mode(), err, want)
			}
		}
		if fi, err := os.Stat(filepath.Join(a.Dir, "moved")); err != nil || !fi.ModTime().Equal(mtime) {
			t.Errorf("moved's mtime: %v, %v; want %v", fi.ModTime(), err, mtime)
		}
		if e := r.do(fileReq(dir, &agentpb.SessionRequest{Op: &agentpb.SessionRequest_Fchmod{Fchmod: &agentpb.ChmodOp{Perm: uint32(os.ModeSetuid | 0o755)}}})).GetError(); codes.Code(e.GetCode()) != codes.PermissionDenied {
			t.Errorf("fchmod u+s of a listing: %v, want PermissionDenied", e)
		}
		if e := r.do(fileReq(dir, &agentpb.SessionRequest{Op: &agentpb.SessionRequest_Read{Read: &agentpb.ReadOp{Length: 10}}})).GetError(); codes.Code(e.GetCode()) != codes.InvalidArgument || !strings.Contains(e.GetMessage(), "listing") {
			t.Errorf("read of a listing: %v, want InvalidArgument saying a listing", e)
		}
		r.ok(fileReq(dir, &agentpb.SessionRequest{Op: &agentpb.SessionRequest_Close{Close: &agentpb.CloseOp{}}}))
		if err := os.RemoveAll(filepath.Join(a.Dir, "moved")); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSessionCloseWithWrite: a CloseOp may carry the file's last write
// (FILE_FEATURE_CLOSE_WITH_WRITE, announced in the Hello): the agent
// writes it, then commits; a carried write that fails aborts the upload,
// the close answers the write's error, and the old file stays.
func TestSessionCloseWithWrite(t *testing.T) {
	a, r, upload := uploadSession(t, agentpb.FileFeature_FILE_FEATURE_CLOSE_WITH_WRITE)
	closeWith := func(fid uint64, w *agentpb.WriteOp) *agentpb.SessionResponse {
		return r.do(fileReq(fid, &agentpb.SessionRequest{Op: &agentpb.SessionRequest_Close{Close: &agentpb.CloseOp{Write: w}}}))
	}

	// One write before, the last with the close.
	fid := upload()
	r.ok(fileReq(fid, &agentpb.SessionRequest{Op: &agentpb.SessionRequest_Write{Write: &agentpb.WriteOp{Data: []byte("new ")}}}))
	if resp := closeWith(fid, &agentpb.WriteOp{Offset: 4, Data: []byte("content\n")}); resp.GetError() != nil || resp.GetDone() == nil {
		t.Fatalf("close with the last write: %v", resp)
	}
	if got := readFile(t, filepath.Join(a.Dir, "u", "f")); got != "new content\n" {
		t.Fatalf("committed %q, want %q", got, "new content\n")
	}

	// The carried write lands after the writes queued before it: it
	// overwrites them where they meet.
	fid = upload()
	r.send(fileReq(fid, &agentpb.SessionRequest{Op: &agentpb.SessionRequest_Write{Write: &agentpb.WriteOp{Data: []byte("aaaa")}}}))
	closeID := r.send(fileReq(fid, &agentpb.SessionRequest{Op: &agentpb.SessionRequest_Close{Close: &agentpb.CloseOp{Write: &agentpb.WriteOp{Offset: 1, Data: []byte("bb")}}}}))
	for range 2 {
		resp, err := r.s.Recv()
		if err != nil || resp.GetError() != nil {
			t.Fatalf("pipelined write and close: %v, %v", resp, err)
		}
		if resp.GetId() == closeID && resp.GetDone() == nil {
			t.Fatalf("close: %v", resp)
		}
	}
	if got := readFile(t, filepath.Join(a.Dir, "u", "f")); got != "abba" {
		t.Fatalf("committed %q, want %q (the close's write after the queued one)", got, "abba")
	}

	// A carried write that fails (a negative offset) commits nothing.
	fid = upload()
	resp := closeWith(fid, &agentpb.WriteOp{Offset: -1, Data: []byte("lost")})
	if e := resp.GetError(); e == nil || !strings.Contains(e.GetMessage(), "write") {
		t.Fatalf("close with a failing write: %v, want the write's error", resp)
	}
	if got := readFile(t, filepath.Join(a.Dir, "u", "f")); got != "abba" {
		t.Fatalf("after the failed close: %q, want the old content", got)
	}
	a.WaitIdle(t, 10*time.Second)
	if temps := agenttest.TempFiles(t, filepath.Join(a.Dir, "u")); len(temps) != 0 {
		t.Fatalf("temp files after the aborted upload: %q", temps)
	}
}

// TestSessionFIFO: no request waits on a named pipe's other end: an open
// for reading or writing, a listing, a hash and a statfs of one are
// refused at once (ENOTSUP), and the session's next request is served.
// Before, the open blocked the session's reader in open(2) for good.
func TestSessionFIFO(t *testing.T) {
	a, c := start(t, "")
	if err := os.Mkdir(filepath.Join(a.Dir, "u"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(a.Dir, "u", "pipe"), 0o644); err != nil {
		t.Fatal(err)
	}
	r, _ := session(t, c, "u")
	pipe := []byte("u/pipe")
	for _, tc := range []struct {
		name string
		req  *agentpb.SessionRequest
	}{
		{"open to read", &agentpb.SessionRequest{Op: &agentpb.SessionRequest_Open{Open: &agentpb.OpenOp{Path: pipe, Flags: flags(agentpb.OpenFlag_OPEN_FLAG_READ)}}}},
		{"open to write", &agentpb.SessionRequest{Op: &agentpb.SessionRequest_Open{Open: &agentpb.OpenOp{Path: pipe, Flags: flags(agentpb.OpenFlag_OPEN_FLAG_WRITE)}}}},
		{"opendir", &agentpb.SessionRequest{Op: &agentpb.SessionRequest_Opendir{Opendir: &agentpb.PathRequest{Path: pipe}}}},
		{"hash", &agentpb.SessionRequest{Op: &agentpb.SessionRequest_Hash{Hash: &agentpb.HashRequest{Path: pipe, Algorithm: agentpb.HashAlgorithm_HASH_ALGORITHM_SHA256}}}},
		{"statfs", &agentpb.SessionRequest{Op: &agentpb.SessionRequest_Statfs{Statfs: &agentpb.PathRequest{Path: pipe}}}},
	} {
		if e := r.do(tc.req).GetError(); e.GetErrno() != "ENOTSUP" {
			t.Errorf("%s of a FIFO: %v, want ENOTSUP", tc.name, e)
		}
	}
	// Where a directory should be: a rename or a chtimes below it, and a
	// Session rooted at it, fail at once too.
	below := []byte("u/pipe/x")
	for _, tc := range []struct {
		name string
		req  *agentpb.SessionRequest
	}{
		{"rename from below", &agentpb.SessionRequest{Op: &agentpb.SessionRequest_Rename{Rename: &agentpb.RenameRequest{From: below, To: []byte("u/y")}}}},
		{"rename to below", &agentpb.SessionRequest{Op: &agentpb.SessionRequest_Rename{Rename: &agentpb.RenameRequest{From: []byte("u/y"), To: below}}}},
		{"chtimes below", &agentpb.SessionRequest{Op: &agentpb.SessionRequest_Chtimes{Chtimes: &agentpb.ChtimesRequest{Path: below, MtimeUnixNano: new(int64(1e18)), Nofollow: true}}}},
	} {
		if e := r.do(tc.req).GetError(); e == nil {
			t.Errorf("%s a FIFO succeeded", tc.name)
		}
	}
	if _, hello := session(t, c, "u/pipe"); hello.GetError().GetErrno() != "ENOTDIR" {
		t.Errorf("Hello rooted at a FIFO: %v, want ENOTDIR", hello)
	}
	if info := r.ok(stat("u/pipe")).GetInfo(); fs.FileMode(info.GetMode()).Type() != fs.ModeNamedPipe {
		t.Fatalf("stat of the FIFO: mode %v", fs.FileMode(info.GetMode()))
	}
	a.WaitIdle(t, 10*time.Second)
}

// TestSessionFIFOWriterUntouched: refusing a FIFO never opens it, so a
// process waiting to write into it (a dev tool's pipe) is not let through
// to die of SIGPIPE when the agent closes its end again.
func TestSessionFIFOWriterUntouched(t *testing.T) {
	a, c := start(t, "")
	fifo := filepath.Join(a.Dir, "pipe")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	opened := make(chan error, 1)
	released := false
	t.Cleanup(func() {
		// A failed test leaves the writer waiting in open(2): give it a
		// reader, which goes away at once (its write then fails).
		if !released {
			if rd, err := os.OpenFile(fifo, os.O_RDONLY|syscall.O_NONBLOCK, 0); err == nil {
				rd.Close()
			}
			<-opened
		}
	})
	go func() {
		f, err := os.OpenFile(fifo, os.O_WRONLY, 0) // waits for a reader
		if err == nil {
			_, err = f.Write([]byte("from the writer\n"))
			f.Close()
		}
		opened <- err
	}()
	r, _ := session(t, c, "")
	for range 3 {
		if e := r.do(&agentpb.SessionRequest{Op: &agentpb.SessionRequest_Open{Open: &agentpb.OpenOp{
			Path: []byte("pipe"), Flags: flags(agentpb.OpenFlag_OPEN_FLAG_READ)}}}).GetError(); e.GetErrno() != "ENOTSUP" {
			t.Fatalf("open of the FIFO: %v, want ENOTSUP", e)
		}
	}
	time.Sleep(50 * time.Millisecond) // a writer let through would have written by now
	select {
	case err := <-opened:
		t.Fatalf("the FIFO's writer got through the agent's refusals: %v", err)
	default:
	}
	// Its real reader comes: the writer was waiting all along.
	released = true
	rd, err := os.Open(fifo)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	got, err := io.ReadAll(rd)
	if err != nil || string(got) != "from the writer\n" || <-opened != nil {
		t.Fatalf("read %q, %v from the FIFO", got, err)
	}
}

// uploadSession starts an agent holding u/f ("old\n") and a Session on u
// whose Hello announces feature; upload opens u/f as a new upload and
// returns its file id.
func uploadSession(t *testing.T, feature agentpb.FileFeature) (a *agenttest.Agent, r *rawSession, upload func() uint64) {
	t.Helper()
	a, c := start(t, "")
	if err := os.Mkdir(filepath.Join(a.Dir, "u"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(a.Dir, "u", "f"), "old\n", 0o644)
	r, hello := session(t, c, "u")
	if hello.GetHello().GetFeatures()&uint32(feature) == 0 {
		t.Fatalf("HelloResult %v: no %v", hello.GetHello(), feature)
	}
	return a, r, func() uint64 {
		return r.ok(&agentpb.SessionRequest{Op: &agentpb.SessionRequest_Open{Open: &agentpb.OpenOp{
			Path: []byte("u/f"), Flags: flags(agentpb.OpenFlag_OPEN_FLAG_WRITE, agentpb.OpenFlag_OPEN_FLAG_CREATE, agentpb.OpenFlag_OPEN_FLAG_TRUNC), Perm: 0o644}}}).GetId()
	}
}

// TestSessionPostedFailureAborts: a request on an open upload marked
// posted that fails makes the close abort and answer that failure, as a
// failed write does; the same request not posted is answered with its
// failure and the close still commits (a gateway that waited for it has
// told its client already).
func TestSessionPostedFailureAborts(t *testing.T) {
	a, r, open := uploadSession(t, agentpb.FileFeature_FILE_FEATURE_POSTED_FAILURE_ABORTS)
	upload := func() uint64 {
		fid := open()
		r.ok(fileReq(fid, &agentpb.SessionRequest{Op: &agentpb.SessionRequest_Write{Write: &agentpb.WriteOp{Data: []byte("new\n")}}}))
		return fid
	}
	// setuid is refused (checkMode): a failure any agent gives.
	setuid := func(fid uint64, posted bool) *agentpb.SessionRequest {
		req := fileReq(fid, &agentpb.SessionRequest{Op: &agentpb.SessionRequest_Fchmod{Fchmod: &agentpb.ChmodOp{Perm: uint32(os.ModeSetuid | 0o755)}}})
		req.Posted = posted
		return req
	}
	closeReq := func(fid uint64) *agentpb.SessionRequest {
		return fileReq(fid, &agentpb.SessionRequest{Op: &agentpb.SessionRequest_Close{Close: &agentpb.CloseOp{}}})
	}

	// Posted, with the close right behind it: both answer the failure,
	// and nothing is committed.
	fid := upload()
	chmodID := r.send(setuid(fid, true))
	closeID := r.send(closeReq(fid))
	var chmodErr, closeErr *agentpb.Error
	for range 2 {
		resp, err := r.s.Recv()
		if err != nil {
			t.Fatal(err)
		}
		switch resp.GetId() {
		case chmodID:
			chmodErr = resp.GetError()
		case closeID:
			closeErr = resp.GetError()
		}
	}
	if chmodErr == nil || codes.Code(chmodErr.GetCode()) != codes.PermissionDenied {
		t.Fatalf("posted setuid chmod answered %v, want PermissionDenied", chmodErr)
	}
	if closeErr == nil || closeErr.GetCode() != chmodErr.GetCode() || closeErr.GetMessage() != chmodErr.GetMessage() {
		t.Fatalf("close after the failed posted chmod answered %v, want the chmod's failure %v", closeErr, chmodErr)
	}
	if got := readFile(t, filepath.Join(a.Dir, "u", "f")); got != "old\n" {
		t.Fatalf("after the aborted upload: %q, want the old content", got)
	}
	a.WaitIdle(t, 10*time.Second)
	if temps := agenttest.TempFiles(t, filepath.Join(a.Dir, "u")); len(temps) != 0 {
		t.Fatalf("temp files after the aborted upload: %q", temps)
	}

	// Not posted: the failure is the chmod's answer alone.
	fid = upload()
	if resp := r.do(setuid(fid, false)); codes.Code(resp.GetError().GetCode()) != codes.PermissionDenied {
		t.Fatalf("setuid chmod answered %v, want PermissionDenied", resp)
	}
	if resp := r.do(closeReq(fid)); resp.GetError() != nil || resp.GetDone() == nil {
		t.Fatalf("close after a chmod that was waited for: %v, want it committed", resp)
	}
	if got := readFile(t, filepath.Join(a.Dir, "u", "f")); got != "new\n" {
		t.Fatalf("committed %q, want %q", got, "new\n")
	}

	// Posted and successful: applied in order before the commit.
	fid = upload()
	mtime := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	for _, req := range []*agentpb.SessionRequest{
		{Op: &agentpb.SessionRequest_Truncate{Truncate: &agentpb.TruncateOp{Size: 2}}},
		{Op: &agentpb.SessionRequest_SetTimes{SetTimes: &agentpb.SetTimesOp{MtimeUnixNano: new(mtime.UnixNano()), AtimeUnixNano: new(mtime.UnixNano())}}},
		{Op: &agentpb.SessionRequest_Fchmod{Fchmod: &agentpb.ChmodOp{Perm: 0o600}}},
	} {
		req = fileReq(fid, req)
		req.Posted = true
		r.send(req)
	}
	closeID = r.send(closeReq(fid))
	for {
		resp, err := r.s.Recv()
		if err != nil || resp.GetError() != nil {
			t.Fatalf("posted truncate, times, mode and close: %v, %v", resp, err)
		}
		if resp.GetId() == closeID {
			break
		}
	}
	fi, err := os.Stat(filepath.Join(a.Dir, "u", "f"))
	if err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(a.Dir, "u", "f")); got != "ne" || fi.Mode().Perm() != 0o600 || !fi.ModTime().Equal(mtime) {
		t.Fatalf("committed %q, mode %v, mtime %v; want \"ne\", 0600, %v", got, fi.Mode().Perm(), fi.ModTime().UTC(), mtime)
	}
}
