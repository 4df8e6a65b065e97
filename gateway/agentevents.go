package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"

	"github.com/upgate/upgate/backend/agent/hooks"
	"github.com/upgate/upgate/backend/agentpb"
)

// CommitEvent is the Data of a feed event of kind "commit": a change an
// agent committed (agentpb.Change).
type CommitEvent struct {
	// Agent names the agent (a key of the config's agents).
	Agent string `json:"agent"`
	// Op is what happened: write (an upload committed; aborted and
	// failed ones are never events), rename, delete or mkdir.
	Op string `json:"op"`
	// Path is where it happened in the event's user's tree
	// ("/app/Kernel.php"); for an event without a user, the agent path.
	Path string `json:"path"`
	// From is a rename's source, the same way.
	From string `json:"from,omitempty"`
	// AgentPath is Path relative to the agent's root.
	AgentPath string `json:"agent_path"`
	// Size, Mode and Mtime describe what Path names after the change
	// (zero for a delete).
	Size  int64     `json:"size"`
	Mode  uint32    `json:"mode,omitempty"`
	Mtime time.Time `json:"mtime,omitzero"`
	// Event identifies the agent's event, "<boot id>/<seq>": the same in
	// the copies of one change published to several users.
	Event string `json:"event"`
}

// HookEvent is the Data of a feed event of kind "hook": one run of a hook
// from an agent's own hook file (agentpb.HookRun).
type HookEvent struct {
	Agent string `json:"agent"`
	Hook  string `json:"hook"`
	// Result is ok, failed, timeout, start_error or canceled.
	Result string `json:"result"`
	// ExitCode is the exit status, -1 when the command did not exit by
	// itself (not started, killed).
	ExitCode int `json:"exit_code"`
	// Error says why the run is not ok (a missing binary, "exit status
	// 3", a timeout), or notes something about an ok one.
	Error           string    `json:"error,omitempty"`
	Start           time.Time `json:"start"`
	DurationSeconds float64   `json:"duration_seconds"`
	// Paths are the run's changed paths in the event's user's tree. A run
	// whose paths are not all one user's is also published without a
	// user, with every path as an agent path. PathsTotal counts all of
	// the run's paths, other users' and unlisted ones included.
	Paths      []string `json:"paths"`
	PathsTotal int      `json:"paths_total"`
	// Output is the tail of the command's stdout and stderr; empty in a
	// user's copy of a run that had other users' paths too.
	Output string `json:"output,omitempty"`
	// Event identifies the run, "<boot id>/<seq>": the same in the copies
	// published to several users.
	Event string `json:"event"`
}

// Feed event kinds published from agents' events.
const (
	KindCommit = "commit"
	KindHook   = "hook"
)

var changeOps = map[agentpb.ChangeKind]string{
	agentpb.ChangeKind_CHANGE_KIND_WRITE:  string(hooks.Write),
	agentpb.ChangeKind_CHANGE_KIND_RENAME: string(hooks.Rename),
	agentpb.ChangeKind_CHANGE_KIND_DELETE: string(hooks.Delete),
	agentpb.ChangeKind_CHANGE_KIND_MKDIR:  string(hooks.Mkdir),
}

var hookResults = map[agentpb.HookResult]string{
	agentpb.HookResult_HOOK_RESULT_OK:          string(hooks.OK),
	agentpb.HookResult_HOOK_RESULT_FAILED:      string(hooks.Failed),
	agentpb.HookResult_HOOK_RESULT_TIMEOUT:     string(hooks.Timeout),
	agentpb.HookResult_HOOK_RESULT_START_ERROR: string(hooks.StartError),
	agentpb.HookResult_HOOK_RESULT_CANCELED:    string(hooks.Canceled),
}

// Reconnect backoff of an events stream: from eventsRetryMin doubling to
// eventsRetryMax; an agent without the service is asked again after
// eventsRetryUnimplemented.
const (
	eventsRetryMin           = time.Second
	eventsRetryMax           = 30 * time.Second
	eventsRetryUnimplemented = 5 * time.Minute
)

