// Package gateway holds what every frontend shares: who a user is, whether
// they may log in, and which filesystem their login reaches. A frontend
// verifies credentials through Gateway.LoginPassword or Gateway.LoginKey
// and serves the returned Login's Fs; it never talks to agents itself.
//
// It also runs the accept layer every frontend listens through (accept.go:
// TCP keepalive and TCP_USER_TIMEOUT, PROXY protocol, the defender, idle and
// progress deadlines, connection limits), the session registry
// (registry.go) and the drain (Gateway.Shutdown).
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/spf13/afero"

	"github.com/upgate/upgate/backend/agents"
	"github.com/upgate/upgate/config"
	"github.com/upgate/upgate/gateway/feed"
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
	// Defender, if non-nil, decides which addresses are banned: the accept
	// layer refuses connections from banned addresses and logins report
	// their results to it. Nil means the built-in one configured by the
	// config's defender section (none if it is disabled).
	Defender Defender
	// Filesystem, if non-nil, is called by each successful login instead
	// of reaching the user's agents, and returns the tree the session
	// works in, bound to ctx (the session's lifetime). The session's view
	// of its uploads and its accounting wrap it as they wrap the user's
	// mounts. Tests use it to serve an in-memory filesystem (backend/memfs)
	// through the real login path; nil serves the user's mounts.
	Filesystem func(ctx context.Context, user string) (afero.Fs, error)
	// Now, if non-nil, is the gateway's clock: when sessions start and
	// were last active (the idle timeout's arithmetic, drain's quiet
	// period), the defender's windows and bans, transfer durations, the
	// feed's and the save latency's timestamps. Nil means time.Now.
	// Timers and socket deadlines run on the runtime's clock, so a test
	// that fakes time runs the gateway in a testing/synctest bubble, where
	// both clocks are the bubble's (accept_synctest_test.go).
	Now func() time.Time
}

// Defender decides which client addresses may connect, from the results
// of their logins. user is the login name as the client sent it.
type Defender interface {
	// Banned reports whether ip is refused now.
	Banned(ip netip.Addr) bool
	// LoginFailed records a failed login from ip as user.
	LoginFailed(ip netip.Addr, user string)
	// LoginSucceeded records a successful login from ip as user. It must
	// not forgive failures for other user names: an attacker who holds
	// one account would otherwise guess at others without limit.
	LoginSucceeded(ip netip.Addr, user string)
}

// Gateway turns verified logins into filesystems and runs the accept layer
// every frontend listens through. Create it with New; stop it with
// Shutdown (drain) and then Close.
type Gateway struct {
	log      *slog.Logger
	agents   *agents.Pool
	settings acceptSettings
	registry *Registry
	defender Defender
	now      func() time.Time // Options.Now
	metrics  *Metrics
	feed     *feed.Feed
	files    *fileLimits
	latency  *SaveLatency
	xfers    *transfers
	fsHook   func(ctx context.Context, user string) (afero.Fs, error) // Options.Filesystem

	// reloadMu serializes Reload: a SIGHUP and the file watcher may ask
	// at once, and the agents, users, revocations and limits of one
	// config must not interleave with another's.
	reloadMu sync.Mutex

	// mu guards users (a config reload replaces it whole), listeners,
	// ownPorts and draining.
	mu        sync.RWMutex
	users     map[string]*user
	listeners map[*acceptListener]struct{}
	ownPorts  map[int]struct{} // embedded agents' and ReservePort's
	draining  bool
}

// Feed is the gateway's live record of events (transfers, sessions,
// agents' commits and hook runs) for the admin API and the operator page.
func (g *Gateway) Feed() *feed.Feed { return g.feed }

