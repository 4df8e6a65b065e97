package admin_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"
	"github.com/pkg/sftp"
	"go.uber.org/goleak"
	"golang.org/x/crypto/ssh"

	"github.com/upgate/upgate/config"
	"github.com/upgate/upgate/internal/gwtest"
	"github.com/upgate/upgate/server"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// start runs a gateway with FTP, SFTP and the admin listener on loopback,
// users alice and bob (gwtest.Users); with token != "", admin.token_file
// holds it.
func start(t *testing.T, token string) *gwtest.Env {
	t.Helper()
	return gwtest.Start(t, func(cfg *config.Config) {
		cfg.Listen = config.Listen{FTP: "127.0.0.1:0", SFTP: "127.0.0.1:0", Admin: "127.0.0.1:0"}
		cfg.FTP.PassivePorts = ""
		cfg.SFTP.HostKeys = []string{filepath.Join(t.TempDir(), "ssh_host_ed25519_key")}
		if token != "" {
			f := filepath.Join(t.TempDir(), "admin-token")
			if err := os.WriteFile(f, []byte(token+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg.Admin.TokenFile = f
		}
	})
}

func adminURL(srv *server.Server, path string) string {
	return "http://" + srv.AdminAddr.String() + path
}

// request sends one request to the admin listener; host, if set, replaces
// the Host header. It returns the status, the body and the response.
func request(t *testing.T, srv *server.Server, method, path, host string, header http.Header, body io.Reader) (int, string, *http.Response) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, adminURL(srv, path), body)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	for k, v := range header {
		req.Header[k] = v
	}
	// No redirects: a login's 303 and its cookie are what is tested.
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b), resp
}

// login posts the token to the login form and returns the session cookie.
func login(t *testing.T, srv *server.Server, token string) *http.Cookie {
	t.Helper()
	code, body, resp := request(t, srv, http.MethodPost, "/ui/login", "",
		http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, strings.NewReader("token="+token))
	if code != http.StatusSeeOther {
		t.Fatalf("login: %d %s", code, body)
	}
	for _, c := range resp.Cookies() {
		if c.Name == "upgate_admin" {
			return c
		}
	}
	t.Fatalf("login set no session cookie: %v", resp.Header["Set-Cookie"])
	return nil
}

// csrfOf fetches the page with cookie (nil without a token) and returns
// its CSRF token.
func csrfOf(t *testing.T, srv *server.Server, cookie *http.Cookie) string {
	t.Helper()
	h := http.Header{}
	if cookie != nil {
		h.Set("Cookie", cookie.String())
	}
	code, body, _ := request(t, srv, http.MethodGet, "/", "", h, nil)
	_, rest, ok := strings.Cut(body, `<meta name="upgate-csrf" content="`)
	tok, _, _ := strings.Cut(rest, `"`)
	if code != http.StatusOK || !ok || tok == "" {
		t.Fatalf("page: %d, no CSRF token:\n%s", code, body)
	}
	return tok
}

// Snapshot types, as the page's script reads them.
type snapshot struct {
	Now   time.Time `json:"now"`
	State struct {
		Sessions []struct {
			ID       string `json:"id"`
			Parent   string `json:"parent"`
			User     string `json:"user"`
			Protocol string `json:"protocol"`
			Remote   string `json:"remote"`
			BytesIn  int64  `json:"bytes_in"`
			Socket   *struct {
				Keepalive     bool          `json:"keepalive"`
				KeepaliveIdle time.Duration `json:"keepalive_idle"`
			} `json:"socket"`
			TCP *struct {
				State  string `json:"state"`
				Probes int    `json:"probes"`
			} `json:"tcp"`
			Files []struct {
				Path      string `json:"path"`
				Direction string `json:"direction"`
				Bytes     int64  `json:"bytes"`
			} `json:"files"`
		} `json:"sessions"`
		Agents []struct {
			Name      string `json:"name"`
			Up        bool   `json:"up"`
			OpenFiles int64  `json:"open_files"`
		} `json:"agents"`
		Latency []struct {
			User     string        `json:"user"`
			Protocol string        `json:"protocol"`
			Count    int           `json:"count"`
			P50      time.Duration `json:"p50"`
			Series   []struct {
				Count int `json:"count"`
			} `json:"series"`
		} `json:"latency"`
		Transfers []struct {
			User string `json:"user"`
			Data struct {
				Path      string        `json:"path"`
				Direction string        `json:"direction"`
				Bytes     int64         `json:"bytes"`
				Duration  time.Duration `json:"duration"`
				Result    string        `json:"result"`
			} `json:"data"`
		} `json:"transfers"`
		Events []struct {
			Kind    string `json:"kind"`
			User    string `json:"user"`
			Summary string `json:"summary"`
		} `json:"events"`
	} `json:"state"`
}