// agentEvents follows the AgentEvents stream of every agent connection
// the pool makes: it attributes each change to the users whose mounts
// hold its path, publishes changes and hook runs to the feed, logs one
// line per hook run and counts them.
type agentEvents struct {
	g        *Gateway
	log      *slog.Logger
	runs     *prometheus.CounterVec   // agent, hook, result
	duration *prometheus.HistogramVec // agent, hook

	// mu guards watches (one per agent connection, by agent name and
	// target) and closed. wg counts the watches' goroutines.
	mu      sync.Mutex
	watches map[string]*agentWatch
	closed  bool
	wg      sync.WaitGroup
}

// agentWatch follows one agent connection's events.
type agentWatch struct {
	name, target string
	cc           *grpc.ClientConn
	cancel       context.CancelFunc
	done         chan struct{}
	// boot and seq are the resume point, touched only by the watch's
	// goroutine (and by its successor once done is closed).
	boot string
	seq  uint64
}

func newAgentEvents(g *Gateway, log *slog.Logger) *agentEvents {
	ae := &agentEvents{
		g:   g,
		log: log.With("component", "agent-events"),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "upgate_hook_runs_total",
			Help: "Runs of agents' hooks, by agent, hook and result: ok, failed, timeout, start_error, canceled.",
		}, []string{"agent", "hook", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "upgate_hook_duration_seconds", Help: "How long agents' hook runs took, by agent and hook.",
			Buckets: []float64{.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300},
		}, []string{"agent", "hook"}),
		watches: make(map[string]*agentWatch),
	}
	g.metrics.Registry.MustRegister(ae.runs, ae.duration)
	return ae
}

// watch follows the events of the agent name at target over cc until
// close, or until cc is closed. A watch of the same agent and target
// before it (a connection replaced by a reload) stops, and this one
// resumes where it was.
func (ae *agentEvents) watch(name, target string, cc *grpc.ClientConn) {
	ae.mu.Lock()
	defer ae.mu.Unlock()
	if ae.closed {
		return
	}
	key := name + "\x00" + target
	old := ae.watches[key]
	ctx, cancel := context.WithCancel(context.Background())
	w := &agentWatch{name: name, target: target, cc: cc, cancel: cancel, done: make(chan struct{})}
	ae.watches[key] = w
	ae.wg.Add(1)
	go func() {
		defer ae.wg.Done()
		defer close(w.done)
		defer cancel()
		if old != nil {
			old.cancel()
			<-old.done
			w.boot, w.seq = old.boot, old.seq
		}
		ae.follow(ctx, w)
	}()
}

// close stops every watch and returns once their goroutines are gone.
func (ae *agentEvents) close() {
	ae.mu.Lock()
	ae.closed = true
	for _, w := range ae.watches {
		w.cancel()
	}
	ae.mu.Unlock()
	ae.wg.Wait()
}

