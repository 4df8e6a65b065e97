package webdav_test

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConditionalWrites: a write's If-Match, If-None-Match and
// If-Unmodified-Since are answered (RFC 9110 13.1), as Apache's mod_dav
// answers them (interop/differential's WebDAV steps): a client that
// guards a save with the ETag it read, or creates only where nothing is,
// gets 412 and the file stays. x/net/webdav read them only for GET and
// HEAD, and every one of these writes went through.
func TestConditionalWrites(t *testing.T) {
	e := start(t, nil)
	e.do(t, "alice", "PUT", "/f", strings.NewReader("first")).want(t, "PUT /f", http.StatusCreated)
	etag := e.do(t, "alice", "HEAD", "/f", nil).Header.Get("ETag")
	if etag == "" || strings.HasPrefix(etag, "W/") {
		t.Fatalf("HEAD /f: ETag %q, want a strong one", etag)
	}
	refused := []struct {
		what, method, p string
		hdr             []string
	}{
		{"PUT If-None-Match: * of an existing file", "PUT", "/f", []string{"If-None-Match", "*"}},
		{"PUT If-None-Match: its weak ETag", "PUT", "/f", []string{"If-None-Match", `"x", W/` + etag}},
		{"PUT If-Match: another ETag", "PUT", "/f", []string{"If-Match", `"other", "a,b"`}},
		{"PUT If-Match: its ETag made weak (strong comparison)", "PUT", "/f", []string{"If-Match", "W/" + etag}},
		{"PUT If-Unmodified-Since 2000", "PUT", "/f", []string{"If-Unmodified-Since", "Sat, 01 Jan 2000 00:00:00 GMT"}},
		{"DELETE If-Match: another ETag", "DELETE", "/f", []string{"If-Match", `"other"`}},
		{"MOVE If-Match: another ETag", "MOVE", "/f", []string{"If-Match", `"other"`, "Destination", e.URL + "/g"}},
		{"PROPPATCH If-None-Match: *", "PROPPATCH", "/f", []string{"If-None-Match", "*"}},
		{"PUT If-Match: * of a missing file", "PUT", "/new", []string{"If-Match", "*"}},
		{"MKCOL If-Match: * of a missing collection", "MKCOL", "/newd", []string{"If-Match", "*"}},
	}
	for _, c := range refused {
		e.do(t, "alice", c.method, c.p, strings.NewReader("changed"), c.hdr...).want(t, c.what, http.StatusPreconditionFailed, "precondition failed")
		wantFile(t, e, "alice", "f", []byte("first"))
		wantOnly(t, e, "alice", "f")
	}
	// If-Match with the ETag read, in a list with another; If-None-Match
	// of a new name; If-Unmodified-Since now; a collection's If-Match:
	// * (it has no ETag, so only * matches).
	e.do(t, "alice", "PUT", "/f", strings.NewReader("second"), "If-Match", `"other", `+etag).want(t, "PUT If-Match: its ETag", http.StatusNoContent)
	wantFile(t, e, "alice", "f", []byte("second"))
	e.do(t, "alice", "PUT", "/f", strings.NewReader("third"), "If-Match", etag).want(t, "PUT If-Match: the ETag of the file it replaced", http.StatusPreconditionFailed)
	e.do(t, "alice", "PUT", "/n", strings.NewReader("new"), "If-None-Match", "*").want(t, "PUT If-None-Match: * of a new name", http.StatusCreated)
	e.do(t, "alice", "PUT", "/n", strings.NewReader("newer"), "If-Unmodified-Since", "Fri, 01 Jan 2100 00:00:00 GMT").want(t, "PUT If-Unmodified-Since 2100", http.StatusNoContent)
	e.do(t, "alice", "MKCOL", "/d", nil).want(t, "MKCOL /d", http.StatusCreated)
	e.do(t, "alice", "DELETE", "/d", nil, "If-Match", `"x"`).want(t, "DELETE of a collection If-Match: a tag", http.StatusPreconditionFailed)
	e.do(t, "alice", "DELETE", "/d", nil, "If-Match", "*").want(t, "DELETE of a collection If-Match: *", http.StatusNoContent)
	wantFile(t, e, "alice", "f", []byte("second"))
	wantFile(t, e, "alice", "n", []byte("newer"))
	wantOnly(t, e, "alice", "f", "n")
}

