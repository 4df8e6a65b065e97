package server_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"

	"github.com/upgate/upgate/config"
	"github.com/upgate/upgate/internal/gwtest"
	"github.com/upgate/upgate/internal/testpki"
	"github.com/upgate/upgate/server"
)

// TestImplicitFTPS: listen.ftps serves TLS from the first byte, data
// connections included, next to plain/explicit FTP on listen.ftp.
func TestImplicitFTPS(t *testing.T) {
	pki := testpki.New(t)
	certFile, keyFile := pki.Issue(t, "127.0.0.1", testpki.Loopback, false)
	root := t.TempDir()
	cfg := gwtest.Config(t, root, map[string]string{"alice": "pw"})
	cfg.Listen = config.Listen{FTP: "127.0.0.1:0", FTPS: "127.0.0.1:0"}
	cfg.FTP.PassivePorts = config.PortRange{}
	cfg.FTP.TLS.Cert, cfg.FTP.TLS.Key = certFile, keyFile
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	srv, err := server.Start(context.Background(), cfg, server.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(context.Background())

	c, err := ftp.Dial(srv.FTPSAddr.String(), ftp.DialWithTimeout(10*time.Second),
		ftp.DialWithTLS(&tls.Config{RootCAs: pki.Pool, ServerName: "127.0.0.1"}))
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
