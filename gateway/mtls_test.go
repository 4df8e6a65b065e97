package gateway_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/upgate/upgate/backend/agent"
	"github.com/upgate/upgate/backend/fstest"
	"github.com/upgate/upgate/config"
	"github.com/upgate/upgate/gateway"
)

// pki writes a CA and two certificates it signs: one for the agent
// (127.0.0.1) and one client certificate for the gateway.
type pki struct {
	dir                                                string
	caFile, agentCert, agentKey, clientCert, clientKey string
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	p := &pki{dir: t.TempDir()}
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "upgate test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	write := func(name string, typ string, b []byte) string {
		f := filepath.Join(p.dir, name)
		if err := os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	p.caFile = write("ca.pem", "CERTIFICATE", caDER)
	issue := func(serial int64, cn string, usage x509.ExtKeyUsage, ips []net.IP) (string, string) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: ips}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kd, _ := x509.MarshalECPrivateKey(key)
		return write(cn+".pem", "CERTIFICATE", der), write(cn+"-key.pem", "EC PRIVATE KEY", kd)
	}
	p.agentCert, p.agentKey = issue(2, "agent", x509.ExtKeyUsageServerAuth, []net.IP{net.ParseIP("127.0.0.1")})
	p.clientCert, p.clientKey = issue(3, "gateway", x509.ExtKeyUsageClientAuth, nil)
	return p
}

// TestAgentMTLS: an agent that requires client certificates serves a
// gateway configured with one (and the token), and refuses a gateway
// without it.
func TestAgentMTLS(t *testing.T) {
	p := newPKI(t)
	root := t.TempDir()
	srv, err := agent.New(agent.Config{Root: root, Token: "tok", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	tlsConf, err := agent.ServerTLS(p.agentCert, p.agentKey, p.caFile)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		agent.Serve(ctx, srv, lis, grpc.Creds(credentials.NewTLS(tlsConf)))
	}()
	defer wg.Wait()
	defer cancel()

	tokenFile := filepath.Join(p.dir, "token")
	os.WriteFile(tokenFile, []byte("tok"), 0o600)
	cfg, _ := config.Parse(nil)
	cfg.Agents = map[string]config.Agent{
		"mtls":   {Address: lis.Addr().String(), TokenFile: tokenFile, TLS: config.AgentTLS{CA: p.caFile, Cert: p.clientCert, Key: p.clientKey}},
		"nocert": {Address: lis.Addr().String(), TokenFile: tokenFile, TLS: config.AgentTLS{CA: p.caFile}},
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
