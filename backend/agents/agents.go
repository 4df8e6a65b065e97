// Package agents is the gateway's side of its agents: one gRPC connection
// per agent target, shared by every session that uses it; the embedded
// agents it runs in-process; the health loop; agents found through the
// Kubernetes API (backend/podagents); and the AgentEvents streams. A
// login asks the Pool for a user's filesystem on an agent (Pool.FS) and
// never sees gRPC.
//
// Its Options say what the gateway wants to hear (call latencies, health
// changes, agents' events) as plain callbacks, so that the gateway imports
// neither gRPC nor the agent protocol.
package agents

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"

	"github.com/upgate/upgate/backend"
	"github.com/upgate/upgate/backend/podagents"
	"github.com/upgate/upgate/config"
)

// Options configure a Pool. The zero value is usable.
type Options struct {
	// Logger receives agents' lifecycle (up, down, moved, restarted). Nil
	// means slog.Default().
	Logger *slog.Logger
	// Version is what embedded agents report. Empty means "dev".
	Version string
	// ObserveCall, if non-nil, is called after every operation a
	// filesystem from FS sends (see backend.Options.Observe) and every
	// health call, with the agent's name, the operation ("Stat", "Open",
	// "Close", "Status"), its gRPC code's name ("OK", "NotFound") and its
	// duration.
	ObserveCall func(agent, method, code string, d time.Duration)
	// Health, if non-nil, is called after every health call with what it
	// found.
	Health func(Status)
	// OnEvent, if non-nil, receives every event of every agent's
	// AgentEvents stream: a change it committed or a hook run. It is
	// called from the streams' goroutines, one at a time per agent
	// connection, and must not block for long.
	OnEvent func(Event)
	// FollowWait bounds how long New waits for the embedded agents'
	// events to be followed, and FS for a new connection's to a remote
	// agent: a commit made before then reaches no OnEvent. Zero means
	// 5 s for the embedded agents and 2 s for a remote one, which a
	// login then waits at most; tests on a loaded machine set more.
	FollowWait time.Duration
}

// Pool holds the connections to the configured agents.
type Pool struct {
	log  *slog.Logger
	opts Options

	// health loop
	stopHealth context.CancelFunc
	healthDone chan struct{}
	checks     sync.Map // by agent name: the last health call's Status

	// mu guards configs, conns, retired, tokens and kube.
	mu      sync.Mutex
	configs map[string]config.Agent
	conns   map[string]*grpc.ClientConn // by agent name and resolved target
	retired []*grpc.ClientConn          // replaced by a reload, still used by live sessions
	tokens  map[string]string           // remote agents' tokens, by agent name
	kube    kubeAgents                  // agents found through the Kubernetes API (kube.go)

	embedded map[string]*embeddedAgent // by agent name; fixed after New

	events *eventWatches // events.go
}

// New starts the embedded agents of agents (each serves its root on a
// loopback port), reads the remote agents' tokens, starts the Kubernetes
// agents' resolvers (their API server must answer within ctx), starts
// the health loop and follows every agent's events. Remote agents are
// dialled on first use. Close stops it all.
func New(ctx context.Context, agents map[string]config.Agent, opts Options) (*Pool, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	p := &Pool{
		log:      log.With("component", "agents"),
		opts:     opts,
		configs:  agents,
		conns:    make(map[string]*grpc.ClientConn),
		tokens:   make(map[string]string),
		kube:     kubeAgents{resolvers: make(map[string]*podagents.Resolver)},
		embedded: make(map[string]*embeddedAgent),
	}
	p.events = newEventWatches(p.log, opts.OnEvent)
	var embeddedFollowed []<-chan struct{}
	for _, name := range sortedNames(agents) {
		a := agents[name]
		if !a.Embedded {
			tok, err := readToken(a.TokenFile)
			if err != nil {
				p.Close()
				return nil, fmt.Errorf("agents.%s.token_file: %w", name, err)
			}
			p.tokens[name] = tok
			if a.Kubernetes.Enabled() {
				r, err := p.startResolver(ctx, name, a)
				if err != nil {
					p.Close()
					return nil, err
				}
				p.kube.resolvers[name] = r
			}
			continue
		}
		e, err := startEmbedded(ctx, name, a, log, opts.Version, p.observer(name))
		if err != nil {
			p.Close()
			return nil, err
		}
		p.embedded[name] = e
		p.log.Info("embedded agent started", "agent", name, "root", a.Root, "address", e.addr)
		if followed := p.events.watch(name, e.addr, e.conn, e.events()); followed != nil {
			embeddedFollowed = append(embeddedFollowed, followed)
		}
	}
	// An embedded agent is in this process: its events are followed
	// before the first login can commit anything (a watch starts from
	// the agent's present and would miss what came before it).
	wait := time.NewTimer(p.followWait(embeddedFollowWait))
	defer wait.Stop()
waitFollowed:
	for _, followed := range embeddedFollowed {
		select {
		case <-followed:
		case <-ctx.Done():
			break waitFollowed
		case <-wait.C:
			p.log.Warn("embedded agents' events not followed yet; starting anyway", "waited", p.followWait(embeddedFollowWait))
			break waitFollowed
		}
	}
	p.connectEmbedded(ctx)
	p.startHealth()
	return p, nil
}

