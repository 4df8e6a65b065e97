package sftpbench_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/upgate/upgate/internal/gwtest"
)

// TestRunQuick runs run.sh in quick mode (16 MiB, 50 files, 20 saves, 200
// creates, a 50-file repository through sshfs, one round) and checks that it
// succeeds and prints the table. The figures are not checked: they only
// mean something at full size, by hand.
func TestRunQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("builds upgate and runs sshd; skipped with -short")
	}
	strict := os.Getenv("UPGATE_REQUIRE_INTEROP") == "1"
	require := func(format string, args ...any) {
		t.Helper()
		if strict {
			t.Fatalf(format+" (UPGATE_REQUIRE_INTEROP=1)", args...)
		}
		t.Skipf(format, args...)
	}
	for _, p := range []string{"/usr/sbin/sshd", "/usr/lib/openssh/sftp-server"} {
		if _, err := os.Stat(p); err != nil {
			require("%s not installed (apt-get install openssh-server): %v", p, err)
		}
	}
	for _, tool := range []string{"ssh", "sftp", "ssh-keygen", "lftp"} {
		gwtest.RequireTool(t, tool)
	}
	if out, err := exec.Command("/usr/bin/python3", "-c", "import paramiko").CombinedOutput(); err != nil {
		require("/usr/bin/python3 with paramiko (apt-get install python3-paramiko): %v\n%s", err, out)
	}
	if os.Geteuid() != 0 {
		require("run.sh needs root (it adds a throwaway user for sshd)")
	}
	// sshfs is optional for the script (it leaves those rows out without
	// it); CI requires it, by naming it in BENCH_ONLY.
	withSSHFS := true
	for _, tool := range []string{"sshfs", "fusermount3", "git"} {
		if _, err := exec.LookPath(tool); err != nil {
			withSSHFS = false
		}
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		withSSHFS = false
	}
	env := []string{"BENCH_QUICK=1", "BENCH_TIMEOUT=60"}
	if strict {
		env = append(env, "BENCH_ONLY=login,put,mirror,saves,creates,sshfs")
		withSSHFS = true
	}

	// The script's temp dir goes into a directory of the test's own, so that
	// whatever a killed run leaves behind (processes, mounts, the throwaway
	// user, whose home is in there) can be found and removed. 0755 like the
	// script's temp dir: sshd's user reaches its home through it.
	benchDir, err := os.MkdirTemp("", "upgate-sftpbench-test-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(benchDir, 0o755); err != nil {
		t.Fatal(err)
	}
	keep := os.Getenv("BENCH_KEEP") == "1"
	t.Cleanup(func() {
		if left := sweep(t, benchDir, keep); len(left) > 0 {
			t.Errorf("run.sh left behind (now removed): %s", strings.Join(left, "; "))
		}
		if !keep {
			os.RemoveAll(benchDir)
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "run.sh", "--quick")
	// In a process group of its own (bash and the helpers; the servers and
	// the clients have groups of their own, which sweep finds by the temp
	// dir in their arguments, and sshd's sessions by their user).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// SIGTERM first, so the script's trap unmounts, stops the servers it
	// started and removes the user; SIGKILL to the whole group if it is
	// still running after killGrace, before WaitDelay, after which exec
	// would kill bash alone.
	const killGrace = 30 * time.Second
	var (
		mu        sync.Mutex
		killTimer *time.Timer
		killed    atomic.Bool
	)
	cmd.Cancel = func() error {
		pgid := cmd.Process.Pid
		mu.Lock()
		killTimer = time.AfterFunc(killGrace, func() {
			killed.Store(true)
			syscall.Kill(-pgid, syscall.SIGKILL)
		})
		mu.Unlock()
		return cmd.Process.Signal(syscall.SIGTERM)
	}
	cmd.WaitDelay = killGrace + 15*time.Second
	// Any one client command gets 60 s (a hung one fails the run well before
	// the test's own timeout).
	cmd.Env = append(append(os.Environ(), env...), "BENCH_DIR="+benchDir)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	mu.Lock()
	if killTimer != nil {
		killTimer.Stop()
	}
	mu.Unlock()
	if killed.Load() {
		t.Logf("run.sh was still running %v after SIGTERM; killed its process group", killGrace)
	}
	if err != nil {
		if cmd.Process != nil {
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
		t.Fatalf("bash run.sh --quick: %v (context: %v)\nstdout:\n%s\nstderr:\n%s", err, ctx.Err(), &stdout, &stderr)
	}
	out := stdout.String()
	want := []string{
		"| measurement | upgate, embedded agent | upgate, agent process | OpenSSH | embedded/OpenSSH | agent/OpenSSH | goal |",
		"login and one `pwd`", "OpenSSH `sftp -b` put", "CPU s per GiB", "of which the agent process", "`lftp mirror -R`",
		"p50", "p99", "creating 200 small files", "One save's five steps",
	}
	rows := 9 // header and eight measurements
	if withSSHFS {
		want = append(want, "`git status`", "`cp -a`")
		rows += 2
	}
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q\nstdout:\n%s\nstderr:\n%s", w, out, &stderr)
		}
	}
	if n := strings.Count(out, "\n| "); n != rows {
		t.Errorf("table has %d rows, want %d\n%s", n, rows, out)
	}
	t.Logf("\n%s", out)
}

