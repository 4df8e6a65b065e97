package server_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	ftpclient "github.com/jlaffaye/ftp"
	"github.com/pkg/sftp"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/crypto/ssh"

	"github.com/upgate/upgate/config"
	"github.com/upgate/upgate/gateway"
	"github.com/upgate/upgate/internal/agenttest"
	"github.com/upgate/upgate/internal/gwtest"
	"github.com/upgate/upgate/internal/syncbuf"
	"github.com/upgate/upgate/server"
)

// sftpWithStderr logs in over SSH with auth and starts the sftp subsystem
// with pkg/sftp's client, collecting what the server writes to the
// channel's stderr.
func sftpWithStderr(t *testing.T, addr, user string, auth ssh.AuthMethod) (*sftp.Client, *syncbuf.Buffer) {
	t.Helper()
	sc, err := ssh.Dial("tcp", addr, &ssh.ClientConfig{User: user, Auth: []ssh.AuthMethod{auth},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second})
	if err != nil {
		t.Fatalf("%s: %v", user, err)
	}
	sess, err := sc.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	// RequestSubsystem starts no copying: read the stderr pipe here until
	// the channel closes.
	stderr := &syncbuf.Buffer{}
	errPipe, err := sess.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		io.Copy(stderr, errPipe)
	}()
	t.Cleanup(func() {
		sc.Close()
		<-copied
	})
	w, err := sess.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	r, err := sess.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.RequestSubsystem("sftp"); err != nil {
		t.Fatal(err)
	}
	c, err := sftp.NewClientPipe(r, w)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, stderr
}

