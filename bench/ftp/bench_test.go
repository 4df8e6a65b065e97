package ftpbench_test

import (
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

// TestRunQuick runs run.sh in quick mode (16 MiB, 50 files, 20 saves, one
// round; upgate with its embedded agent and with an agent process, and
// vsftpd) and checks that it succeeds and prints the table. The figures are
// not checked: they only mean something at full size, by hand.
func TestRunQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("builds upgate and runs vsftpd; skipped with -short")
	}
	require := func(format string, args ...any) {
		t.Helper()
		if os.Getenv("UPGATE_REQUIRE_INTEROP") == "1" {
			t.Fatalf(format+" (UPGATE_REQUIRE_INTEROP=1)", args...)
		}
		t.Skipf(format, args...)
	}
	if _, err := exec.LookPath("vsftpd"); err != nil {
		if _, err := os.Stat("/usr/sbin/vsftpd"); err != nil {
			require("vsftpd not installed (apt-get install vsftpd)")
		}
	}
	gwtest.RequireTool(t, "lftp")
	gwtest.RequireTool(t, "curl")
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		require("/usr/bin/python3 not installed: %v", err)
	}
	if os.Geteuid() != 0 {
		require("run.sh needs root (it adds a throwaway user for vsftpd)")
	}

	// The script's temp dir goes into a directory of the test's own, so that
	// whatever a killed run leaves behind (processes, the throwaway user, whose
	// home is in there) can be found and removed. 0755 like the script's temp
	// dir: vsftpd enters its chroot as the user.
	benchDir, err := os.MkdirTemp("", "upgate-ftpbench-test-")
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
	// In a process group of its own (bash and the helpers; upgate, the
	// agent, vsftpd and the clients under timeout(1) have groups of their
	// own, which sweep finds by the temp dir in their arguments).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// SIGTERM first, so the script's trap stops the servers it started and
	// removes the user (about 20 s at worst); SIGKILL to the whole group if
	// it is still running after killGrace, before WaitDelay, after which
	// exec would kill bash alone.
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
	cmd.Env = append(os.Environ(), "BENCH_QUICK=1", "BENCH_TIMEOUT=60", "BENCH_DIR="+benchDir)
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
		// bash is gone; whatever is left of its group (upgate, if bash was
		// killed before its cleanup) goes now. No other group can take the
		// id while a member is left.
		if cmd.Process != nil {
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
		t.Fatalf("bash run.sh --quick: %v (context: %v)\nstdout:\n%s\nstderr:\n%s", err, ctx.Err(), &stdout, &stderr)
	}
	out := stdout.String()
	for _, want := range []string{
		"| measurement | upgate, embedded agent | upgate, agent process | vsftpd | embedded/vsftpd | agent/vsftpd | goal |",
		"`curl -T`", "CPU s per GiB", "of which the agent process", "lftp `put`", "`lftp mirror -R`",
		"`lftp mirror -R --parallel=4`", "p50", "p99",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q\nstdout:\n%s\nstderr:\n%s", want, out, &stderr)
		}
	}
	if rows := strings.Count(out, "\n| "); rows != 9 {
		t.Errorf("table has %d rows, want 9 (header and eight measurements)\n%s", rows, out)
	}
	t.Logf("\n%s", out)
}

// sweep kills what a run with BENCH_DIR=benchDir left running (any process
// with benchDir in its arguments, with its process group, and any process of
// the run's throwaway user), removes that user, and returns what it found,
// the run's temp dir included unless keep. After a run that cleaned up after
// itself it finds nothing.
func sweep(t *testing.T, benchDir string, keep bool) []string {
	t.Helper()
	var left []string
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
	// The throwaway user: upgbench..., with its home in the run's temp dir.
	if passwd, err := os.ReadFile("/etc/passwd"); err == nil {
		for _, line := range strings.Split(string(passwd), "\n") {
			f := strings.Split(line, ":")
			if len(f) < 7 || !strings.HasPrefix(f[0], "upgbench") || !strings.HasPrefix(f[5], benchDir+"/") {
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
