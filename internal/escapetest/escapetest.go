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
	"strings"
	"testing"
	"time"
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

// WaitNoTemps fails tb unless, within bound, no file under alice's
// directory has a name starting with prefix (an agent's upload temp
// files: agent.TempPrefix). An upload a client abandoned is aborted when
// its connection or handle ends, which may come a little after the
// client saw its last reply.
func (l *Layout) WaitNoTemps(tb testing.TB, prefix string, bound time.Duration) {
	tb.Helper()
	var temps []string
	deadline := time.Now().Add(bound)
	for {
		temps = temps[:0]
		_ = filepath.WalkDir(l.Alice, func(p string, d os.DirEntry, err error) error {
			if err == nil && strings.HasPrefix(d.Name(), prefix) {
				temps = append(temps, p)
			}
			return nil
		})
		if len(temps) == 0 {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("temp files left %v after the client was done: %q", bound, temps)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
