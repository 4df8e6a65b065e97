package webdav_test

// FuzzWebDAVRequests sends every WebDAV method with a fuzzed path,
// Destination, Depth (also sent as If, Range and X-OC-Mtime) and body,
// over one keep-alive connection, to a real gateway with an embedded
// agent, and asserts what a client and the container may rely on
// whatever the bytes: every request gets a reply (the connection is never
// dropped under a request), no reply is a 500 (no handler panicked, no
// error went untranslated), the gateway still answers afterwards,
// nothing appears outside alice's directory (not in bob's, not beside the
// agent root, not through the symbolic links in alice's directory that
// lead out of it: escapetest), no upload's temp file stays behind, and
// the agent holds no file open.

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/upgate/upgate/backend/agent"
	"github.com/upgate/upgate/config"
	"github.com/upgate/upgate/internal/escapetest"
	"github.com/upgate/upgate/internal/gwtest"
)

// fuzzDeadline bounds one request of a fuzz input, and the wait for its
// uploads' temp files to go.
const fuzzDeadline = 10 * time.Second

// fuzzDAV is the gateway of a fuzz run and its layout on disk
// (escapetest).
type fuzzDAV struct {
	*escapetest.Layout
	e *env
}

func newFuzzDAV(f *testing.F) *fuzzDAV {
	f.Helper()
	z := &fuzzDAV{Layout: escapetest.New(f)}
	z.e = start(f, func(cfg *config.Config) {
		cfg.Agents = map[string]config.Agent{"embedded": {Embedded: true, Root: z.Agent}}
	})
	z.e.Client.Timeout = fuzzDeadline
	return z
}

// uriPath makes name a request-URI path as a client could send it: the
// bytes a request line may hold are kept as they are, "%" included, so
// that "%2e%2e/" and "%00" reach the server; the others are escaped.
func uriPath(name string) string {
	var b strings.Builder
	b.WriteByte('/')
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c > ' ' && c < 0x7f && c != '#' && c != '?' {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

// headerValue drops what a header's value cannot hold (net/http's client
// refuses to send it).
func headerValue(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return -1
		}
		return r
	}, s)
}

