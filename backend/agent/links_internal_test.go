package agent

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestLinkLocksReach: a scoped call's link lock keeps out calls in the
// same top-level directory (nested scopes included, in any case of
// letters) and whole-root calls, and no one else: alice moving a large
// tree up does not hold up bob. A scope reached through a link, which
// another path names too, locks everything.
func TestLinkLocksReach(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"alice/sub", "bob", "alicex", "home/carol"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("home/carol", filepath.Join(dir, "carol")); err != nil {
		t.Fatal(err)
	}
	root, err := openRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	scopeOf := func(prefix string) *scope {
		if prefix == "" {
			return &scope{r: root}
		}
		r, err := root.OpenRoot(prefix)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		return &scope{r: r, prefix: prefix, sub: true}
	}
	var l linkLocks
	// taken reports whether c's lock is taken within wait.
	taken := func(c *scope, wait time.Duration) bool {
		done := make(chan func())
		go func() { done <- l.lock(root, c) }()
		select {
		case unlock := <-done:
			unlock()
			return true
		case <-time.After(wait):
			// Blocked: let it through once the holder lets go, so
			// that nothing is left waiting.
			go func() { (<-done)() }()
			return false
		}
	}
	type want struct {
		prefix string
		taken  bool
	}
	// check takes holder's lock and tries the others' in turn. A whole-
	// root call that waits keeps every scoped call waiting behind it
	// (the RWMutex lets no reader pass a waiting writer): try it last.
	check := func(holder string, cases ...want) {
		t.Helper()
		unlock := l.lock(root, scopeOf(holder))
		for _, c := range cases {
			prefix, want := c.prefix, c.taken
			wait := 100 * time.Millisecond // long enough to see a wait
			if want {
				wait = 10 * time.Second // a lock free to take is taken
			}
			if got := taken(scopeOf(prefix), wait); got != want {
				t.Errorf("while %q holds its lock, lock(%q) taken: %v, want %v", holder, prefix, got, want)
			}
		}
		unlock()
	}
	check("alice/", want{"bob/", true}, want{"alicex/", true}, want{"alice/", false}, want{"alice/sub/", false}, want{"", false})
	check("", want{"bob/", false})
	check("carol/", want{"bob/", false}, want{"home/carol/", false}) // through a link: everything
	check("home/carol/", want{"bob/", true}, want{"home/", false})
}
