package webdav_test

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/upgate/upgate/backend/fstest"
	"github.com/upgate/upgate/config"
	"github.com/upgate/upgate/internal/gwtest"
)

// The hostile tests send what a broken or malicious client sends, over raw
// connections where a real client would refuse to, and check that each
// gets a reply that says what is wrong, or a closed connection where the
// accept layer's bounds apply, and that nothing lands outside the user's
// directory or half-written.

// basic is the Authorization header value for user.
func basic(user string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+gwtest.Users[user]))
}

// send writes a raw request on c and reads one response, within a bound
// only a hang crosses.
func send(t testing.TB, c net.Conn, raw string) (*http.Response, string) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatalf("writing the request: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading the response to %q: %v", strings.SplitN(raw, "\r\n", 2)[0], err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// waitClosed fails unless the server closes c within bound: a read
// returns EOF or a reset, not the deadline.
func waitClosed(t testing.TB, c net.Conn, bound time.Duration) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(bound))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the connection is still open after %v", bound)
	}
}

func TestPathTraversal(t *testing.T) {
	e := start(t, nil)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(e.UserDir("bob"), 0o755))
	must(os.WriteFile(filepath.Join(e.UserDir("bob"), "secret"), []byte("bob's"), 0o600))
	must(os.WriteFile(filepath.Join(e.Root, "agent-root-file"), []byte("root"), 0o600))
	for _, target := range []string{
		"/../bob/secret", "/../../bob/secret", "/%2e%2e/bob/secret", "/..%2fbob%2fsecret",
		"/./../agent-root-file", "/%2E%2E/%2E%2E/etc/passwd", "//../bob/secret",
	} {
		c := e.raw(t)
		resp, body := send(t, c, "GET "+target+" HTTP/1.1\r\nHost: x\r\nAuthorization: "+basic("alice")+"\r\n\r\n")
		if resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusBadRequest {
			t.Errorf("GET %s: %d, want 404 or 400:\n%s", target, resp.StatusCode, body)
		}
		if strings.Contains(body, "bob's") || strings.Contains(body, "root") && !strings.Contains(body, "upgate:") {
			t.Errorf("GET %s leaked: %q", target, body)
		}
	}
	// Writes that climb land inside the user's directory.
	c := e.raw(t)
	resp, body := send(t, c, "PUT /../../escape.txt HTTP/1.1\r\nHost: x\r\nAuthorization: "+basic("alice")+"\r\nContent-Length: 3\r\n\r\nabc")
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT /../../escape.txt: %d %s", resp.StatusCode, body)
	}
	wantFile(t, e, "alice", "escape.txt", []byte("abc"))
	resp, body = send(t, c, "MOVE /escape.txt HTTP/1.1\r\nHost: x\r\nAuthorization: "+basic("alice")+"\r\nDestination: http://x/../../../bob/stolen\r\n\r\n")
	if resp.StatusCode != http.StatusConflict && resp.StatusCode != http.StatusCreated {
		t.Fatalf("MOVE to /../../../bob/stolen: %d %s", resp.StatusCode, body)
	}
	if _, err := os.Stat(filepath.Join(e.UserDir("bob"), "stolen")); err == nil {
		t.Fatal("a MOVE reached bob's directory")
	}
	if _, err := os.Stat(filepath.Join(e.Root, "escape.txt")); err == nil {
		t.Fatal("a PUT reached the agent's root")
	}
	e.AgentIdle(t)
}

