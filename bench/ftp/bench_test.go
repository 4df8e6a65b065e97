package ftpbench_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/upgate/upgate/internal/gwtest"
)

// TestRunQuick runs run.sh in quick mode (16 MiB, 50 files, 20 saves, one
// round) and checks that it succeeds and prints the table. The figures are
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

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "run.sh", "--quick")
	// SIGTERM first, so the script's trap stops the servers it started.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 15 * time.Second
	// Any one client command gets 60 s (a hung one fails the run well before
	// the test's own timeout).
	cmd.Env = append(os.Environ(), "BENCH_QUICK=1", "BENCH_TIMEOUT=60")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		t.Fatalf("bash run.sh --quick: %v (context: %v)\nstdout:\n%s\nstderr:\n%s", err, ctx.Err(), &stdout, &stderr)
	}
	out := stdout.String()
	for _, want := range []string{
		"| measurement | upgate | vsftpd | upgate/vsftpd |",
		"`curl -T`", "lftp `put`", "`lftp mirror -R`", "`lftp mirror -R --parallel=4`", "p50", "p99",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q\nstdout:\n%s\nstderr:\n%s", want, out, &stderr)
		}
	}
	if rows := strings.Count(out, "\n| "); rows != 7 {
		t.Errorf("table has %d rows, want 7 (header and six measurements)\n%s", rows, out)
	}
	t.Logf("\n%s", out)
}
