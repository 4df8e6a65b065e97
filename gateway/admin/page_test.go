package admin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/upgate/upgate/gateway"
	"github.com/upgate/upgate/gateway/admin"
)

const testToken = "s3cret-admin-token"

// TestPageLogin: with a token, the page is a login form until the token
// is posted; the cookie it sets is HttpOnly and SameSite=Strict and opens
// the page and its stream, and nothing else: the JSON API still wants the
// bearer token.
func TestPageLogin(t *testing.T) {
	env := start(t, testToken)
	srv := env.Srv

	code, body, resp := request(t, srv, http.MethodGet, "/", "", nil, nil)
	if code != http.StatusOK || !strings.Contains(body, `name="token"`) || strings.Contains(body, "upgate-csrf") {
		t.Fatalf("GET / without a cookie: %d, want the login form:\n%s", code, body)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("CSP %q", csp)
	}
	for path, want := range map[string]int{"/ui/stream": 401, "/api/sessions": 401, "/api/latency": 401, "/ui/static/page.js": 200, "/healthz": 200} {
		if code, body, _ := request(t, srv, http.MethodGet, path, "", nil, nil); code != want {
			t.Errorf("GET %s without a cookie: %d %q, want %d", path, code, body, want)
		}
	}

	form := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}
	code, body, resp = request(t, srv, http.MethodPost, "/ui/login", "", form, strings.NewReader("token=wrong"))
	if code != http.StatusUnauthorized || !strings.Contains(body, "not the admin token") || len(resp.Cookies()) != 0 {
		t.Errorf("wrong token: %d, cookies %v:\n%s", code, resp.Cookies(), body)
	}
	crossSite := http.Header{"Content-Type": form["Content-Type"], "Sec-Fetch-Site": {"cross-site"}}
	if code, _, resp := request(t, srv, http.MethodPost, "/ui/login", "", crossSite, strings.NewReader("token="+testToken)); code != http.StatusForbidden || len(resp.Cookies()) != 0 {
		t.Errorf("cross-site login: %d, cookies %v", code, resp.Cookies())
	}

	cookie := login(t, srv, testToken)
	if !cookie.HttpOnly || cookie.SameSite != http.SameSiteStrictMode || cookie.Path != "/" || cookie.Secure ||
		cookie.MaxAge != 86400 || strings.Contains(cookie.Value, testToken) {
		t.Errorf("session cookie %+v", cookie)
	}
	withCookie := http.Header{"Cookie": {cookie.String()}}
	if code, body, _ := request(t, srv, http.MethodGet, "/", "", withCookie, nil); code != http.StatusOK ||
		!strings.Contains(body, "upgate-csrf") || !strings.Contains(body, `id="sessions"`) {
		t.Errorf("GET / with the cookie: %d:\n%s", code, body)
	}
	openStream(t, srv, cookie).waitFor(t, "a first snapshot", func(snapshot) bool { return true })
	if code, _, _ := request(t, srv, http.MethodGet, "/api/sessions", "", withCookie, nil); code != http.StatusUnauthorized {
		t.Errorf("GET /api/sessions with the cookie alone: %d, want 401 (the API takes the bearer token)", code)
	}
	if _, err := (&admin.Client{Addr: srv.AdminAddr.String(), Token: testToken}).Sessions(context.Background()); err != nil {
		t.Errorf("API with the bearer token: %v", err)
	}

	// A forged or altered cookie opens nothing.
	forged := *cookie
	forged.Value = strings.ToUpper(cookie.Value[:10]) + cookie.Value[10:]
	for _, v := range []string{forged.Value, "x", "", cookie.Value + "x", strings.Replace(cookie.Value, ".", ".A", 1)} {
		h := http.Header{"Cookie": {"upgate_admin=" + v}}
		if code, _, _ := request(t, srv, http.MethodGet, "/ui/stream", "", h, nil); code != http.StatusUnauthorized {
			t.Errorf("stream with cookie %q: %d, want 401", v, code)
		}
	}

	// Logging out clears the cookie.
	code, _, resp = request(t, srv, http.MethodPost, "/ui/logout", "",
		http.Header{"Cookie": {cookie.String()}, "Content-Type": form["Content-Type"]},
		strings.NewReader("csrf="+csrfOf(t, srv, cookie)))
	if code != http.StatusSeeOther || len(resp.Cookies()) != 1 || resp.Cookies()[0].MaxAge >= 0 {
		t.Errorf("logout: %d, cookies %v", code, resp.Cookies())
	}
}

