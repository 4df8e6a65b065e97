package agent

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"

	"github.com/upgate/upgate/backend/agentpb"
)

// chanStream is a Session stream that is not gRPC's: requests from a
// slice, responses into a channel, as an in-process stream delivers them.
type chanStream struct {
	ctx   context.Context
	reqs  []*agentpb.SessionRequest
	resps chan *agentpb.SessionResponse
}

func (s *chanStream) Recv() (*agentpb.SessionRequest, error) {
	if len(s.reqs) == 0 {
		<-s.ctx.Done() // hold the session open until the test is done
		return nil, io.EOF
	}
	r := s.reqs[0]
	s.reqs = s.reqs[1:]
	return r, nil
}
func (s *chanStream) Send(r *agentpb.SessionResponse) error { s.resps <- r; return nil }
func (s *chanStream) Context() context.Context              { return s.ctx }
func (s *chanStream) SetHeader(metadata.MD) error           { return nil }
func (s *chanStream) SendHeader(metadata.MD) error          { return nil }
func (s *chanStream) SetTrailer(metadata.MD)                {}
func (s *chanStream) SendMsg(any) error                     { return nil }
func (s *chanStream) RecvMsg(any) error                     { return nil }

// TestSessionKeepsLentData: a write that reached the agent other than
// through gRPC (an in-process stream lends the gateway's buffer) is not
// given to the agent's buffer pool once written, even when its size is one
// of the pool's classes: the gateway takes that buffer back after the
// reply, and the pool would hand it out again while the gateway fills it.
func TestSessionKeepsLentData(t *testing.T) {
	root := t.TempDir()
	s, err := New(Config{Token: "t", Root: root, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	data := make([]byte, 32<<10) // a pool class, and over writeRecycleMin
	for i := range data {
		data[i] = byte(i)
	}
	ctx, cancel := context.WithCancel(t.Context())
	st := &chanStream{ctx: ctx, resps: make(chan *agentpb.SessionResponse, 8), reqs: []*agentpb.SessionRequest{
		{Id: 1, Op: &agentpb.SessionRequest_Hello{Hello: &agentpb.SessionHello{Protocol: Protocol}}},
		{Id: 2, Op: &agentpb.SessionRequest_Open{Open: &agentpb.OpenOp{Path: []byte("f"),
			Flags: uint32(agentpb.OpenFlag_OPEN_FLAG_WRITE | agentpb.OpenFlag_OPEN_FLAG_CREATE | agentpb.OpenFlag_OPEN_FLAG_TRUNC), Perm: 0o644}}},
		{Id: 3, File: 2, Op: &agentpb.SessionRequest_Write{Write: &agentpb.WriteOp{Data: data}}},
		{Id: 4, File: 2, Op: &agentpb.SessionRequest_Close{Close: &agentpb.CloseOp{}}},
	}}
	done := make(chan error, 1)
	go func() { done <- s.Session(st) }()
	for range 4 {
		select {
		case r := <-st.resps:
			if r.GetError() != nil {
				t.Fatalf("reply %d: %v", r.GetId(), r.GetError())
			}
		case <-time.After(10 * time.Second):
			cancel()
			t.Fatal("no reply within 10 s")
		}
	}
	cancel()
	<-done
	if got, err := os.ReadFile(filepath.Join(root, "f")); err != nil || len(got) != len(data) {
		t.Fatalf("committed %d bytes, %v", len(got), err)
	}
	for range 20 {
		if b := s.buffers.Get(len(data)); &(*b)[0] == &data[0] {
			t.Fatal("the agent's pool holds the lent buffer")
		}
	}
}
