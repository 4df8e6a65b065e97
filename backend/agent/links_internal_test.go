package agent

import (
	"testing"
	"time"
)

// TestLinkLocksReach: a scoped call's link lock keeps out calls in the
// same top-level directory (nested scopes included) and whole-root calls,
// and no one else: alice moving a large tree up does not hold up bob.
func TestLinkLocksReach(t *testing.T) {
	var l linkLocks
	taken := func(c *scope) bool {
		done := make(chan func())
		go func() { done <- l.lock(c) }()
		select {
		case unlock := <-done:
			unlock()
			return true
		case <-time.After(100 * time.Millisecond):
			// Blocked: let it through once the holder lets go, so
			// that nothing is left waiting.
			go func() { (<-done)() }()
			return false
		}
	}
	alice := &scope{prefix: "alice/"}
	unlock := l.lock(alice)
	for _, tc := range []struct {
		prefix string
		want   bool
	}{
		{"bob/", true}, {"alicex/", true}, {"alice/", false}, {"alice/sub/", false}, {"", false},
	} {
		if got := taken(&scope{prefix: tc.prefix}); got != tc.want {
			t.Errorf("while alice/ holds it, lock(%q) taken: %v, want %v", tc.prefix, got, tc.want)
		}
	}
	unlock()
	root := l.lock(&scope{})
	if taken(&scope{prefix: "bob/"}) {
		t.Error("a scoped call took its lock while a whole-root call held the lock")
	}
	root()
	if !taken(&scope{prefix: "bob/"}) {
		t.Error("bob/ could not take its lock once everything was let go")
	}
}