func TestBadRequestsAnswered(t *testing.T) {
	e := start(t, nil)
	e.do(t, "alice", "MKCOL", "/dir", nil).want(t, "MKCOL", http.StatusCreated)
	e.do(t, "alice", "PUT", "/keep.txt", strings.NewReader("keep")).want(t, "PUT", http.StatusCreated)
	hugeXML := `<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop>` + strings.Repeat("<D:displayname/>", 200000) + `</D:prop></D:propfind>`
	tests := []struct {
		name, method, path string
		body               string
		hdr                []string
		status             int
		text               string
	}{
		{"PUT to a collection", "PUT", "/dir", "x", nil, http.StatusMethodNotAllowed, "a collection cannot be written as a file"},
		{"PUT to a collection URL", "PUT", "/new/", "x", nil, http.StatusMethodNotAllowed, "names a collection"},
		{"partial PUT", "PUT", "/keep.txt", "XX", []string{"Content-Range", "bytes 0-1/4"}, http.StatusBadRequest, "partial PUT"},
		{"PROPFIND without Depth", "PROPFIND", "/", "", nil, http.StatusForbidden, "propfind-finite-depth"},
		{"PROPFIND Depth infinity", "PROPFIND", "/", "", []string{"Depth", "infinity"}, http.StatusForbidden, "only Depth 0 or 1"},
		{"PROPFIND body over 1 MiB", "PROPFIND", "/", hugeXML, []string{"Depth", "0"}, http.StatusRequestEntityTooLarge, "request body too large"},
		{"PROPFIND bad XML", "PROPFIND", "/", "<D:propfind", []string{"Depth", "0"}, http.StatusBadRequest, "XML syntax error"},
		{"MOVE to another host", "MOVE", "/keep.txt", "", []string{"Destination", "http://evil.example/keep.txt"}, http.StatusBadGateway, "another server"},
		{"MOVE without Destination", "MOVE", "/keep.txt", "", nil, http.StatusBadRequest, "invalid destination"},
		{"COPY onto itself", "COPY", "/keep.txt", "", []string{"Destination", "/keep.txt"}, http.StatusForbidden, "destination equals source"},
		{"MOVE the root", "MOVE", "/", "", []string{"Destination", "/x"}, http.StatusForbidden, "root collection"},
		{"MOVE into itself", "MOVE", "/dir", "", []string{"Destination", "/dir/sub"}, http.StatusForbidden, "lies inside the source"},
		{"LOCK with a bad Timeout", "LOCK", "/keep.txt", "", []string{"Timeout", "Forever"}, http.StatusBadRequest, "invalid timeout"},
		{"a control character in a name", "PUT", "/a%01b.txt", "x", nil, http.StatusBadRequest, "control character"},
		{"X-OC-Mtime not a number", "PUT", "/t.txt", "x", []string{"X-OC-Mtime", "-5"}, http.StatusBadRequest, "X-OC-Mtime"},
		{"MKCOL with a body", "MKCOL", "/m", "<x/>", nil, http.StatusUnsupportedMediaType, "MKCOL with a body"},
		{"an unknown method", "FROB", "/keep.txt", "", nil, http.StatusNotImplemented, "FROB"},
		{"GET a collection", "GET", "/dir", "", nil, http.StatusMethodNotAllowed, "collection"},
		{"DELETE the root", "DELETE", "/", "", nil, http.StatusForbidden, "root collection"},
		{"DELETE a collection with Depth 0", "DELETE", "/dir", "", []string{"Depth", "0"}, http.StatusBadRequest, "must be Depth: infinity"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body io.Reader = http.NoBody
			if tt.body != "" {
				body = strings.NewReader(tt.body)
			}
			r := e.do(t, "alice", tt.method, tt.path, body, tt.hdr...)
			r.want(t, tt.method+" "+tt.path, tt.status, tt.text)
			if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") && !strings.HasPrefix(ct, "application/xml") {
				t.Errorf("Content-Type %q", ct)
			}
		})
	}
	wantFile(t, e, "alice", "keep.txt", []byte("keep"))
	wantOnly(t, e, "alice", "dir", "keep.txt")
	e.AgentIdle(t)
}

