package webdav_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/upgate/upgate/backend/fstest"
	"github.com/upgate/upgate/config"
	upwebdav "github.com/upgate/upgate/frontends/webdav"
	"github.com/upgate/upgate/internal/gwtest"
)

func sum(b []byte) string { return fmt.Sprintf("%x", sha256.Sum256(b)) }

// wantFile fails unless name (relative to user's directory) holds data.
func wantFile(t testing.TB, e *env, user, name string, data []byte) {
	t.Helper()
	got, err := os.ReadFile(filepath.Join(e.UserDir(user), name))
	if err != nil {
		t.Fatalf("%s in the agent: %v", name, err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("%s in the agent: %d bytes sha256 %s, want %d bytes sha256 %s", name, len(got), sum(got), len(data), sum(data))
	}
}

// wantMissing fails unless name (relative to user's directory) is absent.
func wantMissing(t testing.TB, e *env, user, name string) {
	t.Helper()
	if _, err := os.Lstat(filepath.Join(e.UserDir(user), name)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("%s in the agent: %v, want it missing", name, err)
	}
}

// wantOnly fails unless user's directory holds exactly names (a temp file
// of an aborted upload would show).
func wantOnly(t testing.TB, e *env, user string, names ...string) {
	t.Helper()
	ents, err := os.ReadDir(e.UserDir(user))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range ents {
		got = append(got, d.Name())
	}
	if strings.Join(got, "\n") != strings.Join(names, "\n") {
		t.Fatalf("%s's directory holds %q, want %q", user, got, names)
	}
}

func TestPutGetRoundTrip(t *testing.T) {
	e := start(t, nil)
	data := fstest.Data(3<<20+12345, 105)
	e.do(t, "alice", "PUT", "/app.php", bytes.NewReader(data)).want(t, "PUT new", http.StatusCreated)
	wantFile(t, e, "alice", "app.php", data)
	fi, _ := os.Stat(filepath.Join(e.UserDir("alice"), "app.php"))
	if fi.Mode().Perm() != 0o644 {
		t.Errorf("new file mode %v, want 0644", fi.Mode().Perm())
	}
	r := e.do(t, "alice", "GET", "/app.php", nil)
	r.want(t, "GET", http.StatusOK)
	if sum([]byte(r.Body)) != sum(data) {
		t.Fatalf("GET: %d bytes sha256 %s, want sha256 %s", len(r.Body), sum([]byte(r.Body)), sum(data))
	}
	// A replacement answers 201 too (x/net/webdav does not tell them
	// apart) and keeps the mode.
	if err := os.Chmod(filepath.Join(e.UserDir("alice"), "app.php"), 0o600); err != nil {
		t.Fatal(err)
	}
	small := []byte("<?php echo 1;\n")
	e.do(t, "alice", "PUT", "/app.php", bytes.NewReader(small)).want(t, "PUT over", http.StatusNoContent)
	wantFile(t, e, "alice", "app.php", small)
	if fi, _ := os.Stat(filepath.Join(e.UserDir("alice"), "app.php")); fi.Mode().Perm() != 0o600 {
		t.Errorf("replaced file mode %v, want 0600 kept", fi.Mode().Perm())
	}
	// Ranges, as rclone and Finder resume reads.
	r = e.do(t, "alice", "GET", "/app.php", nil, "Range", "bytes=6-9")
	r.want(t, "GET range", http.StatusPartialContent)
	if r.Body != "echo" {
		t.Fatalf("GET bytes=6-9: %q", r.Body)
	}
	// HEAD reports the size and opens nothing on the agent.
	before := e.transfers("download", "completed")
	r = e.do(t, "alice", "HEAD", "/app.php", nil)
	r.want(t, "HEAD", http.StatusOK)
	if r.Header.Get("Content-Length") != strconv.Itoa(len(small)) {
		t.Errorf("HEAD Content-Length %q, want %d", r.Header.Get("Content-Length"), len(small))
	}
	if got := e.transfers("download", "completed"); got != before {
		t.Errorf("HEAD opened the file: %d downloads, want %d", got, before)
	}
	// Users are apart: bob's / is his own directory.
	e.do(t, "bob", "GET", "/app.php", nil).want(t, "bob GET alice's file", http.StatusNotFound)
	e.AgentIdle(t)
}

func TestPropfind(t *testing.T) {
	e := start(t, nil)
	dir := e.UserDir("alice")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	e.do(t, "alice", "MKCOL", "/", nil) // creates alice's root on the agent
	must(os.MkdirAll(filepath.Join(dir, "src", "deep"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "src", "a.php"), []byte("12345"), 0o644))
	must(os.WriteFile(filepath.Join(dir, "src", ".env"), []byte("X=1\n"), 0o600))
	must(os.WriteFile(filepath.Join(dir, "src", "name with spaces & ü.txt"), []byte("x"), 0o644))
	must(os.Symlink("a.php", filepath.Join(dir, "src", "link-to-file")))
	must(os.Symlink("deep", filepath.Join(dir, "src", "link-to-dir")))
	must(os.Symlink("nowhere", filepath.Join(dir, "src", "dangling")))
	mtime := time.Date(2021, 3, 4, 5, 6, 7, 0, time.UTC)
	must(os.Chtimes(filepath.Join(dir, "src", "a.php"), mtime, mtime))

	before := e.transfers("download", "completed")
	got := e.propfind(t, "alice", "/src", "1")
	want := map[string]entry{
		"/src/":                         {Collection: true},
		"/src/deep/":                    {Collection: true},
		"/src/a.php":                    {Length: "5", LastModified: "Thu, 04 Mar 2021 05:06:07 GMT"},
		"/src/.env":                     {Length: "4", ContentType: "application/octet-stream"},
		"/src/name with spaces & ü.txt": {Length: "1", ContentType: "text/plain; charset=utf-8"},
		// A link to a file is the file; a link to a directory, or to
		// nothing, an empty file: never a collection a recursive delete
		// would enter.
		"/src/link-to-file": {Length: "5", LastModified: "Thu, 04 Mar 2021 05:06:07 GMT"},
		"/src/link-to-dir":  {Length: "0"},
		"/src/dangling":     {Length: "0"},
	}
	if len(got) != len(want) {
		t.Errorf("PROPFIND /src Depth 1: %d entries %v, want %d", len(got), got, len(want))
	}
	for href, w := range want {
		g, ok := got[href]
		switch {
		case !ok:
			t.Errorf("PROPFIND lacks %q (has %v)", href, got)
		case g.Collection != w.Collection,
			w.Length != "" && g.Length != w.Length,
			w.LastModified != "" && g.LastModified != w.LastModified,
			w.ContentType != "" && g.ContentType != w.ContentType:
			t.Errorf("%s: %+v, want %+v", href, g, w)
		}
	}
	// Listing opened no file on the agent (x/net/webdav alone opens each
	// entry to report it).
	if n := e.transfers("download", "completed"); n != before {
		t.Errorf("PROPFIND opened %d files on the agent", n-before)
	}
	if got := e.propfind(t, "alice", "/src/a.php", "0"); len(got) != 1 || got["/src/a.php"].Length != "5" {
		t.Errorf("PROPFIND a.php Depth 0: %v", got)
	}
	e.do(t, "alice", "PROPFIND", "/missing", nil, "Depth", "0").want(t, "PROPFIND missing", http.StatusNotFound)
	// A link to a directory reads as empty and deletes as a link.
	e.do(t, "alice", "GET", "/src/link-to-dir", nil).want(t, "GET a link to a directory", http.StatusOK)
	e.do(t, "alice", "DELETE", "/src/link-to-dir", nil).want(t, "DELETE a link to a directory", http.StatusNoContent)
	if fi, err := os.Stat(filepath.Join(dir, "src", "deep")); err != nil || !fi.IsDir() {
		t.Fatalf("the directory a deleted link pointed to: %v", err)
	}
	wantMissing(t, e, "alice", "src/link-to-dir")
	e.AgentIdle(t)
}

func TestCollectionsMoveCopyDelete(t *testing.T) {
	e := start(t, nil)
	e.do(t, "alice", "MKCOL", "/www", nil).want(t, "MKCOL", http.StatusCreated)
	e.do(t, "alice", "MKCOL", "/www", nil).want(t, "MKCOL existing", http.StatusMethodNotAllowed, "file exists")
	e.do(t, "alice", "MKCOL", "/no/such", nil).want(t, "MKCOL without parent", http.StatusConflict)
	if fi, err := os.Stat(filepath.Join(e.UserDir("alice"), "www")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("MKCOL'd directory: %v %v, want mode 0755", fi, err)
	}
	data := []byte("<?php phpinfo();\n")
	e.do(t, "alice", "PUT", "/www/index.php", bytes.NewReader(data)).want(t, "PUT", http.StatusCreated)
	e.do(t, "alice", "PUT", "/nodir/index.php", strings.NewReader("x")).want(t, "PUT without parent", http.StatusConflict)

	dest := func(p string) string { return e.URL + p }
	e.do(t, "alice", "COPY", "/www/index.php", nil, "Destination", dest("/www/copy.php")).want(t, "COPY", http.StatusCreated)
	wantFile(t, e, "alice", "www/copy.php", data)
	e.do(t, "alice", "COPY", "/www", nil, "Destination", dest("/www2")).want(t, "COPY tree", http.StatusCreated)
	wantFile(t, e, "alice", "www2/index.php", data)
	e.do(t, "alice", "MOVE", "/www/copy.php", nil, "Destination", dest("/www/moved.php")).want(t, "MOVE", http.StatusCreated)
	wantMissing(t, e, "alice", "www/copy.php")
	wantFile(t, e, "alice", "www/moved.php", data)
	e.do(t, "alice", "MOVE", "/www/moved.php", nil, "Destination", dest("/www/index.php"), "Overwrite", "F").
		want(t, "MOVE onto a file, Overwrite F", http.StatusPreconditionFailed)
	wantFile(t, e, "alice", "www/moved.php", data)
	e.do(t, "alice", "PUT", "/www/moved.php", strings.NewReader("new")).want(t, "PUT over a file", http.StatusNoContent)
	e.do(t, "alice", "MOVE", "/www/moved.php", nil, "Destination", dest("/www/index.php")).want(t, "MOVE onto a file", http.StatusNoContent)
	wantFile(t, e, "alice", "www/index.php", []byte("new"))
	e.do(t, "alice", "COPY", "/www2/index.php", nil, "Destination", dest("/www/index.php")).want(t, "COPY onto a file", http.StatusNoContent)
	wantFile(t, e, "alice", "www/index.php", data)
	e.do(t, "alice", "MOVE", "/www2", nil, "Destination", dest("/www/sub")).want(t, "MOVE a tree", http.StatusCreated)
	wantFile(t, e, "alice", "www/sub/index.php", data)
	e.do(t, "alice", "MOVE", "/www/missing", nil, "Destination", dest("/www/x")).want(t, "MOVE missing", http.StatusNotFound)

	e.do(t, "alice", "DELETE", "/www/index.php", nil).want(t, "DELETE file", http.StatusNoContent)
	wantMissing(t, e, "alice", "www/index.php")
	e.do(t, "alice", "DELETE", "/www/index.php", nil).want(t, "DELETE missing", http.StatusNotFound)
	e.do(t, "alice", "DELETE", "/www", nil).want(t, "DELETE tree", http.StatusNoContent)
	wantOnly(t, e, "alice")
	e.do(t, "alice", "DELETE", "/", nil).want(t, "DELETE /", http.StatusForbidden, "root collection cannot be deleted")
	e.AgentIdle(t)
}

// TestMoveOverTargetNeverMissing pins PhpStorm's "upload to a temporary
// file, then rename it over the target": RFC 4918 deletes the destination
// and then moves, which leaves PHP a moment without the file; upgate's
// MOVE onto a file replaces it in one rename.
func TestMoveOverTargetNeverMissing(t *testing.T) {
	e := start(t, nil)
	e.do(t, "alice", "PUT", "/index.php", strings.NewReader("v0")).want(t, "PUT", http.StatusCreated)
	target := filepath.Join(e.UserDir("alice"), "index.php")
	var missing atomic.Int32
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := os.Stat(target); err != nil {
				missing.Add(1)
			}
		}
	}()
	const rounds = 30
	for i := 1; i <= rounds; i++ {
		v := fmt.Sprintf("v%d", i)
		e.do(t, "alice", "PUT", "/index.php.tmp", strings.NewReader(v)).want(t, "PUT temp", http.StatusCreated)
		e.do(t, "alice", "MOVE", "/index.php.tmp", nil, "Destination", e.URL+"/index.php", "Overwrite", "T").want(t, "MOVE over", http.StatusNoContent)
	}
	close(stop)
	wg.Wait()
	if n := missing.Load(); n > 0 {
		t.Errorf("index.php was missing %d times during %d MOVEs over it", n, rounds)
	}
	wantFile(t, e, "alice", "index.php", []byte(fmt.Sprintf("v%d", rounds)))
	wantOnly(t, e, "alice", "index.php")
}

