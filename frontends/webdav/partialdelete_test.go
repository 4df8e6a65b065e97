package webdav_test

import (
	"encoding/xml"
	"net/http"
	"slices"
	"syscall"
	"testing"

	"github.com/upgate/upgate/backend/fstest"
	"github.com/upgate/upgate/backend/memfs"
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