// stream is a client of the page's SSE stream.
type stream struct {
	snaps chan snapshot
	body  io.Closer
}

// openStream reads /ui/stream with cookie (nil without a token) until the
// test ends.
func openStream(t *testing.T, srv *server.Server, cookie *http.Cookie) *stream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, adminURL(srv, "/ui/stream"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if cookie != nil {
		req.AddCookie(cookie)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		resp.Body.Close()
		cancel()
		t.Fatalf("stream: %s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	s := &stream{snaps: make(chan snapshot, 64), body: resp.Body}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(s.snaps)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 0, 64<<10), 8<<20)
		var event string
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				event = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: ") && event == "snapshot":
				var snap snapshot
				if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &snap); err != nil {
					t.Errorf("snapshot: %v", err)
					return
				}
				select {
				case s.snaps <- snap:
				case <-ctx.Done():
					return
				}
			case line == "":
				event = ""
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		resp.Body.Close()
		<-done
	})
	return s
}

// waitFor reads snapshots until cond holds; it fails after 15 s.
func (s *stream) waitFor(t *testing.T, what string, cond func(snapshot) bool) snapshot {
	t.Helper()
	timeout := time.NewTimer(15 * time.Second)
	defer timeout.Stop()
	for {
		select {
		case snap, ok := <-s.snaps:
			if !ok {
				t.Fatalf("stream ended waiting for %s", what)
			}
			if cond(snap) {
				return snap
			}
		case <-timeout.C:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// hasSession reports whether a snapshot lists a control session of user
// over proto.
func hasSession(snap snapshot, user, proto string) bool {
	for _, s := range snap.State.Sessions {
		if s.User == user && s.Protocol == proto && s.Parent == "" {
			return true
		}
	}
	return false
}

func dialFTP(t *testing.T, srv *server.Server, user string) *ftp.ServerConn {
	t.Helper()
	c, err := ftp.Dial(srv.FTPAddr.String(), ftp.DialWithTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Quit() })
	if err := c.Login(user, gwtest.Users[user]); err != nil {
		t.Fatal(err)
	}
	return c
}

func dialSFTP(t *testing.T, srv *server.Server, user string) *sftp.Client {
	t.Helper()
	sc, err := ssh.Dial("tcp", srv.SFTPAddr.String(), &ssh.ClientConfig{User: user, Auth: []ssh.AuthMethod{ssh.Password(gwtest.Users[user])},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	c, err := sftp.NewClient(sc)
	if err != nil {
		sc.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		sc.Close()
	})
	return c
}

// upload stores content at name over FTP.
func upload(t *testing.T, c *ftp.ServerConn, name string, content []byte) {
	t.Helper()
	if err := c.Stor(name, bytes.NewReader(content)); err != nil {
		t.Fatalf("STOR %s: %v", name, err)
	}
}

// slowStor starts an FTP upload of name that sends what the test writes to
// the returned pipe; closing the pipe ends it, and its result arrives on
// the channel. t.Cleanup aborts it if the test did not end it.
func slowStor(t *testing.T, c *ftp.ServerConn, name string) (*io.PipeWriter, <-chan error) {
	t.Helper()
	pr, pw := io.Pipe()
	stored, done := make(chan error, 1), make(chan struct{})
	go func() {
		defer close(done)
		stored <- c.Stor(name, pr)
	}()
	t.Cleanup(func() {
		pw.CloseWithError(io.ErrUnexpectedEOF)
		<-done
	})
	return pw, stored
}
