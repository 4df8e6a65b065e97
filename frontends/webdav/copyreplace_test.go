package webdav_test

import (
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/afero"

	"github.com/upgate/upgate/backend/fstest"
	"github.com/upgate/upgate/backend/memfs"
	"github.com/upgate/upgate/config"
	"github.com/upgate/upgate/internal/gwtest"
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
	m := memfs.New(memfs.Options{})
	e := gwtest.StartFS(t, func(cfg *config.Config) {
		cfg.Listen = config.Listen{WebDAV: "127.0.0.1:0"}
	}, func(string) afero.Fs { return m })
	addr := e.Srv.Addr("webdav").String()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	env := &env{Env: e, Addr: addr, URL: "http://" + addr, Client: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
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
		// The copy is done, but what it replaces cannot be removed (a
		// directory in it its user may not search): undone, and said.
		{"a collection onto a collection that cannot be removed", memfs.Fault{Op: memfs.OpRemove, Path: "/.upgate-replaced-*", Err: syscall.EACCES}, "/src", "/dst", http.StatusForbidden},
		{"a file onto a collection that cannot be removed", memfs.Fault{Op: memfs.OpRemove, Path: "/.upgate-replaced-*", Err: syscall.EACCES}, "/file", "/dst", http.StatusForbidden},
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
