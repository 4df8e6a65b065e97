package backend_test

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/upgate/upgate/backend"
	"github.com/upgate/upgate/internal/agenttest"
)

// mover is a target that a test moves, with the FollowConn over it.
type mover struct {
	mu     sync.Mutex
	target string
	err    error
	fc     *backend.FollowConn
	// switches records OnSwitch calls as "old>new".
	switches []string
}

func newMover(t *testing.T, token string) *mover {
	m := &mover{}
	m.fc = backend.NewFollowConn(backend.FollowOptions{
		Resolve: func(context.Context) (string, error) {
			m.mu.Lock()
			defer m.mu.Unlock()
			return m.target, m.err
		},
		Dial: func(target string) (*grpc.ClientConn, error) {
			return backend.Dial(target, backend.DialOptions{Token: token})
		},
		OnSwitch: func(old, new string) {
			m.mu.Lock()
			m.switches = append(m.switches, old+">"+new)
			m.mu.Unlock()
		},
	})
	t.Cleanup(func() { m.fc.Close() })
	return m
}

func (m *mover) set(target string, err error) {
	m.mu.Lock()
	m.target, m.err = target, err
	m.mu.Unlock()
}

// twoAgents serves two agents with one token, as two pods of one user.
func twoAgents(t *testing.T) (a, b *agenttest.Agent) {
	t.Helper()
	serve := func() *agenttest.Agent {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		return agenttest.Serve(t, "", lis, "follow-token")
	}
	return serve(), serve()
}

func fsOver(t *testing.T, cc grpc.ClientConnInterface) *backend.GRPCFs {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return backend.NewGRPCFs(ctx, cc, backend.Options{Agent: "dev", User: "alice"})
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestFollowConnMoves: a filesystem built once follows its target: new
// calls and new files go to the agent the resolver names now.
func TestFollowConnMoves(t *testing.T) {
	a, b := twoAgents(t)
	m := newMover(t, "follow-token")
	m.set(a.Addr, nil)
	fsys := fsOver(t, m.fc)
	if err := writeAll(fsys, "one.txt", "first pod"); err != nil {
		t.Fatal(err)
	}
	// The move, as the resolver reports it: the filesystem's Session
	// stream on the old agent ends, and its next one goes to the new.
	m.set(b.Addr, nil)
	m.fc.Refresh(context.Background())
	waitStreamGone(t, fsys)
	if err := writeAll(fsys, "two.txt", "second pod"); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(a.Dir, "one.txt")); got != "first pod" {
		t.Errorf("first agent holds %q", got)
	}
	if got := readFile(t, filepath.Join(b.Dir, "two.txt")); got != "second pod" {
		t.Errorf("second agent holds %q", got)
	}
	for _, p := range []string{filepath.Join(a.Dir, "two.txt"), filepath.Join(b.Dir, "one.txt")} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: %v, want it absent", p, err)
		}
	}
	if got := m.fc.Target(); got != b.Addr {
		t.Errorf("Target() = %q, want %q", got, b.Addr)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if want := []string{">" + a.Addr, a.Addr + ">" + b.Addr, ">" + b.Addr}; strings.Join(m.switches, " ") != strings.Join(want, " ") {
		t.Errorf("switches %q, want %q", m.switches, want)
	}
}

// waitStreamGone checks that the first operation of fsys after the move
// succeeds: the filesystem sees that the connection under its Session
// stream was retired and opens a new stream on the new one, instead of
// sending into the old stream before it fails.
func waitStreamGone(t *testing.T, fsys *backend.GRPCFs) {
	t.Helper()
	if _, err := fsys.Stat("/"); err != nil {
		t.Fatalf("the first operation after the move: %v", err)
	}
}

