package webdav_test

import (
	"encoding/xml"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/spf13/afero"

	"github.com/upgate/upgate/backend"
	"github.com/upgate/upgate/backend/fstest"
	"github.com/upgate/upgate/backend/memfs"
	"github.com/upgate/upgate/config"
	"github.com/upgate/upgate/internal/gwtest"
)

// TestDeleteThatFailsPartWay: a DELETE of a collection whose removal
// fails part way (here the filesystem removes /pd/a and /pd/z, then is
// refused the rest, as rm -r in a directory its user may not write) has
// removed what it removed, and answers 207 Multi-Status naming what it
// left, each 403 (RFC 4918 9.6.1), as Apache's mod_dav does, not a bare
// 403 for the collection. The locks of what went go; a lock on what is
// left stays and still guards it.
func TestDeleteThatFailsPartWay(t *testing.T) {
	env, m := startMem(t)
	for _, d := range []string{"/pd", "/pd/sub", "/pd/sub/deep"} {
		if err := m.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"/pd/a", "/pd/z", "/pd/sub/f", "/pd/sub/deep/g", "/lone"} {
		fstest.WriteFile(t, m, f, []byte("x"))
	}
	kept := env.lock(t, "alice", "/pd/sub/f", "0")
	gone := env.lock(t, "alice", "/pd/z", "0")
	m.Inject(memfs.Fault{Op: memfs.OpRemove, Path: "/pd", Nth: 1, Func: func(memfs.Op, string) error {
		for _, p := range []string{"/pd/a", "/pd/z"} {
			if err := m.Remove(p); err != nil {
				return err
			}
		}
		return syscall.EACCES
	}})
	r := env.do(t, "alice", "DELETE", "/pd", nil, "If", "<"+env.URL+"/pd/sub/f> (<"+kept+">) <"+env.URL+"/pd/z> (<"+gone+">)")
	if r.Status != http.StatusMultiStatus {
		t.Fatalf("DELETE /pd: %d, want 207:\n%s", r.Status, r.Body)
	}
	var ms struct {
		Responses []struct {
			Href   string `xml:"href"`
			Status string `xml:"status"`
		} `xml:"response"`
	}
	if err := xml.Unmarshal([]byte(r.Body), &ms); err != nil {
		t.Fatalf("207 body: %v\n%s", err, r.Body)
	}
	var got []string
	for _, resp := range ms.Responses {
		got = append(got, resp.Href+" "+resp.Status)
	}
	want := []string{"/pd HTTP/1.1 403 Forbidden", "/pd/sub HTTP/1.1 403 Forbidden", "/pd/sub/deep HTTP/1.1 403 Forbidden",
		"/pd/sub/deep/g HTTP/1.1 403 Forbidden", "/pd/sub/f HTTP/1.1 403 Forbidden"}
	if !slices.Equal(got, want) {
		t.Errorf("207 names %q, want %q", got, want)
	}
	for p, exists := range map[string]bool{"/pd/a": false, "/pd/z": false, "/pd/sub/f": true, "/pd/sub/deep/g": true, "/lone": true} {
		if _, err := m.Stat(p); (err == nil) != exists {
			t.Errorf("%s after the DELETE: %v, want it there: %v", p, err, exists)
		}
	}
	// /pd/z's lock went with it: a new file there needs no token. The
	// one on /pd/sub/f stays.
	env.do(t, "alice", "PUT", "/pd/z", nil).want(t, "PUT /pd/z", http.StatusCreated)
	env.do(t, "alice", "PUT", "/pd/sub/f", nil).want(t, "PUT /pd/sub/f without its lock's token", http.StatusLocked)

	// Without the fault the same DELETE removes it all: 204, as before.
	env.do(t, "alice", "DELETE", "/pd", nil, "If", "<"+env.URL+"/pd/sub/f> (<"+kept+">)").want(t, "DELETE /pd", http.StatusNoContent)
	// A file, or a collection whose removal changed nothing, still
	// answers its error alone.
	m.Inject(memfs.Fault{Op: memfs.OpRemove, Path: "/lone", Err: syscall.EACCES})
	env.do(t, "alice", "DELETE", "/lone", nil).want(t, "DELETE /lone", http.StatusForbidden, "permission denied")
}

