package gateway

import (
	"log/slog"
	"path"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/upgate/upgate/backend/agents"
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

// agentEvents turns the agents' events (backend/agents.Event) into feed
// events: it attributes each change to the users whose mounts hold its
// path, publishes changes and hook runs, logs one line per hook run and
// counts them.
type agentEvents struct {
	g        atomic.Pointer[Gateway] // set once the gateway is built
	log      *slog.Logger
	runs     *prometheus.CounterVec   // agent, hook, result
	duration *prometheus.HistogramVec // agent, hook
}

func newAgentEvents(log *slog.Logger, metrics *Metrics) *agentEvents {
	ae := &agentEvents{
		log: log.With("component", "agent-events"),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "upgate_hook_runs_total",
			Help: "Runs of agents' hooks, by agent, hook and result: ok, failed, timeout, start_error, canceled.",
		}, []string{"agent", "hook", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "upgate_hook_duration_seconds", Help: "How long agents' hook runs took, by agent and hook.",
			Buckets: []float64{.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300},
		}, []string{"agent", "hook"}),
	}
	metrics.Registry.MustRegister(ae.runs, ae.duration)
	return ae
}

// publish turns one agent event into feed events, a log line and metrics.
func (ae *agentEvents) publish(ev agents.Event) {
	g := ae.g.Load()
	if g == nil {
		return // the gateway is not built yet: nobody can have saved
	}
	feed := g.feed
	if c := ev.Change; c != nil {
		e := CommitEvent{Agent: ev.Agent, Op: c.Op, Path: c.Path, From: c.From, AgentPath: c.Path,
			Size: c.Size, Mode: c.Mode, Mtime: c.Mtime, Event: ev.ID}
		owners := g.owners(ev.Agent, ev.Target, c.Path)
		if len(owners) == 0 {
			feed.Publish(KindCommit, "", e)
		}
		for _, o := range owners {
			e := e
			e.Path, e.From = o.path, ""
			if c.From != "" {
				e.From = c.From
				if fp, ok := o.mount.userPath(c.From); ok {
					e.From = fp
				}
			}
			feed.Publish(KindCommit, o.user, e)
		}
		return
	}
	r := ev.HookRun
	if r == nil {
		return
	}
	ae.runs.WithLabelValues(ev.Agent, r.Hook, r.Result).Inc()
	ae.duration.WithLabelValues(ev.Agent, r.Hook).Observe(r.Duration.Seconds())

	byUser := map[string][]string{}
	var users, unowned []string // unowned: paths no user's mount covers
	for _, p := range r.Paths {
		owners := g.owners(ev.Agent, ev.Target, p)
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

	attrs := []any{"agent", ev.Agent, "address", ev.Target, "hook", r.Hook, "result", r.Result, "exit", r.ExitCode,
		"duration", r.Duration.Round(time.Millisecond), "paths", r.PathsTotal, "users", strings.Join(users, ",")}
	if r.Error != "" {
		attrs = append(attrs, "err", r.Error)
	}
	if r.Result == "ok" {
		ae.log.Info("hook ran", attrs...)
	} else {
		if out := strings.TrimRight(r.Output, "\r\n"); out != "" {
			attrs = append(attrs, "output", out[max(0, len(out)-512):])
		}
		ae.log.Warn("hook ran", attrs...)
	}

	e := HookEvent{Agent: ev.Agent, Hook: r.Hook, Result: r.Result, ExitCode: r.ExitCode, Error: r.Error,
		Start: r.Start, DurationSeconds: r.Duration.Seconds(), PathsTotal: r.PathsTotal,
		Output: r.Output, Event: ev.ID}
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
	e.Paths = slices.Clone(r.Paths)
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
	address, embedded := g.agents.Address(name)
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