// TestPageKickCSRF: a kick needs the session cookie, the CSRF token of
// that cookie, and a same-origin request; then it closes the session.
func TestPageKickCSRF(t *testing.T) {
	env := start(t, testToken)
	srv := env.Srv
	fc := dialFTP(t, srv, "alice")
	var id string
	for _, s := range srv.Gateway.Registry().Sessions() {
		if s.User() == "alice" {
			id = s.ID
		}
	}
	cookie := login(t, srv, testToken)
	csrf := csrfOf(t, srv, cookie)
	other := csrfOf(t, srv, login(t, srv, testToken))
	if other == csrf {
		t.Fatal("two logins share a CSRF token")
	}
	path := "/ui/sessions/" + id + "/kick"
	for name, h := range map[string]http.Header{
		"no cookie":                  {"X-Upgate-Csrf": {csrf}},
		"no CSRF token":              {"Cookie": {cookie.String()}},
		"another session's token":    {"Cookie": {cookie.String()}, "X-Upgate-Csrf": {other}},
		"Sec-Fetch-Site: cross-site": {"Cookie": {cookie.String()}, "X-Upgate-Csrf": {csrf}, "Sec-Fetch-Site": {"cross-site"}},
		"a foreign Origin":           {"Cookie": {cookie.String()}, "X-Upgate-Csrf": {csrf}, "Origin": {"http://evil.example"}},
	} {
		code, body, _ := request(t, srv, http.MethodPost, path, "", h, nil)
		if code != http.StatusUnauthorized && code != http.StatusForbidden {
			t.Errorf("kick with %s: %d %s, want 401 or 403", name, code, body)
		}
	}
	if _, ok := srv.Gateway.Registry().Get(id); !ok {
		t.Fatal("a refused kick closed the session")
	}
	if err := fc.NoOp(); err != nil {
		t.Fatalf("NOOP after refused kicks: %v", err)
	}
	if code, body, _ := request(t, srv, http.MethodGet, path, "", http.Header{"Cookie": {cookie.String()}, "X-Upgate-Csrf": {csrf}}, nil); code != http.StatusMethodNotAllowed {
		t.Errorf("GET kick: %d %s, want 405", code, body)
	}
	h := http.Header{"Cookie": {cookie.String()}, "X-Upgate-Csrf": {csrf}, "Sec-Fetch-Site": {"same-origin"},
		"Origin": {"http://" + srv.AdminAddr.String()}}
	if code, body, _ := request(t, srv, http.MethodPost, path, "", h, nil); code != http.StatusNoContent {
		t.Fatalf("kick: %d %s", code, body)
	}
	if err := fc.NoOp(); err == nil {
		t.Error("the kicked FTP client still gets replies")
	}
	if code, _, _ := request(t, srv, http.MethodPost, path, "", h, nil); code != http.StatusNotFound {
		t.Errorf("kicking a gone session: %d, want 404", code)
	}
}

// TestPageTokenlessLoopbackOnly: without a token the page needs no login
// but answers only loopback Host names (a DNS-rebinding page sends its own
// name), and a kick still needs the page's CSRF token.
func TestPageTokenlessLoopbackOnly(t *testing.T) {
	env := start(t, "")
	srv := env.Srv
	dialFTP(t, srv, "alice")
	_, port, _ := net.SplitHostPort(srv.AdminAddr.String())
	var id string
	for _, s := range srv.Gateway.Registry().Sessions() {
		id = s.ID
	}
	csrf := csrfOf(t, srv, nil)
	for _, host := range []string{"evil.example:" + port, "evil.example", "127.0.0.1.evil.example:" + port, "localhost.evil.example", "10.0.0.1"} {
		for _, path := range []string{"/", "/ui/stream", "/ui/static/page.js"} {
			if code, body, _ := request(t, srv, http.MethodGet, path, host, nil, nil); code != http.StatusForbidden || strings.Contains(body, "upgate-csrf") {
				t.Errorf("GET %s with Host %q: %d, want 403", path, host, code)
			}
		}
		if code, _, _ := request(t, srv, http.MethodPost, "/ui/sessions/"+id+"/kick", host, http.Header{"X-Upgate-Csrf": {csrf}}, nil); code != http.StatusForbidden {
			t.Errorf("kick with Host %q: %d, want 403", host, code)
		}
	}
	if _, ok := srv.Gateway.Registry().Get(id); !ok {
		t.Fatal("a foreign Host kicked the session")
	}
	for _, host := range []string{"127.0.0.1:" + port, "localhost:" + port, "[::1]:" + port} {
		if code, body, _ := request(t, srv, http.MethodGet, "/", host, nil, nil); code != http.StatusOK || !strings.Contains(body, "upgate-csrf") {
			t.Errorf("GET / with Host %q: %d", host, code)
		}
	}
	if code, _, _ := request(t, srv, http.MethodPost, "/ui/sessions/"+id+"/kick", "", nil, nil); code != http.StatusForbidden {
		t.Errorf("kick without the CSRF token: %d, want 403", code)
	}
	if code, _, _ := request(t, srv, http.MethodPost, "/ui/sessions/"+id+"/kick", "", http.Header{"X-Upgate-Csrf": {csrf}, "Sec-Fetch-Site": {"cross-site"}}, nil); code != http.StatusForbidden {
		t.Errorf("cross-site kick: %d, want 403", code)
	}
	if code, body, _ := request(t, srv, http.MethodPost, "/ui/sessions/"+id+"/kick", "", http.Header{"X-Upgate-Csrf": {csrf}}, nil); code != http.StatusNoContent {
		t.Errorf("kick: %d %s", code, body)
	}
}

