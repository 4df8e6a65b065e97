// Package admin is the gateway's operator view over HTTP: Prometheus
// metrics, health and readiness probes, the sessions and latency API that
// `upgate sessions` and `upgate kick` use, and the live operator page. It
// listens on loopback by default; a bearer token can guard everything but
// the probes (the page asks for it once and keeps a cookie).
package admin

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/upgate/upgate/gateway"
)

// Config configures the admin handler. The zero value is usable on a
// loopback listener.
type Config struct {
	// Token, if non-empty, must be sent as "Authorization: Bearer
	// <token>" to /metrics and /api/, and the operator page's login form
	// asks for it; /healthz and /readyz stay open for probes. Empty means
	// no token, for a loopback listener only: /metrics, /api/ and the page
	// then answer 403 to a request whose Host header is not a loopback
	// name or address, which a page using DNS rebinding sends.
	Token string
	// Ready, if non-nil, replaces the readiness check (the server uses it
	// to add "listeners are up"). Nil means Gateway.Ready.
	Ready func() bool
	// Logger receives kicks and refused requests. Nil means
	// slog.Default().
	Logger *slog.Logger
}

// SessionsResponse is the body of GET /api/sessions: the live sessions,
// and the save latency per user and protocol that GET /api/latency also
// serves. The embedded LatencyResponse's fields are at the top level of
// the JSON, beside "sessions" (as in the operator page's stream):
//
//	{"sessions": [...], "window": 300000000000, "slot": 30000000000,
//	 "latency": [{"user": "alice", "protocol": "ftp", "count": 4, "p50": ..., "p99": ..., "max": ..., "series": [...]}]}
type SessionsResponse struct {
	Sessions []gateway.SessionInfo `json:"sessions"`
	LatencyResponse
}

// NewHandler returns the admin HTTP handler for gw:
//
//	GET    /metrics            Prometheus metrics
//	GET    /healthz            200 while the process runs
//	GET    /readyz             200 once listeners are up and static agents answer, else 503
//	GET    /api/sessions       live sessions and save latency (JSON SessionsResponse)
//	DELETE /api/sessions/{id}  kick a session: 204, or 404 if there is none
//	GET    /api/events         agents' commits, hook runs and other feed events as Server-Sent Events (events.go)
//	GET    /api/latency        save latency per user and protocol (JSON LatencyResponse)
//	GET    /                   the operator page (page.go), or its login form
//
// NewHandler panics if the page's embedded templates do not parse.
func NewHandler(gw *gateway.Gateway, cfg Config) http.Handler {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "admin")
	ready := cfg.Ready
	if ready == nil {
		ready = gw.Ready
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready() {
			http.Error(w, "not ready: listeners not up, draining, or a static agent is not answering", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ready\n"))
	})
	auth := func(h http.Handler) http.Handler {
		if cfg.Token == "" {
			// Tokenless is for loopback only, where a web page the
			// operator visits could still reach it by DNS rebinding: its
			// requests carry the attacker's host name.
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if !loopbackHost(r.Host) {
					log.Warn("admin request refused: Host is not a loopback name or address", "path", r.URL.Path, "host", r.Host, "remote", r.RemoteAddr)
					http.Error(w, "forbidden: without admin.token_file only loopback Host names are served", http.StatusForbidden)
					return
				}
				h.ServeHTTP(w, r)
			})
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !ok || subtle.ConstantTimeCompare([]byte(tok), []byte(cfg.Token)) != 1 {
				log.Warn("admin request refused: bad token", "path", r.URL.Path, "remote", r.RemoteAddr)
				w.Header().Set("WWW-Authenticate", `Bearer realm="upgate"`)
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
			h.ServeHTTP(w, r)
		})
	}
	mux.Handle("GET /metrics", auth(promhttp.HandlerFor(gw.Metrics().Registry, promhttp.HandlerOpts{})))
	mux.Handle("GET /api/sessions", auth(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		live := gw.Registry().Sessions()
		resp := SessionsResponse{Sessions: make([]gateway.SessionInfo, 0, len(live)), LatencyResponse: latency(gw)}
		for _, s := range live {
			resp.Sessions = append(resp.Sessions, s.Info())
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(resp)
	})))
	mux.Handle("GET /api/events", auth(eventsHandler(gw, log)))
	mux.Handle("DELETE /api/sessions/{id}", auth(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		err := gw.Registry().Kick(id)
		if errors.Is(err, gateway.ErrNoSession) {
			http.Error(w, "no session "+id, http.StatusNotFound)
			return
		}
		// Any other error is the connection's close failing: it is gone
		// from the registry all the same.
		log.Info("session kicked", "session", id, "remote", r.RemoteAddr, "close_err", err)
		w.WriteHeader(http.StatusNoContent)
	})))
	mux.Handle("GET /api/latency", auth(http.HandlerFunc(latencyHandler(gw))))
	pg, err := newPage(gw, cfg.Token, log)
	if err != nil {
		panic(err) // the embedded files are part of the binary
	}
	pg.register(mux)
	return mux
}

// loopbackHost reports whether a Host header names this machine by a
// loopback name or address: "localhost" (with or without a port or a
// trailing dot), 127.0.0.0/8 or ::1.
func loopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.Trim(host, "[]"), ".")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// LoopbackAddr reports whether a listen address (host:port) binds only
// loopback: "localhost", 127.0.0.0/8 or ::1. An empty host (every
// interface) is not loopback.
func LoopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return false
	}
	return loopbackHost(host)
}
