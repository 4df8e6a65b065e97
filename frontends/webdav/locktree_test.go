package webdav_test

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/upgate/upgate/backend/agent"
	"github.com/upgate/upgate/internal/gwtest"
)

// lock takes an exclusive write lock on p at depth and returns its token.
func (e *env) lock(t testing.TB, user, p, depth string) string {
	t.Helper()
	r := e.do(t, user, "LOCK", p, strings.NewReader(`<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype><D:owner>test</D:owner></D:lockinfo>`),
		"Depth", depth, "Timeout", "Second-600", "Content-Type", "application/xml")
	if r.Status != http.StatusOK && r.Status != http.StatusCreated {
		t.Fatalf("LOCK %s: %d %s", p, r.Status, r.Body)
	}
	tok := strings.Trim(r.Header.Get("Lock-Token"), "<>")
	if tok == "" {
		t.Fatalf("LOCK %s: no Lock-Token", p)
	}
	return tok
}

// TestLocksProtectCollections: what RFC 4918 7.5 asks of locks on
// collections and their members, which x/net/webdav's memLS leaves out
// (found by TestWebDAVRandom against Apache's mod_dav):
//   - a lock on a file stops a DELETE, MOVE or replacing COPY of a
//     collection above it (memLS looked only at the path and above: the
//     locked file went with its collection);
//   - a depth-0 lock on a collection protects its membership: a member
//     comes or goes only with its token (a member's content is not
//     protected);
//   - an UNLOCK must name a resource in the lock's scope (x/net/webdav
//     unlocked by the token alone, whatever the path).
func TestLocksProtectCollections(t *testing.T) {
	e := start(t, nil)
	for _, s := range []struct{ method, p string }{{"MKCOL", "/d"}, {"PUT", "/d/g"}, {"PUT", "/h"}, {"MKCOL", "/c"}, {"PUT", "/c/e"}} {
		e.do(t, "alice", s.method, s.p, strings.NewReader(map[bool]string{true: "data " + s.p}[s.method == "PUT"])).want(t, s.method+" "+s.p, http.StatusCreated)
	}
	dest := func(p string) []string { return []string{"Destination", e.URL + p} }

	a := e.lock(t, "alice", "/d/g", "0")
	for _, tt := range []struct {
		method, p string
		hdr       []string
	}{
		{"DELETE", "/d", nil},
		{"MOVE", "/d", dest("/d2")},
		{"COPY", "/h", append(dest("/d"), "Overwrite", "T")},
		{"MOVE", "/h", append(dest("/d"), "Overwrite", "T")},
	} {
		what := tt.method + " " + tt.p
		e.do(t, "alice", tt.method, tt.p, nil, tt.hdr...).want(t, what+" over the locked /d/g", http.StatusLocked, "/d/g")
		wantFile(t, e, "alice", "d/g", []byte("data /d/g"))
		wantFile(t, e, "alice", "h", []byte("data /h"))
	}
	e.do(t, "alice", "UNLOCK", "/h", nil, "Lock-Token", "<"+a+">").want(t, "UNLOCK /h with /d/g's token", http.StatusConflict, "the token locks")
	e.do(t, "alice", "PUT", "/d/g", strings.NewReader("x")).want(t, "PUT /d/g after an UNLOCK of another path", http.StatusLocked)
	e.do(t, "alice", "UNLOCK", "/d/g", nil, "Lock-Token", "<"+a+">").want(t, "UNLOCK /d/g", http.StatusNoContent)

	b := e.lock(t, "alice", "/c", "0")
	for _, tt := range []struct {
		method, p string
		hdr       []string
	}{
		{"PUT", "/c/new", nil},
		{"MKCOL", "/c/sub", nil},
		{"DELETE", "/c/e", nil},
		{"MOVE", "/c/e", dest("/e2")},
		{"MOVE", "/h", dest("/c/e")}, // onto a member: it is deleted first
		{"COPY", "/h", dest("/c/h")},
	} {
		e.do(t, "alice", tt.method, tt.p, nil, tt.hdr...).want(t, tt.method+" "+tt.p+" in the locked /c", http.StatusLocked, "/c is locked (depth 0)")
		wantOnly(t, e, "alice", "c", "d", "h")
		wantFile(t, e, "alice", "c/e", []byte("data /c/e"))
	}
	// A member's content is not the collection's to protect; with the
	// collection's token a member comes.
	e.do(t, "alice", "PUT", "/c/e", strings.NewReader("new")).want(t, "PUT /c/e (its content)", http.StatusNoContent)
	e.do(t, "alice", "PUT", "/c/new", strings.NewReader("n"), "If", "(<"+b+">)").want(t, "PUT /c/new with /c's token", http.StatusCreated)
	wantFile(t, e, "alice", "c/new", []byte("n"))
	e.do(t, "alice", "UNLOCK", "/c/missing", nil, "Lock-Token", "<"+b+">").want(t, "UNLOCK /c/missing", http.StatusConflict)
	e.do(t, "alice", "UNLOCK", "/c", nil, "Lock-Token", "<"+b+">").want(t, "UNLOCK /c", http.StatusNoContent)
	e.do(t, "alice", "DELETE", "/c", nil).want(t, "DELETE /c, unlocked", http.StatusNoContent)
	e.do(t, "alice", "DELETE", "/d", nil).want(t, "DELETE /d, unlocked", http.StatusNoContent)
	wantOnly(t, e, "alice", "h")
	e.AgentIdle(t)
}

