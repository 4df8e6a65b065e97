// Package escapetest lays out an agent root for tests that throw hostile
// input at a frontend (the fuzz tests), and checks afterwards that
// nothing escaped the fuzzing user's directory:
//
//	parent/
//	  agent/          the agent's root
//	    alice/        the fuzzing user's root
//	      seed        a file each input may open, rename, remove
//	      esc -> ../../outside
//	      tobob -> ../bob
//	    bob/          must stay empty
//	  outside/        must stay empty
package escapetest

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// Layout is the tree above, under Parent.
type Layout struct {
	Parent, Agent, Alice, Bob, Outside string
}

// New makes the layout in a temporary directory of tb.
func New(tb testing.TB) *Layout {
	tb.Helper()
	parent := tb.TempDir()
	l := &Layout{
		Parent:  parent,
		Agent:   filepath.Join(parent, "agent"),
		Alice:   filepath.Join(parent, "agent", "alice"),
		Bob:     filepath.Join(parent, "agent", "bob"),
		Outside: filepath.Join(parent, "outside"),
	}
	for _, d := range []string{l.Alice, l.Bob, l.Outside} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	for name, target := range map[string]string{"esc": "../../outside", "tobob": "../bob"} {
		if err := os.Symlink(target, filepath.Join(l.Alice, name)); err != nil {
			tb.Fatal(err)
		}
	}
	return l
}

// names lists the entries of dir.
func names(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out, nil
}

// Escaped says what appeared outside alice's directory, or "".
func (l *Layout) Escaped() (string, error) {
	for dir, want := range map[string][]string{
		l.Parent:  {"agent", "outside"},
		l.Agent:   {"alice", "bob"},
		l.Bob:     nil,
		l.Outside: nil,
	} {
		got, err := names(dir)
		if err != nil {
			return "", err
		}
		if !slices.Equal(got, want) {
			return fmt.Sprintf("%s holds %q, want %q", dir, got, want), nil
		}
	}
	return "", nil
}

// Reset empties alice's directory down to its links and a fresh seed
// file, and makes it and what it held writable again first.
func (l *Layout) Reset(tb testing.TB) {
	tb.Helper()
	if err := os.Chmod(l.Alice, 0o755); err != nil {
		tb.Fatal(err)
	}
	got, err := names(l.Alice)
	if err != nil {
		tb.Fatal(err)
	}
	for _, name := range got {
		if name == "esc" || name == "tobob" {
			continue
		}
		p := filepath.Join(l.Alice, name)
		_ = os.Chmod(p, 0o755)
		if err := os.RemoveAll(p); err != nil {
			tb.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(l.Alice, "seed"), []byte("seed"), 0o644); err != nil {
		tb.Fatal(err)
	}
}
