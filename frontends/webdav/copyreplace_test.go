package webdav_test

import (
	"net/http"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/spf13/afero"

	"github.com/upgate/upgate/backend/fstest"
	"github.com/upgate/upgate/backend/memfs"
)

// A COPY with Overwrite: T that fails part way leaves its destination as
// it was: x/net/webdav (and Apache's mod_dav) delete the destination
// first and then copy, so a collection's COPY that met a member it could
// not read had deleted what it was to replace (found by server's
// TestProtocolsSeeOneAnother: COPY x -> a, x mode 0444, answered 403 and
// left a empty). The destination now waits aside until the copy is done,
// and comes back when it fails; a collection the failed copy made is
// removed, so that no part of a tree stays; a COPY that succeeds
// replaces the destination whole, and nothing is left aside.
func TestCopyThatFailsKeepsItsDestination(t *testing.T) {
	env, m := startMem(t)
	for _, d := range []string{"/src", "/src/sub", "/dst", "/dst/old"} {
		if err := m.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	fstest.WriteFile(t, m, "/src/a", []byte("new a"))
	fstest.WriteFile(t, m, "/src/sub/b", []byte("new b"))
	fstest.WriteFile(t, m, "/dst/keep", []byte("the destination's"))
	fstest.WriteFile(t, m, "/dst/old/deep", []byte("deep"))
	fstest.WriteFile(t, m, "/file", []byte("a file"))

	for _, tc := range []struct {
		name     string
		fault    memfs.Fault
		src, dst string
		status   int
	}{
		{"a collection onto a collection, a member's listing refused", memfs.Fault{Op: memfs.OpReaddir, Path: "/src/sub", Err: syscall.EACCES}, "/src", "/dst", http.StatusForbidden},
		{"a collection onto a collection, a member's upload fails", memfs.Fault{Op: memfs.OpClose, Path: "/dst/sub/b", Err: syscall.EIO}, "/src", "/dst", http.StatusInternalServerError},
		{"a collection onto a collection, the disk full", memfs.Fault{Op: memfs.OpWrite, Path: "/dst/a", Err: syscall.ENOSPC}, "/src", "/dst", 507},
		{"a file onto a collection, its upload fails", memfs.Fault{Op: memfs.OpClose, Path: "/dst", Err: syscall.EIO}, "/file", "/dst", http.StatusInternalServerError},
		{"a collection onto a file, a member's listing refused", memfs.Fault{Op: memfs.OpReaddir, Path: "/src/sub", Err: syscall.EACCES}, "/src", "/file", http.StatusForbidden},
		{"a collection to a new name, a member's listing refused", memfs.Fault{Op: memfs.OpReaddir, Path: "/src/sub", Err: syscall.EACCES}, "/src", "/new", http.StatusForbidden},
		{"a collection to a new name, its own listing refused", memfs.Fault{Op: memfs.OpReaddir, Path: "/src", Err: syscall.EACCES}, "/src", "/new", http.StatusForbidden},
		// What it replaces holds a directory its user may not list, so
		// could not remove whole: refused before anything changes.
		{"a collection onto a collection holding one its user may not list", memfs.Fault{Op: memfs.OpReaddir, Path: "/dst/old", Err: syscall.EACCES}, "/src", "/dst", http.StatusForbidden},
		{"a file onto a collection holding one its user may not list", memfs.Fault{Op: memfs.OpReaddir, Path: "/dst/old", Err: syscall.EACCES}, "/file", "/dst", http.StatusForbidden},
	} {
		before := fstest.Tree(t, m)
		inj := m.Inject(tc.fault)
		r := env.do(t, "alice", "COPY", tc.src, nil, "Destination", env.URL+tc.dst, "Overwrite", "T")
		inj.Remove()
		if r.Status != tc.status {
			t.Errorf("COPY %s, %s: status %d, want %d; body:\n%s", tc.src, tc.name, r.Status, tc.status, r.Body)
		}
		if d := fstest.DiffTrees(before, fstest.Tree(t, m)); d != "" {
			t.Errorf("COPY %s -> %s, %s: answered %d and changed the tree:\n%s", tc.src, tc.dst, tc.name, r.Status, d)
		}
	}

	// A MOVE onto such a collection is refused the same way: before,
	// its removal of the old destination after the rename removed what
	// it could, and the move was undone onto what was left.
	before0 := fstest.Tree(t, m)
	inj0 := m.Inject(memfs.Fault{Op: memfs.OpReaddir, Path: "/dst/old", Err: syscall.EACCES})
	env.do(t, "alice", "MOVE", "/src", nil, "Destination", env.URL+"/dst", "Overwrite", "T").want(t, "MOVE onto a collection holding one its user may not list", http.StatusForbidden, "cannot be listed")
	inj0.Remove()
	if d := fstest.DiffTrees(before0, fstest.Tree(t, m)); d != "" {
		t.Errorf("the refused MOVE changed the tree:\n%s", d)
	}

	// A collection's COPY that fails where another session made the
	// destination meanwhile leaves what that session put there (a
	// review: it was removed as if the COPY had made it); the old
	// destination then stays aside, as a MOVE's does when its name is
	// taken again.
	before := fstest.Tree(t, m)
	var raced atomic.Bool
	inj := m.Inject(memfs.Fault{Op: memfs.OpMkdir, Path: "/dst", Func: func(memfs.Op, string) error {
		if raced.CompareAndSwap(false, true) {
			if err := m.Mkdir("/dst", 0o755); err != nil {
				t.Error(err)
			}
			if err := afero.WriteFile(m, "/dst/theirs", []byte("another session's"), 0o644); err != nil {
				t.Error(err)
			}
		}
		return nil
	}})
	r := env.do(t, "alice", "COPY", "/src", nil, "Destination", env.URL+"/dst", "Overwrite", "T")
	inj.Remove()
	if r.Status < 400 {
		t.Errorf("COPY /src onto /dst, made meanwhile by another session: status %d, want a failure", r.Status)
	}
	if got := string(fstest.ReadFile(t, m, "/dst/theirs")); got != "another session's" {
		t.Errorf("the other session's /dst/theirs after the failed COPY: %q", got)
	}
	var aside string
	for p := range fstest.Tree(t, m) {
		if strings.HasPrefix(p, "/.upgate-replaced-") && !strings.Contains(p[1:], "/") {
			aside = p
		}
	}
	if aside == "" {
		t.Fatalf("the old /dst is gone: %v", fstest.Tree(t, m))
	}
	if got := string(fstest.ReadFile(t, m, aside+"/keep")); got != "the destination's" {
		t.Errorf("the old /dst's keep, aside: %q", got)
	}
	// Put things back as they were for what follows.
	if err := m.RemoveAll("/dst"); err != nil {
		t.Fatal(err)
	}
	if err := m.Rename(aside, "/dst"); err != nil {
		t.Fatal(err)
	}
	if d := fstest.DiffTrees(before, fstest.Tree(t, m)); d != "" {
		t.Fatalf("putting /dst back: %s", d)
	}

	// The copy is done, but what it replaced cannot be removed whole
	// (what listable cannot foresee: entries its user may not unlink):
	// the copy stays, and so does the rest of the old destination,
	// aside, logged (a review: undoing the copy lost the copy, and the
	// destination was not whole any more either).
	inj = m.Inject(memfs.Fault{Op: memfs.OpRemove, Path: "/.upgate-replaced-*", Err: syscall.EACCES})
	env.do(t, "alice", "COPY", "/src", nil, "Destination", env.URL+"/dst", "Overwrite", "T").want(t, "COPY /src onto /dst, which cannot be removed", http.StatusNoContent)
	inj.Remove()
	if got := string(fstest.ReadFile(t, m, "/dst/sub/b")); got != "new b" {
		t.Errorf("/dst/sub/b after the COPY: %q", got)
	}
	aside = ""
	for p := range fstest.Tree(t, m) {
		if strings.HasPrefix(p, "/.upgate-replaced-") && !strings.Contains(p[1:], "/") {
			aside = p
		}
	}
	if aside == "" || string(fstest.ReadFile(t, m, aside+"/keep")) != "the destination's" {
		t.Fatalf("the old /dst that could not be removed: aside %q", aside)
	}
	if err := m.RemoveAll(aside); err != nil {
		t.Fatal(err)
	}

	// One that succeeds replaces the destination whole.
	env.do(t, "alice", "COPY", "/src", nil, "Destination", env.URL+"/dst", "Overwrite", "T").want(t, "COPY /src onto /dst", http.StatusNoContent)
	tree := fstest.Tree(t, m)
	for p := range tree {
		if strings.HasPrefix(p, "/dst/") && p != "/dst/a" && p != "/dst/sub" && p != "/dst/sub/b" || strings.Contains(p, ".upgate-") {
			t.Errorf("after COPY /src onto /dst: %s is there (%s)", p, tree[p])
		}
	}
	if got := string(fstest.ReadFile(t, m, "/dst/sub/b")); got != "new b" {
		t.Errorf("/dst/sub/b after the COPY: %q", got)
	}
	env.do(t, "alice", "COPY", "/file", nil, "Destination", env.URL+"/src", "Overwrite", "T").want(t, "COPY /file onto /src", http.StatusNoContent)
	if got := string(fstest.ReadFile(t, m, "/src")); got != "a file" {
		t.Errorf("/src after a file's COPY onto it: %q", got)
	}
	for p := range fstest.Tree(t, m) {
		if strings.Contains(p, ".upgate-") || strings.HasPrefix(p, "/src/") {
			t.Errorf("after COPY /file onto /src: %s is there", p)
		}
	}
}
