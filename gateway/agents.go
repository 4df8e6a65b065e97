package gateway

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/upgate/upgate/backend"
	"github.com/upgate/upgate/backend/agent"
	"github.com/upgate/upgate/backend/agentpb"
	"github.com/upgate/upgate/backend/podagents"
	"github.com/upgate/upgate/config"
)

// agentPool holds one gRPC connection per resolved agent target, shared by
// every session that uses it, and the embedded agents it runs.
type agentPool struct {
	log     *slog.Logger
	configs map[string]config.Agent
	metrics *Metrics

	// health runs the health loop; healthy holds, by agent name, whether
	// each static agent answered its last health call.
	stopHealth context.CancelFunc
	healthDone chan struct{}
	healthy    sync.Map
	checks     sync.Map // by agent name: the last health call's AgentStatus

	// mu guards configs, conns, retired, tokens and kube.
	mu      sync.Mutex
	conns   map[string]*grpc.ClientConn // by agent name and resolved target
	retired []*grpc.ClientConn          // replaced by a reload, still used by live sessions
	tokens  map[string]string           // remote agents' tokens, by agent name
	kube    kubeAgents                  // agents found through the Kubernetes API (podagents.go)

	embedded map[string]*embeddedAgent // by agent name; fixed after start

	onDial func(name, target string, cc *grpc.ClientConn) // hooks+events: set by watchEvents (agentevents.go); guarded by mu
}

// embeddedAgent is the agent code running in-process, reached over
// loopback gRPC like any other agent.
type embeddedAgent struct {
	server *agent.Server
	addr   string
	conn   *grpc.ClientConn
	stop   context.CancelFunc
	done   chan struct{}
}

