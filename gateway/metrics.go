package gateway

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics are the gateway's Prometheus collectors, registered on their own
// registry (never the global one).
type Metrics struct {
	Registry *prometheus.Registry

	ConnectionsActive *prometheus.GaugeVec   // proto
	ConnectionsTotal  *prometheus.CounterVec // proto
	ConnectionsClosed *prometheus.CounterVec // proto, reason
	Logins            *prometheus.CounterVec // proto, result
	DefenderBans      prometheus.Counter
	Bytes             *prometheus.CounterVec   // proto, direction (in, out)
	Transfers         *prometheus.CounterVec   // proto, direction (upload, download), result (committed, aborted, failed)
	AgentCalls        *prometheus.HistogramVec // agent, method, code
	AgentUp           *prometheus.GaugeVec     // agent
	SaveSeconds       *prometheus.HistogramVec // proto: an upload's open to its commit
}

func newMetrics() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		ConnectionsActive: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "upgate_connections_active", Help: "Client connections open now, FTP data connections included.",
		}, []string{"proto"}),
		ConnectionsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "upgate_connections_total", Help: "Client connections accepted.",
		}, []string{"proto"}),
		ConnectionsClosed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "upgate_connections_closed_total",
			Help: "Client connections closed or refused, by reason: closed, idle timeout, no progress, " +
				"ssh keepalive, kicked, drain, limit, banned, proxy, data refused.",
		}, []string{"proto", "reason"}),
		Logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "upgate_logins_total", Help: "Login attempts by result: ok, failed, limit, agent_error.",
		}, []string{"proto", "result"}),
		DefenderBans: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "upgate_defender_bans_total", Help: "Addresses banned after failed logins.",
		}),
		Bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "upgate_bytes_total", Help: "Bytes on client connections by direction (in: from clients).",
		}, []string{"proto", "direction"}),
		Transfers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "upgate_transfers_total", Help: "Files transferred by direction and result: committed, aborted, failed.",
		}, []string{"proto", "direction", "result"}),
		AgentCalls: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "upgate_agent_call_seconds", Help: "Latency of calls to agents, by agent, method and gRPC code.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"agent", "method", "code"}),
		AgentUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "upgate_agent_up", Help: "1 if the agent answered its last health call.",
		}, []string{"agent"}),
		SaveSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "upgate_save_seconds",
			Help:    "Save latency: time from an upload's open to its commit (the clean close that puts it in place), by protocol.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120},
		}, []string{"proto"}),
	}
	m.Registry.MustRegister(m.ConnectionsActive, m.ConnectionsTotal, m.ConnectionsClosed, m.Logins, m.DefenderBans,
		m.Bytes, m.Transfers, m.AgentCalls, m.AgentUp, m.SaveSeconds,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Metrics returns the gateway's collectors.
func (g *Gateway) Metrics() *Metrics { return g.metrics }
