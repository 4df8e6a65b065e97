package agentpb

import (
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestWireErrnos: each errno's wire name is its C name, and both ways of
// the table agree; an errno not in it does not cross the wire.
func TestWireErrnos(t *testing.T) {
	seen := map[string]bool{}
	for _, w := range wireErrnos {
		if want := unix.ErrnoName(w.errno); w.name != want {
			t.Errorf("errno %d is named %q on the wire, want its C name %q", int(w.errno), w.name, want)
		}
		if seen[w.name] {
			t.Errorf("%s is in the table twice", w.name)
		}
		seen[w.name] = true
		if got := ErrnoName(w.errno); got != w.name {
			t.Errorf("ErrnoName(%s) = %q", w.name, got)
		}
		if got, ok := Errno(w.name); !ok || got != w.errno {
			t.Errorf("Errno(%q) = %d, %v; want %d", w.name, int(got), ok, int(w.errno))
		}
	}
	if got := ErrnoName(syscall.ECHILD); got != "" {
		t.Errorf("ErrnoName(ECHILD) = %q, want none", got)
	}
	if _, ok := Errno("ECHILD"); ok {
		t.Error("Errno(ECHILD) found an errno that does not cross the wire")
	}
}