// New builds a gateway from a validated config: it starts the embedded
// agents and prepares connections to the remote ones (dialled lazily).
// Zero durations and counts in cfg mean their defaults
// (config.Config.WithDefaults); the zero Config is a gateway with no
// agents and no users.
func New(ctx context.Context, cfg *config.Config, opts Options) (*Gateway, error) {
	cfg = cfg.WithDefaults()
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	users, err := loadUsers(cfg)
	if err != nil {
		return nil, err
	}
	settings := newAcceptSettings(cfg.Connections)
	metrics := newMetrics()
	agentEvents := newAgentEvents(log, metrics)
	pool, err := newAgentPool(ctx, cfg.Agents, log, opts.Version, metrics, agentEvents.publish)
	if err != nil {
		return nil, err
	}
	glog := log.With("component", "gateway")
	def := opts.Defender
	if def == nil && cfg.Defender.Enabled {
		def = newDefender(cfg.Defender, log, metrics, now)
	}
	events, latency := feed.New(0, now), NewSaveLatency(now)
	g := &Gateway{
		log:       glog,
		feed:      events,
		files:     newFileLimits(cfg.Connections.MaxFilesPerUser),
		latency:   latency,
		xfers:     newTransfers(events, latency, metrics),
		fsHook:    opts.Filesystem,
		agents:    pool,
		settings:  settings,
		registry:  newRegistry(glog, Limits{Max: cfg.Connections.Max, PerIP: cfg.Connections.MaxPerIP, PerUser: cfg.Connections.MaxPerUser}, now),
		defender:  def,
		now:       now,
		metrics:   metrics,
		users:     users,
		listeners: make(map[*acceptListener]struct{}),
		ownPorts:  make(map[int]struct{}),
	}
	for _, addr := range pool.EmbeddedAddrs() {
		if p := addrPort(addr); p > 0 {
			g.ownPorts[p] = struct{}{}
		}
	}
	agentEvents.g.Store(g)
	g.registry.OnClose(func(s *Session) {
		metrics.ConnectionsActive.WithLabelValues(s.Protocol).Dec()
		metrics.ConnectionsClosed.WithLabelValues(s.Protocol, s.CloseReason()).Inc()
		g.publishClose(s)
	})
	return g, nil
}

// newAcceptSettings converts the connections config, its defaults in
// place.
func newAcceptSettings(c config.Connections) acceptSettings {
	s := acceptSettings{
		keepalive:       net.KeepAliveConfig{Enable: true, Idle: c.Keepalive.Idle, Interval: c.Keepalive.Interval, Count: c.Keepalive.Count},
		userTimeout:     c.UserTimeout,
		idleTimeout:     c.IdleTimeout,
		progressTimeout: c.ProgressTimeout,
		proxyTimeout:    5 * time.Second,
	}
	for _, p := range c.ProxyProtocol.Trusted {
		s.trusted = append(s.trusted, p.Masked())
	}
	return s
}

// Close closes every session and listener at once, stops the embedded
// agents and closes every agent connection: open files' streams end, so
// their uploads abort. Call Shutdown first to let transfers finish.
func (g *Gateway) Close() error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = g.Shutdown(ctx)
	return g.agents.Close()
}

func (g *Gateway) user(name string) (*user, bool) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	u, ok := g.users[name]
	return u, ok
}

func wrapf(format string, args ...any) error { return fmt.Errorf("gateway: "+format, args...) }

// Ready reports whether the gateway can serve: it is not draining and
// every static agent (embedded, or remote without "{user}") answered its
// last health call.
func (g *Gateway) Ready() bool {
	g.mu.RLock()
	draining := g.draining
	g.mu.RUnlock()
	return !draining && g.agents.Ready()
}

// ReservePort adds port to the ports OwnPort reports, for listeners the
// gateway does not run itself (the admin HTTP server).
func (g *Gateway) ReservePort(port int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.ownPorts[port] = struct{}{}
}

// OwnPort reports whether the gateway's process listens on port: an accept
// listener (FTP, SFTP), an embedded agent, or a port given to ReservePort.
// Frontends refuse to connect out to such a port for a client (FTP active
// mode), since a client on the gateway's host would reach it.
func (g *Gateway) OwnPort(port int) bool {
	g.mu.RLock()
	defer g.mu.RUnlock()
	if _, ok := g.ownPorts[port]; ok {
		return true
	}
	for l := range g.listeners {
		if addrPort(l.inner.Addr().String()) == port {
			return true
		}
	}
	return false
}

// addrPort returns the port of a host:port address, or 0.
func addrPort(addr string) int {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return 0
	}
	return int(ap.Port())
}
