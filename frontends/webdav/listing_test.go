package webdav_test

import (
	"net/http"
	"strings"
	"syscall"
	"testing"

	"github.com/upgate/upgate/backend/fstest"
	"github.com/upgate/upgate/backend/memfs"
)

// A Depth 1 PROPFIND of a collection whose listing fails (its user may
// read it but not search it, mode 0444, or not read it: the agent's
// readdir answers EACCES) fails (403, or as the error says): x/net/webdav
// answered 207 with the collection alone, which a sync client (rclone
// sync from WebDAV) takes for an empty collection, and deletes on its
// side what it then finds missing. FTP's LIST and SFTP's READDIR of it
// fail too (README, "A directory whose entries cannot be read"); found
// by server's TestProtocolsSeeOneAnother. The collection's Depth 0
// PROPFIND still answers, and a listing that works is still whole.
func TestPropfindOfAnUnlistableCollection(t *testing.T) {
	env, m := startMem(t)
	for _, d := range []string{"/d", "/d/sub", "/ok"} {
		if err := m.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	fstest.WriteFile(t, m, "/d/f", []byte("kept"))
	fstest.WriteFile(t, m, "/ok/g", []byte("listed"))

	for _, errno := range []syscall.Errno{syscall.EACCES, syscall.EIO} {
		inj := m.Inject(memfs.Fault{Op: memfs.OpReaddir, Path: "/d", Err: errno})
		r := env.do(t, "alice", "PROPFIND", "/d", nil, "Depth", "1")
		want := map[syscall.Errno]int{syscall.EACCES: http.StatusForbidden, syscall.EIO: http.StatusInternalServerError}[errno]
		r.want(t, "PROPFIND Depth 1 of a collection whose listing fails with "+errno.Error(), want, "cannot be listed")
		if strings.Contains(r.Body, "multistatus") {
			t.Errorf("the failed listing answered a multistatus:\n%s", r.Body)
		}
		env.do(t, "alice", "PROPFIND", "/d", nil, "Depth", "0").want(t, "PROPFIND Depth 0 of it", http.StatusMultiStatus, "<D:href>/d/</D:href>")
		inj.Remove()
	}
	r := env.do(t, "alice", "PROPFIND", "/d", nil, "Depth", "1")
	r.want(t, "PROPFIND Depth 1 once it lists", http.StatusMultiStatus, "<D:href>/d/f</D:href>", "<D:href>/d/sub/</D:href>")
	env.do(t, "alice", "PROPFIND", "/ok", nil, "Depth", "1").want(t, "PROPFIND Depth 1 of another collection", http.StatusMultiStatus, "<D:href>/ok/g</D:href>")
	env.do(t, "alice", "PROPFIND", "/ok/g", nil, "Depth", "1").want(t, "PROPFIND Depth 1 of a file", http.StatusMultiStatus, "<D:href>/ok/g</D:href>")
}
