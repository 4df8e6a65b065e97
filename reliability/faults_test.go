package reliability_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"
	"github.com/pkg/sftp"

	"github.com/upgate/upgate/backend/agent"
	"github.com/upgate/upgate/backend/agentpb"
	"github.com/upgate/upgate/config"
	"github.com/upgate/upgate/internal/agenttest"
)

const chunk = 64 << 10

// pipedStor is an FTP STOR fed through a pipe, so that a test can stop
// feeding it halfway.
type pipedStor struct {
	pw   *io.PipeWriter
	done chan error
}

func startStor(c *ftp.ServerConn, name string) *pipedStor {
	pr, pw := io.Pipe()
	u := &pipedStor{pw: pw, done: make(chan error, 1)}
	go func() {
		err := c.Stor(name, pr)
		// Unblock the feeder if the transfer ended early.
		pr.CloseWithError(errors.New("STOR returned"))
		u.done <- err
	}()
	return u
}

// feed writes n bytes of data (repeated) and stops at the first error.
func feed(w io.Writer, data []byte, n int) error {
	for n > 0 {
		k := min(n, len(data))
		if _, err := w.Write(data[:k]); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

// waitTemp waits until the agent's directory holds an upload temp file of
// at least size bytes: the upload has reached the agent's disk.
func waitTemp(t *testing.T, dir string, size int64) string {
	t.Helper()
	var name string
	ok := waitUntil(15*time.Second, func() bool {
		for _, n := range agenttest.TempFiles(t, dir) {
			if fi, err := os.Stat(filepath.Join(dir, n)); err == nil && fi.Size() >= size {
				name = n
				return true
			}
		}
		return false
	})
	if !ok {
		t.Fatalf("no upload temp of %d bytes in %s: %v", size, dir, listDir(t, dir))
	}
	return name
}

// checkOld asserts that target still has its old content and that the only
// other entries of dir are hidden upload temps, which it returns.
func checkOld(t *testing.T, dir, target string, old []byte, others ...string) []string {
	t.Helper()
	got, err := os.ReadFile(filepath.Join(dir, target))
	if err != nil || !bytes.Equal(got, old) {
		t.Errorf("%s after the fault: %d bytes (want the old %d), %v", target, len(got), len(old), err)
	}
	var temps []string
	for _, n := range listDir(t, dir) {
		switch {
		case n == target || slices.Contains(others, n):
		case strings.HasPrefix(n, agent.TempPrefix):
			temps = append(temps, n)
		default:
			t.Errorf("unexpected file %q in the agent's directory", n)
		}
	}
	return temps
}

// TestAgentKilledMidUpload kills a real agent process (SIGKILL) while a
// client replaces a file through the gateway: the client gets an error,
// the old version stays, nothing partial is visible; a new agent process
// on the same address serves the next upload through the same gateway and
// the same client session, and sweeps the temp file the killed one left.
func TestAgentKilledMidUpload(t *testing.T) {
	if testing.Short() {
		t.Skip("runs agent processes")
	}
	for _, proto := range []string{"ftp", "sftp"} {
		t.Run(proto, func(t *testing.T) {
			dir := t.TempDir()
			userDir := filepath.Join(dir, "alice")
			if err := os.Mkdir(userDir, 0o755); err != nil {
				t.Fatal(err)
			}
			old := pattern("old version ", 100<<10)
			if err := os.WriteFile(filepath.Join(userDir, "target.bin"), old, 0o644); err != nil {
				t.Fatal(err)
			}
			a := startAgent(t, dir)
			srv := startGateway(t, map[string]config.Agent{"remote": {Address: a.Addr, TokenFile: a.TokenFile}},
				[]gwUser{{"alice", "remote", "alice"}}, nil)
			data := pattern("new data ", chunk)

			// upload replaces target.bin; after the first 2 MiB it calls
			// mid and then sends up to 8 MiB more. It returns the error the
			// client saw.
			var upload func(name string, mid func()) error
			// put uploads data to name in the same client session.
			var put func(name string, data []byte) error
			switch proto {
			case "ftp":
				c := mustFTP(t, srv.FTPAddr.String(), "alice")
				upload = func(name string, mid func()) error {
					u := startStor(c, name)
					if err := feed(u.pw, data, 2<<20); err != nil {
						t.Fatalf("feeding the upload: %v", err)
					}
					mid()
					_ = feed(u.pw, data, 8<<20) // fails once the server gives up
					u.pw.Close()
					select {
					case err := <-u.done:
						return err
					case <-time.After(60 * time.Second):
						t.Fatal("STOR did not end within 60 s of the agent's death")
						return nil
					}
				}
				put = func(name string, data []byte) error { return c.Stor(name, bytes.NewReader(data)) }
			case "sftp":
				c := mustSFTP(t, srv.SFTPAddr.String(), "alice")
				upload = func(name string, mid func()) error {
					f, err := c.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
					if err != nil {
						t.Fatal(err)
					}
					if err := feed(f, data, 2<<20); err != nil {
						t.Fatalf("feeding the upload: %v", err)
					}
					mid()
					werr := feed(f, data, 8<<20)
					return errors.Join(werr, f.Close())
				}
				put = func(name string, data []byte) error {
					f, err := c.Create(name)
					if err != nil {
						return err
					}
					_, werr := f.Write(data)
					return errors.Join(werr, f.Close())
				}
			}

			var tempName string
			err := upload("target.bin", func() {
				tempName = waitTemp(t, userDir, 1<<20)
				a.kill(t)
			})
			switch proto {
			case "ftp":
				code, msg := ftpCode(err)
				t.Logf("FTP client after the agent's death: reply %d %q (error %v)", code, msg, err)
				if code != 451 || !strings.Contains(msg, "unreachable") {
					t.Errorf("STOR with the agent killed: want 451 ... unreachable, got %v", err)
				}
			case "sftp":
				t.Logf("SFTP client after the agent's death: %v", err)
				var se *sftp.StatusError
				if !errors.As(err, &se) {
					t.Errorf("SFTP upload with the agent killed: want an SFTP status error, got %v", err)
				}
			}
			temps := checkOld(t, userDir, "target.bin", old)
			t.Logf("hidden temp files left by the killed agent: %v", temps)
			if !slices.Contains(temps, tempName) {
				t.Logf("the killed agent's temp %s is gone", tempName)
			}

			// Age the orphan so the next agent treats it as stale; a
			// recent temp (another agent's upload, say) must stay.
			for _, n := range temps {
				past := time.Now().Add(-time.Hour)
				if err := os.Chtimes(filepath.Join(userDir, n), past, past); err != nil {
					t.Fatal(err)
				}
			}
			const recent = ".upgate-upload-0123456789abcdef-other.bin"
			if err := os.WriteFile(filepath.Join(userDir, recent), []byte("in progress"), 0o644); err != nil {
				t.Fatal(err)
			}

			// The agent comes back on the same address: the gateway
			// reconnects by itself.
			back := time.Now()
			a = restartAgent(t, a)
			fresh := pattern("fresh version ", 300<<10)
			attempts := 0
			var lastErr error
			for time.Since(back) < 60*time.Second {
				attempts++
				if lastErr = put("target.bin", fresh); lastErr == nil {
					break
				}
				t.Logf("upload %d after the restart: %v", attempts, lastErr)
				time.Sleep(200 * time.Millisecond)
			}
			if lastErr != nil {
				t.Fatalf("no upload worked within 60 s of the agent's restart: %v", lastErr)
			}
			// Usually the first attempt works: the connection went idle
			// when the agent died and reconnects on the next call. If a
			// health check hit the dead agent, the reconnection waits for
			// its backoff (at most 5 s, see backend.Dial).
			t.Logf("upload after the restart worked on attempt %d, %v after the agent was back", attempts, time.Since(back).Round(time.Millisecond))
			got, err := os.ReadFile(filepath.Join(userDir, "target.bin"))
			if err != nil || !bytes.Equal(got, fresh) {
				t.Fatalf("target after the restart: %d bytes, %v", len(got), err)
			}
			if left := agenttest.TempFiles(t, userDir); len(left) != 1 || left[0] != recent {
				t.Errorf("temp files after the restarted agent's first upload: %v, want only the recent %s", left, recent)
			}
			st, err := agentStatus(agentClient(t, a))
			if err != nil || st.GetOpenHandles() != 0 {
				t.Errorf("agent status after the upload: %v, %v", st, err)
			}
		})
	}
}

// mountTmpfs mounts a tmpfs of size on a new temp dir, unmounted in
// t.Cleanup (register it before anything that uses the mount, so that it
// runs after them). It skips when mounting is not allowed, unless
// UPGATE_REQUIRE_INTEROP=1.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0755"); err != nil {
		if os.Getenv("UPGATE_REQUIRE_INTEROP") == "1" {
			t.Fatalf("mount tmpfs (UPGATE_REQUIRE_INTEROP=1): %v", err)
		}
		t.Skipf("cannot mount a tmpfs (needs root): %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
			_ = syscall.Unmount(dir, syscall.MNT_DETACH)
		}
	})
	return dir
}

