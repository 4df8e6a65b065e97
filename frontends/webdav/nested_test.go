package webdav_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/upgate/upgate/config"
	"github.com/upgate/upgate/internal/gwtest"
)

// TestMoveCopyNested: a MOVE or COPY whose destination lies inside its
// source collection, or holds its source, is refused with 403 before
// anything changes, as Apache's mod_dav refuses it, whether the paths say
// so or a symbolic link on the way does. x/net/webdav alone copied /c into
// /c/d until 1,000 levels deep (a client's timeout first), and answered a
// MOVE of /a/b onto /a with Overwrite: T by deleting /a, the source with
// it, then 404 (found by FuzzWebDAVRequests).
func TestMoveCopyNested(t *testing.T) {
	e := start(t, nil)
	for _, s := range []struct{ method, p string }{
		{"MKCOL", "/a"}, {"MKCOL", "/a/b"}, {"PUT", "/a/b/f"}, {"PUT", "/a/g"},
	} {
		e.do(t, "alice", s.method, s.p, strings.NewReader(map[bool]string{true: "data " + s.p}[s.method == "PUT"])).want(t, s.method+" "+s.p, http.StatusCreated)
	}
	// l -> a, at the top: /l/b is /a/b.
	if err := os.Symlink("a", filepath.Join(e.UserDir("alice"), "l")); err != nil {
		t.Fatal(err)
	}
	intact := func(what string) {
		t.Helper()
		wantFile(t, e, "alice", "a/b/f", []byte("data /a/b/f"))
		wantFile(t, e, "alice", "a/g", []byte("data /a/g"))
		wantOnly(t, e, "alice", "a", "l")
		ents, err := os.ReadDir(filepath.Join(e.UserDir("alice"), "a"))
		if err != nil || len(ents) != 2 {
			t.Fatalf("after %s: a holds %v (%v), want b and g", what, ents, err)
		}
		ents, err = os.ReadDir(filepath.Join(e.UserDir("alice"), "a", "b"))
		if err != nil || len(ents) != 1 {
			t.Fatalf("after %s: a/b holds %v (%v), want f", what, ents, err)
		}
	}
	for _, tt := range []struct {
		name, method, src string
		hdr               []string
		status            int
		text              string
	}{
		{"COPY into itself", "COPY", "/a", []string{"Destination", "/a/b/c"}, http.StatusForbidden, "lies inside the source"},
		{"COPY Depth infinity into itself", "COPY", "/a", []string{"Destination", "/a/x", "Depth", "infinity"}, http.StatusForbidden, "lies inside the source"},
		{"MOVE into itself", "MOVE", "/a", []string{"Destination", "/a/b/c"}, http.StatusForbidden, "lies inside the source"},
		{"MOVE onto its parent", "MOVE", "/a/b", []string{"Destination", "/a", "Overwrite", "T"}, http.StatusForbidden, "would delete the source"},
		{"MOVE onto its parent, no Overwrite", "MOVE", "/a/b", []string{"Destination", "/a"}, http.StatusForbidden, "would delete the source"},
		{"COPY onto its parent", "COPY", "/a/b", []string{"Destination", "/a"}, http.StatusForbidden, "would delete the source"},
		{"COPY a file onto its parent", "COPY", "/a/g", []string{"Destination", "/a"}, http.StatusForbidden, "would delete the source"},
		{"MOVE onto its parent, Overwrite F", "MOVE", "/a/b", []string{"Destination", "/a", "Overwrite", "F"}, http.StatusPreconditionFailed, ""},
		{"COPY into itself through a link", "COPY", "/a", []string{"Destination", "/l/x"}, http.StatusForbidden, "inside the source collection /a (/a) through a symbolic link"},
		{"COPY into a member through a link", "COPY", "/a", []string{"Destination", "/l/b/x"}, http.StatusForbidden, "through a symbolic link"},
		{"MOVE onto its parent through a link", "MOVE", "/l/b", []string{"Destination", "/a"}, http.StatusForbidden, "holds the source /l/b (/a/b) through a symbolic link"},
		{"COPY onto itself through a link", "COPY", "/l/b", []string{"Destination", "/a/b"}, http.StatusForbidden, "through a symbolic link"},
		{"MOVE onto itself through a link", "MOVE", "/a/b", []string{"Destination", "/l/b"}, http.StatusForbidden, "through a symbolic link"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do(t, "alice", tt.method, tt.src, nil, tt.hdr...)
			r.want(t, tt.method+" "+tt.src, tt.status, tt.text)
			intact(tt.name)
		})
	}

	// What stays allowed: a collection copied without its members into
	// itself (Depth 0, as mod_dav allows), a link moved into where it
	// leads (MOVE acts on the link), and a copy beside the source.
	e.do(t, "alice", "COPY", "/a", nil, "Destination", "/a/empty", "Depth", "0").want(t, "COPY Depth 0 into itself", http.StatusCreated)
	if ents, err := os.ReadDir(filepath.Join(e.UserDir("alice"), "a", "empty")); err != nil || len(ents) != 0 {
		t.Fatalf("a/empty holds %v (%v), want an empty collection", ents, err)
	}
	e.do(t, "alice", "COPY", "/l/b", nil, "Destination", "/b2").want(t, "COPY through a link beside it", http.StatusCreated)
	wantFile(t, e, "alice", "b2/f", []byte("data /a/b/f"))
	e.do(t, "alice", "MOVE", "/l", nil, "Destination", "/a/l").want(t, "MOVE a link into where it leads", http.StatusCreated)
	if target, err := os.Readlink(filepath.Join(e.UserDir("alice"), "a", "l")); err != nil || target != "a" {
		t.Fatalf("a/l: %q %v, want the link moved as it is", target, err)
	}
	wantFile(t, e, "alice", "a/b/f", []byte("data /a/b/f"))
	e.AgentIdle(t)
}