// send sends one request as alice and reads its reply whole; it fails the
// test where the gateway gave no reply or a 500.
func (z *fuzzDAV) send(t *testing.T, method, p string, body []byte, hdr ...string) reply {
	t.Helper()
	req, err := http.NewRequest(method, z.e.URL, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.URL.Opaque = p // sent as it is: the request-URI
	req.SetBasicAuth("alice", gwtest.Users["alice"])
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] != "" {
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	resp, err := z.e.Client.Do(req)
	if err != nil {
		t.Fatalf("%s %q: no reply: %v", method, p, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %q: reading the reply: %v", method, p, err)
	}
	if resp.StatusCode >= 500 && resp.StatusCode != http.StatusNotImplemented && resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("%s %q: %s: %s", method, p, resp.Status, b)
	}
	return reply{Status: resp.StatusCode, Header: resp.Header, Body: string(b)}
}

// check fails if anything appeared outside alice's directory, an upload's
// temp file is left under it, or the agent still holds a file open.
func (z *fuzzDAV) check(t *testing.T, after string) {
	t.Helper()
	if what, err := z.Escaped(); err != nil || what != "" {
		t.Fatalf("after %s: escaped: %s %v", after, what, err)
	}
	z.WaitNoTemps(t, agent.TempPrefix, fuzzDeadline)
	z.e.AgentIdle(t)
}

func FuzzWebDAVRequests(f *testing.F) {
	propfind := []byte(`<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:allprop/></D:propfind>`)
	proppatch := []byte(`<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:z"><D:set><D:prop><Z:a>1</Z:a><D:getlastmodified>Mon, 01 Jan 2001 00:00:00 GMT</D:getlastmodified></D:prop></D:set><D:remove><D:prop><Z:b/></D:prop></D:remove></D:propertyupdate>`)
	lock := []byte(`<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype><D:owner>fuzz</D:owner></D:lockinfo>`)
	for _, s := range []struct {
		name, dest, depth string
		body              []byte
	}{
		{"a", "b", "0", []byte("data")},
		{"dir/sub", "{base}/dir2", "1", propfind},
		{"seed", "seed", "infinity", proppatch},
		{"new", "esc/x", "0", lock},
		{"esc/x", "tobob/x", "1", nil},
		{"tobob", "/../bob/x", "infinity", nil},
		{"%2e%2e/bob/x", "%2e%2e/outside", "0", []byte("x")},
		{"..%2f..%2foutside%2fx", "{base}/%2e%2e/%2e%2e/outside/x", "1", nil},
		{"a%00b", "a%2fb", "0", nil},
		{"", "http://elsewhere.example/x", "", nil},
		{"x/", "y/", "1", lock},
		{"é/ü", "%C3%A9", "0", proppatch},
		{strings.Repeat("a/", 200), strings.Repeat("b", 300), "0", nil},
		{"lock", "lock2", "0", []byte(`<D:lockinfo xmlns:D="DAV:"><D:lockscope><D:shared/></D:lockscope><D:locktype><D:write/></D:locktype></D:lockinfo>`)},
		{"p", "q", "1", []byte(`<D:propfind xmlns:D="DAV:"><D:prop><D:getetag/><D:resourcetype/><D:nope/></D:prop></D:propfind>`)},
		{"p", "q", "1", []byte(`<D:propfind xmlns:D="DAV:"><D:propname/></D:propfind>`)},
		{"x", "y", "(<opaquelocktoken:nope>)", nil},
		{"x", "y", "<http://127.0.0.1/x> (Not <DAV:no-lock>)", nil},
		{"m", "Sat, 01 Jan 2000 00:00:00 GMT", `"x,y", W/"z", *`, []byte("etag")},
		{"m", "m2", `W/"unterminated`, nil},
		{"bad", "bad2", "0", []byte(`<D:propertyupdate xmlns:D="DAV:"><D:set><D:prop><x xmlns=""/></D:prop></D:set>`)},
	} {
		f.Add(s.name, s.dest, s.depth, s.body)
	}
	z := newFuzzDAV(f)
	f.Fuzz(func(t *testing.T, name, dest, depth string, body []byte) {
		z.Reset(t)
		defer z.Reset(t)
		p := uriPath(name)
		dst := headerValue(strings.ReplaceAll(dest, "{base}", z.e.URL))
		depth = headerValue(depth)
		steps := []struct {
			method, path string
			body         []byte
			hdr          []string
		}{
			{"PUT", p, body, []string{"X-OC-Mtime", depth}},
			{"MKCOL", p, nil, nil},
			{"PUT", p + "/f", body, []string{"If", depth}},
			{"PROPFIND", p, body, []string{"Depth", depth}},
			{"PROPPATCH", p, body, nil},
			{"LOCK", p, body, []string{"Depth", depth, "Timeout", "Second-30"}},
			{"COPY", "/seed", nil, []string{"Destination", dst, "Depth", depth, "X-OC-Mtime", headerValue(name)}},
			{"COPY", p, nil, []string{"Destination", dst, "Overwrite", "F"}},
			{"MOVE", p, nil, []string{"Destination", dst}},
			{"MOVE", "/seed", nil, []string{"Destination", dst, "Overwrite", "T", "X-OC-Mtime", depth}},
			{"PUT", p, body, []string{"If-Match", depth, "If-Unmodified-Since", headerValue(dest)}},
			{"MOVE", p, nil, []string{"Destination", dst, "If-None-Match", depth}},
			{"GET", p, nil, []string{"Range", depth}},
			{"HEAD", p, nil, nil},
			{"PROPFIND", "/", nil, []string{"Depth", "1"}},
			{"DELETE", p, nil, []string{"If", depth}},
			{"OPTIONS", "/", nil, nil},
		}
		var tokens []string
		for _, s := range steps {
			r := z.send(t, s.method, s.path, s.body, s.hdr...)
			if s.method == "LOCK" && r.Status < 300 {
				if tok := r.Header.Get("Lock-Token"); tok != "" {
					tokens = append(tokens, tok)
				}
			}
			z.check(t, s.method)
		}
		// A lock held past the input would refuse the next inputs' writes.
		for _, tok := range tokens {
			if r := z.send(t, "UNLOCK", p, nil, "Lock-Token", tok); r.Status != http.StatusNoContent {
				t.Fatalf("UNLOCK %q %s: %d %s", p, tok, r.Status, r.Body)
			}
		}
	})
}
