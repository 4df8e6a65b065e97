package agents

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/upgate/upgate/backend"
	"github.com/upgate/upgate/backend/agent"
	"github.com/upgate/upgate/backend/agent/hooks"
	"github.com/upgate/upgate/config"
)

// embeddedAgent is the agent code running in-process, reached over
// loopback gRPC like any other agent, except for the sessions' streams,
// which it serves without gRPC's transport (localSessions).
type embeddedAgent struct {
	server *agent.Server
	addr   string
	conn   *grpc.ClientConn
	// sessions carries the Session streams, in process (local.go);
	// everything else goes over conn.
	sessions *localSessions
	stop     context.CancelFunc
	done     chan struct{}
}

// startEmbedded starts the embedded agent name over a.Root (created if
// missing) on a loopback port, with a random token and a.Hooks' hook file.
func startEmbedded(ctx context.Context, name string, a config.Agent, log *slog.Logger, version string, observe func(string, codes.Code, time.Duration)) (*embeddedAgent, error) {
	if err := os.MkdirAll(a.Root, 0o755); err != nil {
		return nil, fmt.Errorf("agents.%s.root: %w", name, err)
	}
	var hs []hooks.Hook
	if a.Hooks != "" {
		var err error
		if hs, err = hooks.Load(a.Hooks); err != nil {
			return nil, fmt.Errorf("agents.%s.hooks: %w", name, err)
		}
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("embedded agent %s: token: %w", name, err)
	}
	token := hex.EncodeToString(b[:])
	srv, err := agent.New(agent.Config{Root: a.Root, Token: token, Logger: log.With("agent", name), Version: version, Hooks: hs})
	if err != nil {
		return nil, fmt.Errorf("embedded agent %s: %w", name, err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		srv.Close()
		return nil, fmt.Errorf("embedded agent %s: listen: %w", name, err)
	}
	cc, err := backend.Dial(lis.Addr().String(), backend.DialOptions{Token: token, Observe: observe})
	if err != nil {
		lis.Close()
		srv.Close()
		return nil, fmt.Errorf("embedded agent %s: %w", name, err)
	}
	sctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	e := &embeddedAgent{
		server: srv, addr: lis.Addr().String(), conn: cc, stop: stop, done: make(chan struct{}),
		sessions: &localSessions{srv: srv, ctx: sctx},
	}
	go func() {
		defer close(e.done)
		if err := agent.Serve(sctx, srv, lis); err != nil && !errors.Is(err, net.ErrClosed) {
			log.Error("embedded agent stopped", "agent", name, "err", err)
		}
	}()
	return e, nil
}

// close stops the agent and waits for its server.
func (e *embeddedAgent) close() error {
	e.conn.Close()
	e.stop()
	e.sessions.stop()
	<-e.done
	return e.server.Close()
}

// Embedded returns the in-process agent of that name, for tests and
// status pages (its open-handle count).
func (p *Pool) Embedded(name string) (*agent.Server, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	e, ok := p.embedded[name]
	if !ok {
		return nil, false
	}
	return e.server, true
}
