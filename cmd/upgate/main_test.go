package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/upgate/upgate/backend"
	"github.com/upgate/upgate/backend/fstest"
	"github.com/upgate/upgate/internal/procs"
	"github.com/upgate/upgate/internal/syncbuf"
)

// buildBinary builds upgate once per test binary run.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "upgate")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func TestCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildBinary(t)

	t.Run("Version", func(t *testing.T) {
		out, err := exec.Command(bin, "version").Output()
		if err != nil || !strings.HasPrefix(string(out), "upgate ") {
			t.Fatalf("version: %q %v", out, err)
		}
	})

	t.Run("HashPassword", func(t *testing.T) {
		cmd := exec.Command(bin, "hash-password", "--cost", "4")
		cmd.Stdin = strings.NewReader("s3cret pass\n")
		out, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		h := strings.TrimSpace(string(out))
		if err := bcrypt.CompareHashAndPassword([]byte(h), []byte("s3cret pass")); err != nil {
			t.Fatalf("printed hash %q does not match: %v", h, err)
		}
	})

	// The command line in deploy/inject/deployment.yaml's header makes
	// deploy/kubernetes/dev-pod/deployment.yaml; a refusal says why and
	// writes nothing.
	t.Run("Inject", func(t *testing.T) {
		in, err := os.ReadFile("../../deploy/inject/deployment.yaml")
		if err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadFile("../../deploy/kubernetes/dev-pod/deployment.yaml")
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "inject", "--user", "alice", "--root", "/var/www/html", "--command", "/usr/local/bin/upgate", "--hooks", "upgate-hooks")
		cmd.Stdin = bytes.NewReader(in)
		out, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out, want) {
			t.Errorf("upgate inject of deploy/inject/deployment.yaml differs from deploy/kubernetes/dev-pod/deployment.yaml:\n%s", out)
		}
		cmd = exec.Command(bin, "inject", "--user", "alice", "--root", "/srv", "--image", "x")
		cmd.Stdin = bytes.NewReader(in)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err = cmd.Output()
		if err == nil || len(out) > 0 || !strings.Contains(stderr.String(), "upgate: inject: document 0 (Deployment alice-php): container php-fpm has no volume at /srv") {
			t.Errorf("inject with a root outside the app's volumes: %v, %d bytes out, stderr %q", err, len(out), stderr.String())
		}
	})

	t.Run("ServeStopsOnSIGTERM", func(t *testing.T) {
		dir := t.TempDir()
		// With cpu.awake_monitor: the SIGTERM reaches the re-executed image.
		cmd := exec.Command(bin, "serve", "--listen.ftp", "127.0.0.1:0", "--listen.sftp", "127.0.0.1:0", "--listen.admin", "127.0.0.1:0", "--cpu.awake_monitor")
		cmd.Dir = dir
		var stderr syncbuf.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// The embedded agent creates its root once it is up.
		deadline := time.Now().Add(30 * time.Second)
		for !strings.Contains(stderr.String(), "upgate serving") {
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				t.Fatalf("serve did not start:\n%s", stderr.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
		if fi, err := os.Stat(filepath.Join(dir, "data")); err != nil || !fi.IsDir() {
			t.Fatalf("embedded agent root: %v", err)
		}
		checkMonitor(t, cmd.Process.Pid, stderr.String(), true)
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("serve exited with %v after SIGTERM:\n%s", err, stderr.String())
			}
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			t.Fatalf("serve did not stop after SIGTERM:\n%s", stderr.String())
		}
	})

	t.Run("DemoRefusedOnPublicListener", func(t *testing.T) {
		cmd := exec.Command(bin, "serve", "--listen.sftp", "0.0.0.0:2222")
		cmd.Dir = t.TempDir()
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), `user "demo"`) || !strings.Contains(string(out), "listen.sftp") {
			t.Fatalf("serve with demo on 0.0.0.0: err %v, output:\n%s", err, out)
		}
	})

	t.Run("BadConfigNamesTheKey", func(t *testing.T) {
		cmd := exec.Command(bin, "serve")
		cmd.Dir = t.TempDir()
		cmd.Env = append(os.Environ(), "UPGATE_CONNECTIONS_KEEPALIVE_COUNT=-1")
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "connections.keepalive.count") {
			t.Fatalf("serve with a bad env value: err %v, output:\n%s", err, out)
		}
	})

	t.Run("AgentNeedsToken", func(t *testing.T) {
		out, err := exec.Command(bin, "agent", "--root", t.TempDir()).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "token-file") {
			t.Fatalf("agent without a token: err %v, output:\n%s", err, out)
		}
	})
}

