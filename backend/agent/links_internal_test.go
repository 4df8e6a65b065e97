package agent

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
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

// TestDirentTypes: direntTypes gives every entry but "." and ".." once,
// with the kind os.ReadDir gives, over many getdents calls (names long
// enough that 600 entries take several 8 KiB reads), and stops at fn's
// first error.
func TestDirentTypes(t *testing.T) {
	dir := t.TempDir()
	want := map[string]uint8{}
	for i := range 600 {
		name := fmt.Sprintf("%03d-%s", i, strings.Repeat("n", 60))
		p := filepath.Join(dir, name)
		var err error
		switch i % 3 {
		case 0:
			err, want[name] = os.WriteFile(p, nil, 0o644), unix.DT_REG
		case 1:
			err, want[name] = os.Mkdir(p, 0o755), unix.DT_DIR
		case 2:
			err, want[name] = os.Symlink("target", p), unix.DT_LNK
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := map[string]uint8{}
	if err := direntTypes(f, func(name string, typ uint8) error {
		if _, dup := got[name]; dup {
			t.Errorf("%q given twice", name)
		}
		got[name] = typ
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(got, want) {
		t.Fatalf("got %d entries, want %d; first differences: %v", len(got), len(want), firstDiffs(got, want))
	}

	stop := errors.New("stop")
	f2, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer f2.Close()
	n := 0
	if err := direntTypes(f2, func(string, uint8) error { n++; return stop }); !errors.Is(err, stop) || n != 1 {
		t.Fatalf("fn's error: %v after %d calls, want stop after 1", err, n)
	}
}

// firstDiffs lists up to five names whose kinds differ in got and want.
func firstDiffs(got, want map[string]uint8) []string {
	var out []string
	for name, typ := range want {
		if g, ok := got[name]; !ok || g != typ {
			out = append(out, fmt.Sprintf("%s: %d, want %d", name, g, typ))
		}
		if len(out) == 5 {
			break
		}
	}
	return out
}
