package agent

import (
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/upgate/upgate/backend/agentpb"
)

// writeCounter is a listener whose connections count their writes.
type writeCounter struct {
	net.Listener
	writes atomic.Int64
}

func (l *writeCounter) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countedConn{Conn: c, writes: &l.writes}, nil
}

type countedConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c *countedConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// TestReplyBeforeRelease: at one P, the reply to a commit that replaced a
// file is written to the gateway's connection before the agent closes the
// replaced file (afterReply), whose close is the kernel freeing its
// blocks: a system call that holds the only P, during which gRPC's
// transport writer cannot run and the client waits. The order is the
// scheduler's, so the test counts: with afterReply yielding once, 0-1
// replies of 40 came first; with replyYields, all 40 (file.go).
func TestReplyBeforeRelease(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	root := t.TempDir()
	if err := os.Mkdir(filepath.Join(root, "u"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "u", "f"), []byte("old\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{Token: "t", Root: root, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	released := make(chan int64, 1)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	wc := &writeCounter{Listener: lis}
	s.testReleaseHook = func() { released <- wc.writes.Load() }
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- Serve(ctx, s, wc) }()
	defer func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	// The gateway's static windows (backend.Dial): no window-estimating
	// pings, whose acks would count as writes.
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(agentpb.WindowSize), grpc.WithInitialConnWindowSize(agentpb.WindowSize))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	st, err := agentpb.NewAgentClient(cc).Session(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer t"))
	if err != nil {
		t.Fatal(err)
	}
	var id uint64
	do := func(req *agentpb.SessionRequest) *agentpb.SessionResponse {
		t.Helper()
		id++
		req.Id = id
		if err := st.Send(req); err != nil {
			t.Fatalf("send: %v", err)
		}
		resp, err := st.Recv()
		if err != nil {
			t.Fatalf("recv: %v", err)
		}
		if resp.GetId() != id || resp.GetError() != nil {
			t.Fatalf("reply to %d: %v", id, resp)
		}
		return resp
	}
	do(&agentpb.SessionRequest{Op: &agentpb.SessionRequest_Hello{Hello: &agentpb.SessionHello{Protocol: Protocol, Root: []byte("u")}}})
	const saves = 40
	first := 0 // saves whose reply was written before the release
	for i := range saves {
		fid := do(&agentpb.SessionRequest{Op: &agentpb.SessionRequest_Open{Open: &agentpb.OpenOp{
			Path:  []byte("u/f"),
			Flags: uint32(agentpb.OpenFlag_OPEN_FLAG_WRITE | agentpb.OpenFlag_OPEN_FLAG_CREATE | agentpb.OpenFlag_OPEN_FLAG_TRUNC),
			Perm:  0o644,
		}}}).GetId()
		data := []byte{'s', 'a', 'v', 'e', ' ', byte('a' + i), '\n'}
		before := wc.writes.Load()
		do(&agentpb.SessionRequest{File: fid, Op: &agentpb.SessionRequest_Close{Close: &agentpb.CloseOp{Write: &agentpb.WriteOp{Data: data}}}})
		var at int64
		select {
		case at = <-released:
		case <-time.After(10 * time.Second):
			t.Fatalf("save %d: the replaced file was not released", i)
		}
		if at > before {
			first++
		}
		if got, err := os.ReadFile(filepath.Join(root, "u", "f")); err != nil || string(got) != string(data) {
			t.Fatalf("save %d: u/f holds %q, %v; want %q", i, got, err, data)
		}
	}
	t.Logf("%d of %d replies were written before the replaced file's release", first, saves)
	if first < saves*3/4 {
		t.Fatalf("only %d of %d replies were written before the replaced file's release, want at least %d "+
			"(replyYields is fitted to grpc-go v1.85.0's transport writer, which yields once itself)", first, saves, saves*3/4)
	}
}