// TestCopyStopsWhenClientLeaves: a COPY of a tree stops at its next
// collection or file once its client has gone (x/net/webdav does not look
// at the request's context between them), rather than copying on for
// no one.
func TestCopyStopsWhenClientLeaves(t *testing.T) {
	e := start(t, nil)
	const dirs, perDir = 20, 100
	src := filepath.Join(e.UserDir("alice"), "src")
	for i := range dirs {
		d := filepath.Join(src, fmt.Sprintf("d%02d", i))
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		for j := range perDir {
			if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("f%03d", j)), []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	dst := filepath.Join(e.UserDir("alice"), "dst")
	count := func() int {
		n := 0
		_ = filepath.WalkDir(dst, func(_ string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				n++
			}
			return nil
		})
		return n
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		req, err := http.NewRequestWithContext(ctx, "COPY", e.URL+"/src", nil)
		if err != nil {
			done <- err
			return
		}
		req.SetBasicAuth("alice", gwtest.Users["alice"])
		req.Header.Set("Destination", "/dst")
		resp, err := e.Client.Do(req)
		if err == nil {
			resp.Body.Close()
			err = fmt.Errorf("COPY answered %s before the client left", resp.Status)
		}
		done <- err
	}()
	// Leave once the copy is under way.
	for deadline := time.Now().Add(20 * time.Second); count() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the COPY made nothing in 20s")
		}
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("client: %v, want it canceled", err)
	}
	// The copy stops: the count settles (no new file for half a
	// second), short of the whole tree.
	last := -1
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		n := count()
		if n == last {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the copy still grows after 30s: %d files", n)
		}
		last = n
	}
	if last >= dirs*perDir {
		t.Fatalf("the copy went on to all %d files after its client left", dirs*perDir)
	}
	t.Logf("copied %d of %d files before the client left and the copy stopped", last, dirs*perDir)
	e.AgentIdle(t)
}

