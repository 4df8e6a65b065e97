package webdav_test

import (
	"encoding/xml"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// discovered is one activelock of a PROPFIND's lockdiscovery, as a client
// reads it.
type discovered struct {
	Depth   string    `xml:"depth"`
	Owner   owner     `xml:"owner"`
	Timeout string    `xml:"timeout"`
	Token   string    `xml:"locktoken>href"`
	Root    string    `xml:"lockroot>href"`
	Write   *struct{} `xml:"locktype>write"`
	Excl    *struct{} `xml:"lockscope>exclusive"`
}

// owner is an activelock's owner: its text, or its href's.
type owner struct {
	Text string `xml:",chardata"`
	Href string `xml:"href"`
}

// lockDiscovery sends a PROPFIND for lockdiscovery (or allprop) of p and
// returns each response's href and its locks. The whole answer must be
// well-formed XML: one owner a client sent with markup of its own must
// not make a listing unreadable.
func lockDiscovery(t *testing.T, e *env, user, p, depth, body string) map[string][]discovered {
	t.Helper()
	if body == "" {
		body = `<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop><D:lockdiscovery/></D:prop></D:propfind>`
	}
	r := e.do(t, user, "PROPFIND", p, strings.NewReader(body), "Depth", depth, "Content-Type", "application/xml")
	r.want(t, "PROPFIND "+p, http.StatusMultiStatus)
	var ms struct {
		Responses []struct {
			Href      string `xml:"href"`
			Propstats []struct {
				Found *struct {
					Locks []discovered `xml:"activelock"`
				} `xml:"prop>lockdiscovery"`
				Status string `xml:"status"`
			} `xml:"propstat"`
		} `xml:"response"`
	}
	if err := xml.Unmarshal([]byte(r.Body), &ms); err != nil {
		t.Fatalf("PROPFIND %s: the answer is not XML: %v\n%s", p, err, r.Body)
	}
	out := map[string][]discovered{}
	for _, resp := range ms.Responses {
		found := false
		for _, ps := range resp.Propstats {
			if ps.Found == nil {
				continue
			}
			if !strings.Contains(ps.Status, " 200 ") {
				t.Errorf("PROPFIND %s: %s: lockdiscovery answered %s", p, resp.Href, ps.Status)
			}
			found = true
			out[resp.Href] = ps.Found.Locks
		}
		if !found {
			t.Errorf("PROPFIND %s: %s has no lockdiscovery\n%s", p, resp.Href, r.Body)
		}
		if _, ok := out[resp.Href]; !ok {
			out[resp.Href] = nil
		}
	}
	return out
}

// TestLockDiscovery: a PROPFIND reports the locks on a resource in its
// lockdiscovery property (RFC 4918 15.8), as Apache does and as cadaver's
// discover, LibreOffice and Office read it; x/net/webdav answered 404.
// A member of a collection under an infinite lock shows that lock, with
// the collection as its root; a depth-0 lock on a collection does not
// reach its members; an owner with markup comes back as its text; an
// UNLOCK takes the lock out; allprop and propname name the property.
func TestLockDiscovery(t *testing.T) {
	e := start(t, nil)
	for _, s := range []struct{ method, p string }{{"MKCOL", "/d"}, {"PUT", "/d/f"}, {"PUT", "/g"}, {"MKCOL", "/z"}, {"PUT", "/z/m"}} {
		e.do(t, "alice", s.method, s.p, strings.NewReader(map[bool]string{true: "data"}[s.method == "PUT"])).want(t, s.method+" "+s.p, http.StatusCreated)
	}
	if got := lockDiscovery(t, e, "alice", "/g", "0", ""); len(got["/g"]) != 0 {
		t.Errorf("/g with no lock: %+v", got)
	}
	lock := func(p, depth, owner string) string {
		t.Helper()
		r := e.do(t, "alice", "LOCK", p, strings.NewReader(`<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:" xmlns:x="urn:x"><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype><D:owner>`+owner+`</D:owner></D:lockinfo>`),
			"Depth", depth, "Timeout", "Second-600", "Content-Type", "application/xml")
		r.want(t, "LOCK "+p, http.StatusOK)
		return strings.Trim(r.Header.Get("Lock-Token"), "<>")
	}
	dTok := lock("/d", "infinity", "<D:href>mailto:alice@example.com</D:href>")
	gTok := lock("/g", "0", "alice &amp; co")
	zTok := lock("/z", "0", "<x:who>me</x:who>")

	got := lockDiscovery(t, e, "alice", "/d", "1", "")
	check := func(href string, want discovered) {
		t.Helper()
		locks := got[href]
		if len(locks) != 1 {
			t.Fatalf("%s: %d locks, want 1: %+v", href, len(locks), got)
		}
		l := locks[0]
		secs, err := strconv.Atoi(strings.TrimPrefix(l.Timeout, "Second-"))
		if err != nil || secs < 1 || secs > 600 {
			t.Errorf("%s: timeout %q, want Second-N with 0 < N <= 600", href, l.Timeout)
		}
		if l.Write == nil || l.Excl == nil {
			t.Errorf("%s: not an exclusive write lock: %+v", href, l)
		}
		l.Timeout, l.Write, l.Excl = "", nil, nil
		if l != want {
			t.Errorf("%s: %+v, want %+v", href, l, want)
		}
	}
	dLock := discovered{Depth: "infinity", Owner: owner{Href: "mailto:alice@example.com"}, Token: dTok, Root: "/d"}
	check("/d/", dLock)
	check("/d/f", dLock)
	got = lockDiscovery(t, e, "alice", "/g", "0", "")
	check("/g", discovered{Depth: "0", Owner: owner{Text: "alice & co"}, Token: gTok, Root: "/g"})
	got = lockDiscovery(t, e, "alice", "/z", "1", "")
	check("/z/", discovered{Depth: "0", Owner: owner{Text: "me"}, Token: zTok, Root: "/z"})
	if len(got["/z/m"]) != 0 {
		t.Errorf("/z/m below a depth-0 lock on /z: %+v", got["/z/m"])
	}

	// A root whose name needs escaping comes back as the hrefs do; an
	// owner with text beside its href is text; a huge one is cut.
	odd := "/dir &<é>%#x "
	e.do(t, "alice", "MKCOL", (&url.URL{Path: odd}).EscapedPath(), nil).want(t, "MKCOL "+odd, http.StatusCreated)
	oddTok := lock((&url.URL{Path: odd}).EscapedPath(), "0", "pre<D:href>a</D:href>post")
	got = lockDiscovery(t, e, "alice", (&url.URL{Path: odd}).EscapedPath(), "0", "")
	for href, locks := range got {
		if len(locks) != 1 || locks[0].Token != oddTok || locks[0].Owner != (owner{Text: "preapost"}) {
			t.Fatalf("%s: %+v", href, locks)
		}
		root, err := url.PathUnescape(locks[0].Root)
		if err != nil || root != odd || locks[0].Root != strings.TrimSuffix(href, "/") {
			t.Errorf("lockroot %q (%q, %v), want %q as the href %q has it", locks[0].Root, root, err, odd, href)
		}
	}
	e.do(t, "alice", "PUT", "/big", strings.NewReader("x")).want(t, "PUT /big", http.StatusCreated)
	lock("/big", "0", strings.Repeat("&lt;", 100_000))
	got = lockDiscovery(t, e, "alice", "/big", "0", "")
	if o := got["/big"][0].Owner.Text; len(o) != 1024 || strings.Trim(o, "<") != "" {
		t.Errorf("a 100,000-byte owner came back as %d bytes, want the first 1,024", len(o))
	}

	// allprop and propname name it too, as Apache's do.
	got = lockDiscovery(t, e, "alice", "/g", "0", `<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:allprop/></D:propfind>`)
	check("/g", discovered{Depth: "0", Owner: owner{Text: "alice & co"}, Token: gTok, Root: "/g"})
	r := e.do(t, "alice", "PROPFIND", "/g", strings.NewReader(`<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:propname/></D:propfind>`), "Depth", "0")
	r.want(t, "PROPFIND propname /g", http.StatusMultiStatus, "lockdiscovery")

	// Another user's tree shows none of alice's locks.
	e.do(t, "bob", "MKCOL", "/d", nil).want(t, "bob: MKCOL /d", http.StatusCreated)
	if got := lockDiscovery(t, e, "bob", "/d", "0", ""); len(got["/d/"]) != 0 {
		t.Errorf("bob's /d shows alice's locks: %+v", got)
	}

	e.do(t, "alice", "UNLOCK", "/d", nil, "Lock-Token", "<"+dTok+">").want(t, "UNLOCK /d", http.StatusNoContent)
	got = lockDiscovery(t, e, "alice", "/d", "1", "")
	for _, href := range slices.Sorted(func(yield func(string) bool) {
		for k := range got {
			if !yield(k) {
				return
			}
		}
	}) {
		if len(got[href]) != 0 {
			t.Errorf("%s after the UNLOCK: %+v", href, got[href])
		}
	}
}