// connectEmbedded brings up the gRPC connection of every embedded agent
// (its health calls and protocol v1 use it; sessions and events do not)
// before New returns, at most embeddedFollowWait: a gateway then starts
// with the connections it keeps, and its first health call measures the
// agent, not the connection's setup.
func (p *Pool) connectEmbedded(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, embeddedFollowWait)
	defer cancel()
	for _, e := range p.embedded {
		e.conn.Connect()
	}
	for name, e := range p.embedded {
		for st := e.conn.GetState(); st != connectivity.Ready; st = e.conn.GetState() {
			if st == connectivity.Shutdown || !e.conn.WaitForStateChange(ctx, st) {
				p.log.Warn("embedded agent's connection not up yet; starting anyway", "agent", name, "state", st.String())
				break
			}
		}
	}
}

// embeddedFollowWait bounds how long New waits for its embedded agents'
// event streams (in process) and, again, for their gRPC connections (a
// loopback connect, unless something is wrong), and
// remoteFollowWait how long a first login to a remote agent waits for its
// (the stream's first attempt ends sooner when the agent is down).
const (
	embeddedFollowWait = 5 * time.Second
	remoteFollowWait   = 2 * time.Second
)

// followWait is Options.FollowWait, or def when it is zero.
func (p *Pool) followWait(def time.Duration) time.Duration {
	if p.opts.FollowWait > 0 {
		return p.opts.FollowWait
	}
	return def
}

func readToken(file string) (string, error) {
	if file == "" {
		return "", nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("%s is empty", file)
	}
	return tok, nil
}

// FS returns user's filesystem on the named agent, bound to ctx (the
// session's): opts.Root is the user's root there, and opts.Agent,
// opts.User and opts.Observe are filled in. The second result is the
// agent's resolved address, for logs.
func (p *Pool) FS(ctx context.Context, name, user string, opts backend.Options) (*backend.GRPCFs, string, error) {
	cc, target, followed, err := p.conn(name, user)
	if err != nil {
		return nil, target, err
	}
	if followed != nil {
		// A new connection's events are followed before its first
		// operation, so that its commits reach the events too.
		t := time.NewTimer(p.followWait(remoteFollowWait))
		select {
		case <-followed:
		case <-ctx.Done():
		case <-t.C:
			p.log.Warn("agent's events not followed yet; going on", "agent", name, "address", target, "waited", p.followWait(remoteFollowWait))
		}
		t.Stop()
	}
	opts.Agent, opts.User = name, user
	if s := p.localSessions(name); s != nil && opts.Session == nil {
		opts.Session = s.open
	}
	if opts.Observe == nil {
		opts.Observe = p.observer(name)
	}
	return backend.NewGRPCFs(ctx, cc, opts), target, nil
}

// localSessions is the in-process Session transport of the named agent
// when it is embedded, nil otherwise.
func (p *Pool) localSessions(name string) *localSessions {
	p.mu.Lock()
	defer p.mu.Unlock()
	if e, ok := p.embedded[name]; ok {
		return e.sessions
	}
	return nil
}

// conn returns the connection for the named agent as user sees it, and
// the resolved target for logs. followed is non-nil for a connection
// dialled just now: it is closed once its events are followed.
func (p *Pool) conn(name, user string) (cc grpc.ClientConnInterface, target string, followed <-chan struct{}, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if e, ok := p.embedded[name]; ok {
		return e.conn, e.addr, nil, nil
	}
	a, ok := p.configs[name]
	if !ok {
		return nil, "", nil, fmt.Errorf("user %s: agent %q is not configured", user, name)
	}
	if a.Kubernetes.Enabled() {
		cc, target, err := p.kubeConn(name, user, a)
		return cc, target, nil, err
	}
	target = strings.ReplaceAll(a.Address, "{user}", user)
	// Keyed by agent too: two agent entries may share an address with
	// different credentials.
	key := name + "\x00" + target
	if cc, ok := p.conns[key]; ok {
		return cc, target, nil, nil
	}
	gc, err := p.dial(name, target, a)
	if err != nil {
		return nil, target, nil, err
	}
	p.conns[key] = gc
	return gc, target, p.events.watch(name, target, gc, nil), nil
}

// dial connects to a remote agent with its token and TLS.
func (p *Pool) dial(name, target string, a config.Agent) (*grpc.ClientConn, error) {
	tlsConf, err := clientTLS(a.TLS)
	if err != nil {
		return nil, fmt.Errorf("agents.%s.tls: %w", name, err)
	}
	return backend.Dial(target, backend.DialOptions{Token: p.tokens[name], TLS: tlsConf, Observe: p.observer(name)})
}

