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

// TestActive: Registry.Active counts logged-in client sessions whose
// filesystem worked within the window or has a path operation in
// progress, never data connections on their own, keepalives or a transfer
// held open in silence, and follows the gateway's clock.
func TestActive(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	r := newRegistry(slog.New(slog.DiscardHandler), Limits{}, func() time.Time { return now })
	add := func(user string, parent *Session) *Session {
		t.Helper()
		s := &Session{Protocol: "ftp", Remote: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, Start: now, Parent: parent, r: r, log: r.log}
		if _, err := r.add(s); err != nil {
			t.Fatal(err)
		}
		if user != "" {
			s.user.Store(&user)
		}
		return s
	}
	const window = time.Second
	a, b, anon := add("alice", nil), add("bob", nil), add("", nil)
	if got := r.Active(window); got != 0 {
		t.Fatalf("three sessions just connected, none at work: Active %d, want 0", got)
	}
	a.Touch() // a NOOP, a keepalive
	end := b.BeginTransfer()
	_ = anon.work("stat", "/") // no login: never counts
	if got := r.Active(window); got != 0 {
		t.Fatalf("a touched, b holding a file, no work: Active %d, want 0", got)
	}
	_ = a.work("stat", "/x")
	data := add("bob", b) // b's data connection, logged in as its session is
	_ = data.work("write", "/f")
	if got := r.Active(window); got != 1 {
		t.Fatalf("a worked, b's data connection worked on its own: Active %d, want 1", got)
	}
	_ = b.work("write", "/f") // what b's file writes do, whichever connection brings the bytes
	if got := r.Active(window); got != 2 {
		t.Fatalf("a and b worked: Active %d, want 2", got)
	}
	now = now.Add(window + time.Millisecond)
	if got := r.Active(window); got != 0 {
		t.Fatalf("the window passed, b's file still open: Active %d, want 0", got)
	}
	end()
	done := a.pathOp() // a hash or a recursive remove, longer than the window
	now = now.Add(10 * window)
	if got := r.Active(window); got != 1 {
		t.Fatalf("a path operation in progress for 10 windows: Active %d, want 1", got)
	}
	done()
	if got := r.Active(window); got != 0 {
		t.Fatalf("the path operation over: Active %d, want 0", got)
	}
}