// TestLocksTaggedIfList: an If header's tagged list names the resource
// its conditions apply to, and x/net/webdav confirms that one in place of
// the request's path: the token of any lock the user holds let a PUT,
// DELETE or MKCOL through another client's lock.
func TestLocksTaggedIfList(t *testing.T) {
	e := start(t, nil)
	for _, s := range []struct{ method, p string }{{"MKCOL", "/d"}, {"PUT", "/d/g"}, {"PUT", "/x"}, {"MKCOL", "/c"}, {"PUT", "/c/e"}} {
		e.do(t, "alice", s.method, s.p, strings.NewReader(map[bool]string{true: "data " + s.p}[s.method == "PUT"])).want(t, s.method+" "+s.p, http.StatusCreated)
	}
	e.lock(t, "alice", "/d/g", "0")
	c := e.lock(t, "alice", "/c", "0")
	x := e.lock(t, "alice", "/x", "0")
	tagged := "<" + e.URL + "/x> (<" + x + ">)"
	for _, tt := range []struct{ method, p string }{{"PUT", "/d/g"}, {"DELETE", "/d"}, {"DELETE", "/d/g"}, {"PUT", "/c/new"}, {"DELETE", "/c/e"}, {"MKCOL", "/c/sub"}} {
		e.do(t, "alice", tt.method, tt.p, strings.NewReader(""), "If", tagged).want(t, tt.method+" "+tt.p+" with a list tagged /x", http.StatusPreconditionFailed)
		wantFile(t, e, "alice", "d/g", []byte("data /d/g"))
		wantOnly(t, e, "alice", "c", "d", "x")
		wantFile(t, e, "alice", "c/e", []byte("data /c/e"))
	}
	// A list tagged with the collection that its token locks is how
	// RFC 4918 has a member added or removed.
	e.do(t, "alice", "DELETE", "/c/e", nil, "If", "<"+e.URL+"/c> (<"+c+">)").want(t, "DELETE /c/e with a list tagged /c", http.StatusNoContent)
	e.AgentIdle(t)
}

// TestDeleteEndsItsLocks: a DELETE destroys the locks rooted on what it
// deleted (RFC 4918 9.6.1), and a MOVE leaves the source's behind (9.9):
// memLS kept them, and the lock on a name gone then stopped a DELETE of
// its collection (a review). The locked file moves with its token to a
// destination no lock covers: x/net/webdav asked the untagged list of
// the destination too, and answered 412.
func TestDeleteEndsItsLocks(t *testing.T) {
	e := start(t, nil)
	for _, s := range []struct{ method, p string }{{"MKCOL", "/s"}, {"PUT", "/s/f"}, {"PUT", "/s/g"}} {
		e.do(t, "alice", s.method, s.p, strings.NewReader(map[bool]string{true: "x"}[s.method == "PUT"])).want(t, s.method+" "+s.p, http.StatusCreated)
	}
	f := e.lock(t, "alice", "/s/f", "0")
	g := e.lock(t, "alice", "/s/g", "0")
	e.do(t, "alice", "DELETE", "/s/f", nil, "If", "(<"+f+">)").want(t, "DELETE /s/f with its token", http.StatusNoContent)
	e.do(t, "alice", "MOVE", "/s/g", nil, "Destination", e.URL+"/g2", "If", "(<"+g+">)").want(t, "MOVE /s/g with its token", http.StatusCreated)
	e.do(t, "alice", "UNLOCK", "/s/f", nil, "Lock-Token", "<"+f+">").want(t, "UNLOCK /s/f once deleted", http.StatusConflict)
	e.do(t, "alice", "DELETE", "/s", nil).want(t, "DELETE /s", http.StatusNoContent)
	e.do(t, "alice", "PUT", "/s/g", strings.NewReader("again")).want(t, "PUT /s/g where a lock was", http.StatusConflict) // no /s
	e.AgentIdle(t)
}