// clientTLS builds the TLS config for a remote agent; nil when off.
func clientTLS(c config.AgentTLS) (*tls.Config, error) {
	if !c.Enabled() {
		return nil, nil
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.ServerName}
	if c.CA != "" {
		pem, err := os.ReadFile(c.CA)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca: no certificate in %s", c.CA)
		}
		conf.RootCAs = pool
	}
	if c.Cert != "" {
		cert, err := tls.LoadX509KeyPair(c.Cert, c.Key)
		if err != nil {
			return nil, err
		}
		conf.Certificates = []tls.Certificate{cert}
	}
	return conf, nil
}

// observer reports the named agent's calls to Options.ObserveCall.
func (p *Pool) observer(name string) func(string, codes.Code, time.Duration) {
	obs := p.opts.ObserveCall
	if obs == nil {
		return nil
	}
	return func(method string, code codes.Code, d time.Duration) { obs(name, method, code.String(), d) }
}

// Address is the configured address of the agent name (the resolved
// loopback one for an embedded agent), and whether it is embedded.
func (p *Pool) Address(name string) (address string, embedded bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if e, ok := p.embedded[name]; ok {
		return e.addr, true
	}
	return p.configs[name].Address, false
}

// EmbeddedAddrs lists the loopback addresses the embedded agents listen
// on.
func (p *Pool) EmbeddedAddrs() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, e := range p.embedded {
		out = append(out, e.addr)
	}
	slices.Sort(out)
	return out
}

// Reload swaps in new agent configs. Connections of changed or removed
// agents are kept for the sessions using them and closed with the pool.
// Embedded agents cannot be added, removed or changed (they own a
// directory and a listener); such a config is refused, and so is one with
// a bad token file or an unreachable Kubernetes API; on error nothing
// changes.
func (p *Pool) Reload(agents map[string]config.Agent) error {
	for name, a := range agents {
		old, existed := p.configs[name]
		if a.Embedded || (existed && old.Embedded) {
			if !existed || !reflect.DeepEqual(old, a) {
				return fmt.Errorf("agents.%s: embedded agents cannot change without a restart", name)
			}
		}
	}
	for name, a := range p.configs {
		if _, kept := agents[name]; !kept && a.Embedded {
			return fmt.Errorf("agents.%s: embedded agents cannot be removed without a restart", name)
		}
	}
	fresh, err := p.reloadKube(agents)
	if err != nil {
		return err
	}
	tokens := make(map[string]string)
	for name, a := range agents {
		if a.Embedded {
			continue
		}
		tok, err := readToken(a.TokenFile)
		if err != nil {
			for _, r := range fresh {
				_ = r.Close()
			}
			return fmt.Errorf("agents.%s.token_file: %w", name, err)
		}
		tokens[name] = tok
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	var changed []string
	for name, a := range agents {
		old, existed := p.configs[name]
		if !existed || !reflect.DeepEqual(old, a) || p.tokens[name] != tokens[name] {
			changed = append(changed, name)
		}
	}
	for name := range p.configs {
		if _, kept := agents[name]; !kept {
			changed = append(changed, name)
		}
	}
	// New logins dial afresh; live sessions keep the old connections.
	for key, cc := range p.conns {
		for _, name := range changed {
			if strings.HasPrefix(key, name+"\x00") {
				p.retired = append(p.retired, cc)
				delete(p.conns, key)
			}
		}
	}
	p.swapKube(agents, changed, fresh)
	slices.Sort(changed)
	if len(changed) > 0 {
		p.log.Info("agents changed", "agents", fmt.Sprint(changed))
	}
	p.configs, p.tokens = agents, tokens
	return nil
}

// Close stops the health loop and the event streams, closes every
// connection and stops the embedded agents; it returns when their
// goroutines are gone: open files' streams end, so their uploads abort.
func (p *Pool) Close() error {
	if p.stopHealth != nil {
		p.stopHealth()
		<-p.healthDone
	}
	p.events.close()
	p.mu.Lock()
	var errs []error
	for key, cc := range p.conns {
		if err := cc.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close agent %s: %w", strings.ReplaceAll(key, "\x00", " at "), err))
		}
	}
	clear(p.conns)
	for _, cc := range p.retired {
		_ = cc.Close()
	}
	p.retired = nil
	if err := p.closeKube(); err != nil {
		errs = append(errs, err)
	}
	embedded := p.embedded
	p.embedded = map[string]*embeddedAgent{} // Statuses reads it under mu
	p.mu.Unlock()
	for name, e := range embedded {
		if err := e.close(); err != nil {
			errs = append(errs, fmt.Errorf("close embedded agent %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// sortedNames returns the agent names in order.
func sortedNames(agents map[string]config.Agent) []string {
	names := make([]string, 0, len(agents))
	for name := range agents {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}
