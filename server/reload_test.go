package server_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/crypto/ssh"

	"github.com/upgate/upgate/config"
	"github.com/upgate/upgate/internal/syncbuf"
	"github.com/upgate/upgate/server"
)

func sftpLogin(addr, user, pw string) (*ssh.Client, *sftp.Client, error) {
	sc, err := ssh.Dial("tcp", addr, &ssh.ClientConfig{User: user, Auth: []ssh.AuthMethod{ssh.Password(pw)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second})
	if err != nil {
		return nil, nil, err
	}
	c, err := sftp.NewClient(sc)
	if err != nil {
		sc.Close()
		return nil, nil, err
	}
	return sc, c, nil
}

// TestHotReload: a user added to the watched config file can log in
// without a restart while a live session keeps working; an invalid edit
// is refused with a log line naming the key and the previous config stays.
func TestHotReload(t *testing.T) {
	dir := t.TempDir()
	hash := func(pw string) string {
		h, _ := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
		return string(h)
	}
	write := func(users string) {
		doc := fmt.Sprintf(`listen: {ftp: "", sftp: "127.0.0.1:0", admin: ""}
sftp: {host_keys: [%q]}
agents:
  embedded: {embedded: true, root: %q}
users:
%s`, filepath.Join(dir, "hostkey_ed25519"), filepath.Join(dir, "data"), users)
		// Write and rename, as editors and ConfigMaps do.
		tmp := filepath.Join(dir, "config.yaml.tmp")
		if err := os.WriteFile(tmp, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "config.yaml")); err != nil {
			t.Fatal(err)
		}
	}
	alice := fmt.Sprintf("  - {name: alice, password_hash: %q, mounts: [{path: /, agent: embedded, root: alice}]}\n", hash("a"))
	carol := fmt.Sprintf("  - {name: carol, password_hash: %q, mounts: [{path: /, agent: embedded, root: carol}]}\n", hash("c"))
	write(alice)
	path := filepath.Join(dir, "config.yaml")
	cfg, err := config.Load(path, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var logs syncbuf.Buffer
	srv, err := server.Start(context.Background(), cfg, server.Options{
		Logger:     slog.New(slog.NewTextHandler(&logs, nil)),
		ConfigPath: path, WatchInterval: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(context.Background())
	addr := srv.SFTPAddr.String()

	sc, live, err := sftpLogin(addr, "alice", "a")
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	if _, _, err := sftpLogin(addr, "carol", "c"); err == nil {
		t.Fatal("carol logged in before she was configured")
	}

	write(alice + carol)
	deadline := time.Now().Add(15 * time.Second)
	for {
		sc2, c2, err := sftpLogin(addr, "carol", "c")
		if err == nil {
			c2.Close()
			sc2.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("carol cannot log in after the reload: %v\n%s", err, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The session opened before the reload still works.
	f, err := live.Create("/still-here.txt")
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("yes"))
	if err := f.Close(); err != nil {
		t.Fatalf("live session after reload: %v", err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "data", "alice", "still-here.txt")); string(got) != "yes" {
		t.Fatalf("write after reload: %q", got)
	}

	// An invalid edit: refused, logged with the key, old config in force.
	bad := fmt.Sprintf("  - {name: dave, password_hash: %q, mounts: [{path: /, agent: nosuch}]}\n", hash("d"))
	write(alice + carol + bad)
	deadline = time.Now().Add(15 * time.Second)
	for !strings.Contains(logs.String(), "users[2].mounts[0].agent") {
		if time.Now().After(deadline) {
			t.Fatalf("no log line naming the bad key:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), "previous configuration stays in force") {
		t.Errorf("the refusal does not say the old config stays:\n%s", logs.String())
	}
	sc3, c3, err := sftpLogin(addr, "carol", "c")
	if err != nil {
		t.Fatalf("carol after the refused edit: %v", err)
	}
	c3.Close()
	sc3.Close()
	// And SIGHUP's path, Reload, reports the same refusal.
	if err := srv.Reload(); err == nil || !strings.Contains(err.Error(), "nosuch") {
		t.Errorf("Reload of the bad file: %v", err)
	}
}