// TestMoveCopyKeepsWhatItCannotReplace: the removal of a MOVE's or
// COPY's destination (Overwrite: T) never costs the source, and a MOVE
// that cannot happen leaves its destination in place (a review): a
// destination inside the source reached through a link, a source that is
// gone (a MOVE retried after its reply was lost), a rename to another
// mount (EXDEV), a COPY of a file onto itself by another spelling, and a
// COPY onto a link to its source.
func TestMoveCopyKeepsWhatItCannotReplace(t *testing.T) {
	e := start(t, func(cfg *config.Config) {
		for i := range cfg.Users {
			if cfg.Users[i].Name == "alice" {
				cfg.Users[i].Mounts = append(cfg.Users[i].Mounts, config.Mount{Path: "/other", Agent: gwtest.Agent, Root: "alice-other"})
			}
		}
	})
	dir := e.UserDir("alice")
	other := filepath.Join(e.Root, "alice-other")
	for _, d := range []string{filepath.Join(dir, "a", "b"), filepath.Join(other, "x")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, data := range map[string]string{"a/b/f": "f", "a/g": "g"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(other, "x", "keep"), []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, target := range map[string]string{"l": "a", "lg": "a/g"} {
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	intact := func(what string) {
		t.Helper()
		wantFile(t, e, "alice", "a/b/f", []byte("f"))
		wantFile(t, e, "alice", "a/g", []byte("g"))
		if b, err := os.ReadFile(filepath.Join(other, "x", "keep")); err != nil || string(b) != "keep" {
			t.Fatalf("after %s: other/x/keep: %q %v", what, b, err)
		}
		if ents, _ := os.ReadDir(filepath.Join(dir, "a")); len(ents) != 2 {
			t.Fatalf("after %s: a holds %v, want b and g", what, ents)
		}
	}
	for _, tt := range []struct {
		name, method, src string
		hdr               []string
		status            int
		text              string
	}{
		{"COPY onto a member that a link names", "COPY", "/a", []string{"Destination", "/l/b"}, http.StatusForbidden, "inside the source collection"},
		{"MOVE onto a member that a link names", "MOVE", "/a", []string{"Destination", "/l/b"}, http.StatusForbidden, "inside the source collection"},
		{"MOVE of a missing file onto a file", "MOVE", "/a/gone", []string{"Destination", "/a/g"}, http.StatusNotFound, ""},
		{"MOVE of a missing collection onto one", "MOVE", "/a/gone", []string{"Destination", "/a/b"}, http.StatusNotFound, ""},
		{"MOVE onto a collection of another mount", "MOVE", "/a/b", []string{"Destination", "/other/x"}, http.StatusBadGateway, "cross-device"},
		{"MOVE of a file onto a collection of another mount", "MOVE", "/a/g", []string{"Destination", "/other/x"}, http.StatusBadGateway, "cross-device"},
		{"COPY onto itself with a trailing slash", "COPY", "/a/g", []string{"Destination", "/a/g/"}, http.StatusConflict, "names a collection, and /a/g is a file"},
		{"COPY onto itself with Overwrite: F", "COPY", "/a/g", []string{"Destination", "/a/g", "Overwrite", "F"}, http.StatusPreconditionFailed, "exists, and Overwrite is F"},
		{"COPY onto itself through /./", "COPY", "/a/g", []string{"Destination", "/a/./g"}, http.StatusForbidden, "destination equals source"},
		{"COPY onto itself through ../", "COPY", "/a/g", []string{"Destination", "/a/b/../g"}, http.StatusForbidden, "destination equals source"},
		{"COPY onto itself, escaped", "COPY", "/a/g", []string{"Destination", "/%61/g"}, http.StatusForbidden, "destination equals source"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e.do(t, "alice", tt.method, tt.src, nil, tt.hdr...).want(t, tt.method+" "+tt.src, tt.status, tt.text)
			intact(tt.name)
			if ents, _ := os.ReadDir(filepath.Join(other)); len(ents) != 1 {
				t.Fatalf("other holds %v, want x alone", ents)
			}
		})
	}

	// A MOVE retried after its reply was lost answers 404 and leaves what
	// the first one moved.
	e.do(t, "alice", "MOVE", "/a/g", nil, "Destination", "/g2").want(t, "MOVE", http.StatusCreated)
	e.do(t, "alice", "MOVE", "/a/g", nil, "Destination", "/g2").want(t, "MOVE again", http.StatusNotFound)
	wantFile(t, e, "alice", "g2", []byte("g"))
	e.do(t, "alice", "MOVE", "/g2", nil, "Destination", "/a/g").want(t, "MOVE back", http.StatusCreated)

	// A COPY onto a link to its source replaces the link with a copy; the
	// source stays whole.
	e.do(t, "alice", "COPY", "/a/g", nil, "Destination", "/lg").want(t, "COPY onto a link to the source", http.StatusNoContent)
	wantFile(t, e, "alice", "a/g", []byte("g"))
	if fi, err := os.Lstat(filepath.Join(dir, "lg")); err != nil || !fi.Mode().IsRegular() {
		t.Fatalf("lg: %v %v, want a file, the copy", fi, err)
	}
	wantFile(t, e, "alice", "lg", []byte("g"))

	// A MOVE onto a collection replaces it, and nothing is left aside.
	e.do(t, "alice", "MKCOL", "/c", nil).want(t, "MKCOL", http.StatusCreated)
	e.do(t, "alice", "PUT", "/c/old", strings.NewReader("old")).want(t, "PUT", http.StatusCreated)
	e.do(t, "alice", "MOVE", "/a/b", nil, "Destination", "/c").want(t, "MOVE onto a collection", http.StatusNoContent)
	wantFile(t, e, "alice", "c/f", []byte("f"))
	wantMissing(t, e, "alice", "c/old")
	wantOnly(t, e, "alice", "a", "c", "l", "lg")

	// Depth's "infinity" in any case, as mod_dav reads it (a review).
	e.do(t, "alice", "DELETE", "/c", nil, "Depth", "Infinity").want(t, "DELETE with Depth: Infinity", http.StatusNoContent)
	wantOnly(t, e, "alice", "a", "l", "lg")
	e.AgentIdle(t)
}
