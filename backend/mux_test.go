package backend_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/upgate/upgate/backend"
	"github.com/upgate/upgate/backend/agent"
	"github.com/upgate/upgate/backend/agentpb"
	"github.com/upgate/upgate/backend/fstest"
	"github.com/upgate/upgate/internal/agenttest"
)

// cutter is a TCP relay to an agent whose connections the test can cut,
// as a dead link or a restarted pod would.
type cutter struct {
	lis    net.Listener
	target string

	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup
}

func newCutter(t *testing.T, target string) *cutter {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &cutter{lis: lis, target: target}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		for {
			in, err := lis.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			c.mu.Lock()
			c.conns = append(c.conns, in, out)
			c.mu.Unlock()
			c.wg.Add(2)
			go func() { defer c.wg.Done(); _, _ = io.Copy(out, in); out.Close() }()
			go func() { defer c.wg.Done(); _, _ = io.Copy(in, out); in.Close() }()
		}
	}()
	t.Cleanup(func() {
		lis.Close()
		c.cut()
		c.wg.Wait()
	})
	return c
}

// cut closes every connection relayed so far.
func (c *cutter) cut() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, conn := range c.conns {
		conn.Close()
	}
	c.conns = nil
}

// TestSessionStreamBreak: when the connection under a filesystem's Session
// stream breaks, the upload in progress on it aborts (nothing of it is
// visible on the agent, not even a temp file), its Close fails, a file
// committed before stays whole, and the next operation opens a new stream
// without any help.
func TestSessionStreamBreak(t *testing.T) {
	a := agenttest.Start(t, "")
	relay := newCutter(t, a.Addr)
	cc, err := backend.Dial(relay.lis.Addr().String(), backend.DialOptions{Token: a.Token})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	g := backend.NewGRPCFs(ctx, cc, backend.Options{Agent: "test", CallTimeout: 20 * time.Second})

	before := fstest.Data(300<<10, 1)
	if err := writeFile(g, "/before.bin", before); err != nil {
		t.Fatal(err)
	}
	f, err := g.OpenFile("/partial.bin", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(fstest.Data(3<<20, 2)); err != nil {
		t.Fatal(err)
	}
	if fl, ok := f.(backend.Flusher); ok {
		if err := fl.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	relay.cut()
	_, _ = f.Write([]byte("more"))
	if err := f.Close(); err == nil {
		t.Fatal("Close of an upload whose stream broke returned nil")
	} else if !errors.Is(err, backend.ErrUnavailable) {
		t.Errorf("Close after the break: %v, want an error wrapping ErrUnavailable", err)
	}
	a.WaitIdle(t, 10*time.Second)
	if _, err := os.Stat(filepath.Join(a.Dir, "partial.bin")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the aborted upload is visible: %v", err)
	}
	if tmp := agenttest.TempFiles(t, a.Dir); len(tmp) != 0 {
		t.Errorf("temp files left: %v", tmp)
	}
	if got, err := os.ReadFile(filepath.Join(a.Dir, "before.bin")); err != nil || !bytes.Equal(got, before) {
		t.Errorf("the file committed before the break: %d bytes, %v", len(got), err)
	}

	// The next operation opens a new stream (the channel reconnects
	// first; allow it a few attempts).
	deadline := time.Now().Add(15 * time.Second)
	for {
		fi, err := g.Stat("/before.bin")
		if err == nil {
			if fi.Size() != int64(len(before)) {
				t.Fatalf("stat after reconnect: size %d", fi.Size())
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no new stream 15 s after the break: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	after := fstest.Data(5000, 3)
	if err := writeFile(g, "/after.bin", after); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(a.Dir, "after.bin")); err != nil || !bytes.Equal(got, after) {
		t.Errorf("upload after the reconnect: %d bytes, %v", len(got), err)
	}
}

func writeFile(g *backend.GRPCFs, name string, data []byte) error {
	f, err := g.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// v1Agent is an agent of protocol v1: it has no Session call.
type v1Agent struct{ *agent.Server }

func (v1Agent) Session(agentpb.Agent_SessionServer) error {
	return status.Error(codes.Unimplemented, "unknown method Session for service upgate.agent.v1.Agent")
}

// TestOldAgentRefused: a gateway meeting an agent that speaks only
// protocol v1 fails every operation with a message that says to upgrade
// the agent, and an error that wraps ErrAgentProtocol.
func TestOldAgentRefused(t *testing.T) {
	srv, err := agent.New(agent.Config{Root: t.TempDir(), Token: "tok", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	gs := grpc.NewServer(srv.ServerOptions()...)
	agentpb.RegisterAgentServer(gs, v1Agent{srv})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gs.Serve(lis) }()
	defer gs.Stop()
	cc, err := backend.Dial(lis.Addr().String(), backend.DialOptions{Token: "tok"})
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	g := backend.NewGRPCFs(ctx, cc, backend.Options{Agent: "web", User: "alice"})
	_, err = g.Stat("/")
	if err == nil {
		t.Fatal("Stat through a v1 agent succeeded")
	}
	if !errors.Is(err, backend.ErrAgentProtocol) || !strings.Contains(err.Error(), "upgrade the agent") {
		t.Fatalf("Stat through a v1 agent: %v; want ErrAgentProtocol and a message saying to upgrade the agent", err)
	}
	if _, err := g.OpenFile("/x", os.O_WRONLY|os.O_CREATE, 0o644); !errors.Is(err, backend.ErrAgentProtocol) {
		t.Fatalf("OpenFile through a v1 agent: %v", err)
	}
}

// TestCloseAfterSessionEndedAborts: once a session's context has ended, an
// upload's Close commits nothing, even while the stream has not yet seen
// the cancel (gRPC ends it a moment later; here it never does: the stream
// is opened on a context of its own). The close fails with Canceled and
// the old file stays.
func TestCloseAfterSessionEndedAborts(t *testing.T) {
	a := agenttest.Start(t, "")
	if err := os.WriteFile(filepath.Join(a.Dir, "f.php"), []byte("old\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	streamCtx, endStream := context.WithCancel(context.Background())
	t.Cleanup(endStream)
	ctx, endSession := context.WithCancel(context.Background())
	g := backend.NewGRPCFs(ctx, a.Conn, backend.Options{Agent: "test", Session: func(context.Context) (agentpb.Agent_SessionClient, error) {
		return agentpb.NewAgentClient(a.Conn).Session(streamCtx)
	}})
	f, err := g.Create("/f.php")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("half")); err != nil {
		t.Fatal(err)
	}
	endSession()
	if err := f.Close(); err == nil || !strings.Contains(err.Error(), "canceled") {
		t.Errorf("Close after the session ended: %v, want it canceled", err)
	}
	if got, err := os.ReadFile(filepath.Join(a.Dir, "f.php")); err != nil || string(got) != "old\n" {
		t.Fatalf("f.php after the ended session's close: %q, %v; want the old content", got, err)
	}
	endStream()
	a.WaitIdle(t, 10*time.Second)
	if temps := agenttest.TempFiles(t, a.Dir); len(temps) != 0 {
		t.Fatalf("temp files after the aborted upload: %q", temps)
	}
}
