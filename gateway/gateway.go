// Package gateway holds what every frontend shares: who a user is, whether
// they may log in, and which filesystem their login reaches. A frontend
// verifies credentials through Gateway.LoginPassword or Gateway.LoginKey
// and serves the returned Login's Fs; it never talks to agents itself.
//
// The accept layer (keepalive, timeouts, limits, the session registry)
// lives here too as it arrives.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/upgate/upgate/config"
)

// ErrAuthFailed is returned for a wrong user name, password or key. Its
// text is what a client may be told; the log says which one it was.
var ErrAuthFailed = errors.New("gateway: authentication failed")

// Options configure a Gateway. The zero value is usable.
type Options struct {
	// Logger receives login results and agent events. Nil means
	// slog.Default().
	Logger *slog.Logger
	// Version is reported by embedded agents. Empty means "dev".
	Version string
}

// Gateway turns verified logins into filesystems. Create it with New and
// release it with Close.
type Gateway struct {
	log    *slog.Logger
	agents *agentPool

	// mu guards users; a config reload replaces it whole.
	mu    sync.RWMutex
	users map[string]*user
}

// New builds a gateway from a validated config: it starts the embedded
// agents and prepares connections to the remote ones (dialled lazily).
func New(ctx context.Context, cfg *config.Config, opts Options) (*Gateway, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	users, err := loadUsers(cfg)
	if err != nil {
		return nil, err
	}
	pool, err := newAgentPool(ctx, cfg.Agents, log, opts.Version)
	if err != nil {
		return nil, err
	}
	return &Gateway{log: log.With("component", "gateway"), agents: pool, users: users}, nil
}

// Close stops the embedded agents and closes every agent connection. Open
// files' streams end, so their uploads abort.
func (g *Gateway) Close() error { return g.agents.close() }

func (g *Gateway) user(name string) (*user, bool) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	u, ok := g.users[name]
	return u, ok
}

func wrapf(format string, args ...any) error { return fmt.Errorf("gateway: "+format, args...) }
