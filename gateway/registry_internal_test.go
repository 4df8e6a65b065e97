package gateway

import (
	"log/slog"
	"net"
	"testing"
	"time"
)

// TestPeakOpenFiles: a session's peak of open files is the most open at
// once, whatever order they close in; closing one twice counts once.
func TestPeakOpenFiles(t *testing.T) {
	var s Session
	a, b := s.fileOpened(), s.fileOpened()
	a()
	a()
	c, d := s.fileOpened(), s.fileOpened()
	if got := s.peakFiles.Load(); got != 3 {
		t.Fatalf("peak %d after 2, 1, 3 open, want 3", got)
	}
	b()
	c()
	d()
	if open, peak := s.openFiles.Load(), s.peakFiles.Load(); open != 0 || peak != 3 {
		t.Fatalf("open %d, peak %d after all closed, want 0 and 3", open, peak)
	}
}

// TestActive: Registry.Active counts client sessions that are at work (a
// transfer open, or a request or their start within the window), never
// data connections on their own, and follows the gateway's clock.
func TestActive(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	r := newRegistry(slog.New(slog.DiscardHandler), Limits{}, func() time.Time { return now })
	add := func(parent *Session) *Session {
		t.Helper()
		s := &Session{Protocol: "ftp", Remote: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, Start: now, Parent: parent, r: r, log: r.log}
		if _, err := r.add(s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	const window = time.Second
	a, b := add(nil), add(nil)
	if got := r.Active(window); got != 2 {
		t.Fatalf("two sessions just started: Active %d, want 2", got)
	}
	now = now.Add(2 * window)
	if got := r.Active(window); got != 0 {
		t.Fatalf("two silent sessions: Active %d, want 0", got)
	}
	a.Touch()
	// A data connection never counts on its own; its start alone does not
	// make its session busy (the PASV and STOR before it did).
	data := add(b)
	if got := r.Active(window); got != 1 {
		t.Fatalf("a touched, b silent with a new data connection: Active %d, want 1", got)
	}
	now = now.Add(2 * window)
	end := b.BeginTransfer()
	if got := r.Active(window); got != 1 {
		t.Fatalf("b transferring, a silent: Active %d, want 1", got)
	}
	end()
	data.Touch() // a data connection's bytes touch its control session
	if got := r.Active(window); got != 1 {
		t.Fatalf("b's data connection touched: Active %d, want 1", got)
	}
	now = now.Add(2 * window)
	if got := r.Active(window); got != 0 {
		t.Fatalf("all silent again: Active %d, want 0", got)
	}
}