// sweep unmounts what a run with BENCH_DIR=benchDir left mounted, kills
// what it left running (any process with benchDir in its arguments, with
// its process group, and any process of the run's throwaway user), removes
// that user, and returns what it found, the run's temp dir included unless
// keep. After a run that cleaned up after itself it finds nothing.
func sweep(t *testing.T, benchDir string, keep bool) []string {
	t.Helper()
	var left []string
	if f, err := os.Open("/proc/self/mountinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) > 4 && strings.HasPrefix(fields[4], benchDir+"/") {
				left = append(left, "mount "+fields[4])
				if out, err := exec.Command("umount", "-l", fields[4]).CombinedOutput(); err != nil {
					t.Errorf("umount -l %s: %v\n%s", fields[4], err, out)
				}
			}
		}
		f.Close()
	}
	self, ownGroup := os.Getpid(), syscall.Getpgrp()
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		pid, err := strconv.Atoi(filepath.Base(p))
		if err != nil || pid == self {
			continue
		}
		args, err := os.ReadFile(p + "/cmdline")
		if err != nil || !bytes.Contains(args, []byte(benchDir)) {
			continue
		}
		left = append(left, fmt.Sprintf("pid %d (%s)", pid, strings.TrimSpace(string(bytes.ReplaceAll(args, []byte{0}, []byte{' '})))))
		if pgid, err := syscall.Getpgid(pid); err == nil && pgid > 1 && pgid != ownGroup {
			syscall.Kill(-pgid, syscall.SIGKILL)
		}
		syscall.Kill(pid, syscall.SIGKILL)
	}
	// The throwaway user: upgsftp..., with its home in the run's temp dir.
	if passwd, err := os.ReadFile("/etc/passwd"); err == nil {
		for _, line := range strings.Split(string(passwd), "\n") {
			f := strings.Split(line, ":")
			if len(f) < 7 || !strings.HasPrefix(f[0], "upgsftp") || !strings.HasPrefix(f[5], benchDir+"/") {
				continue
			}
			left = append(left, "user "+f[0])
			exec.Command("pkill", "-KILL", "-u", f[0]).Run()
			time.Sleep(200 * time.Millisecond)
			if out, err := exec.Command("userdel", "-f", f[0]).CombinedOutput(); err != nil {
				t.Errorf("userdel -f %s: %v\n%s", f[0], err, out)
			}
		}
	}
	if !keep {
		if ents, _ := os.ReadDir(benchDir); len(ents) > 0 {
			for _, e := range ents {
				left = append(left, filepath.Join(benchDir, e.Name()))
			}
		}
	}
	return left
}
