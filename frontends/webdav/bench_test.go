package webdav_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// BenchmarkPropfind lists a collection of 20 files at Depth 1 over a
// kept-alive connection, as a client polls a directory, through a real
// gateway and an embedded agent: what a listing costs in agent round
// trips shows here.
func BenchmarkPropfind(b *testing.B) {
	e := start(b, nil)
	e.do(b, "alice", "MKCOL", "/d", nil).want(b, "MKCOL /d", http.StatusCreated)
	for i := range 20 {
		p := fmt.Sprintf("/d/f%02d", i)
		e.do(b, "alice", "PUT", p, strings.NewReader("data")).want(b, "PUT "+p, http.StatusCreated)
	}
	for _, p := range []string{"/d", "/d/f00"} {
		b.Run(strings.ReplaceAll(p, "/", "_"), func(b *testing.B) {
			for b.Loop() {
				if r := e.do(b, "alice", "PROPFIND", p, nil, "Depth", "1"); r.Status != http.StatusMultiStatus {
					b.Fatalf("PROPFIND %s: %d", p, r.Status)
				}
			}
		})
	}
}

// BenchmarkConditionalPut: a save guarded by If-Match (the ETag read
// before) against the same save without it; the precondition costs one
// lookup of the file before the upload.
func BenchmarkConditionalPut(b *testing.B) {
	e := start(b, nil)
	e.do(b, "alice", "PUT", "/f", strings.NewReader("data")).want(b, "PUT /f", http.StatusCreated)
	for _, guarded := range []bool{false, true} {
		name := "plain"
		if guarded {
			name = "if-match"
		}
		b.Run(name, func(b *testing.B) {
			etag := e.do(b, "alice", "HEAD", "/f", nil).Header.Get("ETag")
			for b.Loop() {
				var hdr []string
				if guarded {
					hdr = []string{"If-Match", etag}
				}
				r := e.do(b, "alice", "PUT", "/f", strings.NewReader("data"), hdr...)
				if r.Status != http.StatusNoContent {
					b.Fatalf("PUT /f: %d %s", r.Status, r.Body)
				}
				etag = r.Header.Get("ETag")
			}
		})
	}
}