// TestPageStream: the stream shows FTP and SFTP sessions as they log in,
// an upload's bytes and open file while it runs, then the transfer, the
// save latency (also in /api/sessions, /api/latency and the metrics) and the session's
// end. It measures how long a closed session stays on the page, after a
// logout (an event in the feed wakes the stream) and after a connection
// that never logged in closes (the stream's poll finds it).
func TestPageStream(t *testing.T) {
	env := start(t, "")
	srv := env.Srv
	st := openStream(t, srv, nil)
	snap := st.waitFor(t, "the embedded agent up", func(s snapshot) bool {
		return len(s.State.Agents) == 1 && s.State.Agents[0].Up
	})
	if a := snap.State.Agents[0]; a.Name != "embedded" || a.OpenFiles != 0 {
		t.Errorf("agent %+v", a)
	}

	fc := dialFTP(t, srv, "alice")
	sc := dialSFTP(t, srv, "bob")
	snap = st.waitFor(t, "alice's FTP and bob's SFTP sessions", func(s snapshot) bool {
		return hasSession(s, "alice", "ftp") && hasSession(s, "bob", "sftp")
	})
	for _, s := range snap.State.Sessions {
		if s.Socket == nil || !s.Socket.Keepalive || s.Socket.KeepaliveIdle != 30*time.Second || s.TCP == nil || s.TCP.State != "established" {
			t.Errorf("session %s: socket %+v, tcp %+v", s.ID, s.Socket, s.TCP)
		}
	}

	// A slow upload: bytes and the open file show while it runs.
	f, err := sc.Create("/slow.bin")
	if err != nil {
		t.Fatal(err)
	}
	chunk := bytes.Repeat([]byte("x"), 64<<10)
	if _, err := f.Write(chunk); err != nil {
		t.Fatal(err)
	}
	st.waitFor(t, "the upload's first 64 KiB", func(s snapshot) bool {
		for _, ss := range s.State.Sessions {
			if ss.User == "bob" && ss.BytesIn >= 64<<10 && len(ss.Files) == 1 && ss.Files[0].Path == "/slow.bin" &&
				ss.Files[0].Direction == "upload" && ss.Files[0].Bytes == 64<<10 {
				return true
			}
		}
		return false
	})
	for range 4 {
		if _, err := f.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	st.waitFor(t, "the upload at 320 KiB", func(s snapshot) bool {
		for _, ss := range s.State.Sessions {
			if ss.User == "bob" && ss.BytesIn >= 320<<10 && len(ss.Files) == 1 && ss.Files[0].Bytes == 320<<10 {
				return true
			}
		}
		return false
	})
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	upload(t, fc, "quick.txt", []byte("hello"))
	snap = st.waitFor(t, "both saves in the transfers and the latency", func(s snapshot) bool {
		return len(s.State.Latency) == 2 && len(s.State.Transfers) == 2
	})
	tr := snap.State.Transfers[1] // newest first
	if tr.User != "bob" || tr.Data.Path != "/slow.bin" || tr.Data.Bytes != 320<<10 || tr.Data.Result != "committed" || tr.Data.Duration <= 0 {
		t.Errorf("transfer %+v", tr)
	}
	if tr := snap.State.Transfers[0]; tr.User != "alice" || tr.Data.Path != "/quick.txt" || tr.Data.Bytes != 5 {
		t.Errorf("transfer %+v", tr)
	}
	for i, want := range []struct{ user, proto string }{{"alice", "ftp"}, {"bob", "sftp"}} {
		l := snap.State.Latency[i]
		if l.User != want.user || l.Protocol != want.proto || l.Count != 1 || l.P50 <= 0 || len(l.Series) != 10 || !inLastBuckets(l.Series[8].Count, l.Series[9].Count) {
			t.Errorf("latency %d: %+v", i, l)
		}
	}
	for _, s := range snap.State.Sessions {
		if len(s.Files) != 0 {
			t.Errorf("session %s still shows open files %+v", s.ID, s.Files)
		}
	}
	lat, err := (&admin.Client{Addr: srv.AdminAddr.String()}).Latency(context.Background())
	if err != nil || len(lat.Latency) != 2 || lat.Window != 5*time.Minute || lat.Latency[1].User != "bob" {
		t.Errorf("/api/latency: %+v %v", lat, err)
	}
	// /api/sessions has the same summaries beside the sessions, at the
	// top level of its JSON.
	code, body, _ := request(t, srv, http.MethodGet, "/api/sessions", "", nil, nil)
	var raw map[string]json.RawMessage
	if err := json.Unmarshal([]byte(body), &raw); code != http.StatusOK || err != nil ||
		string(raw["window"]) != "300000000000" || string(raw["slot"]) != "30000000000" || raw["sessions"] == nil || raw["latency"] == nil {
		t.Errorf("/api/sessions: %d %v:\n%s", code, err, body)
	}
	all, err := (&admin.Client{Addr: srv.AdminAddr.String()}).SessionsAndLatency(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(all.Sessions) != 2 || all.Window != 5*time.Minute || all.Slot != 30*time.Second || len(all.Latency) != 2 {
		t.Fatalf("/api/sessions: %+v", all)
	}
	for i, want := range []struct {
		user, proto string
		bytes       int64
	}{{"alice", "ftp", 5}, {"bob", "sftp", 320 << 10}} {
		l := all.Latency[i]
		if l.User != want.user || l.Protocol != want.proto || l.Count != 1 || l.P50 <= 0 || l.P99 < l.P50 || l.Max < l.P99 ||
			len(l.Series) != 10 || !inLastBuckets(l.Series[8].Count, l.Series[9].Count) {
			t.Errorf("/api/sessions latency %d: %+v", i, l)
		}
		if i < len(lat.Latency) && (l.P50 != lat.Latency[i].P50 || l.Max != lat.Latency[i].Max) {
			t.Errorf("/api/sessions latency %d %+v, /api/latency's %+v", i, l, lat.Latency[i])
		}
		var s *gateway.SessionInfo
		for j := range all.Sessions {
			if all.Sessions[j].User == want.user {
				s = &all.Sessions[j]
			}
		}
		if s == nil || s.Protocol != want.proto || s.BytesIn < want.bytes {
			t.Errorf("/api/sessions: %s's session %+v", want.user, s)
		}
	}
	var out bytes.Buffer
	if err := admin.WriteLatency(&out, lat); err != nil || !strings.Contains(out.String(), "last 5m") ||
		!strings.Contains(out.String(), "alice  ftp    1") || !strings.Contains(out.String(), "bob    sftp   1") {
		t.Errorf("latency table (%v):\n%s", err, out.String())
	}
	_, metrics, _ := request(t, srv, http.MethodGet, "/metrics", "", nil, nil)
	for _, line := range []string{`upgate_save_seconds_count{proto="ftp"} 1`, `upgate_save_seconds_count{proto="sftp"} 1`} {
		if !strings.Contains(metrics, line) {
			t.Errorf("metrics lack %s", line)
		}
	}

	// A logout: the session's end is an event, and the page has it at once.
	start := time.Now()
	if err := fc.Quit(); err != nil {
		t.Fatal(err)
	}
	st.waitFor(t, "alice's session gone", func(s snapshot) bool { return !hasSession(s, "alice", "ftp") })
	t.Logf("a logged-out session left the page %v after QUIT", time.Since(start).Round(time.Millisecond))

	// A connection that never logs in: no event, the poll finds it.
	nc, err := net.DialTimeout("tcp", srv.FTPAddr.String(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	anon := func(s snapshot) bool {
		for _, ss := range s.State.Sessions {
			if ss.Protocol == "ftp" && ss.User == "" {
				return true
			}
		}
		return false
	}
	st.waitFor(t, "the anonymous connection", anon)
	start = time.Now()
	nc.Close()
	st.waitFor(t, "the anonymous connection gone", func(s snapshot) bool { return !anon(s) })
	elapsed := time.Since(start)
	t.Logf("a connection closed before login left the page %v after its close", elapsed.Round(time.Millisecond))
	if elapsed > 5*time.Second {
		t.Errorf("a closed connection stayed %v on the page", elapsed)
	}
}

// inLastBuckets reports whether one save is counted in the newest of a
// series' 30-second buckets or the one before: a save made just before a
// bucket's end is in the one before once the snapshot is taken after it
// (CI: both saves at 17:42:2x in the 17:42:00 bucket, the page read at
// 17:42:30).
func inLastBuckets(before, last int) bool { return before+last == 1 }