// TestReadOnlyMount: every write to a read-only mount is refused with 403
// and says why; reads work.
func TestReadOnlyMount(t *testing.T) {
	e := start(t, func(cfg *config.Config) {
		for i := range cfg.Users {
			cfg.Users[i].Mounts[0].ReadOnly = true
		}
	})
	if err := os.MkdirAll(filepath.Join(e.UserDir("alice"), "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.UserDir("alice"), "f.txt"), []byte("ro"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.do(t, "alice", "GET", "/f.txt", nil).want(t, "GET", http.StatusOK, "ro")
	for _, tc := range []struct {
		method, path string
		hdr          []string
	}{
		{"PUT", "/f.txt", nil}, {"PUT", "/new.txt", nil}, {"MKCOL", "/m", nil}, {"DELETE", "/f.txt", nil},
		{"MOVE", "/f.txt", []string{"Destination", "/g.txt"}}, {"COPY", "/f.txt", []string{"Destination", "/g.txt"}},
	} {
		var body io.Reader
		if tc.method == "PUT" {
			body = strings.NewReader("x")
		}
		e.do(t, "alice", tc.method, tc.path, body, tc.hdr...).want(t, tc.method+" "+tc.path, http.StatusForbidden, "read-only file system")
	}
	wantFile(t, e, "alice", "f.txt", []byte("ro"))
	wantOnly(t, e, "alice", "d", "f.txt")
}

func TestHugeHeaders(t *testing.T) {
	e := start(t, nil)
	c := e.raw(t)
	resp, _ := send(t, c, "PROPFIND / HTTP/1.1\r\nHost: x\r\nAuthorization: "+basic("alice")+"\r\nX-Big: "+strings.Repeat("a", 200<<10)+"\r\n\r\n")
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("200 KiB of headers: %d, want 431", resp.StatusCode)
	}
	if e.logins("ok")+e.logins("failed") != 0 {
		t.Error("a request with over-size headers reached the login")
	}
}

// TestSlowloris: a client that sends its headers (or its TLS handshake)
// too slowly is disconnected after webdav.header_timeout, and its session
// is gone.
func TestSlowloris(t *testing.T) {
	for _, overTLS := range []bool{false, true} {
		t.Run(fmt.Sprintf("tls=%v", overTLS), func(t *testing.T) {
			edit := func(cfg *config.Config) { cfg.WebDAV.HeaderTimeout = 500 * time.Millisecond }
			var e *env
			if overTLS {
				e = startTLS(t, edit)
			} else {
				e = start(t, edit)
			}
			c := e.raw(t)
			if !overTLS {
				if _, err := io.WriteString(c, "PROPFIND / HTTP/1.1\r\nHost: x\r\n"); err != nil {
					t.Fatal(err)
				}
			}
			// One header byte every 100 ms never completes the request.
			done := make(chan struct{})
			go func() {
				defer close(done)
				for range 300 {
					if _, err := c.Write([]byte("X")); err != nil {
						return
					}
					time.Sleep(100 * time.Millisecond)
				}
			}()
			waitClosed(t, c, 20*time.Second)
			c.Close()
			<-done
			waitSessions(t, e, 0)
		})
	}
}

// waitSessions waits until the gateway holds n sessions.
func waitSessions(t testing.TB, e *env, n int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for e.Srv.Gateway.Registry().Len() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions, want %d", e.Srv.Gateway.Registry().Len(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestAbortedPutLeavesNothing: an upload whose body ends early (the
// client vanished, was killed, or its proxy gave up) or stalls commits
// nothing: the old file stays whole, a new one never appears, no temp
// file is left and the agent holds no open file.
func TestAbortedPutLeavesNothing(t *testing.T) {
	e := start(t, func(cfg *config.Config) { cfg.Connections.ProgressTimeout = 500 * time.Millisecond })
	old := fstest.Data(100000, 107)
	e.do(t, "alice", "PUT", "/old.php", bytes.NewReader(old)).want(t, "PUT", http.StatusCreated)
	part := fstest.Data(300000, 108)
	cases := []struct {
		name, hdr, body string
		reset           bool // close with a RST instead of a FIN
		stall           bool // leave the connection open and silent
	}{
		{name: "Content-Length short, FIN", hdr: "Content-Length: 1000000\r\n", body: string(part)},
		{name: "Content-Length short, RST", hdr: "Content-Length: 1000000\r\n", body: string(part), reset: true},
		{name: "chunked without the last chunk", hdr: "Transfer-Encoding: chunked\r\n", body: fmt.Sprintf("%x\r\n%s\r\n", len(part), part)},
		{name: "stalled body", hdr: "Content-Length: 1000000\r\n", body: string(part), stall: true},
	}
	for _, tc := range cases {
		for _, target := range []string{"/old.php", "/new.php"} {
			t.Run(tc.name+" "+target, func(t *testing.T) {
				aborted := e.transfers("upload", "aborted")
				c := e.raw(t)
				raw := "PUT " + target + " HTTP/1.1\r\nHost: x\r\nAuthorization: " + basic("alice") + "\r\n" + tc.hdr + "\r\n" + tc.body
				if _, err := io.WriteString(c, raw); err != nil {
					t.Fatal(err)
				}
				switch {
				case tc.stall:
					// connections.progress_timeout ends it.
					waitClosed(t, c, 20*time.Second)
				case tc.reset:
					_ = c.(*net.TCPConn).SetLinger(0)
					c.Close()
				default:
					_ = c.(*net.TCPConn).CloseWrite()
					waitClosed(t, c, 20*time.Second)
				}
				e.AgentIdle(t)
				deadline := time.Now().Add(15 * time.Second)
				for e.transfers("upload", "aborted") == aborted && time.Now().Before(deadline) {
					time.Sleep(10 * time.Millisecond)
				}
				if e.transfers("upload", "aborted") != aborted+1 {
					t.Errorf("the upload was not counted as aborted")
				}
				// The gateway counts the abort when it sends it; the
				// agent has removed the temp file once it lets the
				// handle go. (The first AgentIdle can run before a
				// reset request's open reached the agent.)
				e.AgentIdle(t)
				wantFile(t, e, "alice", "old.php", old)
				wantOnly(t, e, "alice", "old.php")
			})
		}
	}
}

// TestWrongPasswordsBanned: failed logins over WebDAV count with the
// defender; once it bans the address, new connections are refused with a
// reason (plain HTTP) and even the right password gets nowhere.
func TestWrongPasswordsBanned(t *testing.T) {
	e := start(t, func(cfg *config.Config) {
		cfg.Defender = config.Defender{Enabled: true, MaxFailures: 3, Window: time.Minute, BanTime: time.Hour}
	})
	for i := range 3 {
		c := e.raw(t)
		resp, body := send(t, c, "PROPFIND / HTTP/1.1\r\nHost: x\r\nDepth: 0\r\nAuthorization: Basic "+
			base64.StdEncoding.EncodeToString([]byte(fmt.Sprintf("alice:guess%d", i)))+"\r\n\r\n")
		if resp.StatusCode != http.StatusUnauthorized || !resp.Close || !strings.Contains(body, "authentication failed") {
			t.Fatalf("wrong password %d: %d close=%v %q", i, resp.StatusCode, resp.Close, body)
		}
		waitClosed(t, c, 10*time.Second)
	}
	c := e.raw(t)
	resp, body := send(t, c, "PROPFIND / HTTP/1.1\r\nHost: x\r\nDepth: 0\r\nAuthorization: "+basic("alice")+"\r\n\r\n")
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "banned") {
		t.Fatalf("after 3 failures: %d %q, want 503 saying banned", resp.StatusCode, body)
	}
	if n := e.logins("ok"); n != 0 {
		t.Errorf("%d logins from a banned address", n)
	}
}

// TestConnectionLimitAnswered: over plain HTTP a connection the accept
// layer refuses gets a 503 with the reason; over TLS, where nothing can be
// said before the handshake, it is closed.
func TestConnectionLimitAnswered(t *testing.T) {
	e := start(t, func(cfg *config.Config) { cfg.Connections.MaxPerIP = 1 })
	first := e.raw(t)
	resp, _ := send(t, first, "PROPFIND / HTTP/1.1\r\nHost: x\r\nDepth: 0\r\nAuthorization: "+basic("alice")+"\r\n\r\n")
	if resp.StatusCode != http.StatusMultiStatus {
		t.Fatalf("first connection: %d", resp.StatusCode)
	}
	second := e.raw(t)
	resp, body := send(t, second, "PROPFIND / HTTP/1.1\r\nHost: x\r\nDepth: 0\r\n\r\n")
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "too many connections") || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("second connection: %d %q %v", resp.StatusCode, body, resp.Header)
	}

	et := startTLS(t, func(cfg *config.Config) { cfg.Connections.MaxPerIP = 1 })
	r := et.do(t, "alice", "PROPFIND", "/", nil, "Depth", "0")
	r.want(t, "first TLS connection", http.StatusMultiStatus)
	conf := et.Client.Transport.(*http.Transport).TLSClientConfig
	tc, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", et.Addr, conf)
	if err == nil {
		tc.Close()
		t.Fatal("a second TLS connection completed its handshake past connections.max_per_ip")
	}
}

// TestPlainHTTPOnTLSPort: a client that speaks HTTP to the HTTPS listener
// is told so (net/http recognizes GET, HEAD, POST, PUT and OPTIONS, the
// first request of every client here; others are just closed).
func TestPlainHTTPOnTLSPort(t *testing.T) {
	e := startTLS(t, nil)
	c := e.raw(t)
	resp, body := send(t, c, "OPTIONS / HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "HTTPS") {
		t.Fatalf("HTTP on the HTTPS port: %d %q", resp.StatusCode, body)
	}
}
