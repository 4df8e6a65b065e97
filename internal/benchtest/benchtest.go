// Package benchtest runs a bench/ script's quick mode from a Go test, so
// that `go test ./...` (and CI) keeps the scripts working: the script runs
// in a process group of its own with a temp dir the test owns, is stopped
// with SIGTERM (its trap cleans up) and then SIGKILL if it hangs, and
// whatever a killed run leaves behind (processes, mounts, the throwaway
// user whose home is in the temp dir) is found and removed afterwards.
package benchtest

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
)

// Bounds only a hang crosses: a quick run takes well under a minute, and
// any one client command in it gets commandTimeout (BENCH_TIMEOUT).
const (
	runTimeout     = 3 * time.Minute
	commandTimeout = 60 // seconds
	killGrace      = 30 * time.Second
)

// RunQuick runs `bash run.sh --quick` in the test's working directory with
// BENCH_QUICK=1, BENCH_TIMEOUT and BENCH_DIR set, and env added, and
// returns its standard output and standard error (the script's progress).
// A failed run fails t with both.
// Anything the run leaves behind fails t too, once removed.
func RunQuick(t *testing.T, env ...string) (stdout, stderr string) {
	t.Helper()
	return Run(t, []string{"run.sh", "--quick"}, env...)
}

// Run is RunQuick for another script of the directory, or other
// arguments: args is the script and its arguments, run by bash.
func Run(t *testing.T, args []string, env ...string) (stdout, stderr string) {
	t.Helper()
	script := strings.Join(args, " ")
	// 0755 like the script's own temp dir: the reference servers reach
	// their throwaway user's home (or chroot) through it.
	benchDir, err := os.MkdirTemp("", "upgate-bench-test-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(benchDir, 0o755); err != nil {
		t.Fatal(err)
	}
	keep := os.Getenv("BENCH_KEEP") == "1"
	t.Cleanup(func() {
		if left := sweep(t, benchDir, keep); len(left) > 0 {
			t.Errorf("%s left behind (now removed): %s", args[0], strings.Join(left, "; "))
		}
		if !keep {
			os.RemoveAll(benchDir)
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", args...)
	// bash and its helpers in a group of their own; the servers and
	// clients the script starts under timeout(1) have groups of their
	// own, which sweep finds by the temp dir in their arguments.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// SIGTERM first, so the script's trap unmounts, stops its servers and
	// removes its user; SIGKILL to the whole group if it still runs after
	// killGrace, before WaitDelay, after which exec would kill bash alone.
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
	cmd.Env = append(append(os.Environ(), "BENCH_QUICK=1", fmt.Sprintf("BENCH_TIMEOUT=%d", commandTimeout)), env...)
	cmd.Env = append(cmd.Env, "BENCH_DIR="+benchDir)
	var outBuf, errBuf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &outBuf, &errBuf
	err = cmd.Run()
	mu.Lock()
	if killTimer != nil {
		killTimer.Stop()
	}
	mu.Unlock()
	if killed.Load() {
		t.Logf("%s was still running %v after SIGTERM; killed its process group", args[0], killGrace)
	}
	if err != nil {
		// bash is gone; what is left of its group goes now. No other
		// group can take the id while a member is left.
		if cmd.Process != nil {
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
		t.Fatalf("bash %s: %v (context: %v)\nstdout:\n%s\nstderr:\n%s", script, err, ctx.Err(), &outBuf, &errBuf)
	}
	return outBuf.String(), errBuf.String()
}

// Require skips t with the reason, or fails it under
// UPGATE_REQUIRE_INTEROP=1 (CI), where every prerequisite is installed.
func Require(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("UPGATE_REQUIRE_INTEROP") == "1" {
		t.Fatalf(format+" (UPGATE_REQUIRE_INTEROP=1)", args...)
	}
	t.Skipf(format, args...)
}

// sweep unmounts what a run with BENCH_DIR=benchDir left mounted, kills
// what it left running (any process with benchDir in its arguments, with
// its process group, and any process of a user whose home is in benchDir:
// the run's throwaway user), removes that user, and returns what it found,
// the run's temp dir's contents included unless keep. After a run that
// cleaned up after itself it finds nothing.
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
	if passwd, err := os.ReadFile("/etc/passwd"); err == nil {
		for _, line := range strings.Split(string(passwd), "\n") {
			f := strings.Split(line, ":")
			if len(f) < 7 || !strings.HasPrefix(f[5], benchDir+"/") {
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
