package gateway

import (
	"io"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/upgate/upgate/config"
)

// TestDefenderSuccessForgivesOnlyItsName pins the defender's rule: a
// success forgets the address's failures for that user name and no other.
func TestDefenderSuccessForgivesOnlyItsName(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	d := newDefender(config.Defender{Enabled: true, MaxFailures: 10, Window: time.Minute, BanTime: 15 * time.Minute},
		slog.New(slog.NewTextHandler(io.Discard, nil)), newMetrics(), func() time.Time { return now })
	ip := netip.MustParseAddr("192.0.2.7")

	// Nine guesses at bob, one good login as alice, again: the tenth
	// guess bans.
	for i := range 9 {
		d.LoginFailed(ip, "bob")
		now = now.Add(time.Second)
		if d.Banned(ip) {
			t.Fatalf("banned after %d failures", i+1)
		}
	}
	d.LoginSucceeded(ip, "alice")
	d.LoginFailed(ip, "bob")
	if !d.Banned(ip) {
		t.Fatal("nine guesses at bob, a login as alice and a tenth guess: not banned")
	}

	// Typos in one's own password are forgiven by one's own success.
	other := netip.MustParseAddr("192.0.2.8")
	for range 20 {
		for range 3 {
			d.LoginFailed(other, "alice")
		}
		d.LoginSucceeded(other, "alice")
		now = now.Add(time.Second)
	}
	if d.Banned(other) {
		t.Fatal("alice's own typos, each round ended by her login, banned her address")
	}

	// Mixed: bob's failures survive alice's success, alice's do not.
	third := netip.MustParseAddr("192.0.2.9")
	for range 4 {
		d.LoginFailed(third, "alice")
		d.LoginFailed(third, "bob")
	}
	d.LoginSucceeded(third, "alice")
	if got := len(d.failures[third]); got != 4 {
		t.Fatalf("after alice's success, %d failures remembered, want bob's 4", got)
	}
	for _, f := range d.failures[third] {
		if f.user != "bob" {
			t.Fatalf("a failure for %q survived alice's success", f.user)
		}
	}

	// Failures older than the window do not count.
	now = now.Add(2 * time.Minute)
	for range 9 {
		d.LoginFailed(third, "bob")
	}
	if d.Banned(third) {
		t.Fatal("failures outside the window counted")
	}
}
