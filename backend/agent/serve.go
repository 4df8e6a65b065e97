package agent

import (
	"context"
	"errors"
	"net"

	"google.golang.org/grpc"

	"github.com/upgate/upgate/backend/agentpb"
)

// NewGRPCServer returns a grpc.Server that serves s (the Agent and
// AgentEvents services) with its token checks and keepalive policy, plus
// any extra options (TLS credentials, say).
func NewGRPCServer(s *Server, extra ...grpc.ServerOption) *grpc.Server {
	g := grpc.NewServer(append(s.ServerOptions(), extra...)...)
	agentpb.RegisterAgentServer(g, s)
	agentpb.RegisterAgentEventsServer(g, s.events) // hooks+events: same token check (ServerOptions' interceptors)
	return g
}

// Serve serves s on lis until ctx ends, then stops the gRPC server: streams
// still in flight are cancelled and their uploads abort. When it returns,
// every stream has ended and every file is closed.
func Serve(ctx context.Context, s *Server, lis net.Listener, extra ...grpc.ServerOption) error {
	g := NewGRPCServer(s, extra...)
	errc := make(chan error, 1)
	go func() { errc <- g.Serve(lis) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		g.Stop()
		if err := <-errc; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			return err
		}
		return nil
	}
}
