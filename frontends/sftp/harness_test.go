package sftp_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"go.uber.org/goleak"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/crypto/ssh"

	"github.com/upgate/upgate/config"
	"github.com/upgate/upgate/server"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// env is a running gateway with the SFTP frontend and one embedded agent.
type env struct {
	Addr string // SSH address, 127.0.0.1:port
	Root string // the agent's root directory
	Srv  *server.Server
}

// UserDir is where user's files land in the agent's directory.
func (e *env) UserDir(user string) string { return filepath.Join(e.Root, user) }

// users of every test gateway: name -> password. Each user's files live in
// <agent root>/<name>.
var users = map[string]string{"alice": "alice-pw", "bob": "bob-pw"}

// start runs a gateway with SFTP on 127.0.0.1:0. edit, if non-nil, adjusts
// the config before it is validated. Everything stops in t.Cleanup.
func start(t testing.TB, edit func(*config.Config)) *env {
	t.Helper()
	cfg, err := config.Parse(nil)
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	cfg.Listen = config.Listen{SFTP: "127.0.0.1:0"}
	cfg.SFTP.HostKeys = []string{filepath.Join(root, "..", filepath.Base(root)+"-hostkey-ed25519")}
	cfg.Agents = map[string]config.Agent{"embedded": {Embedded: true, Root: root}}
	for name, pw := range users {
		h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Users = append(cfg.Users, config.User{Name: name, PasswordHash: string(h),
			Mounts: []config.Mount{{Path: "/", Agent: "embedded", Root: name}}})
	}
	if edit != nil {
		edit(cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("UPGATE_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	srv, err := server.Start(context.Background(), cfg, server.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return &env{Addr: srv.SFTPAddr.String(), Root: root, Srv: srv}
}

// agentIdle waits until the embedded agent holds no open file.
func (e *env) agentIdle(t testing.TB) {
	t.Helper()
	a, ok := e.Srv.Gateway.EmbeddedAgent("embedded")
	if !ok {
		t.Fatal("no embedded agent")
	}
	deadline := time.Now().Add(15 * time.Second)
	for a.OpenHandles() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("agent still holds %d open files", a.OpenHandles())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// requireTool skips when a client program is missing, unless
// UPGATE_REQUIRE_INTEROP=1 (CI) makes that a failure.
func requireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("UPGATE_REQUIRE_INTEROP") == "1" {
			t.Fatalf("%s is required (UPGATE_REQUIRE_INTEROP=1): %v", name, err)
		}
		t.Skipf("%s not installed", name)
	}
	return p
}

// dial logs in as user with password over real SSH and returns a pkg/sftp
// client.
func dial(t testing.TB, e *env, user string) *sftp.Client {
	t.Helper()
	conf := &ssh.ClientConfig{
		User:            user,
		Auth:            []ssh.AuthMethod{ssh.Password(users[user])},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(),
		Timeout:         10 * time.Second,
	}
	conn, err := ssh.Dial("tcp", e.Addr, conf)
	if err != nil {
		t.Fatal(err)
	}
	c, err := sftp.NewClient(conn)
	if err != nil {
		conn.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		conn.Close()
	})
	return c
}