// TestReloadRevokesSessions: a reload ends the live sessions whose login
// the new configuration no longer accepts (a password changed, a key
// replaced, a user removed, a mount made read-only), and says why to each
// client (FTP: a 421 before the close; SSH: a line on the channel's
// stderr, which OpenSSH's sftp prints), in the log and in the feed. The
// uploads alice has in flight over both protocols abort: the files they
// were replacing keep their old content and no temp file is left. The
// sessions of users whose login still holds (bob's hash is the same
// string; a key added to his list does not touch his password sessions)
// carry on.
func TestReloadRevokesSessions(t *testing.T) {
	keygen := gwtest.RequireTool(t, "ssh-keygen")
	sftpBin := gwtest.RequireTool(t, "sftp")
	dir := t.TempDir()
	hash := func(pw string) string {
		h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		return string(h)
	}
	keyLine := func(name string) string {
		path := filepath.Join(dir, name)
		if out, err := exec.Command(keygen, "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", path).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v\n%s", err, out)
		}
		b, err := os.ReadFile(path + ".pub")
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	carolOld, carolNew, bobKey := keyLine("carol_old"), keyLine("carol_new"), keyLine("bob_key")
	aliceHash, bobHash := hash("a"), hash("b")
	userRO := func(name, pwHash string, readOnly bool, keys ...string) string {
		return fmt.Sprintf("  - {name: %s, password_hash: %q, authorized_keys: %s, mounts: [{path: /, agent: embedded, root: %s, read_only: %t}]}\n",
			name, pwHash, yamlList(keys), name, readOnly)
	}
	user := func(name, pwHash string, keys ...string) string { return userRO(name, pwHash, false, keys...) }
	path := filepath.Join(dir, "config.yaml")
	write := func(users string) {
		doc := fmt.Sprintf(`listen: {ftp: "127.0.0.1:0", sftp: "127.0.0.1:0", admin: ""}
ftp: {passive_ports: ""}
sftp: {host_keys: [%q]}
agents:
  embedded: {embedded: true, root: %q}
users:
%s`, filepath.Join(dir, "hostkey_ed25519"), filepath.Join(dir, "data"), users)
		if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	erinHash := hash("e")
	write(user("alice", aliceHash) + user("bob", bobHash) + user("carol", "", carolOld) + user("dave", hash("d")) + user("erin", erinHash))
	// The files alice's uploads in flight replace.
	aliceDir := filepath.Join(dir, "data", "alice")
	if err := os.MkdirAll(aliceDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"index.html", "app.js"} {
		if err := os.WriteFile(filepath.Join(aliceDir, name), []byte("old "+name), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := config.Load(path, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var logs syncbuf.Buffer
	srv, err := server.Start(context.Background(), cfg, server.Options{
		Logger: slog.New(slog.NewTextHandler(&logs, nil)), ConfigPath: path, WatchInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(context.Background())
	ftpAddr, sftpAddr := srv.FTPAddr.String(), srv.SFTPAddr.String()
	gw := srv.Gateway

	// The sessions: alice over FTP and SFTP, each uploading, bob over
	// both, dave over FTP, erin over SFTP, carol with OpenSSH's sftp and
	// her old key.
	aliceFTP := hDial(t, "127.0.0.1", ftpAddr)
	aliceFTP.expect("USER alice", 331)
	aliceFTP.expect("PASS a", 230)
	aliceFTP.expect("TYPE I", 200)
	aliceData, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(aliceFTP.epsv())), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer aliceData.Close()
	if code, msg := aliceFTP.cmd("STOR /index.html"); code != 150 {
		t.Fatalf("STOR: %d %s", code, msg)
	}
	if _, err := io.WriteString(aliceData, "<html>new, half sent"); err != nil {
		t.Fatal(err)
	}
	aliceSFTP, aliceStderr := sftpWithStderr(t, sftpAddr, "alice", ssh.Password("a"))
	aliceUp, err := aliceSFTP.Create("/app.js")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := aliceUp.Write([]byte("new, half sent")); err != nil {
		t.Fatal(err)
	}
	erinSFTP, erinStderr := sftpWithStderr(t, sftpAddr, "erin", ssh.Password("e"))
	bobFTP, err := ftpclient.Dial(ftpAddr, ftpclient.DialWithTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer bobFTP.Quit()
	if err := bobFTP.Login("bob", "b"); err != nil {
		t.Fatal(err)
	}
	bobSFTP, _ := sftpWithStderr(t, sftpAddr, "bob", ssh.Password("b"))
	daveFTP, err := ftpclient.Dial(ftpAddr, ftpclient.DialWithTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if err := daveFTP.Login("dave", "d"); err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(sftpAddr)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	carol := exec.CommandContext(ctx, sftpBin, "-i", filepath.Join(dir, "carol_old"), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
		"-P", port, "-b", "-", "carol@127.0.0.1")
	carolIn, err := carol.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var carolOut, carolErr syncbuf.Buffer
	carol.Stdout, carol.Stderr = &carolOut, &carolErr
	if err := carol.Start(); err != nil {
		t.Fatal(err)
	}
	carolDone := make(chan error, 1)
	go func() { carolDone <- carol.Wait() }()
	defer carolIn.Close()
	io.WriteString(carolIn, "pwd\n")
	byUser := func() map[string]int {
		n := make(map[string]int)
		for _, s := range gw.Registry().Sessions() {
			n[s.User()]++
		}
		return n
	}
	deadline := time.Now().Add(15 * time.Second)
	for byUser()["carol"] != 1 || !strings.Contains(carolOut.String(), "Remote working directory: /") {
		if time.Now().After(deadline) {
			t.Fatalf("carol's OpenSSH sftp did not log in: sessions %v\nstdout %s\nstderr %s", byUser(), carolOut.String(), carolErr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	inFlight := func() map[string]int64 {
		n := make(map[string]int64)
		for _, tr := range gw.OpenTransfers() {
			n[tr.Path] = tr.Bytes
		}
		return n
	}
	for got := inFlight(); got["/index.html"] != 20 || got["/app.js"] != 14; got = inFlight() {
		if time.Now().After(deadline) {
			t.Fatalf("alice's uploads in flight: %v", got)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := byUser(); got["alice"] != 2 || got["bob"] != 2 || got["dave"] != 1 || got["erin"] != 1 {
		t.Fatalf("sessions before the reload: %v", got)
	}

	// The reload: alice's password changes, carol's key is replaced,
	// dave is removed, erin's mount becomes read-only; bob's entry keeps
	// its hash (and gains a key).
	seq := gw.Feed().Seq()
	write(user("alice", hash("a2")) + user("bob", bobHash, bobKey) + user("carol", "", carolNew) + userRO("erin", erinHash, true))
	if err := srv.Reload(); err != nil {
		t.Fatal(err)
	}

	// FTP: a 421 saying why, then the close, of the control connection
	// and of the upload's data connection.
	if got, want := aliceFTP.closed(), []string{"421 Session ended by a configuration reload: the password of user alice changed."}; !slices.Equal(got, want) {
		t.Errorf("alice's FTP control connection reads %q before its close, want %q", got, want)
	}
	if _, err := hReadAll(t, aliceData); err != nil {
		t.Errorf("alice's FTP data connection: %v, want closed by the server", err)
	}
	if err := daveFTP.NoOp(); err == nil {
		t.Error("dave's FTP session answers NOOP after dave was removed")
	}
	// SFTP: the reason on the channel's stderr, then the close. The
	// clients read it on goroutines of their own: wait for it.
	eventually := func(what string, buf *syncbuf.Buffer, want string) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for !strings.Contains(buf.String(), want) {
			if time.Now().After(deadline) {
				t.Errorf("%s: %q does not show %q", what, buf.String(), want)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	eventually("alice's SFTP stderr", aliceStderr, "upgate: session ended by a configuration reload: the password of user alice changed\n")
	if _, err := aliceSFTP.Stat("/"); err == nil {
		t.Error("alice's SFTP session answers after her password changed")
	}
	if _, err := aliceUp.Write([]byte(", the rest")); err == nil {
		t.Error("alice's SFTP upload goes on after her password changed")
	}
	if err := aliceUp.Close(); err == nil {
		t.Error("alice's SFTP upload closes without an error after her password changed")
	}
	eventually("erin's SFTP stderr", erinStderr, "upgate: session ended by a configuration reload: the mounts of user erin changed\n")
	if _, err := erinSFTP.Stat("/"); err == nil {
		t.Error("erin's SFTP session answers after her mount became read-only")
	}
	// OpenSSH's ssh prints the line; sftp, waiting for its next batch
	// command, then finds the connection gone.
	eventually("OpenSSH sftp's stderr", &carolErr, "upgate: session ended by a configuration reload: the key user carol logged in with is no longer authorized")
	io.WriteString(carolIn, "ls /\n")
	select {
	case err := <-carolDone:
		if err == nil {
			t.Error("OpenSSH's sftp exited 0 after its connection was closed")
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("OpenSSH's sftp is still running after carol's key was replaced\n%s", carolErr.String())
	}

	// Bob's sessions carry on.
	if err := bobFTP.Stor("/after.txt", strings.NewReader("ftp")); err != nil {
		t.Errorf("bob's FTP session after the reload: %v", err)
	}
	f, err := bobSFTP.Create("/after-sftp.txt")
	if err != nil {
		t.Fatalf("bob's SFTP session after the reload: %v", err)
	}
	f.Write([]byte("sftp"))
	if err := f.Close(); err != nil {
		t.Errorf("bob's SFTP upload after the reload: %v", err)
	}
	for name, want := range map[string]string{"after.txt": "ftp", "after-sftp.txt": "sftp"} {
		if b, err := os.ReadFile(filepath.Join(dir, "data", "bob", name)); err != nil || string(b) != want {
			t.Errorf("bob's %s: %q, %v", name, b, err)
		}
	}
	deadline = time.Now().Add(10 * time.Second)
	for got := byUser(); got["alice"]+got["carol"]+got["dave"]+got["erin"] != 0 || got["bob"] != 2; got = byUser() {
		if time.Now().After(deadline) {
			t.Fatalf("sessions after the reload: %v, want bob's two only", got)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Alice's uploads in flight committed nothing.
	(&gwtest.Env{Root: filepath.Join(dir, "data"), Srv: srv}).AgentIdle(t)
	for _, name := range []string{"index.html", "app.js"} {
		if b, err := os.ReadFile(filepath.Join(aliceDir, name)); err != nil || string(b) != "old "+name {
			t.Errorf("alice's %s after her uploads in flight were cut: %q, %v; want the old content", name, b, err)
		}
	}
	if tmp := agenttest.TempFiles(t, aliceDir); len(tmp) != 0 {
		t.Errorf("temp files left in alice's directory: %v", tmp)
	}

	// The log and the feed say who and why, and that the uploads aborted.
	// An upload's event comes when its file is closed, which for alice's
	// FTP upload is on its data connection's goroutine, after her session
	// has left the registry; and AgentIdle does not order it either (the
	// agent's file is closed before the event is published): wait for the
	// four transfers, a while at most.
	wantTransfers := []string{"alice ftp /index.html aborted", "alice sftp /app.js aborted",
		"bob ftp /after.txt committed", "bob sftp /after-sftp.txt committed"}
	var revoked, transfers []string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		revoked, transfers = nil, nil
		for _, e := range gw.Feed().Recent(seq, nil) {
			switch d := e.Data.(type) {
			case gateway.SessionEvent:
				if d.Event == "revoked" {
					revoked = append(revoked, e.User+": "+d.Reason)
				}
			case gateway.TransferEvent:
				transfers = append(transfers, fmt.Sprintf("%s %s %s %s", e.User, d.Protocol, d.Path, d.Result))
			}
		}
		if len(transfers) >= len(wantTransfers) || time.Now().After(deadline) {
			break
		}
	}
	slices.Sort(revoked)
	want := []string{
		"alice: the password of user alice changed", "alice: the password of user alice changed",
		"carol: the key user carol logged in with is no longer authorized", "dave: user dave was removed",
		"erin: the mounts of user erin changed",
	}
	if !slices.Equal(revoked, want) {
		t.Errorf("feed's revoked events:\n%q\nwant\n%q", revoked, want)
	}
	slices.Sort(transfers)
	if !slices.Equal(transfers, wantTransfers) {
		t.Errorf("feed's transfer events:\n%q\nwant\n%q", transfers, wantTransfers)
	}
	if n := strings.Count(logs.String(), `msg="session revoked by the configuration reload"`); n != 5 {
		t.Errorf("%d log lines of revoked sessions, want 5:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "sessions_revoked=5") {
		t.Errorf("the reload's log line does not count the revoked sessions")
	}

	closed := map[string]float64{}
	mfs, err := gw.Metrics().Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "upgate_connections_closed_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["reason"] == gateway.ReasonRevoked {
				closed[labels["proto"]] = m.GetCounter().GetValue()
			}
		}
	}
	// alice's and dave's control connections and alice's data connection;
	// alice's, erin's and carol's SSH connections.
	if want := map[string]float64{"ftp": 2, "ftp-data": 1, "sftp": 3}; !maps.Equal(closed, want) {
		t.Errorf("connections closed for %q: %v, want %v", gateway.ReasonRevoked, closed, want)
	}

	// New logins follow the new configuration.
	if _, _, err := sftpLogin(sftpAddr, "alice", "a"); err == nil {
		t.Error("alice logs in with her old password")
	}
	sc, c, err := sftpLogin(sftpAddr, "alice", "a2")
	if err != nil {
		t.Fatalf("alice with her new password: %v", err)
	}
	c.Close()
	sc.Close()
}

// yamlList formats strings as a YAML flow list.
func yamlList(items []string) string {
	var b bytes.Buffer
	b.WriteByte('[')
	for i, s := range items {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%q", s)
	}
	b.WriteByte(']')
	return b.String()
}
