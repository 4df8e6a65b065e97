package sftp

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/spf13/afero"

	"github.com/upgate/upgate/backend/memfs"
)

// matchName reports whether name matches the pattern part p.
func matchName(p, name string) bool { return compilePart(p).match(name) }

// TestMatchName checks the pattern matching of a shell's pathname
// expansion, fnmatch(3) with FNM_PERIOD, case by case.
func TestMatchName(t *testing.T) {
	for _, tc := range []struct {
		pattern, name string
		want          bool
	}{
		{"*", "a", true}, {"*", ".a", false}, {".*", ".a", true}, {"[.]a", ".a", false}, {"?a", ".a", false},
		{"a*b", "ab", true}, {"a*b", "axxb", true}, {"a*b", "axxbc", false}, {"*a*a*", "banana", true},
		{"a?c", "abc", true}, {"a?c", "ac", false},
		{"[abc]", "b", true}, {"[abc]", "d", false}, {"[!abc]", "d", true}, {"[!abc]", "a", false},
		{"[^a]1", "b1", true}, {"[^a]1", "a1", false},
		{"[]q]", "]", true}, {"[]q]", "q", true}, {"[]q]", "x", false}, {"[!]]", "]", false}, {"[!]]", "x", true},
		{"a[-_]1", "a-1", true}, {"a[-_]1", "a_1", true}, {"a[_-]1", "a-1", true}, {"[a-c]", "b", true}, {"[a-c]", "-", false},
		{"[[:digit:]]x", "7x", true}, {"[[:digit:]]x", "ax", false}, {"[![:alpha:]]", "1", true}, {"[[:upper:][:digit:]]", "Q", true},
		{"[[:nope:]]", "n", false}, {"[[:nope:]]", "[[:nope:]]", false},
		{"a[b*", "a[bcd", true}, {"a[b", "a[b", true}, {"[", "[", true},
		{`\*`, "*", true}, {`\*`, "x", false}, {`a\[b]`, "a[b]", true}, {`[\]]`, "]", true}, {`[a\-z]`, "b", false}, {`[a\-z]`, "-", true},
		{"", "", true}, {"*", "", true},
	} {
		if got := matchName(tc.pattern, tc.name); got != tc.want {
			t.Errorf("matchName(%q, %q) = %v, want %v", tc.pattern, tc.name, got, tc.want)
		}
	}
}