// TestConditionsIgnoredWhereItFailsAnyway: RFC 9110 13.2.1 has a server
// ignore the preconditions of a request that would fail without them: it
// answers that failure (404, 405, 409), as Apache's mod_dav does, not
// 412. A "*" in a list of tags is no wildcard. (A review.)
func TestConditionsIgnoredWhereItFailsAnyway(t *testing.T) {
	e := start(t, nil)
	e.do(t, "alice", "PUT", "/f", strings.NewReader("file")).want(t, "PUT /f", http.StatusCreated)
	e.do(t, "alice", "MKCOL", "/dc", nil).want(t, "MKCOL /dc", http.StatusCreated)
	for _, c := range []struct {
		what, method, p string
		hdr             []string
		status          int
	}{
		{"DELETE of nothing, If-Match: a tag", "DELETE", "/missing", []string{"If-Match", `"x"`}, http.StatusNotFound},
		{"DELETE of nothing, If-Match: *", "DELETE", "/missing", []string{"If-Match", "*"}, http.StatusNotFound},
		{"PROPPATCH of nothing, If-Match: *", "PROPPATCH", "/missing", []string{"If-Match", "*"}, http.StatusNotFound},
		{"MKCOL of a collection, If-None-Match: *", "MKCOL", "/dc", []string{"If-None-Match", "*"}, http.StatusMethodNotAllowed},
		{"MKCOL of a file, If-Match: a tag", "MKCOL", "/f", []string{"If-Match", `"x"`}, http.StatusMethodNotAllowed},
		{"PUT of a collection, If-Match: a tag", "PUT", "/dc", []string{"If-Match", `"x"`}, http.StatusMethodNotAllowed},
		{"PUT into a missing collection, If-Match: *", "PUT", "/nodir/f", []string{"If-Match", "*"}, http.StatusConflict},
		{"PUT below a file, If-Unmodified-Since 2000", "PUT", "/f/g", []string{"If-Unmodified-Since", "Sat, 01 Jan 2000 00:00:00 GMT"}, http.StatusConflict},
		{"COPY into a missing collection, If-None-Match: * (the source exists)", "COPY", "/f", []string{"Destination", e.URL + "/nodir/g", "If-None-Match", "*"}, http.StatusConflict},
		{"MOVE below a file, If-Match: a tag", "MOVE", "/dc", []string{"Destination", e.URL + "/f/g", "If-Match", `"x"`}, http.StatusConflict},
		{`PUT If-Match: "zz", * (no wildcard in a list)`, "PUT", "/f", []string{"If-Match", `"zz", *`}, http.StatusPreconditionFailed},
	} {
		e.do(t, "alice", c.method, c.p, strings.NewReader("changed"), c.hdr...).want(t, c.what, c.status)
		wantFile(t, e, "alice", "f", []byte("file"))
		wantOnly(t, e, "alice", "dc", "f")
	}
	e.do(t, "alice", "PUT", "/f", strings.NewReader("new"), "If-None-Match", `"zz", *`).want(t, `PUT If-None-Match: "zz", *`, http.StatusNoContent)
	wantFile(t, e, "alice", "f", []byte("new"))
}

// TestConditionsBelowALinkToACollection: a new name below a symbolic
// link to a collection is made through the link, with or without a
// precondition; failsAnyway took the link for a file (409). And an
// UNLOCK of a lock whose root is gone goes through with a precondition
// that holds, as without one. (A review.)
func TestConditionsBelowALinkToACollection(t *testing.T) {
	e := start(t, nil)
	e.do(t, "alice", "MKCOL", "/dc", nil).want(t, "MKCOL /dc", http.StatusCreated)
	if err := os.Symlink("dc", filepath.Join(e.UserDir("alice"), "ld")); err != nil {
		t.Fatal(err)
	}
	e.do(t, "alice", "PUT", "/ld/new", strings.NewReader("through"), "If-None-Match", "*").want(t, "PUT /ld/new If-None-Match: *", http.StatusCreated)
	wantFile(t, e, "alice", "dc/new", []byte("through"))
	e.do(t, "alice", "MKCOL", "/ld/nd", nil, "If-None-Match", "*").want(t, "MKCOL /ld/nd If-None-Match: *", http.StatusCreated)
	if fi, err := os.Stat(filepath.Join(e.UserDir("alice"), "dc", "nd")); err != nil || !fi.IsDir() {
		t.Fatalf("dc/nd: %v", err)
	}

	e.do(t, "alice", "PUT", "/gone", strings.NewReader("x")).want(t, "PUT /gone", http.StatusCreated)
	tok := e.lock(t, "alice", "/gone", "0")
	if err := os.Remove(filepath.Join(e.UserDir("alice"), "gone")); err != nil {
		t.Fatal(err)
	}
	e.do(t, "alice", "UNLOCK", "/gone", nil, "Lock-Token", "<"+tok+">", "If-None-Match", "*").want(t, "UNLOCK of a removed root, If-None-Match: *", http.StatusNoContent)
}