// follow reads w's events, reconnecting with backoff, until ctx ends or
// the connection is closed.
func (ae *agentEvents) follow(ctx context.Context, w *agentWatch) {
	log := ae.log.With("agent", w.name, "address", w.target)
	client := agentpb.NewAgentEventsClient(w.cc)
	retry := eventsRetryMin
	for {
		start := time.Now()
		err := ae.stream(ctx, client, w, log)
		if ctx.Err() != nil || w.cc.GetState() == connectivity.Shutdown {
			return
		}
		if time.Since(start) > eventsRetryMax {
			retry = eventsRetryMin
		}
		wait := retry
		if status.Code(err) == codes.Unimplemented {
			log.Info("agent does not stream events (an older agent): no hook runs or commits from it", "err", err)
			wait = eventsRetryUnimplemented
		} else {
			log.Debug("agent events stream ended", "err", err, "retry", wait)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		retry = min(2*retry, eventsRetryMax)
	}
}

// stream reads one Events stream until it fails.
func (ae *agentEvents) stream(ctx context.Context, client agentpb.AgentEventsClient, w *agentWatch, log *slog.Logger) error {
	st, err := client.Events(ctx, &agentpb.EventsRequest{BootId: w.boot, Since: w.seq})
	if err != nil {
		return err
	}
	for {
		ev, err := st.Recv()
		if err != nil {
			return err
		}
		if h := ev.GetHello(); h != nil {
			if w.boot != "" && ev.GetBootId() != w.boot {
				log.Info("agent restarted: following its new events", "boot", ev.GetBootId())
			}
			if h.GetMissed() > 0 {
				log.Warn("agent events missed while disconnected (the agent keeps the latest only)", "missed", h.GetMissed())
			}
			w.boot, w.seq = ev.GetBootId(), h.GetAfter()
			log.Debug("following agent events", "boot", w.boot, "after", w.seq, "hooks", strings.Join(h.GetHooks(), ","))
			continue
		}
		if ev.GetBootId() == w.boot && ev.GetSeq() > w.seq+1 {
			log.Warn("agent events missed (this gateway fell behind)", "missed", ev.GetSeq()-w.seq-1)
		}
		w.boot, w.seq = ev.GetBootId(), ev.GetSeq()
		ae.publish(w, ev, log)
	}
}

// publish turns one agent event into feed events, a log line and metrics.
func (ae *agentEvents) publish(w *agentWatch, ev *agentpb.AgentEvent, log *slog.Logger) {
	id := fmt.Sprintf("%s/%d", ev.GetBootId(), ev.GetSeq())
	feed := ae.g.feed
	if c := ev.GetChange(); c != nil {
		p, from := string(c.GetPath()), string(c.GetFrom())
		e := CommitEvent{Agent: w.name, Op: changeOps[c.GetKind()], Path: p, From: from, AgentPath: p,
			Size: c.GetSize(), Mode: c.GetMode(), Event: id}
		if c.GetMtimeUnixNano() != 0 {
			e.Mtime = time.Unix(0, c.GetMtimeUnixNano())
		}
		owners := ae.g.owners(w.name, w.target, p)
		if len(owners) == 0 {
			feed.Publish(KindCommit, "", e)
		}
		for _, o := range owners {
			e := e
			e.Path, e.From = o.path, ""
			if from != "" {
				e.From = from
				if fp, ok := o.mount.userPath(from); ok {
					e.From = fp
				}
			}
			feed.Publish(KindCommit, o.user, e)
		}
		return
	}
	r := ev.GetHookRun()
	if r == nil {
		return // a kind this gateway does not know yet
	}
	result := hookResults[r.GetResult()]
	if result == "" {
		result = "unknown"
	}
	d := time.Duration(r.GetDurationNanos())
	ae.runs.WithLabelValues(w.name, r.GetHook(), result).Inc()
	ae.duration.WithLabelValues(w.name, r.GetHook()).Observe(d.Seconds())

	byUser := map[string][]string{}
	var users, unowned []string // unowned: paths no user's mount covers
	for _, b := range r.GetPaths() {
		p := string(b)
		owners := ae.g.owners(w.name, w.target, p)
		if len(owners) == 0 {
			unowned = append(unowned, p)
		}
		for _, o := range owners {
			if _, ok := byUser[o.user]; !ok {
				users = append(users, o.user)
			}
			byUser[o.user] = append(byUser[o.user], o.path)
		}
	}
	slices.Sort(users)

	attrs := []any{"hook", r.GetHook(), "result", result, "exit", r.GetExitCode(),
		"duration", d.Round(time.Millisecond), "paths", r.GetPathsTotal(), "users", strings.Join(users, ",")}
	if r.GetError() != "" {
		attrs = append(attrs, "err", r.GetError())
	}
	if result == string(hooks.OK) {
		log.Info("hook ran", attrs...)
	} else {
		if out := strings.TrimRight(string(r.GetOutput()), "\r\n"); out != "" {
			attrs = append(attrs, "output", out[max(0, len(out)-512):])
		}
		log.Warn("hook ran", attrs...)
	}

	e := HookEvent{Agent: w.name, Hook: r.GetHook(), Result: result, ExitCode: int(r.GetExitCode()), Error: r.GetError(),
		Start: time.Unix(0, r.GetStartUnixNano()), DurationSeconds: d.Seconds(), PathsTotal: int(r.GetPathsTotal()),
		Output: string(r.GetOutput()), Event: id}
	if len(users) == 1 && len(unowned) == 0 {
		e.Paths = byUser[users[0]]
		feed.Publish(KindHook, users[0], e)
		return
	}
	// A run for several users (a shared agent): each sees their own
	// paths, and not the output, which may name the others'; the whole
	// run goes out without a user.
	for _, u := range users {
		e := e
		e.Paths, e.Output = byUser[u], ""
		feed.Publish(KindHook, u, e)
	}
	e.Paths = nil
	for _, p := range r.GetPaths() {
		e.Paths = append(e.Paths, string(p))
	}
	feed.Publish(KindHook, "", e)
}

// owner is a user whose tree holds an agent path, and where.
type owner struct {
	user  string
	path  string // in the user's tree
	mount userMount
}

// userMount is one mount of a user, to translate more of its paths.
type userMount struct {
	root, at string
}

// userPath translates an agent path inside the mount to the user's tree.
func (m userMount) userPath(p string) (string, bool) {
	rel := p
	if m.root != "" {
		if p != m.root && !strings.HasPrefix(p, m.root+"/") {
			return "", false
		}
		rel = strings.TrimPrefix(strings.TrimPrefix(p, m.root), "/")
	}
	return path.Join(m.at, rel), true
}

// owners finds, by the mount table, the users whose tree holds agent path
// p of the agent name reached at target (for an agent whose address
// names the user, only the users it resolves to target for), and where.
// The agent itself never knows users.
func (g *Gateway) owners(name, target, p string) []owner {
	address, embedded := g.agents.address(name)
	g.mu.RLock()
	defer g.mu.RUnlock()
	var out []owner
	for _, u := range g.users {
		if !embedded && strings.Contains(address, "{user}") && strings.ReplaceAll(address, "{user}", u.name) != target {
			continue
		}
		best := -1
		var found owner
		for _, m := range u.mounts {
			if m.Agent != name || len(m.Root) <= best {
				continue
			}
			um := userMount{root: m.Root, at: m.Path}
			if up, ok := um.userPath(p); ok {
				best, found = len(m.Root), owner{user: u.name, path: up, mount: um}
			}
		}
		if best >= 0 {
			out = append(out, found)
		}
	}
	slices.SortFunc(out, func(a, b owner) int { return strings.Compare(a.user, b.user) })
	return out
}

// address is the configured address of the agent name, and whether it is
// embedded.
func (p *agentPool) address(name string) (string, bool) {
	if _, ok := p.embedded[name]; ok {
		return "", true
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.configs[name].Address, false
}

// watchEvents makes the pool hand every agent connection to watch: the
// embedded agents' now, remote ones' when they are dialled (dialled).
func (p *agentPool) watchEvents(watch func(name, target string, cc *grpc.ClientConn)) {
	p.mu.Lock()
	p.onDial = watch
	p.mu.Unlock()
	for name, e := range p.embedded {
		watch(name, e.addr, e.conn)
	}
}

// dialled reports a new connection to a remote agent to the events
// watch. p.mu is held.
func (p *agentPool) dialled(name, target string, cc *grpc.ClientConn) {
	if p.onDial != nil {
		p.onDial(name, target, cc)
	}
}

// loadHooks reads an embedded agent's hook file (agents.<name>.hooks).
func loadHooks(name, file string) ([]hooks.Hook, error) {
	if file == "" {
		return nil, nil
	}
	hs, err := hooks.Load(file)
	if err != nil {
		return nil, wrapf("agents.%s.hooks: %w", name, err)
	}
	return hs, nil
}