// TestLockUsedByARequestInProgress: a lock whose token a request in
// progress brings (a PUT whose body is still coming) is not that
// request's alone. A refresh of it answers 200 and a second request with
// its token goes through, as on Apache, whose lock database knows no
// holder: a client refreshes its lock while it uploads (the refresh was
// a 500, x/net/webdav's memLS answering ErrLocked for a lock node held
// by a request), and one that holds a collection's lock uploads into it
// in parallel (the second PUT was a 412: memLS looks past held nodes).
func TestLockUsedByARequestInProgress(t *testing.T) {
	e := start(t, nil)
	e.do(t, "alice", "MKCOL", "/d", nil).want(t, "MKCOL /d", http.StatusCreated)
	tok := e.lock(t, "alice", "/d", "infinity")
	ifTok := "(<" + tok + ">)"

	pr, pw := io.Pipe()
	t.Cleanup(func() { pw.CloseWithError(errors.New("the test ended")) })
	first := bytes.Repeat([]byte("slow upload "), 1000)
	done := make(chan int, 1)
	go func() {
		req, err := http.NewRequest("PUT", e.URL+"/d/slow", pr)
		if err != nil {
			done <- 0
			return
		}
		req.SetBasicAuth("alice", gwtest.Users["alice"])
		req.Header.Set("If", ifTok)
		resp, err := e.Client.Do(req)
		if err != nil {
			done <- 0
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	if _, err := pw.Write(first); err != nil {
		t.Fatal(err)
	}
	// The PUT holds its lock once its upload is open: its temp file is
	// in the directory (bounded wait).
	deadline := time.Now().Add(15 * time.Second)
	for {
		names, _ := filepath.Glob(filepath.Join(e.UserDir("alice"), "d", agent.TempPrefix+"*"))
		if len(names) > 0 {
			break
		}
		if time.Now().After(deadline) {
			pw.CloseWithError(errors.New("test gave up"))
			t.Fatal("the PUT's upload never opened")
		}
		time.Sleep(5 * time.Millisecond)
	}

	e.do(t, "alice", "LOCK", "/d", nil, "If", ifTok, "Timeout", "Second-300").want(t, "refresh of /d's lock during the PUT", http.StatusOK, tok)
	e.do(t, "alice", "PUT", "/d/other", strings.NewReader("parallel"), "If", ifTok).want(t, "a second PUT into /d with its token", http.StatusCreated)
	e.do(t, "alice", "PUT", "/d/nolock", strings.NewReader("x")).want(t, "a PUT into /d without the token", http.StatusLocked)

	rest := []byte(" and its end")
	if _, err := pw.Write(rest); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	if status := <-done; status != http.StatusCreated {
		t.Fatalf("the slow PUT: status %d, want 201", status)
	}
	wantFile(t, e, "alice", "d/slow", append(first, rest...))
	wantFile(t, e, "alice", "d/other", []byte("parallel"))
	e.do(t, "alice", "UNLOCK", "/d", nil, "Lock-Token", "<"+tok+">").want(t, "UNLOCK /d", http.StatusNoContent)
	e.do(t, "alice", "PUT", "/d/nolock", strings.NewReader("x")).want(t, "a PUT into /d once unlocked", http.StatusCreated)
}

// TestIfListsAreConditions: an If header's lists are an OR, and each
// list's conditions an AND (RFC 4918 10.4), with Not and entity tags as
// the RFC reads them; x/net/webdav's memLS took a list for an OR of its
// tokens and read neither Not nor tags (litmus's fail_complex_cond_put).
// A token under Not is not brought: it does not open a locked
// collection to a new member.
func TestIfListsAreConditions(t *testing.T) {
	e := start(t, nil)
	e.do(t, "alice", "PUT", "/f", strings.NewReader("v1")).want(t, "PUT /f", http.StatusCreated)
	tok := e.lock(t, "alice", "/f", "0")
	etag := e.do(t, "alice", "HEAD", "/f", nil).Header.Get("ETag")
	for _, c := range []struct {
		ifHdr  string
		status int
	}{
		{"(<" + tok + `> ["wrong"])`, http.StatusPreconditionFailed},                     // the tag fails the list
		{"(Not <" + tok + ">)", http.StatusPreconditionFailed},                           // /f is locked with it
		{"(<" + tok + `> ["wrong"]) (Not <` + tok + ">)", http.StatusPreconditionFailed}, // litmus's
		{"(<" + tok + "> [" + etag + "])", http.StatusNoContent},
		{"(<" + tok + ">) (Not <DAV:no-lock>)", http.StatusNoContent},
		{"(<" + tok + "> Not <DAV:no-lock>)", http.StatusNoContent},
	} {
		e.do(t, "alice", "PUT", "/f", strings.NewReader("v"), "If", c.ifHdr).want(t, "PUT /f If: "+c.ifHdr, c.status)
	}
	// A token is submitted only as a state token: not inside an entity
	// tag, not as a resource tag (a review: each let a write through a
	// lock whose token only appeared there).
	e.do(t, "alice", "MKCOL", "/t", nil).want(t, "MKCOL /t", http.StatusCreated)
	e.do(t, "alice", "PUT", "/t/f", strings.NewReader("t")).want(t, "PUT /t/f", http.StatusCreated)
	ttok := e.lock(t, "alice", "/t/f", "0")
	for _, c := range []struct{ method, p, ifHdr string }{
		{"PUT", "/f", "<" + e.URL + `/u> (Not <DAV:no-lock> Not ["<` + tok + `>"])`},
		{"DELETE", "/t", `(Not <DAV:no-lock> Not ["<` + ttok + `>"])`},
		{"DELETE", "/t", "<" + ttok + "> (Not <DAV:no-lock>) <" + e.URL + "/t> (Not <DAV:no-lock>)"},
	} {
		if r := e.do(t, "alice", c.method, c.p, strings.NewReader("x"), "If", c.ifHdr); r.Status < 400 {
			t.Fatalf("%s %s If: %s: %d, want a refusal", c.method, c.p, c.ifHdr, r.Status)
		}
		wantFile(t, e, "alice", "t/f", []byte("t"))
	}
	// A token submitted in a list that fails is submitted all the same
	// (RFC 4918 10.4.1), a tagged list that names another locked
	// resource only names it, and a COPY's untagged list is its
	// source's.
	e.do(t, "alice", "PUT", "/f", strings.NewReader("v1"), "If", "(<"+tok+`> ["bogus"]) (Not <DAV:no-lock>)`).want(t, "PUT /f, its token in the failing list", http.StatusNoContent)
	fEtag := e.do(t, "alice", "HEAD", "/f", nil).Header.Get("ETag")
	e.do(t, "alice", "PUT", "/u", strings.NewReader("u"), "If", "<"+e.URL+"/f> (["+fEtag+"])").want(t, "PUT /u, a list tagged with /f's ETag", http.StatusCreated)
	e.do(t, "alice", "COPY", "/f", nil, "Destination", e.URL+"/f2", "If", "(<"+tok+">)").want(t, "COPY /f with its own token", http.StatusCreated)

	// An unlocked file: a list that holds needs no token.
	e.do(t, "alice", "PUT", "/g", strings.NewReader("g"), "If", "(Not <DAV:no-lock>)").want(t, "PUT /g If: (Not <DAV:no-lock>)", http.StatusCreated)
	e.do(t, "alice", "PUT", "/g", strings.NewReader("g2"), "If", "(<DAV:no-lock>)").want(t, "PUT /g If: (<DAV:no-lock>)", http.StatusPreconditionFailed)
	wantFile(t, e, "alice", "g", []byte("g"))

	e.do(t, "alice", "MKCOL", "/d", nil).want(t, "MKCOL /d", http.StatusCreated)
	dtok := e.lock(t, "alice", "/d", "0")
	if r := e.do(t, "alice", "PUT", "/d/new", strings.NewReader("n"), "If", "(Not <"+dtok+">)"); r.Status < 400 {
		t.Fatalf("PUT /d/new with /d's token under Not: %d, want a refusal", r.Status)
	}
	wantOnly(t, e, "alice", "d", "f", "f2", "g", "t", "u")
	e.do(t, "alice", "PUT", "/d/new", strings.NewReader("n"), "If", "(<"+dtok+">)").want(t, "PUT /d/new with /d's token", http.StatusCreated)
}
