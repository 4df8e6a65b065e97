package gateway

import (
	"context"
	"log/slog"
	"time"

	"github.com/upgate/upgate/backend/agents"
	"github.com/upgate/upgate/config"
)

// AgentStatus is a configured agent as the agent pool's health loop last
// saw it, for the operator page.
type AgentStatus = agents.Status

// newAgentPool starts the agent pool (backend/agents) with the gateway's
// metrics and its events sink.
func newAgentPool(ctx context.Context, cfg map[string]config.Agent, log *slog.Logger, version string, metrics *Metrics, onEvent func(agents.Event)) (*agents.Pool, error) {
	pool, err := agents.New(ctx, cfg, agents.Options{
		Logger:  log,
		Version: version,
		ObserveCall: func(agent, method, code string, d time.Duration) {
			metrics.AgentCalls.WithLabelValues(agent, method, code).Observe(d.Seconds())
		},
		Health: func(s agents.Status) {
			v := 0.0
			if s.Up {
				v = 1
			}
			metrics.AgentUp.WithLabelValues(s.Name).Set(v)
		},
		OnEvent: onEvent,
	})
	if err != nil {
		return nil, wrapf("%w", err)
	}
	return pool, nil
}

// Agents returns every configured agent's status, by name; embedded
// agents' open files are counted now.
func (g *Gateway) Agents() []AgentStatus { return g.agents.Statuses() }

// AgentPool is the gateway's agent pool: its embedded agents, for tests
// and status pages.
func (g *Gateway) AgentPool() *agents.Pool { return g.agents }
