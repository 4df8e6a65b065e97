package agent

// FuzzAgentPath checks the agent's one path gate, clean, and then sends the
// same path through a real agent on loopback TCP, asserting that no create
// ever lands outside the agent root, whatever the path and whatever the
// symbolic links inside the root point at.

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/upgate/upgate/backend"
	"github.com/upgate/upgate/backend/agentpb"
)

// fuzzTree is the directory an agent fuzz run serves:
//
//	parent/
//	  root/               the agent root
//	    sub/
//	      up -> ../../outside
//	    link -> ../outside
//	    abs -> <parent>/outside
//	    jail/             the ScopeMetadata directory of scoped calls
//	      out -> ../sub   leaves the scope, stays in the root
//	  outside/            must stay empty
type fuzzTree struct {
	root, outside string
	client        agentpb.AgentClient
}

// fuzzFixtures lists, per directory of the root outside jail, the entries the
// tree starts with; anything else is what a fuzz input created.
var fuzzFixtures = map[string][]string{
	".":   {"abs", "jail", "link", "sub"},
	"sub": {"up"},
}

func newFuzzTree(f *testing.F) *fuzzTree {
	f.Helper()
	parent := f.TempDir()
	tr := &fuzzTree{root: filepath.Join(parent, "root"), outside: filepath.Join(parent, "outside")}
	for _, d := range []string{tr.outside, filepath.Join(tr.root, "sub"), filepath.Join(tr.root, "jail")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			f.Fatal(err)
		}
	}
	for link, target := range map[string]string{
		"sub/up":   "../../outside",
		"link":     "../outside",
		"abs":      tr.outside,
		"jail/out": "../sub",
	} {
		if err := os.Symlink(target, filepath.Join(tr.root, link)); err != nil {
			f.Fatal(err)
		}
	}

	const token = "fuzz-token"
	srv, err := New(Config{Root: tr.root, Token: token, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		f.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := Serve(ctx, srv, lis); err != nil && !errors.Is(err, net.ErrClosed) {
			f.Errorf("agent serve: %v", err)
		}
	})
	cc, err := backend.Dial(lis.Addr().String(), backend.DialOptions{Token: token})
	if err != nil {
		cancel()
		wg.Wait()
		f.Fatal(err)
	}
	f.Cleanup(func() {
		cc.Close()
		cancel()
		wg.Wait()
		srv.Close()
	})
	tr.client = agentpb.NewAgentClient(cc)
	return tr
}

// fuzzNames lists the directory dir.
func fuzzNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("list %s: %v", dir, err)
	}
	out := make([]string, 0, len(ents))
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// checkOutside fails if anything appeared in the outside directory.
func (tr *fuzzTree) checkOutside(t *testing.T, after string) {
	t.Helper()
	if got := fuzzNames(t, tr.outside); len(got) != 0 {
		t.Fatalf("after %s: the directory outside the agent root holds %q", after, got)
	}
}

// checkFixtures fails unless the root's fixture directories hold exactly
// their fuzzFixtures: nothing a scoped call made escaped its scope.
func (tr *fuzzTree) checkFixtures(t *testing.T, after string) {
	t.Helper()
	for dir, want := range fuzzFixtures {
		if got := fuzzNames(t, filepath.Join(tr.root, dir)); !slices.Equal(got, want) {
			t.Fatalf("after %s: %s holds %q, want only %q", after, dir, got, want)
		}
	}
}

// reset removes whatever an input created, so that every input starts
// from the same tree.
func (tr *fuzzTree) reset(t *testing.T) {
	t.Helper()
	keep := map[string][]string{".": fuzzFixtures["."], "sub": fuzzFixtures["sub"], "jail": {"out"}}
	for dir, fixed := range keep {
		for _, name := range fuzzNames(t, filepath.Join(tr.root, dir)) {
			if slices.Contains(fixed, name) {
				continue
			}
			if err := os.RemoveAll(filepath.Join(tr.root, dir, name)); err != nil {
				t.Fatal(err)
			}
		}
	}
	// A failed check already stopped the input; clear outside too so
	// that one escape does not fail every later input.
	for _, name := range fuzzNames(t, tr.outside) {
		_ = os.RemoveAll(filepath.Join(tr.outside, name))
	}
}

