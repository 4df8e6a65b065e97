package webdav

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/spf13/afero"
	dav "golang.org/x/net/webdav"

	"github.com/upgate/upgate/backend/memfs"
)

// countingFs counts the lookups (Lstat, Stat) and opens that reach the
// filesystem below: each is an agent round trip over a real one.
type countingFs struct {
	*memfs.FS
	lookups, opens atomic.Int64
}

func (c *countingFs) LstatIfPossible(name string) (os.FileInfo, bool, error) {
	c.lookups.Add(1)
	return c.FS.LstatIfPossible(name)
}

func (c *countingFs) Stat(name string) (os.FileInfo, error) {
	c.lookups.Add(1)
	return c.FS.Stat(name)
}

func (c *countingFs) Open(name string) (afero.File, error) {
	c.opens.Add(1)
	return c.FS.Open(name)
}

func (c *countingFs) OpenFile(name string, flag int, perm os.FileMode) (afero.File, error) {
	c.opens.Add(1)
	return c.FS.OpenFile(name, flag, perm)
}

// TestPropfindLooksUpOnce: a PROPFIND of a collection at Depth 1 looks
// the collection up once and lists it once, whatever x/net/webdav asks
// (its Stat, then an open for the walk, then one for each resource's
// properties): every lookup of the request's own path is an agent round
// trip, and a client's listing is the most frequent WebDAV request.
func TestPropfindLooksUpOnce(t *testing.T) {
	m := &countingFs{FS: memfs.New(memfs.Options{})}
	if err := m.Mkdir("/d", 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"a", "b", "c"} {
		if err := afero.WriteFile(m.FS, "/d/"+n, []byte(n), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	h := &dav.Handler{FileSystem: &fileSystem{fs: m, log: slog.New(slog.DiscardHandler)}, LockSystem: dav.NewMemLS()}
	for _, p := range []string{"/d", "/d/", "/d/a"} {
		m.lookups.Store(0)
		m.opens.Store(0)
		q := &request{method: "PROPFIND", path: cleanPath(p)}
		r := httptest.NewRequest("PROPFIND", p, strings.NewReader(`<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:allprop/></D:propfind>`))
		r.Header.Set("Depth", "1")
		r = r.WithContext(context.WithValue(r.Context(), requestKey{}, q))
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusMultiStatus {
			t.Fatalf("PROPFIND %s: %d %s", p, w.Code, w.Body)
		}
		t.Logf("PROPFIND %s Depth 1: %d lookups, %d opens", p, m.lookups.Load(), m.opens.Load())
		if n := m.lookups.Load(); n > 1 {
			t.Errorf("PROPFIND %s Depth 1: %d lookups, want 1", p, n)
		}
		if n, want := m.opens.Load(), map[bool]int64{true: 0, false: 1}[p == "/d/a"]; n > want {
			t.Errorf("PROPFIND %s Depth 1: %d opens, want %d (the listing)", p, n, want)
		}
	}
}
