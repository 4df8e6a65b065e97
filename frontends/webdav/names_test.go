package webdav_test

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPathsThatNameNothing: a URL ending in "/" names a collection, and a
// path below a file names nothing, as the kernel answers ENOTDIR for both
// and Apache's mod_dav_fs refuses both. A DELETE of /f/ once deleted the
// file f (upgate cleaned the slash away); a GET or PROPFIND of /f/x
// answered 409 where Apache answers a GET 404. A MOVE or COPY of a
// missing source answered for its destination first (403 onto itself,
// 409 below a file) where Apache answers 404, and a LOCK of a new name
// in a missing collection answered 404 where RFC 4918 and Apache answer
// 409. All found by TestWebDAVRandom against Apache.
func TestPathsThatNameNothing(t *testing.T) {
	e := start(t, nil)
	for _, s := range []struct{ method, p string }{{"PUT", "/f"}, {"MKCOL", "/d"}, {"PUT", "/d/g"}} {
		e.do(t, "alice", s.method, s.p, strings.NewReader(map[bool]string{true: "data " + s.p}[s.method == "PUT"])).want(t, s.method+" "+s.p, http.StatusCreated)
	}
	intact := func(what string) {
		t.Helper()
		wantFile(t, e, "alice", "f", []byte("data /f"))
		wantFile(t, e, "alice", "d/g", []byte("data /d/g"))
		wantOnly(t, e, "alice", "d", "f")
		if ents, err := os.ReadDir(filepath.Join(e.UserDir("alice"), "d")); err != nil || len(ents) != 1 {
			t.Fatalf("after %s: d holds %v (%v), want g alone", what, ents, err)
		}
	}
	for _, tt := range []struct {
		method, p string
		hdr       []string
		status    int
		text      string
	}{
		{"GET", "/f/", nil, http.StatusNotFound, "names a collection"},
		{"HEAD", "/f/", nil, http.StatusNotFound, ""},
		{"PROPFIND", "/f/", []string{"Depth", "0"}, http.StatusNotFound, "names a collection"},
		{"DELETE", "/f/", nil, http.StatusNotFound, "names a collection"},
		{"PROPPATCH", "/f/", nil, http.StatusNotFound, "names a collection"},
		{"COPY", "/f/", []string{"Destination", "/c"}, http.StatusNotFound, "names a collection"},
		{"MOVE", "/f/", []string{"Destination", "/c"}, http.StatusNotFound, "names a collection"},
		{"GET", "/f/x", nil, http.StatusNotFound, ""},
		{"PROPFIND", "/f/x", []string{"Depth", "1"}, http.StatusNotFound, ""},
		{"DELETE", "/f/x", nil, http.StatusNotFound, ""},
		{"COPY", "/f/x", []string{"Destination", "/c"}, http.StatusNotFound, "the source does not exist"},
		{"MOVE", "/missing", []string{"Destination", "/missing/x"}, http.StatusNotFound, "the source does not exist"},
		{"COPY", "/missing", []string{"Destination", "/missing"}, http.StatusNotFound, "the source does not exist"},
		{"MOVE", "/missing", []string{"Destination", "/f/x"}, http.StatusNotFound, "the source does not exist"},
		// Creations below a file: 409, as below a missing collection
		// (RFC 4918 9.3.1, 9.7.1, 9.8.5, 9.9.4). A file has no inside,
		// so a MOVE or COPY into it is not refused as one into itself.
		{"MKCOL", "/f/x", nil, http.StatusConflict, ""},
		{"PUT", "/f/x", nil, http.StatusConflict, ""},
		{"COPY", "/f", []string{"Destination", "/f/x"}, http.StatusConflict, ""},
		{"MOVE", "/f", []string{"Destination", "/f/x"}, http.StatusConflict, ""},
		{"COPY", "/d", []string{"Destination", "/nope/d"}, http.StatusConflict, "parent collection does not exist"},
		{"MKCOL", "/f/", nil, http.StatusMethodNotAllowed, ""},
		{"PUT", "/d", nil, http.StatusMethodNotAllowed, ""},
		{"PROPFIND", "/missing", []string{"Depth", "infinity"}, http.StatusNotFound, ""},
		{"PROPFIND", "/d", []string{"Depth", "infinity"}, http.StatusForbidden, "only Depth 0 or 1"},
		{"LOCK", "/f/", []string{"Depth", "0"}, http.StatusNotFound, "names a collection"},
		// A LOCK of a new name makes an empty file: not in a missing
		// collection (x/net/webdav answered 500, upgate then 404).
		{"LOCK", "/nope/x", []string{"Depth", "0"}, http.StatusConflict, "parent collection does not exist"},
		{"LOCK", "/f/x", []string{"Depth", "0"}, http.StatusConflict, ""},
	} {
		what := tt.method + " " + tt.p + " " + strings.Join(tt.hdr, " ")
		hdr := tt.hdr
		if len(hdr) == 2 && hdr[0] == "Destination" {
			hdr = []string{"Destination", e.URL + hdr[1]}
		}
		body := strings.NewReader("")
		if tt.method == "LOCK" {
			body = strings.NewReader(`<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype></D:lockinfo>`)
		}
		if tt.method == "PROPPATCH" {
			body = strings.NewReader(`<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:"><D:set><D:prop><D:getlastmodified>Mon, 01 Jan 2024 00:00:00 GMT</D:getlastmodified></D:prop></D:set></D:propertyupdate>`)
		}
		var texts []string
		if tt.text != "" {
			texts = append(texts, tt.text)
		}
		e.do(t, "alice", tt.method, tt.p, body, hdr...).want(t, what, tt.status, texts...)
		intact(what)
	}
	// What a slash names where it names a collection, and a file's
	// infinite PROPFIND (the file alone), are served.
	if got := e.propfind(t, "alice", "/f", "infinity"); len(got) != 1 {
		t.Fatalf("PROPFIND /f Depth infinity: %v, want the file alone", got)
	}
	if got := e.propfind(t, "alice", "/f", "Infinity"); len(got) != 1 {
		t.Fatalf("PROPFIND /f Depth Infinity: %v, want the file alone", got) // any case, as mod_dav reads it (a review)
	}
	e.do(t, "alice", "COPY", "/d", nil, "Destination", e.URL+"/d3", "Depth", "Infinity").want(t, "COPY /d to /d3, Depth Infinity", http.StatusCreated)
	wantFile(t, e, "alice", "d3/g", []byte("data /d/g"))
	e.do(t, "alice", "DELETE", "/d3", nil).want(t, "DELETE /d3", http.StatusNoContent)
	if got := e.propfind(t, "alice", "/d/", "1"); len(got) != 2 {
		t.Fatalf("PROPFIND /d/ Depth 1: %v, want d and d/g", got)
	}
	e.do(t, "alice", "MOVE", "/d/", nil, "Destination", e.URL+"/d2/").want(t, "MOVE /d/ to /d2/", http.StatusCreated)
	wantFile(t, e, "alice", "d2/g", []byte("data /d/g"))
	e.do(t, "alice", "DELETE", "/d2/", nil).want(t, "DELETE /d2/", http.StatusNoContent)
	wantOnly(t, e, "alice", "f")
	e.AgentIdle(t)
}