// partTree makes /pd holding /pd/a and /pd/sub/f, under base.
func partTree(t *testing.T, m *memfs.FS, base string) {
	t.Helper()
	for _, d := range []string{base + "pd", base + "pd/sub"} {
		if err := m.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{base + "pd/a", base + "pd/sub/f"} {
		fstest.WriteFile(t, m, f, []byte("x"))
	}
}

// removesPart is a fault on the RemoveAll of base+"pd" that removes
// base+"pd/a" and then fails with err, as the agent's rm -r does.
func removesPart(m *memfs.FS, base string, err error) memfs.Fault {
	return memfs.Fault{Op: memfs.OpRemove, Path: base + "pd", Nth: 1, Func: func(memfs.Op, string) error {
		if rerr := m.Remove(base + "pd/a"); rerr != nil {
			return rerr
		}
		return err
	}}
}

// TestDeleteThatFailsPartWayEdges are the cases a review found around
// the 207 of a DELETE that failed part way: an error that is not a
// member's refusal still answers alone (a 503 the client retries, a
// read-only tree's 403 that says why); a lock on what stays below a
// directory that cannot be listed still holds; locks on the collection
// and above it still guard what is left; a collection left with more
// than the 207 may name answers its error alone.
func TestDeleteThatFailsPartWayEdges(t *testing.T) {
	t.Run("the agent gone part way: 503", func(t *testing.T) {
		env, m := startMem(t)
		partTree(t, m, "/")
		m.Inject(removesPart(m, "/", fmt.Errorf("agent web for user alice unreachable: %w", backend.ErrUnavailable)))
		r := env.do(t, "alice", "DELETE", "/pd", nil)
		if r.Status != http.StatusServiceUnavailable || r.Header.Get("Retry-After") == "" {
			t.Fatalf("DELETE /pd: %d Retry-After=%q, want 503 with Retry-After:\n%s", r.Status, r.Header.Get("Retry-After"), r.Body)
		}
	})
	t.Run("a lock below a directory that cannot be listed", func(t *testing.T) {
		env, m := startMem(t)
		partTree(t, m, "/")
		tok := env.lock(t, "alice", "/pd/sub/f", "0")
		m.Inject(removesPart(m, "/", syscall.EACCES))
		in := m.Inject(memfs.Fault{Op: memfs.OpReaddir, Path: "/pd/sub", Err: syscall.EACCES})
		env.do(t, "alice", "DELETE", "/pd", nil, "If", "<"+env.URL+"/pd/sub/f> (<"+tok+">)").want(t, "DELETE /pd", http.StatusMultiStatus, "permission denied")
		in.Remove()
		env.do(t, "alice", "PUT", "/pd/sub/f", strings.NewReader("overwritten")).want(t, "PUT /pd/sub/f without its lock's token", http.StatusLocked)
	})
	t.Run("read-only: 403 says why", func(t *testing.T) {
		m := memfs.New(memfs.Options{})
		partTree(t, m, "/")
		e := gwtest.StartFS(t, func(cfg *config.Config) {
			cfg.Listen = config.Listen{WebDAV: "127.0.0.1:0"}
		}, func(string) afero.Fs { return backend.ReadOnly(m) })
		env := &env{Env: e, URL: "http://" + e.Srv.Addr("webdav").String(), Client: http.DefaultClient}
		env.do(t, "alice", "DELETE", "/pd", nil).want(t, "read-only DELETE /pd", http.StatusForbidden, "read-only")
	})
	for _, root := range []string{"/pd", "/top"} {
		t.Run("a depth-infinity lock on "+root, func(t *testing.T) {
			env, m := startMem(t)
			base := "/"
			if root == "/top" {
				if err := m.Mkdir("/top", 0o755); err != nil {
					t.Fatal(err)
				}
				base = "/top/"
			}
			partTree(t, m, base)
			tok := env.lock(t, "alice", root, "infinity")
			m.Inject(removesPart(m, base, syscall.EACCES))
			env.do(t, "alice", "DELETE", base+"pd", nil, "If", "(<"+tok+">)").want(t, "DELETE", http.StatusMultiStatus)
			env.do(t, "alice", "PUT", base+"pd/sub/new", strings.NewReader("x")).want(t, "PUT without its token", http.StatusLocked)
			env.do(t, "alice", "PUT", base+"pd/sub/new", strings.NewReader("x"), "If", "(<"+tok+">)").want(t, "PUT with its token", http.StatusCreated)
		})
	}
	t.Run("more left than a 207 names", func(t *testing.T) {
		env, m := startMem(t)
		partTree(t, m, "/")
		for i := range 1500 {
			fstest.WriteFile(t, m, fmt.Sprintf("/pd/sub/g%04d", i), nil)
		}
		m.Inject(removesPart(m, "/", syscall.EACCES))
		env.do(t, "alice", "DELETE", "/pd", nil).want(t, "DELETE /pd", http.StatusForbidden, "permission denied")
	})
}
