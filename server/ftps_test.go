package server_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"
	"golang.org/x/crypto/bcrypt"

	"github.com/upgate/upgate/config"
	"github.com/upgate/upgate/server"
)

// testCert writes a self-signed certificate for 127.0.0.1 and returns the
// cert and key paths and a pool that trusts it.
func testCert(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "upgate test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalECPrivateKey(key)
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// TestImplicitFTPS: listen.ftps serves TLS from the first byte, data
// connections included, next to plain/explicit FTP on listen.ftp.
func TestImplicitFTPS(t *testing.T) {
	certFile, keyFile, pool := testCert(t)
	cfg, _ := config.Parse(nil)
	root := t.TempDir()
	cfg.Listen = config.Listen{FTP: "127.0.0.1:0", FTPS: "127.0.0.1:0"}
	cfg.FTP.PassivePorts = ""
	cfg.FTP.TLS.Cert, cfg.FTP.TLS.Key = certFile, keyFile
	cfg.Agents = map[string]config.Agent{"embedded": {Embedded: true, Root: root}}
	h, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	cfg.Users = []config.User{{Name: "alice", PasswordHash: string(h), Mounts: []config.Mount{{Path: "/", Agent: "embedded", Root: "alice"}}}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	srv, err := server.Start(context.Background(), cfg, server.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(context.Background())

	c, err := ftp.Dial(srv.FTPSAddr.String(), ftp.DialWithTimeout(10*time.Second),
		ftp.DialWithTLS(&tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Quit()
	if err := c.Login("alice", "pw"); err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("implicit "), 50000)
	if err := c.Stor("secure.txt", bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(root, "alice", "secure.txt")); !bytes.Equal(got, data) {
		t.Fatalf("upload over implicit FTPS: %d bytes on disk", len(got))
	}
	r, err := c.Retr("secure.txt")
	if err != nil {
		t.Fatal(err)
	}
	back, _ := io.ReadAll(r)
	r.Close()
	if !bytes.Equal(back, data) {
		t.Fatalf("download over implicit FTPS: %d bytes", len(back))
	}
	// A client speaking plain FTP to the implicit port gets no greeting.
	raw, err := net.DialTimeout("tcp", srv.FTPSAddr.String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	if n, _ := raw.Read(make([]byte, 16)); n != 0 {
		t.Error("the implicit FTPS port greets in clear text")
	}
}
