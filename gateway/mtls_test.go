package gateway_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/upgate/upgate/backend/agent"
	"github.com/upgate/upgate/backend/fstest"
	"github.com/upgate/upgate/config"
	"github.com/upgate/upgate/gateway"
	"github.com/upgate/upgate/internal/agenttest"
	"github.com/upgate/upgate/internal/testpki"
)

// TestAgentMTLS: an agent that requires client certificates serves a
// gateway configured with one (and the token), and refuses a gateway
// without it.
func TestAgentMTLS(t *testing.T) {
	p := testpki.New(t)
	agentCert, agentKey := p.Issue(t, "agent", testpki.Loopback, false)
	clientCert, clientKey := p.Issue(t, "gateway", nil, true)
	tlsConf, err := agent.ServerTLS(agentCert, agentKey, p.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	root := agenttest.Serve(t, "", lis, "tok", grpc.Creds(credentials.NewTLS(tlsConf))).Dir

	tokenFile := filepath.Join(p.Dir, "token")
	os.WriteFile(tokenFile, []byte("tok"), 0o600)
	cfg, _ := config.Parse(nil)
	cfg.Agents = map[string]config.Agent{
		"mtls":   {Address: lis.Addr().String(), TokenFile: tokenFile, TLS: config.AgentTLS{CA: p.CAFile, Cert: clientCert, Key: clientKey}},
		"nocert": {Address: lis.Addr().String(), TokenFile: tokenFile, TLS: config.AgentTLS{CA: p.CAFile}},
	}
	cfg.Users = []config.User{
		{Name: "alice", PasswordHash: hash(t, "pw"), Mounts: []config.Mount{{Path: "/", Agent: "mtls", Root: "alice"}}},
		{Name: "bob", PasswordHash: hash(t, "pw"), Mounts: []config.Mount{{Path: "/", Agent: "nocert", Root: "bob"}}},
	}
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
		t.Fatalf("login through the mTLS agent: %v", err)
	}
	fstest.WriteFile(t, l.Fs, "/over-mtls.txt", []byte("secure"))
	if got, _ := os.ReadFile(filepath.Join(root, "alice", "over-mtls.txt")); string(got) != "secure" {
		t.Fatalf("file through mTLS: %q", got)
	}
	if _, err := gw.LoginPassword(lctx, nil, "bob", "pw"); err == nil {
		t.Fatal("a gateway without a client certificate reached the mTLS agent")
	} else if errors.Is(err, gateway.ErrAuthFailed) {
		t.Fatalf("wrong error for a missing client certificate: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "bob")); !os.IsNotExist(err) {
		t.Fatalf("the refused gateway created bob's root: %v", err)
	}
	lcancel()
}