func writeAll(fsys *backend.GRPCFs, name, content string) error {
	f, err := fsys.Create(name)
	if err != nil {
		return err
	}
	if _, err := f.Write([]byte(content)); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// TestFollowConnAbortsUploadOnMove: an upload open when the target moves
// (Refresh, as the resolver's notice triggers it) fails, and neither agent
// keeps any of it: no target file, no temp file. The old file stays.
func TestFollowConnAbortsUploadOnMove(t *testing.T) {
	a, b := twoAgents(t)
	if err := os.WriteFile(filepath.Join(a.Dir, "index.php"), []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	m := newMover(t, "follow-token")
	m.set(a.Addr, nil)
	fsys := fsOver(t, m.fc)
	f, err := fsys.Create("index.php")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte(strings.Repeat("new code ", 300000))); err != nil { // 2.7 MB: some messages sent
		t.Fatal(err)
	}
	m.set(b.Addr, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	m.fc.Refresh(ctx)
	cancel()
	_, werr := f.Write([]byte("more"))
	cerr := f.Close()
	if werr == nil && cerr == nil {
		t.Fatal("the upload survived its pod's replacement")
	}
	if err := errors.Join(werr, cerr); !errors.Is(err, backend.ErrUnavailable) ||
		!strings.Contains(err.Error(), "agent dev for user alice unreachable: the agent moved from "+a.Addr+" to "+b.Addr+" (its pod was replaced): transfer aborted, try again") {
		t.Errorf("write %v, close %v: want backend.ErrUnavailable saying the agent moved", werr, cerr)
	}
	a.WaitIdle(t, 10*time.Second)
	if got := readFile(t, filepath.Join(a.Dir, "index.php")); got != "old" {
		t.Errorf("old pod's index.php = %.20q..., want it untouched", got)
	}
	for _, ag := range []*agenttest.Agent{a, b} {
		if tmp := agenttest.TempFiles(t, ag.Dir); len(tmp) > 0 {
			t.Errorf("%s keeps temp files %v", ag.Addr, tmp)
		}
	}
	if _, err := os.Stat(filepath.Join(b.Dir, "index.php")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("new pod's index.php: %v, want it absent", err)
	}
	// The IDE saves again: it lands on the new pod.
	if err := writeAll(fsys, "index.php", "new code"); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(b.Dir, "index.php")); got != "new code" {
		t.Errorf("new pod's index.php = %q", got)
	}
}

// TestFollowConnNoTarget: a resolver with no answer fails calls as an
// unreachable agent, with its reason, and Refresh ends what ran on the
// old target.
func TestFollowConnNoTarget(t *testing.T) {
	a, _ := twoAgents(t)
	m := newMover(t, "follow-token")
	m.set(a.Addr, nil)
	fsys := fsOver(t, m.fc)
	if _, err := fsys.Stat("/"); err != nil {
		t.Fatal(err)
	}
	f, err := fsys.Create("x")
	if err != nil {
		t.Fatal(err)
	}
	m.set("", errors.New("no ready dev pod for alice in dev matching upgate.dev/user=alice"))
	m.fc.Refresh(context.Background())
	if err := f.Close(); !errors.Is(err, backend.ErrUnavailable) || !strings.Contains(err.Error(), "the agent at "+a.Addr+" went away (no ready dev pod for alice in dev matching upgate.dev/user=alice): transfer aborted") {
		t.Errorf("close of an upload whose pod went away: %v, want ErrUnavailable saying why", err)
	}
	_, err = fsys.Stat("/")
	if !errors.Is(err, backend.ErrUnavailable) || !strings.Contains(err.Error(), "agent dev for user alice unreachable: no ready dev pod for alice in dev matching upgate.dev/user=alice") {
		t.Errorf("Stat: %v", err)
	}
	if got := m.fc.Target(); got != "" {
		t.Errorf("Target() = %q after the pod went away", got)
	}
	a.WaitIdle(t, 10*time.Second)
	if tmp := agenttest.TempFiles(t, a.Dir); len(tmp) > 0 {
		t.Errorf("temp files left: %v", tmp)
	}
	m.fc.Close()
	m.set(a.Addr, nil)
	if _, err := fsys.Stat("/"); err == nil {
		t.Error("a call after Close succeeded")
	}
}