// create runs the three calls that could make something appear: Stat,
// MkdirAll and an atomic create committed by CloseOp. It returns Stat's
// error.
func (tr *fuzzTree) create(t *testing.T, ctx context.Context, p string) error {
	t.Helper()
	_, statErr := tr.client.Stat(ctx, &agentpb.PathRequest{Path: []byte(p)})
	_, _ = tr.client.Mkdir(ctx, &agentpb.MkdirRequest{Path: []byte(p), Perm: 0o755, All: true})
	_, _ = tr.client.Mkdir(ctx, &agentpb.MkdirRequest{Path: []byte(p + "/d"), Perm: 0o755})

	for _, name := range []string{p, p + "/f"} {
		sctx, cancel := context.WithCancel(ctx)
		stream, err := tr.client.Open(sctx)
		if err != nil {
			cancel()
			t.Fatalf("Open stream: %v", err)
		}
		flags := uint32(agentpb.OpenFlag_OPEN_FLAG_WRITE | agentpb.OpenFlag_OPEN_FLAG_CREATE | agentpb.OpenFlag_OPEN_FLAG_TRUNC)
		op := &agentpb.FileRequest{Id: 1, Op: &agentpb.FileRequest_Open{Open: &agentpb.OpenOp{Path: []byte(name), Flags: flags, Perm: 0o644}}}
		if err := stream.Send(op); err == nil {
			if resp, err := stream.Recv(); err == nil && resp.GetError() == nil {
				_ = stream.Send(&agentpb.FileRequest{Id: 2, Op: &agentpb.FileRequest_Close{Close: &agentpb.CloseOp{}}})
				_, _ = stream.Recv()
			}
		}
		_ = stream.CloseSend()
		cancel()
	}
	return statErr
}

func FuzzAgentPath(f *testing.F) {
	for _, s := range []string{
		"", ".", "a", "a/b", "sub", "sub/up", "sub/up/x", "link", "link/x", "abs/x",
		"jail/out/x", "..", "../outside/x", "a/../..", "a/./b", "a//b", "/", "/etc",
		"./../x", "a/..", "a\x00b", "a\nb", "\x7f", "sub/../link/x", "…/x", "a/.../b",
	} {
		f.Add(s)
	}
	tr := newFuzzTree(f)
	f.Fuzz(func(t *testing.T, in string) {
		// The gate itself.
		p, err := clean(in)
		if err == nil {
			if !filepath.IsLocal(p) && p != "." {
				t.Fatalf("clean(%q) = %q, not local", in, p)
			}
			if strings.ContainsFunc(p, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
				t.Fatalf("clean(%q) = %q holds a control character", in, p)
			}
			if slices.Contains(strings.Split(p, "/"), "..") {
				t.Fatalf("clean(%q) = %q holds a \"..\" element", in, p)
			}
			if p2, err := clean(p); err != nil || p2 != p {
				t.Fatalf("clean is not idempotent: clean(%q) = %q, clean of that = %q, %v", in, p, p2, err)
			}
		} else if c := status.Code(err); c != codes.InvalidArgument && c != codes.PermissionDenied {
			t.Fatalf("clean(%q): code %v, want InvalidArgument or PermissionDenied: %v", in, c, err)
		}

		// The real filesystem behind a real agent.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		defer tr.reset(t)

		// Scoped to jail: nothing may leave jail, so every fixture
		// directory keeps exactly its fuzzFixtures.
		scoped := metadata.AppendToOutgoingContext(ctx, agentpb.ScopeMetadata, "jail")
		_ = tr.create(t, scoped, "jail/"+in)
		tr.checkOutside(t, "scoped calls")
		tr.checkFixtures(t, "scoped calls")

		statErr := tr.create(t, ctx, in)
		tr.checkOutside(t, "calls")
		if err != nil && utf8.ValidString(in) {
			// The agent refuses what clean refuses, with the same code.
			if got, want := status.Code(statErr), status.Code(err); got != want {
				t.Fatalf("Stat(%q): code %v, want %v as clean gives: %v", in, got, want, statErr)
			}
		}
	})
}
