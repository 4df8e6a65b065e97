package webdav_test

import (
	"net/http"
	"strings"
	"testing"
)

// TestDotSegmentsNameACollection: "/f/." and "/f/x/.." are "/f/" once
// their dot-segments are removed (RFC 3986 5.2.4): a URL that names a
// collection, which a file is not. Apache answers 400 or 404 and keeps
// f; a DELETE, MOVE, COPY or PUT there must not act on the file f.
func TestDotSegmentsNameACollection(t *testing.T) {
	e := start(t, nil)
	for _, tt := range []struct {
		method, p string
		hdr       []string
	}{
		{"DELETE", "/f/.", nil},
		{"DELETE", "/f/x/..", nil},
		{"MOVE", "/f/.", []string{"Destination", "/moved"}},
		{"PUT", "/f/.", nil},
		{"COPY", "/h", []string{"Destination", "/f/."}},
		{"MOVE", "/h", []string{"Destination", "/f/x/.."}},
	} {
		for _, p := range []string{"/f", "/h"} {
			e.do(t, "alice", "PUT", p, strings.NewReader("data "+p)).want(t, "PUT "+p, http.StatusCreated)
		}
		what := tt.method + " " + tt.p + " " + strings.Join(tt.hdr, " ")
		hdr := tt.hdr
		if len(hdr) == 2 && hdr[0] == "Destination" {
			hdr = []string{"Destination", e.URL + hdr[1]}
		}
		r := e.do(t, "alice", tt.method, tt.p, strings.NewReader("replaced"), hdr...)
		if r.Status < 400 {
			t.Errorf("%s: %d, want a refusal (4xx)", what, r.Status)
		}
		wantFile(t, e, "alice", "f", []byte("data /f"))
		wantFile(t, e, "alice", "h", []byte("data /h"))
		wantOnly(t, e, "alice", "f", "h")
		for _, p := range []string{"/f", "/h"} {
			e.do(t, "alice", "DELETE", p, nil).want(t, "DELETE "+p, http.StatusNoContent)
		}
	}
	e.AgentIdle(t)
}

// TestOverwriteLowerCase: "Overwrite: f" is F (RFC 4918 10.6 in ABNF,
// whose strings are case-insensitive; mod_dav answers 412): a COPY onto
// an existing file must not replace it.
func TestOverwriteLowerCase(t *testing.T) {
	e := start(t, nil)
	for _, p := range []string{"/f", "/h"} {
		e.do(t, "alice", "PUT", p, strings.NewReader("data "+p)).want(t, "PUT "+p, http.StatusCreated)
	}
	for _, m := range []string{"COPY", "MOVE"} {
		e.do(t, "alice", m, "/h", nil, "Destination", e.URL+"/f", "Overwrite", "f").want(t, m+" Overwrite: f", http.StatusPreconditionFailed)
		wantFile(t, e, "alice", "f", []byte("data /f"))
		wantFile(t, e, "alice", "h", []byte("data /h"))
	}
	e.do(t, "alice", "COPY", "/h", nil, "Destination", e.URL+"/f", "Overwrite", "x").want(t, "COPY Overwrite: x", http.StatusBadRequest)
	wantFile(t, e, "alice", "f", []byte("data /f"))
	e.do(t, "alice", "MOVE", "/h", nil, "Destination", e.URL+"/f", "Overwrite", "t").want(t, "MOVE Overwrite: t", http.StatusNoContent)
	wantFile(t, e, "alice", "f", []byte("data /h"))
	e.AgentIdle(t)
}
