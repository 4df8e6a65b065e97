package backend

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"path"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	"github.com/upgate/upgate/backend/agentpb"
)

// reconnectMax caps the wait between attempts to reconnect to an agent.
// gRPC's default backoff grows to 2 min: an agent back after a long
// outage would then stay "unreachable" for up to that long.
const reconnectMax = 5 * time.Second

// DialOptions configure Dial. The zero value dials without TLS and without
// a token, which agents refuse: set Token.
type DialOptions struct {
	// Token is sent as "authorization: Bearer <token>" on every call.
	Token string
	// TLS, if non-nil, is used for the connection (with a client
	// certificate for mTLS). Nil means plaintext, for loopback and for
	// agents reached inside a pod network.
	TLS *tls.Config
	// Observe, if non-nil, is called after every unary call and every
	// ReadDir stream with the method's short name ("Stat"), the gRPC code
	// and the duration: the gateway's latency metric. Open streams are
	// not observed (their duration is the file's).
	Observe func(method string, code codes.Code, d time.Duration)
	// Keepalive is how often the connection is pinged when idle; an
	// unanswered ping closes it after KeepaliveTimeout. Zero means 20 s
	// and 10 s; agents accept pings every 10 s or more.
	Keepalive, KeepaliveTimeout time.Duration
}

// Dial returns a client connection to the agent at target (any gRPC target:
// host:port, dns:///name:port, unix:/path). It does not wait for the agent:
// the first call does, and fails with ErrUnavailable if it cannot reach it.
// The connection reconnects with backoff when the agent restarts, waiting at
// most reconnectMax between attempts.
func Dial(target string, opts DialOptions) (*grpc.ClientConn, error) {
	ka, kaTimeout := opts.Keepalive, opts.KeepaliveTimeout
	if ka <= 0 {
		ka = 20 * time.Second
	}
	if kaTimeout <= 0 {
		kaTimeout = 10 * time.Second
	}
	creds := insecure.NewCredentials()
	if opts.TLS != nil {
		creds = credentials.NewTLS(opts.TLS)
	}
	// One pool for the transport's frames and the codec's messages.
	pool := agentpb.NewBufferPool()
	dialOpts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: ka, Timeout: kaTimeout, PermitWithoutStream: true}),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{BaseDelay: time.Second, Multiplier: 1.6, Jitter: 0.2, MaxDelay: reconnectMax},
			MinConnectTimeout: 20 * time.Second}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(4<<20), grpc.ForceCodecV2(agentpb.NewCodec(pool))),
		grpc.WithInitialWindowSize(agentpb.WindowSize),
		grpc.WithInitialConnWindowSize(agentpb.WindowSize),
		grpc.WithWriteBufferSize(agentpb.BufferSize),
		grpc.WithReadBufferSize(agentpb.BufferSize),
		experimental.WithBufferPool(pool),
	}
	if obs := opts.Observe; obs != nil {
		dialOpts = append(dialOpts,
			grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, callOpts ...grpc.CallOption) error {
				start := time.Now()
				err := invoker(ctx, method, req, reply, cc, callOpts...)
				obs(path.Base(method), status.Code(err), time.Since(start))
				return err
			}),
			grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, callOpts ...grpc.CallOption) (grpc.ClientStream, error) {
				start := time.Now()
				cs, err := streamer(ctx, desc, cc, method, callOpts...)
				if err != nil || desc.ClientStreams {
					if err != nil {
						obs(path.Base(method), status.Code(err), time.Since(start))
					}
					return cs, err
				}
				return &observedStream{ClientStream: cs, method: path.Base(method), start: start, obs: obs}, nil
			}))
	}
	if opts.Token != "" {
		dialOpts = append(dialOpts, grpc.WithPerRPCCredentials(tokenCreds{token: opts.Token, secure: opts.TLS != nil}))
	}
	cc, err := grpc.NewClient(target, dialOpts...)
	if err != nil {
		return nil, fmt.Errorf("backend: dial agent %q: %w", target, err)
	}
	return cc, nil
}

// observedStream reports a server stream (ReadDir) when it ends.
type observedStream struct {
	grpc.ClientStream
	method string
	start  time.Time
	obs    func(string, codes.Code, time.Duration)
	once   sync.Once
}

func (s *observedStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if err != nil {
		code := status.Code(err)
		if errors.Is(err, io.EOF) {
			code = codes.OK
		}
		s.once.Do(func() { s.obs(s.method, code, time.Since(s.start)) })
	}
	return err
}

// tokenCreds sends the agent token with every call.
type tokenCreds struct {
	token  string
	secure bool
}

func (t tokenCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + t.token}, nil
}

// RequireTransportSecurity is false: agents inside a pod network or on
// loopback are reached in plaintext; TLS is used when configured.
func (t tokenCreds) RequireTransportSecurity() bool { return t.secure }
