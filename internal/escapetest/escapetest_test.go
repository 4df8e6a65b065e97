package escapetest

import (
	"os"
	"path/filepath"
	"testing"
)

// TestEscaped: a fresh layout has nothing outside alice's directory; a
// file through her link out of it, or in bob's directory, is found; Reset
// leaves her links and a fresh seed.
func TestEscaped(t *testing.T) {
	l := New(t)
	if what, err := l.Escaped(); err != nil || what != "" {
		t.Fatalf("fresh layout: %q %v", what, err)
	}
	for _, p := range []string{filepath.Join(l.Alice, "esc", "x"), filepath.Join(l.Alice, "tobob", "y")} {
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if what, err := l.Escaped(); err != nil || what == "" {
			t.Errorf("after %s: nothing found (%v)", p, err)
		}
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(l.Alice, "d"), 0o500); err != nil {
		t.Fatal(err)
	}
	l.Reset(t)
	got, err := names(l.Alice)
	if err != nil || len(got) != 3 || got[0] != "esc" || got[1] != "seed" || got[2] != "tobob" {
		t.Errorf("after Reset alice holds %q (%v), want esc, seed, tobob", got, err)
	}
}
