package agent

import (
	"context"
	"crypto/subtle"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/upgate/upgate/backend/agentpb"
)

// Keepalive enforcement accepts the gateway's client keepalive (a ping every
// 20 s, even without streams); the server's own pings find a gateway that
// vanished so its streams end and their uploads abort.
var (
	enforcement = keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}
	serverPings = keepalive.ServerParameters{Time: 20 * time.Second, Timeout: 10 * time.Second}
)

// ServerOptions returns the options a grpc.Server needs to serve s: token
// checks on every call, the count of protocol v1's calls for Busy, and the
// keepalive policy.
func (s *Server) ServerOptions() []grpc.ServerOption {
	pool := s.buffers
	return []grpc.ServerOption{
		grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
			if err := s.authorize(ctx); err != nil {
				return nil, err
			}
			defer s.countV1(info.FullMethod)()
			return handler(ctx, req)
		}),
		grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
			if err := s.authorize(ss.Context()); err != nil {
				return err
			}
			defer s.countV1(info.FullMethod)()
			return handler(srv, ss)
		}),
		grpc.KeepaliveEnforcementPolicy(enforcement),
		grpc.KeepaliveParams(serverPings),
		grpc.MaxRecvMsgSize(maxMessage),
		// The same windows and buffers as the gateway's side (backend.Dial).
		grpc.InitialWindowSize(agentpb.WindowSize),
		grpc.InitialConnWindowSize(agentpb.WindowSize),
		grpc.WriteBufferSize(agentpb.BufferSize),
		grpc.ReadBufferSize(agentpb.BufferSize),
		// One pool for the transport's frames and the codec's messages.
		experimental.BufferPool(pool),
		grpc.ForceServerCodecV2(agentpb.NewCodec(pool)),
	}
}

// authorize checks the bearer token in constant time.
func (s *Server) authorize(ctx context.Context) error {
	md, _ := metadata.FromIncomingContext(ctx)
	for _, v := range md.Get("authorization") {
		tok, ok := strings.CutPrefix(v, "Bearer ")
		if ok && subtle.ConstantTimeCompare([]byte(tok), s.token) == 1 {
			return nil
		}
	}
	return status.Error(codes.Unauthenticated, "agent: missing or wrong token")
}
