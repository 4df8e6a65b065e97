package gateway_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"go.uber.org/goleak"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/crypto/ssh"

	"github.com/upgate/upgate/backend"
	"github.com/upgate/upgate/backend/fstest"
	"github.com/upgate/upgate/config"
	"github.com/upgate/upgate/gateway"
	"github.com/upgate/upgate/internal/agenttest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func hash(t *testing.T, pw string) string {
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

func newKey(t *testing.T) (ssh.PublicKey, string) {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return k, string(ssh.MarshalAuthorizedKey(k))
}

type env struct {
	gw     *gateway.Gateway
	root   string // the embedded agent's directory
	remote *agenttest.Agent
	key    ssh.PublicKey
}

func setup(t *testing.T) *env {
	t.Helper()
	root := t.TempDir()
	remote := agenttest.Start(t, "")
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(remote.Token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	badToken := filepath.Join(t.TempDir(), "bad")
	if err := os.WriteFile(badToken, []byte("wrong"), 0o600); err != nil {
		t.Fatal(err)
	}
	key, keyLine := newKey(t)
	cfg, err := config.Parse(nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Agents = map[string]config.Agent{
		"embedded": {Embedded: true, Root: root},
		"remote":   {Address: remote.Addr, TokenFile: tokenFile},
		"badtoken": {Address: remote.Addr, TokenFile: badToken},
		"down":     {Address: "127.0.0.1:1", TokenFile: tokenFile},
	}
	cfg.Users = []config.User{
		{Name: "alice", PasswordHash: hash(t, "alice-pw"), Mounts: []config.Mount{{Path: "/", Agent: "embedded", Root: "alice"}}},
		{Name: "bob", AuthorizedKeys: []config.AuthorizedKey{mustKey(t, keyLine)}, Mounts: []config.Mount{{Path: "/", Agent: "remote", Root: "homes/bob"}}},
		{Name: "carol", PasswordHash: hash(t, "pw"), Mounts: []config.Mount{{Path: "/", Agent: "down"}}},
		{Name: "dave", PasswordHash: hash(t, "pw"), Mounts: []config.Mount{{Path: "/", Agent: "embedded", Root: "alice", ReadOnly: true}}},
		{Name: "eve", PasswordHash: hash(t, "pw"), Mounts: []config.Mount{{Path: "/", Agent: "badtoken"}}},
		{Name: "frank", PasswordHash: hash(t, "pw"), Mounts: []config.Mount{
			{Path: "/", Agent: "embedded", Root: "frank"},
			{Path: "/api", Agent: "remote", Root: "frank-api"},
			{Path: "/shared", Agent: "embedded", Root: "alice", ReadOnly: true},
		}},
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	gw, err := gateway.New(context.Background(), cfg, gateway.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := gw.Close(); err != nil {
			t.Error(err)
		}
	})
	return &env{gw: gw, root: root, remote: remote, key: key}
}

func TestLoginPasswordReachesTheUsersRoot(t *testing.T) {
	e := setup(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l, err := e.gw.LoginPassword(ctx, nil, "alice", "alice-pw")
	if err != nil {
		t.Fatal(err)
	}
	if l.User != "alice" || l.Method != "password" {
		t.Fatalf("login %+v", l)
	}
	data := fstest.Data(100000, 1)
	if err := l.Fs.Mkdir("/src", 0o755); err != nil {
		t.Fatal(err)
	}
	fstest.WriteFile(t, l.Fs, "/src/app.php", data)
	got, err := os.ReadFile(filepath.Join(e.root, "alice", "src", "app.php"))
	if err != nil || string(got) != string(data) {
		t.Fatalf("file in the agent's directory: %d bytes, %v", len(got), err)
	}
	// ".." cannot leave the user's root.
	fstest.WriteFile(t, l.Fs, "/../../escape", []byte("x"))
	if _, err := os.Stat(filepath.Join(e.root, "alice", "escape")); err != nil {
		t.Fatalf("\"/../../escape\" did not land inside alice's root: %v", err)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(e.root), "escape")); !os.IsNotExist(err) {
		t.Fatalf("a file escaped the root: %v", err)
	}
}

func TestLoginRefusals(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	for _, tc := range []struct{ user, pw string }{
		{"alice", "wrong"}, {"alice", ""}, {"nobody", "alice-pw"}, {"bob", ""}, {"bob", "anything"},
	} {
		if _, err := e.gw.LoginPassword(ctx, nil, tc.user, tc.pw); !errors.Is(err, gateway.ErrAuthFailed) {
			t.Errorf("LoginPassword(%q, %q) = %v, want ErrAuthFailed", tc.user, tc.pw, err)
		}
	}
	other, _ := newKey(t)
	if _, err := e.gw.LoginKey(ctx, nil, "bob", other); !errors.Is(err, gateway.ErrAuthFailed) {
		t.Errorf("LoginKey with a foreign key = %v", err)
	}
	if _, err := e.gw.LoginKey(ctx, nil, "alice", e.key); !errors.Is(err, gateway.ErrAuthFailed) {
		t.Errorf("LoginKey with bob's key as alice = %v", err)
	}
	if e.gw.HasKey("alice", e.key) || !e.gw.HasKey("bob", e.key) {
		t.Errorf("HasKey answers wrong")
	}
}

func TestLoginKeyOnRemoteAgent(t *testing.T) {
	e := setup(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l, err := e.gw.LoginKey(ctx, nil, "bob", e.key)
	if err != nil {
		t.Fatal(err)
	}
	fstest.WriteFile(t, l.Fs, "/index.php", []byte("<?php echo 1;"))
	got, err := os.ReadFile(filepath.Join(e.remote.Dir, "homes", "bob", "index.php"))
	if err != nil || string(got) != "<?php echo 1;" {
		t.Fatalf("file on the remote agent: %q, %v", got, err)
	}
	if h, ok := l.Fs.(backend.Hasher); !ok {
		t.Fatal("the user's filesystem has no Hasher")
	} else if sum, err := h.Hash(ctx, "/index.php", backend.MD5, 0, 0); err != nil || len(sum) != 16 {
		t.Fatalf("hash: %x %v", sum, err)
	}
}

func TestUnreachableAgentIsNamed(t *testing.T) {
	e := setup(t)
	_, err := e.gw.LoginPassword(context.Background(), nil, "carol", "pw")
	if !errors.Is(err, backend.ErrUnavailable) {
		t.Fatalf("login with the agent down: %v, want ErrUnavailable", err)
	}
	for _, want := range []string{"agent down", "user carol", "unreachable"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

func TestWrongAgentTokenRefused(t *testing.T) {
	e := setup(t)
	_, err := e.gw.LoginPassword(context.Background(), nil, "eve", "pw")
	if !errors.Is(err, os.ErrPermission) || !strings.Contains(err.Error(), "token") {
		t.Fatalf("login through an agent that refuses the token: %v", err)
	}
}

func TestReadOnlyMount(t *testing.T) {
	e := setup(t)
	if err := os.MkdirAll(filepath.Join(e.root, "alice"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.root, "alice", "ro.txt"), []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := e.gw.LoginPassword(context.Background(), nil, "dave", "pw")
	if err != nil {
		t.Fatal(err)
	}
	if got := fstest.ReadFile(t, l.Fs, "/ro.txt"); string(got) != "keep" {
		t.Fatalf("read: %q", got)
	}
	if _, err := l.Fs.Create("/ro.txt"); !errors.Is(err, os.ErrPermission) {
		t.Errorf("create on a read-only mount: %v", err)
	}
	if err := l.Fs.Remove("/ro.txt"); !errors.Is(err, os.ErrPermission) {
		t.Errorf("remove on a read-only mount: %v", err)
	}
	if got, _ := os.ReadFile(filepath.Join(e.root, "alice", "ro.txt")); string(got) != "keep" {
		t.Fatalf("read-only file changed: %q", got)
	}
}

// TestMounts: a user's tree composed of two agents and a read-only view of
// another directory; writes land on the right agent, listing "/" shows the
// mount points, a rename across mounts is a cross-device error.
func TestMounts(t *testing.T) {
	e := setup(t)
	l, err := e.gw.LoginPassword(context.Background(), nil, "frank", "pw")
	if err != nil {
		t.Fatal(err)
	}
	fstest.WriteFile(t, l.Fs, "/index.php", []byte("web"))
	fstest.WriteFile(t, l.Fs, "/api/app.php", []byte("api"))
	if got, _ := os.ReadFile(filepath.Join(e.root, "frank", "index.php")); string(got) != "web" {
		t.Errorf("/index.php on the embedded agent: %q", got)
	}
	if got, _ := os.ReadFile(filepath.Join(e.remote.Dir, "frank-api", "app.php")); string(got) != "api" {
		t.Errorf("/api/app.php on the remote agent: %q", got)
	}
	d, err := l.Fs.Open("/")
	if err != nil {
		t.Fatal(err)
	}
	entries, _ := d.Readdirnames(-1)
	d.Close()
	if strings.Join(entries, ",") != "api,index.php,shared" {
		t.Errorf("listing /: %v", entries)
	}
	if err := l.Fs.Rename("/index.php", "/api/index.php"); !errors.Is(err, syscall.EXDEV) || !strings.Contains(err.Error(), "cross-device") {
		t.Errorf("rename across mounts: %v", err)
	}
	if _, err := l.Fs.Create("/shared/x"); !errors.Is(err, os.ErrPermission) {
		t.Errorf("write to the read-only mount: %v", err)
	}
}

// mustKey parses an authorized_keys line.
func mustKey(t testing.TB, line string) config.AuthorizedKey {
	t.Helper()
	k, err := config.ParseAuthorizedKey(line)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