// startAgent runs `upgate agent` (bin) with the extra flags over a new
// temp root, on a free loopback port, with the token "agent-secret", and
// stops it with SIGTERM at cleanup, failing the test unless it exits
// cleanly within 30 s. It returns the root, the address, the agent's
// stderr and its process ID.
func startAgent(t *testing.T, bin string, extra ...string) (root, addr string, stderr *syncbuf.Buffer, pid int) {
	t.Helper()
	root = t.TempDir()
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("agent-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr = lis.Addr().String()
	lis.Close()
	cmd := exec.Command(bin, append([]string{"agent", "--listen", addr, "--root", root, "--token-file", tokenFile}, extra...)...)
	stderr = &syncbuf.Buffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("agent exited with %v after SIGTERM:\n%s", err, stderr.String())
			}
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			t.Errorf("agent did not stop after SIGTERM")
		}
	})
	return root, addr, stderr, cmd.Process.Pid
}

// TestAgentCommand runs "upgate agent" and writes a file through it with
// the real client.
func TestAgentCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	root, addr, stderr, pid := startAgent(t, buildBinary(t))
	cc, err := backend.Dial(addr, backend.DialOptions{Token: "agent-secret"})
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fsys := backend.NewGRPCFs(ctx, cc, backend.Options{CallTimeout: 5 * time.Second})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := fsys.Stat("/"); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("agent not reachable: %v\n%s", err, stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	data := fstest.Data(3<<20, 4)
	fstest.WriteFile(t, fsys, "/up.bin", data)
	if got, err := os.ReadFile(filepath.Join(root, "up.bin")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("file written through upgate agent: %d bytes, %v", len(got), err)
	}
	checkMonitor(t, pid, stderr.String(), false)

	// --awake-monitor: re-executed in place, with the monitor awake.
	_, _, stderr, pid = startAgent(t, buildBinary(t), "--awake-monitor")
	waitLog(t, stderr, "agent serving")
	checkMonitor(t, pid, stderr.String(), true)
}

// waitLog waits up to 30 s for line in a process's log.
func waitLog(t *testing.T, log *syncbuf.Buffer, line string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(log.String(), line) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the log within 30 s:\n%s", line, log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkMonitor checks how the upgate process pid, started without
// GODEBUG's schedtrace, runs the Go runtime's monitor. With awake
// (cpu.awake_monitor, --awake-monitor) it must have re-executed itself in
// place with the setting: its own environment (/proc, which keeps what
// the image started with) holds it, and its log (stderr, read once it
// serves) says so once. Without, neither. It skips when the test's own
// environment names schedtrace, which upgate then leaves alone.
func checkMonitor(t *testing.T, pid int, stderr string, awake bool) {
	t.Helper()
	if strings.Contains(","+os.Getenv("GODEBUG"), ",schedtrace=") {
		t.Log("GODEBUG names schedtrace here: not checking the monitor")
		return
	}
	environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		t.Fatal(err)
	}
	var godebug string
	for _, kv := range strings.Split(string(environ), "\x00") {
		if v, ok := strings.CutPrefix(kv, "GODEBUG="); ok {
			godebug = v
			break
		}
	}
	setting := fmt.Sprintf("schedtrace=%d", procs.MonitorPeriod)
	if got := slices.Contains(strings.Split(godebug, ","), setting); got != awake {
		t.Errorf("pid %d started with GODEBUG %q: %s in it is %v, want %v", pid, godebug, setting, got, awake)
	}
	want := 0
	if awake {
		want = 1
	}
	if n := strings.Count(stderr, monitorAwakeLine); n != want {
		t.Errorf("log has %q %d times, want %d:\n%s", monitorAwakeLine, n, want, stderr)
	}
}
