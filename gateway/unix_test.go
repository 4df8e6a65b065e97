package gateway_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/upgate/upgate/backend/fstest"
	"github.com/upgate/upgate/config"
	"github.com/upgate/upgate/gateway"
	"github.com/upgate/upgate/internal/agenttest"
)

// TestAgentOverUnixSocket: an agent address "unix:/path" (a socket on a
// volume shared with a sidecar) works like host:port.
func TestAgentOverUnixSocket(t *testing.T) {
	root, sockDir := t.TempDir(), t.TempDir()
	sock := filepath.Join(sockDir, "agent.sock")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	agenttest.Serve(t, root, lis, "tok")
	tokenFile := filepath.Join(sockDir, "token")
	os.WriteFile(tokenFile, []byte("tok"), 0o600)
	cfg, _ := config.Parse(nil)
	cfg.Agents = map[string]config.Agent{"side": {Address: "unix:" + sock, TokenFile: tokenFile}}
	cfg.Users = []config.User{{Name: "alice", PasswordHash: hash(t, "pw"), Mounts: []config.Mount{{Path: "/", Agent: "side", Root: "alice"}}}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	gw, err := gateway.New(context.Background(), cfg, gateway.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	lctx, lcancel := context.WithCancel(context.Background())
	defer lcancel()
	l, err := gw.LoginPassword(lctx, nil, "alice", "pw")
	if err != nil {
		t.Fatal(err)
	}
	fstest.WriteFile(t, l.Fs, "/sock.txt", []byte("over a unix socket"))
	if got, _ := os.ReadFile(filepath.Join(root, "alice", "sock.txt")); string(got) != "over a unix socket" {
		t.Fatalf("file via unix socket: %q", got)
	}
	lcancel()
}