func TestMtime(t *testing.T) {
	e := start(t, nil)
	wantMtime := func(name string, want time.Time) {
		t.Helper()
		fi, err := os.Stat(filepath.Join(e.UserDir("alice"), name))
		if err != nil {
			t.Fatal(err)
		}
		if !fi.ModTime().Equal(want) {
			t.Errorf("%s mtime %v, want %v", name, fi.ModTime().UTC(), want.UTC())
		}
	}
	// rclone's webdav backend (vendors owncloud, nextcloud, fastmail,
	// rclone) and ownCloud's clients: X-OC-Mtime on the PUT.
	r := e.do(t, "alice", "PUT", "/a.txt", strings.NewReader("a"), "X-OC-Mtime", "1600000000")
	r.want(t, "PUT with X-OC-Mtime", http.StatusCreated)
	if r.Header.Get("X-OC-Mtime") != "accepted" {
		t.Errorf("reply X-OC-Mtime %q, want accepted", r.Header.Get("X-OC-Mtime"))
	}
	wantMtime("a.txt", time.Unix(1600000000, 0))
	// The PUT's ETag is the file's from then on: the mtime is set
	// before x/net/webdav's Stat of the new file.
	if head := e.do(t, "alice", "HEAD", "/a.txt", nil); r.Header.Get("ETag") == "" || head.Header.Get("ETag") != r.Header.Get("ETag") {
		t.Errorf("the PUT's ETag %q, a HEAD's after it %q: want the same", r.Header.Get("ETag"), head.Header.Get("ETag"))
	}
	e.do(t, "alice", "PUT", "/b.txt", strings.NewReader("b"), "X-OC-Mtime", "yesterday").
		want(t, "PUT with a bad X-OC-Mtime", http.StatusBadRequest, "X-OC-Mtime")
	wantMissing(t, e, "alice", "b.txt")

	// rclone's webdav backend sends the source's time with a server-side
	// COPY or MOVE of a file, and takes "accepted" for done (vendor
	// rclone), or sets it with a PROPPATCH where that is missing
	// (owncloud, nextcloud).
	accepted := func(what string, r reply, want bool) {
		t.Helper()
		if got := r.Header.Get("X-OC-Mtime") == "accepted"; got != want {
			t.Errorf("%s: reply X-OC-Mtime %q, want accepted %v", what, r.Header.Get("X-OC-Mtime"), want)
		}
	}
	r = e.do(t, "alice", "COPY", "/a.txt", nil, "Destination", "/c.txt", "X-OC-Mtime", "1400000000")
	r.want(t, "COPY with X-OC-Mtime", http.StatusCreated)
	accepted("COPY", r, true)
	wantMtime("c.txt", time.Unix(1400000000, 0))
	wantMtime("a.txt", time.Unix(1600000000, 0))
	r = e.do(t, "alice", "COPY", "/a.txt", nil, "Destination", "/c.txt", "X-OC-Mtime", "1300000000")
	r.want(t, "COPY onto a file with X-OC-Mtime", http.StatusNoContent)
	accepted("COPY onto a file", r, true)
	wantMtime("c.txt", time.Unix(1300000000, 0))
	r = e.do(t, "alice", "MOVE", "/c.txt", nil, "Destination", "/m.txt", "X-OC-Mtime", "1200000000")
	r.want(t, "MOVE with X-OC-Mtime", http.StatusCreated)
	accepted("MOVE", r, true)
	wantMtime("m.txt", time.Unix(1200000000, 0))
	wantMissing(t, e, "alice", "c.txt")
	e.do(t, "alice", "COPY", "/a.txt", nil, "Destination", "/d.txt", "X-OC-Mtime", "soon").
		want(t, "COPY with a bad X-OC-Mtime", http.StatusBadRequest, "X-OC-Mtime")
	e.do(t, "alice", "MOVE", "/m.txt", nil, "Destination", "/d.txt", "X-OC-Mtime", "-1").
		want(t, "MOVE with a bad X-OC-Mtime", http.StatusBadRequest, "X-OC-Mtime")
	wantMissing(t, e, "alice", "d.txt")
	wantMtime("m.txt", time.Unix(1200000000, 0))
	// A collection's time is not a file's: a COPY or MOVE of one leaves
	// it as the copy or move makes it, and does not say accepted.
	e.do(t, "alice", "MKCOL", "/col", nil).want(t, "MKCOL", http.StatusCreated)
	e.do(t, "alice", "PUT", "/col/f", strings.NewReader("f"), "X-OC-Mtime", "1100000000").want(t, "PUT into col", http.StatusCreated)
	r = e.do(t, "alice", "COPY", "/col", nil, "Destination", "/col2", "X-OC-Mtime", "1000000000")
	r.want(t, "COPY of a collection with X-OC-Mtime", http.StatusCreated)
	accepted("COPY of a collection", r, false)
	r = e.do(t, "alice", "MOVE", "/col2", nil, "Destination", "/col3", "X-OC-Mtime", "1000000000")
	r.want(t, "MOVE of a collection with X-OC-Mtime", http.StatusCreated)
	accepted("MOVE of a collection", r, false)
	for _, name := range []string{"col3", "col3/f"} {
		if fi, err := os.Stat(filepath.Join(e.UserDir("alice"), name)); err != nil || fi.ModTime().Equal(time.Unix(1000000000, 0)) {
			t.Errorf("%s after a COPY and MOVE of its collection with X-OC-Mtime: %v, %v", name, fi, err)
		}
	}
	wantMtime("a.txt", time.Unix(1600000000, 0))

	// rclone's SetModTime (owncloud, nextcloud): PROPPATCH lastmodified.
	body := `<?xml version="1.0" encoding="utf-8" ?><D:propertyupdate xmlns:D="DAV:"><D:set><D:prop>` +
		`<lastmodified xmlns="DAV:">1500000000</lastmodified></D:prop></D:set></D:propertyupdate>`
	e.do(t, "alice", "PROPPATCH", "/a.txt", strings.NewReader(body)).want(t, "PROPPATCH lastmodified", http.StatusMultiStatus, "200 OK")
	wantMtime("a.txt", time.Unix(1500000000, 0))

	// Windows Explorer, after every upload.
	win := `<?xml version="1.0" encoding="utf-8" ?><D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:schemas-microsoft-com:"><D:set><D:prop>` +
		`<Z:Win32CreationTime>Thu, 09 Oct 2025 17:54:43 GMT</Z:Win32CreationTime>` +
		`<Z:Win32LastAccessTime>Thu, 09 Oct 2025 17:55:31 GMT</Z:Win32LastAccessTime>` +
		`<Z:Win32LastModifiedTime>Thu, 09 Oct 2025 17:54:43 GMT</Z:Win32LastModifiedTime>` +
		`<Z:Win32FileAttributes>00000020</Z:Win32FileAttributes></D:prop></D:set></D:propertyupdate>`
	r = e.do(t, "alice", "PROPPATCH", "/a.txt", strings.NewReader(win))
	r.want(t, "PROPPATCH Windows", http.StatusMultiStatus, "200 OK")
	if strings.Contains(r.Body, "403") || strings.Contains(r.Body, "424") {
		t.Errorf("PROPPATCH Windows refused something:\n%s", r.Body)
	}
	wantMtime("a.txt", time.Date(2025, 10, 9, 17, 54, 43, 0, time.UTC))

	// Anything else is refused, all or nothing (RFC 4918 9.2).
	mixed := `<?xml version="1.0" encoding="utf-8" ?><D:propertyupdate xmlns:D="DAV:" xmlns:X="urn:example"><D:set><D:prop>` +
		`<lastmodified xmlns="DAV:">1400000000</lastmodified><X:colour>blue</X:colour></D:prop></D:set></D:propertyupdate>`
	r = e.do(t, "alice", "PROPPATCH", "/a.txt", strings.NewReader(mixed))
	r.want(t, "PROPPATCH a dead property", http.StatusMultiStatus, "403 Forbidden", "424 Failed Dependency")
	wantMtime("a.txt", time.Date(2025, 10, 9, 17, 54, 43, 0, time.UTC))
	protected := `<?xml version="1.0" encoding="utf-8" ?><D:propertyupdate xmlns:D="DAV:"><D:set><D:prop>` +
		`<D:getlastmodified>Mon, 19 Jan 2015 19:50:20 GMT</D:getlastmodified></D:prop></D:set></D:propertyupdate>`
	e.do(t, "alice", "PROPPATCH", "/a.txt", strings.NewReader(protected)).want(t, "PROPPATCH getlastmodified", http.StatusMultiStatus, "403 Forbidden", "cannot-modify-protected-property")
	// Windows patches folders too.
	e.do(t, "alice", "MKCOL", "/dir", nil).want(t, "MKCOL", http.StatusCreated)
	e.do(t, "alice", "PROPPATCH", "/dir", strings.NewReader(win)).want(t, "PROPPATCH a folder", http.StatusMultiStatus, "200 OK")
	wantMtime("dir", time.Date(2025, 10, 9, 17, 54, 43, 0, time.UTC))
	e.AgentIdle(t)
}