func newAgentPool(ctx context.Context, agents map[string]config.Agent, log *slog.Logger, version string, metrics *Metrics) (*agentPool, error) {
	p := &agentPool{
		log:      log.With("component", "agents"),
		configs:  agents,
		metrics:  metrics,
		conns:    make(map[string]*grpc.ClientConn),
		tokens:   make(map[string]string),
		kube:     kubeAgents{resolvers: make(map[string]*podagents.Resolver)},
		embedded: make(map[string]*embeddedAgent),
	}
	names := make([]string, 0, len(agents))
	for name := range agents {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		a := agents[name]
		if !a.Embedded {
			tok, err := readToken(a.TokenFile)
			if err != nil {
				p.close()
				return nil, wrapf("agents.%s.token_file: %w", name, err)
			}
			p.tokens[name] = tok
			if a.Kubernetes.Enabled() {
				r, err := startResolver(ctx, name, a, p)
				if err != nil {
					p.close()
					return nil, err
				}
				p.kube.resolvers[name] = r
			}
			continue
		}
		e, err := startEmbedded(ctx, name, a.Root, a.Hooks, log, version, p.observer(name))
		if err != nil {
			p.close()
			return nil, err
		}
		p.embedded[name] = e
		p.log.Info("embedded agent started", "agent", name, "root", a.Root, "address", e.addr)
	}
	return p, nil
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

func startEmbedded(ctx context.Context, name, root, hooksFile string, log *slog.Logger, version string, observe func(string, codes.Code, time.Duration)) (*embeddedAgent, error) {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, wrapf("agents.%s.root: %w", name, err)
	}
	hs, err := loadHooks(name, hooksFile) // hooks+events (agentevents.go)
	if err != nil {
		return nil, err
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, wrapf("embedded agent %s: token: %w", name, err)
	}
	token := hex.EncodeToString(b[:])
	srv, err := agent.New(agent.Config{Root: root, Token: token, Logger: log.With("agent", name), Version: version, Hooks: hs})
	if err != nil {
		return nil, wrapf("embedded agent %s: %w", name, err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		srv.Close()
		return nil, wrapf("embedded agent %s: listen: %w", name, err)
	}
	cc, err := backend.Dial(lis.Addr().String(), backend.DialOptions{Token: token, Observe: observe})
	if err != nil {
		lis.Close()
		srv.Close()
		return nil, wrapf("embedded agent %s: %w", name, err)
	}
	sctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	e := &embeddedAgent{server: srv, addr: lis.Addr().String(), conn: cc, stop: stop, done: make(chan struct{})}
	go func() {
		defer close(e.done)
		if err := agent.Serve(sctx, srv, lis); err != nil && !errors.Is(err, net.ErrClosed) {
			log.Error("embedded agent stopped", "agent", name, "err", err)
		}
	}()
	return e, nil
}

// conn returns the connection for the named agent as user sees it, and
// the resolved target for logs.
func (p *agentPool) conn(name, user string) (grpc.ClientConnInterface, string, error) {
	if e, ok := p.embedded[name]; ok {
		return e.conn, e.addr, nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	a, ok := p.configs[name]
	if !ok {
		return nil, "", wrapf("user %s: agent %q is not configured", user, name)
	}
	if a.Kubernetes.Enabled() {
		return p.kubeConn(name, user, a)
	}
	target := strings.ReplaceAll(a.Address, "{user}", user)
	// Keyed by agent too: two agent entries may share an address with
	// different credentials.
	key := name + "\x00" + target
	if cc, ok := p.conns[key]; ok {
		return cc, target, nil
	}
	tlsConf, err := clientTLS(a.TLS)
	if err != nil {
		return nil, target, wrapf("agents.%s.tls: %w", name, err)
	}
	cc, err := backend.Dial(target, backend.DialOptions{Token: p.tokens[name], TLS: tlsConf, Observe: p.observer(name)})
	if err != nil {
		return nil, target, err
	}
	p.conns[key] = cc
	p.dialled(name, target, cc) // hooks+events: follow its events (agentevents.go)
	return cc, target, nil
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

// observer records agent call latency for the named agent.
func (p *agentPool) observer(name string) func(string, codes.Code, time.Duration) {
	return func(method string, code codes.Code, d time.Duration) {
		p.metrics.AgentCalls.WithLabelValues(name, method, code.String()).Observe(d.Seconds())
	}
}

// healthInterval is how often static agents get a health call.
const healthInterval = 10 * time.Second

// staticAgents names the agents whose address does not depend on the user:
// the embedded ones and remote ones without "{user}".
func (p *agentPool) staticAgents() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var names []string
	for name, a := range p.configs {
		if a.Embedded || !a.Kubernetes.Enabled() && !strings.Contains(a.Address, "{user}") {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names
}

// startHealth runs the health loop until close: every healthInterval each
// static agent gets a Status call, which sets upgate_agent_up and
// readiness.
func (p *agentPool) startHealth() {
	ctx, cancel := context.WithCancel(context.Background())
	p.stopHealth, p.healthDone = cancel, make(chan struct{})
	go func() {
		defer close(p.healthDone)
		t := time.NewTicker(healthInterval)
		defer t.Stop()
		for {
			p.checkHealth(ctx)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
}

func (p *agentPool) checkHealth(ctx context.Context) {
	for _, name := range p.staticAgents() {
		cc, target, err := p.conn(name, "")
		up := false
		check := AgentStatus{Name: name, Address: target, Checked: time.Now(), OpenFiles: -1, Uploads: -1}
		if err == nil {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			var st *agentpb.StatusResponse
			st, err = agentpb.NewAgentClient(cc).Status(cctx, &agentpb.StatusRequest{})
			cancel()
			check.RTT = time.Since(check.Checked)
			if up = err == nil; up {
				check.OpenFiles, check.Uploads = st.GetOpenHandles(), st.GetUploadsInProgress()
			}
		}
		if check.Up = up; err != nil {
			check.Err = err.Error()
		}
		p.checks.Store(name, check)
		if was, ok := p.healthy.Load(name); !ok || was.(bool) != up {
			if up {
				p.log.Info("agent up", "agent", name, "address", target)
			} else if ctx.Err() == nil {
				p.log.Warn("agent down", "agent", name, "address", target, "err", err)
			}
		}
		p.healthy.Store(name, up)
		v := 0.0
		if up {
			v = 1
		}
		p.metrics.AgentUp.WithLabelValues(name).Set(v)
	}
}

// ready reports whether every static agent answered its last health call.
func (p *agentPool) ready() bool {
	for _, name := range p.staticAgents() {
		if up, ok := p.healthy.Load(name); !ok || !up.(bool) {
			return false
		}
	}
	return true
}

// close closes every connection and stops the embedded agents; it returns
// when their goroutines are gone.
func (p *agentPool) close() error {
	if p.stopHealth != nil {
		p.stopHealth()
		<-p.healthDone
	}
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
	p.mu.Unlock()
	for name, e := range p.embedded {
		e.conn.Close()
		e.stop()
		<-e.done
		if err := e.server.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close embedded agent %s: %w", name, err))
		}
	}
	p.mu.Lock() // Agents reads embedded under mu, from the admin page's goroutines
	clear(p.embedded)
	p.mu.Unlock()
	return errors.Join(errs...)
}

// EmbeddedAgent returns the in-process agent server of that name, for
// tests and the admin view (its open-handle count).
func (g *Gateway) EmbeddedAgent(name string) (*agent.Server, bool) {
	e, ok := g.agents.embedded[name]
	if !ok {
		return nil, false
	}
	return e.server, true
}

// AgentStatus is a configured agent as the health loop last saw it, for the
// operator page. Agents whose address holds "{user}" are not checked (their
// address differs per user): Checked is zero and PerUser true.
type AgentStatus struct {
	Name     string        `json:"name"`
	Address  string        `json:"address"`
	Embedded bool          `json:"embedded,omitempty"`
	PerUser  bool          `json:"per_user,omitempty"`
	Checked  time.Time     `json:"checked"` // the last health call; zero if none yet
	Up       bool          `json:"up"`
	RTT      time.Duration `json:"rtt"` // the last health call's round trip, in nanoseconds
	// OpenFiles and Uploads are the agent's open handles and uploads in
	// progress as its last health call reported them; -1 if unknown.
	OpenFiles int64  `json:"open_files"`
	Uploads   int64  `json:"uploads"`
	Err       string `json:"error,omitempty"` // the last health call's error
}

// Agents returns every configured agent's status by name; embedded agents'
// open files are counted now.
func (g *Gateway) Agents() []AgentStatus {
	p := g.agents
	p.mu.Lock()
	out := make([]AgentStatus, 0, len(p.configs))
	for name, a := range p.configs {
		st := AgentStatus{Name: name, Address: a.Address, Embedded: a.Embedded, OpenFiles: -1, Uploads: -1,
			PerUser: !a.Embedded && strings.Contains(a.Address, "{user}")}
		if c, ok := p.checks.Load(name); ok {
			st = c.(AgentStatus)
			st.Embedded, st.PerUser = a.Embedded, false
		}
		if e, ok := p.embedded[name]; ok {
			st.Address, st.OpenFiles, st.Uploads = e.addr, e.server.OpenHandles(), e.server.UploadsInProgress()
		}
		out = append(out, st)
	}
	p.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