// TestExpandLikeSh expands words over a tree as dash (Debian's /bin/sh,
// under which sshd runs scp) expands them: interop/differential's scp
// steps check several of these against sshd itself.
func TestExpandLikeSh(t *testing.T) {
	fsys := memfs.New(memfs.Options{})
	for _, p := range []string{"/neg/a1", "/neg/b1", "/neg/!1", "/rb/]", "/rb/q", "/dash/a-1", "/dash/a_1",
		"/gm1/x", "/gm2/y", "/gm3", "/h/.dot", "/h/vis", "/st*r", "/stXr", "/d1/f", "/d2/f"} {
		_ = fsys.MkdirAll(path.Dir(p), 0o755)
		if err := afero.WriteFile(fsys, p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 150 {
		if err := fsys.MkdirAll(fmt.Sprintf("/many/d%03d", i), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := afero.WriteFile(fsys, "/many/d007/x", nil, 0o644); err != nil {
		t.Fatal(err)
	}
	g := &globber{ctx: context.Background(), fs: fsys}
	for line, want := range map[string][]string{
		"many/*/x":    {"many/d007/x"},
		"neg/[!a]1":   {"neg/!1", "neg/b1"},
		"rb/[]q]":     {"rb/]", "rb/q"},
		"dash/a[-_]1": {"dash/a-1", "dash/a_1"},
		"gm*/x":       {"gm1/x"},
		"gm*":         {"gm1", "gm2", "gm3"},
		"gm*/":        {"gm1/", "gm2/"},
		"h/*":         {"h/vis"},
		"h/.*":        {"h/.dot"},
		`st\*r`:       {"st*r"},
		`'st*r'`:      {"st*r"},
		"st*r":        {"st*r", "stXr"},
		"/d?/f":       {"/d1/f", "/d2/f"},
		"~/d*/f":      {"/d1/f", "/d2/f"},
		"*.nomatch":   {"*.nomatch"},
		"gm*/nomatch": {"gm*/nomatch"},
		"'[x'*":       {"[x*"},
		"gm*/.":       {"gm1/.", "gm2/."},
		"d?/..":       {"d1/..", "d2/.."},
		"gm?//":       {"gm1//", "gm2//"},
		"gm1/../d?":   {"gm1/../d1", "gm1/../d2"},
		"gm3/../d?":   {"gm3/../d?"},
	} {
		ws, err := splitWords(line)
		if err != nil || len(ws) != 1 {
			t.Fatalf("splitWords(%q) = %v, %v", line, ws, err)
		}
		got, err := g.expand(ws[0])
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("expand(%q) = %q, %v; sh gives %q", line, got, err, want)
		}
	}
}

// TestExpandBudget: one command's words share one budget of names matched
// and directories read, so that a short command of many patterns cannot
// make the gateway list a directory thousands of times or hold millions
// of names; an ended context stops the expansion.
func TestExpandBudget(t *testing.T) {
	fsys := memfs.New(memfs.Options{})
	for i := range 200 {
		if err := afero.WriteFile(fsys, fmt.Sprintf("/f%03d", i), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var reads atomic.Int64 // directory reads: counted, never failed
	fsys.Inject(memfs.Fault{Op: memfs.OpReaddir, Func: func(memfs.Op, string) error { reads.Add(1); return nil }})
	words := func(n int, w string) []word {
		ws, err := splitWords(w)
		if err != nil {
			t.Fatal(err)
		}
		return slices.Repeat(ws, n)
	}
	g := &globber{ctx: context.Background(), fs: fsys}
	if got, err := g.expandAll(words(50, "*")); err != nil || len(got) != 50*200 {
		t.Fatalf("50 words of 200 names: %d names, %v", len(got), err)
	}
	g = &globber{ctx: context.Background(), fs: fsys}
	if _, err := g.expandAll(words(51, "*")); !errors.Is(err, errGlobTooMuch) {
		t.Errorf("51 words of 200 names: %v, want errGlobTooMuch", err)
	}
	before := reads.Load()
	g = &globber{ctx: context.Background(), fs: fsys}
	if _, err := g.expandAll(words(5000, "*.nomatch")); !errors.Is(err, errGlobTooMuch) {
		t.Errorf("5,000 words that match nothing: %v, want errGlobTooMuch", err)
	}
	if n := reads.Load() - before; n == 0 || n > maxGlobCalls {
		t.Errorf("%d directory reads, want 1 to %d", n, maxGlobCalls)
	}
	// A long pattern part is refused at once; a costly one within its
	// length spends the matching budget, not minutes (each name is
	// matched in at most its length times the pattern's).
	for i := range 2000 {
		if err := afero.WriteFile(fsys, fmt.Sprintf("/%s%04d", strings.Repeat("[", 240), i), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	g = &globber{ctx: context.Background(), fs: fsys}
	if _, err := g.expandAll(words(1, "*"+strings.Repeat("[", maxGlobPart)+"x")); !errors.Is(err, errGlobTooMuch) {
		t.Errorf("a pattern part of %d bytes: %v, want errGlobTooMuch", maxGlobPart+2, err)
	}
	g = &globber{ctx: context.Background(), fs: fsys}
	if _, err := g.expandAll(words(1, "*"+strings.Repeat("[", 1000)+"x")); !errors.Is(err, errGlobTooMuch) {
		t.Errorf("2,000 names against a costly pattern: %v, want errGlobTooMuch", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	g = &globber{ctx: ctx, fs: fsys}
	if _, err := g.expandAll(words(1, "*")); !errors.Is(err, context.Canceled) {
		t.Errorf("after the context ended: %v", err)
	}
}
