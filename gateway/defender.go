package gateway

import (
	"errors"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/upgate/upgate/config"
)

// ErrBanned is returned for a login from an address the defender banned.
var ErrBanned = errors.New("gateway: address banned after failed logins")

// failureDefender bans an address after MaxFailures failed logins within
// Window, for BanTime, across every protocol and every user name.
// Allowlisted addresses are never banned.
//
// A successful login forgets only the failures from that address for that
// same user name: someone who mistyped their own password and then got it
// right starts afresh, but a success as one user never erases guesses at
// another (nine wrong passwords for bob, one good login as alice, repeated,
// is still ten failures a round). fail2ban never forgets on success;
// forgetting one's own name's failures keeps a team behind one NAT address
// from banning itself through typos alone.
type failureDefender struct {
	cfg     config.Defender
	allow   []netip.Prefix
	log     *slog.Logger
	metrics *Metrics
	now     func() time.Time

	// mu guards failures and bans.
	mu       sync.Mutex
	failures map[netip.Addr][]failure // oldest first; fewer than MaxFailures
	bans     map[netip.Addr]time.Time // until
}

// failure is one failed login: when, and the user name it tried.
type failure struct {
	at   time.Time
	user string
}

// maxTracked bounds the addresses the defender remembers; beyond it,
// expired entries are swept.
const maxTracked = 100000

// newDefender returns the defender cfg describes (its defaults in place),
// on the clock now.
func newDefender(cfg config.Defender, log *slog.Logger, m *Metrics, now func() time.Time) *failureDefender {
	d := &failureDefender{cfg: cfg, log: log.With("component", "defender"), metrics: m, now: now,
		failures: make(map[netip.Addr][]failure), bans: make(map[netip.Addr]time.Time)}
	for _, p := range cfg.Allowlist {
		d.allow = append(d.allow, p.Masked())
	}
	return d
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
func (d *failureDefender) LoginFailed(ip netip.Addr, user string) {
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
	for _, f := range d.failures[ip] {
		if now.Sub(f.at) < d.cfg.Window {
			recent = append(recent, f)
		}
	}
	recent = append(recent, failure{at: now, user: user})
	if len(recent) < d.cfg.MaxFailures {
		d.failures[ip] = recent
		return
	}
	delete(d.failures, ip)
	if _, already := d.bans[ip]; !already {
		d.metrics.DefenderBans.Inc()
	}
	d.bans[ip] = now.Add(d.cfg.BanTime)
	d.log.Warn("address banned", "ip", ip.String(), "failures", len(recent), "users", distinctUsers(recent), "window", d.cfg.Window, "ban_time", d.cfg.BanTime)
}

// distinctUsers counts the user names among failures.
func distinctUsers(fs []failure) int {
	seen := make(map[string]struct{}, len(fs))
	for _, f := range fs {
		seen[f.user] = struct{}{}
	}
	return len(seen)
}

// LoginSucceeded implements Defender: it forgets the address's failures
// for user, and only those.
func (d *failureDefender) LoginSucceeded(ip netip.Addr, user string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	kept := d.failures[ip][:0]
	for _, f := range d.failures[ip] {
		if f.user != user {
			kept = append(kept, f)
		}
	}
	if len(kept) == 0 {
		delete(d.failures, ip)
		return
	}
	d.failures[ip] = kept
}

func (d *failureDefender) sweep(now time.Time) {
	for ip, fs := range d.failures {
		if len(fs) == 0 || now.Sub(fs[len(fs)-1].at) >= d.cfg.Window {
			delete(d.failures, ip)
		}
	}
	for ip, until := range d.bans {
		if now.After(until) {
			delete(d.bans, ip)
		}
	}
}
