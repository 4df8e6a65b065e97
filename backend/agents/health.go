package agents

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/upgate/upgate/backend/agentpb"
	"github.com/upgate/upgate/config"
)

// healthInterval is how often static agents get a health call.
const healthInterval = 10 * time.Second

// Status is a configured agent as the health loop last saw it. Agents
// whose address depends on the user ("{user}" in it, or found through
// Kubernetes) are not checked: Checked is zero and PerUser true.
type Status struct {
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

// perUser reports whether a's address depends on the user.
func perUser(a config.Agent) bool {
	return !a.Embedded && (a.Kubernetes.Enabled() || strings.Contains(a.Address, "{user}"))
}

// staticAgents names the agents whose address does not depend on the
// user: the embedded ones and remote ones without "{user}".
func (p *Pool) staticAgents() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var names []string
	for name, a := range p.configs {
		if !perUser(a) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// startHealth runs the health loop until Close: every healthInterval each
// static agent gets a Status call.
func (p *Pool) startHealth() {
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

func (p *Pool) checkHealth(ctx context.Context) {
	for _, name := range p.staticAgents() {
		cc, target, err := p.conn(name, "")
		check := Status{Name: name, Address: target, Checked: time.Now(), OpenFiles: -1, Uploads: -1}
		if err == nil {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			var st *agentpb.StatusResponse
			st, err = agentpb.NewAgentClient(cc).Status(cctx, &agentpb.StatusRequest{})
			cancel()
			check.RTT = time.Since(check.Checked)
			if check.Up = err == nil; check.Up {
				check.OpenFiles, check.Uploads = st.GetOpenHandles(), st.GetUploadsInProgress()
			}
		}
		if err != nil {
			check.Err = err.Error()
		}
		if ctx.Err() != nil {
			return // closing: not a verdict on the agent
		}
		prev, seen := p.checks.Swap(name, check)
		if !seen || prev.(Status).Up != check.Up {
			if check.Up {
				p.log.Info("agent up", "agent", name, "address", target)
			} else {
				p.log.Warn("agent down", "agent", name, "address", target, "err", err)
			}
		}
		if p.opts.Health != nil {
			p.opts.Health(check)
		}
	}
}

// Ready reports whether every static agent answered its last health call.
func (p *Pool) Ready() bool {
	for _, name := range p.staticAgents() {
		c, ok := p.checks.Load(name)
		if !ok || !c.(Status).Up {
			return false
		}
	}
	return true
}

// Statuses returns every configured agent's status, by name; embedded
// agents' open files are counted now.
func (p *Pool) Statuses() []Status {
	p.mu.Lock()
	out := make([]Status, 0, len(p.configs))
	for name, a := range p.configs {
		st := Status{Name: name, Address: a.Address, Embedded: a.Embedded, OpenFiles: -1, Uploads: -1, PerUser: perUser(a)}
		if c, ok := p.checks.Load(name); ok {
			st = c.(Status)
			st.Embedded, st.PerUser = a.Embedded, false
		}
		if e, ok := p.embedded[name]; ok {
			st.Address, st.OpenFiles, st.Uploads = e.addr, e.server.OpenHandles(), e.server.UploadsInProgress()
		}
		out = append(out, st)
	}
	p.mu.Unlock()
	slices.SortFunc(out, func(a, b Status) int { return strings.Compare(a.Name, b.Name) })
	return out
}
