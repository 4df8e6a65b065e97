package webdav_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
	const files = 2000
	src := filepath.Join(e.UserDir("alice"), "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range files {
		if err := os.WriteFile(filepath.Join(src, fmt.Sprintf("f%04d", i)), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	dst := filepath.Join(e.UserDir("alice"), "dst")
	count := func() int {
		ents, _ := os.ReadDir(dst)
		return len(ents)
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
	// The copy stops: the count settles, short of the whole tree.
	last := -1
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		n := count()
		if n == last {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the copy still grows after 20s: %d files", n)
		}
		last = n
	}
	if last >= files {
		t.Fatalf("the copy went on to all %d files after its client left", files)
	}
	t.Logf("copied %d of %d files before the client left and the copy stopped", last, files)
	e.AgentIdle(t)
}
