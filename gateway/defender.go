package gateway

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/upgate/upgate/config"
)

// ErrBanned is returned for a login from an address the defender banned.
var ErrBanned = errors.New("gateway: address banned after failed logins")

// failureDefender bans an address after MaxFailures failed logins within
// Window, for BanTime, across every protocol. Allowlisted addresses are
// never banned. A successful login forgets the address's failures.
type failureDefender struct {
	cfg     config.Defender
	allow   []netip.Prefix
	log     *slog.Logger
	metrics *Metrics
	now     func() time.Time

	// mu guards failures and bans.
	mu       sync.Mutex
	failures map[netip.Addr][]time.Time
	bans     map[netip.Addr]time.Time // until
}

// maxTracked bounds the addresses the defender remembers; beyond it,
// expired entries are swept.
const maxTracked = 100000

func newDefender(cfg config.Defender, log *slog.Logger, m *Metrics) (*failureDefender, error) {
	d := &failureDefender{cfg: cfg, log: log.With("component", "defender"), metrics: m, now: time.Now,
		failures: make(map[netip.Addr][]time.Time), bans: make(map[netip.Addr]time.Time)}
	for i, c := range cfg.Allowlist {
		p, err := netip.ParsePrefix(c)
		if err != nil {
			return nil, fmt.Errorf("gateway: defender.allowlist[%d]: %w", i, err)
		}
		d.allow = append(d.allow, p.Masked())
	}
	return d, nil
}

func (d *failureDefender) allowed(ip netip.Addr) bool {
	for _, p := range d.allow {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// Banned implements Defender.
func (d *failureDefender) Banned(ip netip.Addr) bool {
	if d.allowed(ip) {
		return false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	until, ok := d.bans[ip]
	if !ok {
		return false
	}
	if d.now().After(until) {
		delete(d.bans, ip)
		return false
	}
	return true
}

// LoginFailed implements Defender.
func (d *failureDefender) LoginFailed(ip netip.Addr) {
	if d.allowed(ip) {
		return
	}
	now := d.now()
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.failures) > maxTracked {
		d.sweep(now)
	}
	recent := d.failures[ip][:0]
	for _, t := range d.failures[ip] {
		if now.Sub(t) < d.cfg.Window {
			recent = append(recent, t)
		}
	}
	recent = append(recent, now)
	if len(recent) < d.cfg.MaxFailures {
		d.failures[ip] = recent
		return
	}
	delete(d.failures, ip)
	if _, already := d.bans[ip]; !already {
		d.metrics.DefenderBans.Inc()
	}
	d.bans[ip] = now.Add(d.cfg.BanTime)
	d.log.Warn("address banned", "ip", ip.String(), "failures", len(recent), "window", d.cfg.Window, "ban_time", d.cfg.BanTime)
}

// LoginSucceeded implements Defender.
func (d *failureDefender) LoginSucceeded(ip netip.Addr) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.failures, ip)
}

func (d *failureDefender) sweep(now time.Time) {
	for ip, ts := range d.failures {
		if len(ts) == 0 || now.Sub(ts[len(ts)-1]) >= d.cfg.Window {
			delete(d.failures, ip)
		}
	}
	for ip, until := range d.bans {
		if now.After(until) {
			delete(d.bans, ip)
		}
	}
}