// TestAgentDiskFull uploads 4 MiB onto a 2 MiB tmpfs: FTP answers 552 and
// SFTP SSH_FX_FAILURE, both saying "no space left"; the replaced file
// keeps its old content, a new one does not appear, no temp remains, and
// once the space is back (the failed upload's temp is gone) uploads work.
func TestAgentDiskFull(t *testing.T) {
	if testing.Short() {
		t.Skip("mounts a tmpfs")
	}
	root := mountTmpfs(t, "2m")
	userDir := filepath.Join(root, "alice")
	if err := os.Mkdir(userDir, 0o755); err != nil {
		t.Fatal(err)
	}
	old := pattern("old version ", 100<<10)
	if err := os.WriteFile(filepath.Join(userDir, "target.bin"), old, 0o644); err != nil {
		t.Fatal(err)
	}
	srv := startGateway(t, map[string]config.Agent{"embedded": {Embedded: true, Root: root}},
		[]gwUser{{"alice", "embedded", "alice"}}, nil)
	ag, _ := srv.Gateway.AgentPool().Embedded("embedded")
	big := pattern("too big ", 4<<20)
	small := pattern("fits ", 1<<20)
	idle := func() {
		t.Helper()
		if !waitUntil(15*time.Second, func() bool { return ag.OpenHandles() == 0 && len(agenttest.TempFiles(t, userDir)) == 0 }) {
			t.Errorf("after the failed upload: %d open handles, temps %v", ag.OpenHandles(), agenttest.TempFiles(t, userDir))
		}
	}

	t.Run("ftp", func(t *testing.T) {
		c := mustFTP(t, srv.FTPAddr.String(), "alice")
		err := c.Stor("target.bin", bytes.NewReader(big))
		code, msg := ftpCode(err)
		t.Logf("FTP STOR of 4 MiB onto 2 MiB: %d %q", code, msg)
		if code != 552 || !strings.Contains(strings.ToLower(msg), "no space left") {
			t.Errorf("STOR on a full disk: want 552 ... no space left, got %v", err)
		}
		idle()
		checkOld(t, userDir, "target.bin", old)
		if temps := agenttest.TempFiles(t, userDir); len(temps) != 0 {
			t.Errorf("temps left: %v", temps)
		}
		// The failed upload's space is free again: 1 MiB fits.
		if err := c.Stor("after-ftp.bin", bytes.NewReader(small)); err != nil {
			t.Fatalf("STOR after the space was freed: %v", err)
		}
		if got, _ := os.ReadFile(filepath.Join(userDir, "after-ftp.bin")); !bytes.Equal(got, small) {
			t.Errorf("after-ftp.bin: %d bytes", len(got))
		}
		if err := c.Delete("after-ftp.bin"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("sftp", func(t *testing.T) {
		c := mustSFTP(t, srv.SFTPAddr.String(), "alice")
		for _, name := range []string{"target.bin", "new.bin"} {
			f, err := c.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
			if err != nil {
				t.Fatal(err)
			}
			_, werr := f.Write(big)
			cerr := f.Close()
			err = werr
			if err == nil {
				err = cerr
			}
			t.Logf("SFTP write of 4 MiB onto 2 MiB (%s): write %v, close %v", name, werr, cerr)
			var se *sftp.StatusError
			if !errors.As(err, &se) || se.FxCode() != sftp.ErrSSHFxFailure || !strings.Contains(strings.ToLower(err.Error()), "no space left") {
				t.Errorf("SFTP upload on a full disk: want SSH_FX_FAILURE ... no space left, got %v", err)
			}
			idle()
		}
		checkOld(t, userDir, "target.bin", old)
		if _, err := os.Stat(filepath.Join(userDir, "new.bin")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("new.bin after a failed upload: %v", err)
		}
		f, err := c.Create("after-sftp.bin")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write(small); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatalf("SFTP upload after the space was freed: %v", err)
		}
		if got, _ := os.ReadFile(filepath.Join(userDir, "after-sftp.bin")); !bytes.Equal(got, small) {
			t.Errorf("after-sftp.bin: %d bytes", len(got))
		}
	})
}

// TestGatewaySIGKILLLeavesNoPartial kills the gateway process (SIGKILL)
// while three FTP and three SFTP clients replace files through it on a
// real agent process: every target keeps its old content, the agent
// removes every temp file and its open-handle count, read through its
// Status call, returns to 0 within its keepalive bound. (The kernel closes
// a killed process's sockets, so the agent sees the connection end at
// once.)
func TestGatewaySIGKILLLeavesNoPartial(t *testing.T) {
	if testing.Short() {
		t.Skip("runs gateway and agent processes")
	}
	took := gatewayFault(t, syscall.SIGKILL)
	t.Logf("the agent closed the orphaned streams %v after the gateway's SIGKILL", took.Round(100*time.Microsecond))
}

// TestGatewayFrozenStreamsEndByKeepalive stops the gateway process
// (SIGSTOP) mid-upload: its sockets stay open but nothing answers, as
// when its host vanishes. Only the agent's keepalive (a ping after 20 s
// without traffic, 10 s to answer) can end the streams; it must, within
// a minute, leaving the old files and no temp.
func TestGatewayFrozenStreamsEndByKeepalive(t *testing.T) {
	if testing.Short() {
		t.Skip("runs gateway and agent processes for half a minute")
	}
	took := gatewayFault(t, syscall.SIGSTOP)
	t.Logf("the agent closed the orphaned streams %v after the gateway froze", took.Round(time.Millisecond))
	if took < 15*time.Second {
		t.Errorf("streams ended %v after the gateway froze: something else than the keepalive ended them", took)
	}
}

// gatewayFault runs `upgate serve` on a real agent process, starts three
// FTP and three SFTP uploads that replace files, sends sig to the gateway
// mid-upload and checks what the agent does. It returns how long the agent
// took to close the uploads' streams. The gateway is killed before it
// returns.
func gatewayFault(t *testing.T, sig syscall.Signal) time.Duration {
	dir := t.TempDir()
	userDir := filepath.Join(dir, "alice")
	if err := os.Mkdir(userDir, 0o755); err != nil {
		t.Fatal(err)
	}
	const n = 3
	olds := map[string][]byte{}
	for i := range n {
		for _, p := range []string{"f", "s"} {
			name := p + itoa(i) + ".bin"
			olds[name] = pattern("old "+name+" ", 200<<10)
			if err := os.WriteFile(filepath.Join(userDir, name), olds[name], 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	a := startAgent(t, dir)
	status := agentClient(t, a)

	conf := filepath.Join(t.TempDir(), "upgate.yaml")
	yaml := "listen: {ftp: 127.0.0.1:0, sftp: 127.0.0.1:0, admin: \"\"}\n" +
		"ftp: {passive_ports: \"\"}\n" +
		"sftp: {host_keys: [\"" + filepath.Join(t.TempDir(), "ssh_host_ed25519_key") + "\"]}\n" +
		"agents:\n  remote: {address: \"" + a.Addr + "\", token_file: \"" + a.TokenFile + "\"}\n" +
		"users:\n  - {name: alice, password_hash: \"" + passwordHash(t) + "\", mounts: [{path: /, agent: remote, root: alice}]}\n"
	if err := os.WriteFile(conf, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	gw := startProc(t, "gateway", "serve", "--config", conf)
	ftpAddr, sftpAddr, _ := gw.gatewayAddrs(t, true, true, false)

	data := pattern("new data ", chunk)
	var stors []*pipedStor
	var sftpFiles []*sftp.File
	for i := range n {
		c := mustFTP(t, ftpAddr, "alice")
		u := startStor(c, "f"+itoa(i)+".bin")
		stors = append(stors, u)
		if err := feed(u.pw, data, 2<<20); err != nil {
			t.Fatal(err)
		}
		sc := mustSFTP(t, sftpAddr, "alice")
		f, err := sc.OpenFile("s"+itoa(i)+".bin", os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
		if err != nil {
			t.Fatal(err)
		}
		sftpFiles = append(sftpFiles, f)
		if err := feed(f, data, 2<<20); err != nil {
			t.Fatal(err)
		}
	}
	// Every upload is open on the agent and has data in its temp file.
	if !waitUntil(15*time.Second, func() bool {
		st, err := agentStatus(status)
		if err != nil || st.GetUploadsInProgress() != 2*n {
			return false
		}
		full := 0
		for _, name := range agenttest.TempFiles(t, userDir) {
			if fi, err := os.Stat(filepath.Join(userDir, name)); err == nil && fi.Size() >= 1<<20 {
				full++
			}
		}
		return full == 2*n
	}) {
		st, err := agentStatus(status)
		t.Fatalf("uploads not under way: status %v %v, temps %v", st, err, agenttest.TempFiles(t, userDir))
	}

	if err := gw.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	if sig == syscall.SIGKILL {
		gw.kill(t) // waits until it is gone
	}
	killed := time.Now()
	var st *agentStatusResult
	ok := waitUntil(90*time.Second, func() bool {
		s, err := agentStatus(status)
		st = &agentStatusResult{s, err}
		return err == nil && s.GetOpenHandles() == 0 && s.GetUploadsInProgress() == 0
	})
	took := time.Since(killed)
	if !ok {
		t.Fatalf("the agent still holds its streams 90 s after the gateway's %v: %v %v", sig, st.s, st.err)
	}
	// The agent's keepalive (a ping after 20 s without traffic, 10 s to
	// answer) bounds this when the gateway vanishes silently.
	if took > 60*time.Second {
		t.Errorf("orphaned streams closed after %v, beyond the keepalive bound", took)
	}
	for name, old := range olds {
		got, err := os.ReadFile(filepath.Join(userDir, name))
		if err != nil || !bytes.Equal(got, old) {
			t.Errorf("%s after the gateway's death: %d bytes (want the old %d), %v", name, len(got), len(old), err)
		}
	}
	if names := listDir(t, userDir); len(names) != len(olds) {
		t.Errorf("the agent's directory after the gateway's death: %v", names)
	}
	if !strings.Contains(a.out.String(), "upload aborted") {
		t.Errorf("the agent logged no aborted upload:\n%s", a.out.String())
	}

	// The clients see their connections gone.
	gw.kill(t)
	for i, u := range stors {
		u.pw.Close()
		select {
		case err := <-u.done:
			if err == nil {
				t.Errorf("FTP upload %d succeeded through a killed gateway", i)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("FTP upload %d still running 30 s after the gateway died", i)
		}
	}
	for i, f := range sftpFiles {
		if err := f.Close(); err == nil {
			t.Errorf("SFTP upload %d closed cleanly through a killed gateway", i)
		}
	}
	return took
}

type agentStatusResult struct {
	s   *agentpb.StatusResponse
	err error
}