// TestFinderAndExplorerSequences replays how Finder and Windows Explorer
// write a file: lock it, write it with the lock token, set its times,
// unlock it.
func TestFinderAndExplorerSequences(t *testing.T) {
	e := startTLS(t, nil)
	lockBody := `<?xml version="1.0" encoding="utf-8"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope>` +
		`<D:locktype><D:write/></D:locktype><D:owner><D:href>test</D:href></D:owner></D:lockinfo>`
	lock := func(p, timeout string) string {
		t.Helper()
		r := e.do(t, "alice", "LOCK", p, strings.NewReader(lockBody), "Timeout", timeout, "Depth", "0")
		if r.Status != http.StatusOK && r.Status != http.StatusCreated {
			t.Fatalf("LOCK %s: %d\n%s", p, r.Status, r.Body)
		}
		tok := r.Header.Get("Lock-Token")
		if tok == "" {
			t.Fatalf("LOCK %s: no Lock-Token", p)
		}
		return tok
	}

	// Finder: LOCK the new name (RFC 4918 creates an empty file), PUT with
	// the token, UNLOCK.
	tok := lock("/finder.php", "Second-600")
	wantFile(t, e, "alice", "finder.php", nil)
	data := fstest.Data(200000, 106)
	e.do(t, "alice", "PUT", "/finder.php", bytes.NewReader(data)).want(t, "PUT without the lock's token", http.StatusLocked)
	e.do(t, "alice", "PUT", "/finder.php", bytes.NewReader(data), "If", "("+tok+")").want(t, "PUT with the token", http.StatusNoContent)
	e.do(t, "alice", "UNLOCK", "/finder.php", nil, "Lock-Token", tok).want(t, "UNLOCK", http.StatusNoContent)
	wantFile(t, e, "alice", "finder.php", data)
	// A lock asked for forever lasts an hour.
	r := e.do(t, "alice", "LOCK", "/finder.php", strings.NewReader(lockBody), "Timeout", "Infinite, Second-4100000000")
	r.want(t, "LOCK Infinite", http.StatusOK, "Second-3600")
	e.do(t, "alice", "UNLOCK", "/finder.php", nil, "Lock-Token", r.Header.Get("Lock-Token")).want(t, "UNLOCK", http.StatusNoContent)

	// Windows Explorer: PUT 0 bytes, LOCK, PROPPATCH times, HEAD, PUT the
	// content, PROPPATCH, UNLOCK.
	e.do(t, "alice", "PUT", "/explorer.txt", http.NoBody).want(t, "PUT empty", http.StatusCreated)
	tok = lock("/explorer.txt", "Second-3600")
	win := `<?xml version="1.0" encoding="utf-8" ?><D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:schemas-microsoft-com:"><D:set><D:prop>` +
		`<Z:Win32LastModifiedTime>Fri, 01 Jan 2021 00:00:00 GMT</Z:Win32LastModifiedTime>` +
		`<Z:Win32FileAttributes>00000020</Z:Win32FileAttributes></D:prop></D:set></D:propertyupdate>`
	e.do(t, "alice", "PROPPATCH", "/explorer.txt", strings.NewReader(win), "If", "("+tok+")").want(t, "PROPPATCH", http.StatusMultiStatus, "200 OK")
	e.do(t, "alice", "HEAD", "/explorer.txt", nil).want(t, "HEAD", http.StatusOK)
	e.do(t, "alice", "PUT", "/explorer.txt", bytes.NewReader(data), "If", "("+tok+")").want(t, "PUT content", http.StatusNoContent)
	e.do(t, "alice", "PROPPATCH", "/explorer.txt", strings.NewReader(win), "If", "("+tok+")").want(t, "PROPPATCH", http.StatusMultiStatus, "200 OK")
	e.do(t, "alice", "UNLOCK", "/explorer.txt", nil, "Lock-Token", tok).want(t, "UNLOCK", http.StatusNoContent)
	wantFile(t, e, "alice", "explorer.txt", data)
	if fi, _ := os.Stat(filepath.Join(e.UserDir("alice"), "explorer.txt")); !fi.ModTime().Equal(time.Date(2021, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("explorer.txt mtime %v", fi.ModTime())
	}
	// Each user has a lock table of their own: bob's /finder.php is
	// another file.
	tok = lock("/shared.txt", "Second-60")
	e.do(t, "bob", "PUT", "/shared.txt", strings.NewReader("bob")).want(t, "bob's PUT of his own shared.txt", http.StatusCreated)
	e.do(t, "alice", "UNLOCK", "/shared.txt", nil, "Lock-Token", tok).want(t, "UNLOCK", http.StatusNoContent)
	// OPTIONS says class 2, which Finder and Windows need to write.
	r = e.do(t, "alice", "OPTIONS", "/", nil)
	r.want(t, "OPTIONS", http.StatusOK)
	if r.Header.Get("DAV") != "1, 2" {
		t.Errorf("OPTIONS DAV: %q, want 1, 2", r.Header.Get("DAV"))
	}
	e.AgentIdle(t)
}

// TestLoginOncePerConnection: bcrypt runs once for a connection's
// requests, not per request; new credentials on the connection log in
// again; a wrong password is refused, counted by the defender and ends the
// connection.
func TestLoginOncePerConnection(t *testing.T) {
	e := start(t, nil)
	for i := range 20 {
		e.do(t, "alice", "PUT", fmt.Sprintf("/f%d", i), strings.NewReader("x")).want(t, "PUT", http.StatusCreated)
		e.propfind(t, "alice", "/", "1")
	}
	if n := e.logins("ok"); n != 1 {
		t.Errorf("40 requests on one connection: %d logins, want 1", n)
	}
	// Another user on the same connection logs in as that user.
	e.do(t, "bob", "PROPFIND", "/", nil, "Depth", "0").want(t, "bob on alice's connection", http.StatusMultiStatus)
	if n := e.logins("ok"); n != 2 {
		t.Errorf("a second user: %d logins, want 2", n)
	}
	req, _ := http.NewRequest("PROPFIND", e.URL+"/", nil)
	req.SetBasicAuth("alice", "wrong")
	req.Header.Set("Depth", "0")
	resp, err := e.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || !resp.Close || resp.Header.Get("WWW-Authenticate") == "" || !strings.Contains(string(b), "authentication failed") {
		t.Errorf("wrong password: %d close=%v %q %q", resp.StatusCode, resp.Close, resp.Header.Get("WWW-Authenticate"), b)
	}
	if n := e.logins("failed"); n != 1 {
		t.Errorf("wrong password: %d failed logins, want 1", n)
	}
	// No credentials: a challenge, not a failure (clients ask so first).
	e.do(t, "", "PROPFIND", "/", nil, "Depth", "0").want(t, "no credentials", http.StatusUnauthorized, "credentials required")
	if n := e.logins("failed"); n != 1 {
		t.Errorf("no credentials counted as a failed login: %d", n)
	}
}

// TestLoginCheckedAgainAfterTTL: a connection's login is reused only for
// Config.LoginTTL; after it the password is checked again, so a password
// a reload changed stops working on connections kept alive.
func TestLoginCheckedAgainAfterTTL(t *testing.T) {
	e := start(t, nil)
	const ttl = 200 * time.Millisecond
	srv, err := upwebdav.New(e.Srv.Gateway, upwebdav.Config{LoginTTL: ttl, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := e.Srv.Gateway.Listen(upwebdav.Protocol(false), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	tr := &http.Transport{MaxIdleConnsPerHost: 1}
	t.Cleanup(func() {
		srv.Close()
		tr.CloseIdleConnections()
		select {
		case err := <-served:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("Serve did not return after Close and the client's close")
		}
	})
	e2 := &env{Env: e.Env, Addr: lis.Addr().String(), URL: "http://" + lis.Addr().String(), Client: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
	e2.propfind(t, "alice", "/", "0")
	e2.propfind(t, "alice", "/", "0")
	if n := e.logins("ok"); n != 1 {
		t.Fatalf("two requests within the TTL: %d logins, want 1", n)
	}
	time.Sleep(ttl + 100*time.Millisecond)
	e2.propfind(t, "alice", "/", "0")
	if n := e.logins("ok"); n != 2 {
		t.Fatalf("a request after the TTL: %d logins, want 2", n)
	}
	// Each login after the TTL replaces the one before, whose agent
	// stream (and its goroutines here) ends: five more leave the
	// goroutine count where it was, give or take a couple.
	base := runtime.NumGoroutine()
	for range 5 {
		time.Sleep(ttl + 20*time.Millisecond)
		e2.propfind(t, "alice", "/", "0")
	}
	if n := e.logins("ok"); n != 7 {
		t.Fatalf("five more requests after the TTL: %d logins, want 7", n)
	}
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > base+2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > base+2 {
		t.Errorf("%d goroutines after five more logins on one connection, %d before: the replaced logins' agent streams live on", n, base)
	}
	cfg := gwtest.Config(t, e.Root, map[string]string{"alice": "changed", "bob": gwtest.Users["bob"]})
	cfg.Listen = config.Listen{WebDAV: "127.0.0.1:0"}
	if err := e.Srv.Gateway.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	time.Sleep(ttl + 100*time.Millisecond)
	e2.do(t, "alice", "PROPFIND", "/", nil, "Depth", "0").want(t, "the old password after a reload and the TTL", http.StatusUnauthorized, "authentication failed")
	req, _ := http.NewRequest("PROPFIND", e2.URL+"/", nil)
	req.SetBasicAuth("alice", "changed")
	req.Header.Set("Depth", "0")
	resp, err := e2.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMultiStatus {
		t.Fatalf("the new password: %d", resp.StatusCode)
	}
}

// TestConcurrentWritesOfOnePath pins rclone's parallel transfers, which
// create the same parent collection at once, and an editor saving twice
// over two connections: neither gets 423 Locked; the last PUT wins whole.
func TestConcurrentWritesOfOnePath(t *testing.T) {
	e := start(t, nil)
	const n = 8
	var wg sync.WaitGroup
	statuses := make(chan int, 2*n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Transport: &http.Transport{}, Timeout: 30 * time.Second}
			defer c.CloseIdleConnections()
			mkcol, _ := http.NewRequest("MKCOL", e.URL+"/project", nil)
			put, _ := http.NewRequest("PUT", e.URL+"/project/same.php", bytes.NewReader(bytes.Repeat([]byte{byte('a' + i)}, 100000)))
			for _, req := range []*http.Request{mkcol, put} {
				req.SetBasicAuth("alice", gwtest.Users["alice"])
				resp, err := c.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
				statuses <- resp.StatusCode
			}
		}()
	}
	wg.Wait()
	close(statuses)
	for s := range statuses {
		if s != http.StatusCreated && s != http.StatusNoContent && s != http.StatusMethodNotAllowed {
			t.Errorf("a concurrent MKCOL or PUT: %d", s)
		}
	}
	got, err := os.ReadFile(filepath.Join(e.UserDir("alice"), "project", "same.php"))
	if err != nil || len(got) != 100000 || !bytes.Equal(got, bytes.Repeat(got[:1], 100000)) {
		t.Fatalf("same.php after %d concurrent PUTs: %d bytes, mixed or missing (%v)", n, len(got), err)
	}
	wantOnly(t, e, "alice", "project")
	e.AgentIdle(t)
}
