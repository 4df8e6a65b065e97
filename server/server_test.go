package server_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"
	"github.com/pkg/sftp"
	"go.uber.org/goleak"
	"golang.org/x/crypto/ssh"

	"github.com/upgate/upgate/config"
	"github.com/upgate/upgate/gateway"
	"github.com/upgate/upgate/gateway/admin"
	"github.com/upgate/upgate/internal/gwtest"
	"github.com/upgate/upgate/server"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// startAll runs a gateway with FTP, SFTP and the admin API on loopback;
// alice and bob (password "pw") have their roots in <root>/<user>.
func startAll(t *testing.T) (*server.Server, string) {
	t.Helper()
	root := t.TempDir()
	cfg := gwtest.Config(t, root, map[string]string{"alice": "pw", "bob": "pw"})
	cfg.Listen = config.Listen{FTP: "127.0.0.1:0", SFTP: "127.0.0.1:0", Admin: "127.0.0.1:0"}
	cfg.FTP.PassivePorts = config.PortRange{}
	cfg.SFTP.HostKeys = []string{filepath.Join(t.TempDir(), "ssh_host_ed25519_key")}
	return gwtest.Run(t, cfg), root
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func metric(t *testing.T, addr, line string) bool {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return strings.Contains(string(b), line)
}

// TestOperatorView: sessions of real FTP and SFTP clients appear in the
// sessions API and the CLI's table, a kick disconnects the client and
// removes its session, and the metrics move.
func TestOperatorView(t *testing.T) {
	srv, _ := startAll(t)
	adminAddr := srv.AdminAddr.String()
	c := &admin.Client{Addr: adminAddr}
	ctx := context.Background()

	waitFor(t, "readiness", func() bool {
		resp, err := http.Get("http://" + adminAddr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})

	fc, err := ftp.Dial(srv.FTPAddr.String(), ftp.DialWithTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer fc.Quit()
	if err := fc.Login("alice", "pw"); err != nil {
		t.Fatal(err)
	}
	if err := fc.Stor("a.txt", bytes.NewReader([]byte("hello"))); err != nil {
		t.Fatal(err)
	}
	sc, err := ssh.Dial("tcp", srv.SFTPAddr.String(), &ssh.ClientConfig{User: "bob", Auth: []ssh.AuthMethod{ssh.Password("pw")},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	sftpc, err := sftp.NewClient(sc)
	if err != nil {
		t.Fatal(err)
	}
	defer sftpc.Close()
	f, err := sftpc.Create("/b.txt")
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("world"))
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	sessions, err := c.Sessions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	byUser := map[string]gateway.SessionInfo{}
	for _, s := range sessions {
		if s.Parent == "" {
			byUser[s.User] = s
		}
	}
	if byUser["alice"].Protocol != "ftp" || byUser["bob"].Protocol != "sftp" {
		t.Fatalf("sessions API: %+v", sessions)
	}
	for _, u := range []string{"alice", "bob"} {
		s := byUser[u]
		if s.Socket == nil || !s.Socket.Keepalive || s.Socket.KeepaliveIdle != 30*time.Second || s.Socket.UserTimeout != time.Minute {
			t.Errorf("%s: socket options %+v", u, s.Socket)
		}
		if s.BytesIn == 0 || s.BytesOut == 0 || !strings.HasPrefix(s.Remote, "127.0.0.1:") {
			t.Errorf("%s: %+v", u, s)
		}
	}
	var table bytes.Buffer
	if err := admin.WriteTable(&table, sessions, time.Now()); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"alice", "bob", "ftp", "sftp", "30s/10s/3 ut=1m0s"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
	var counts bytes.Buffer
	admin.WriteCounts(&counts, sessions, "user")
	if !strings.Contains(counts.String(), "alice  1") || !strings.Contains(counts.String(), "bob    1") {
		t.Errorf("counts by user:\n%s", counts.String())
	}

	for _, line := range []string{
		`upgate_logins_total{proto="ftp",result="ok"} 1`,
		`upgate_logins_total{proto="sftp",result="ok"} 1`,
		`upgate_transfers_total{direction="upload",proto="ftp",result="committed"} 1`,
		`upgate_transfers_total{direction="upload",proto="sftp",result="committed"} 1`,
		`upgate_connections_active{proto="ftp"} 1`,
		`upgate_connections_active{proto="sftp"} 1`,
		`upgate_agent_up{agent="embedded"} 1`,
	} {
		if !metric(t, adminAddr, line) {
			t.Errorf("metrics lack %s", line)
		}
	}

	// Kick the FTP session: the client is disconnected, the session gone.
	if err := c.Kick(ctx, byUser["alice"].ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the kicked session to go", func() bool {
		_, ok := srv.Gateway.Registry().Get(byUser["alice"].ID)
		return !ok
	})
	if err := fc.NoOp(); err == nil {
		t.Error("the kicked FTP client still gets replies")
	}
	if !metric(t, adminAddr, `upgate_connections_closed_total{proto="ftp",reason="kicked"} 1`) {
		t.Error("no kicked close in the metrics")
	}
	if err := c.Kick(ctx, byUser["alice"].ID); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("kicking a gone session: %v", err)
	}
	// The SFTP session is untouched.
	if _, err := sftpc.Stat("/b.txt"); err != nil {
		t.Errorf("SFTP after the FTP kick: %v", err)
	}

	// A failed login counts.
	if _, err := ssh.Dial("tcp", srv.SFTPAddr.String(), &ssh.ClientConfig{User: "bob", Auth: []ssh.AuthMethod{ssh.Password("wrong")},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second}); err == nil {
		t.Fatal("wrong password logged in")
	}
	waitFor(t, "the failed login in the metrics", func() bool {
		return metric(t, adminAddr, `upgate_logins_total{proto="sftp",result="failed"}`)
	})
}

// TestAdminToken: with a token, /metrics and /api/ need it; probes do not.
func TestAdminToken(t *testing.T) {
	cfg, _ := config.Parse(nil)
	tok := filepath.Join(t.TempDir(), "token")
	if err := writeFile(tok, "s3cret\n"); err != nil {
		t.Fatal(err)
	}
	cfg.Listen = config.Listen{Admin: "127.0.0.1:0"}
	cfg.Admin.TokenFile = tok
	cfg.Agents = map[string]config.Agent{"embedded": {Embedded: true, Root: t.TempDir()}}
	srv, err := server.Start(context.Background(), cfg, server.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(context.Background())
	addr := srv.AdminAddr.String()
	for path, want := range map[string]int{"/healthz": 200, "/metrics": 401, "/api/sessions": 401} {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s without token: %d, want %d", path, resp.StatusCode, want)
		}
	}
	if _, err := (&admin.Client{Addr: addr, Token: "wrong"}).Sessions(context.Background()); err == nil {
		t.Error("wrong token accepted")
	}
	if _, err := (&admin.Client{Addr: addr, Token: "s3cret"}).Sessions(context.Background()); err != nil {
		t.Errorf("right token: %v", err)
	}
}
