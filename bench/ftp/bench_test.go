package ftpbench_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/upgate/upgate/internal/benchtest"
	"github.com/upgate/upgate/internal/gwtest"
)

// TestRunQuick runs run.sh in quick mode (16 MiB, 50 files, 20 saves, 50
// commands of each kind, one round; upgate with its embedded agent and with an agent process, and
// vsftpd) and checks that it succeeds and prints the table. The figures are
// not checked: they only mean something at full size, by hand.
func TestRunQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("builds upgate and runs vsftpd; skipped with -short")
	}
	if _, err := exec.LookPath("vsftpd"); err != nil {
		if _, err := os.Stat("/usr/sbin/vsftpd"); err != nil {
			benchtest.Require(t, "vsftpd not installed (apt-get install vsftpd)")
		}
	}
	gwtest.RequireTool(t, "lftp")
	gwtest.RequireTool(t, "curl")
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		benchtest.Require(t, "/usr/bin/python3 not installed: %v", err)
	}
	if os.Geteuid() != 0 {
		benchtest.Require(t, "run.sh needs root (it adds a throwaway user for vsftpd)")
	}

	out, stderr := benchtest.RunQuick(t)
	for _, want := range []string{
		"| measurement | upgate, embedded agent | upgate, agent process | vsftpd | embedded/vsftpd | agent/vsftpd | goal |",
		"`curl -T`", "CPU s per GiB", "of which the agent process", "lftp `put`", "`lftp mirror -R`",
		"`lftp mirror -R --parallel=4`", "the servers alternating file by file", "p50", "p99", "NOOP", "SITE CHMOD", "MFMT",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q\nstdout:\n%s\nstderr:\n%s", want, out, stderr)
		}
	}
	if rows := strings.Count(out, "\n| "); rows != 13 {
		t.Errorf("table has %d rows, want 13 (header and twelve measurements)\n%s", rows, out)
	}
	t.Logf("\n%s", out)
}

// TestPairQuick runs pair.sh in quick mode (20 files or saves, one round)
// with one upgate binary as both A and B, embedded, with agent processes
// and with --saves, and checks that it succeeds (it checks every upload on
// disk itself) and prints its table. The figures are not checked.
func TestPairQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("builds upgate and runs two gateways; skipped with -short")
	}
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		benchtest.Require(t, "/usr/bin/python3 not installed: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "upgate")
	build := exec.Command("go", "build", "-o", bin, "./cmd/upgate")
	build.Dir = "../.."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, mode := range [][]string{nil, {"--agent"}, {"--saves"}} {
		args := append(append([]string{"pair.sh", "--quick"}, mode...), bin, bin)
		out, stderr := benchtest.Run(t, args)
		rows, checked := []string{"| MFMT |", "| SITE CHMOD |", "| cycle |"}, "checked: 20 files of 2,000 bytes, as sent, on each side"
		if slices.Contains(mode, "--saves") {
			rows, checked = []string{"| TYPE I |", "| save |"}, "checked: each round's file holds its last save's 4,096 bytes, on each side"
		}
		for _, want := range append([]string{"| step, p50 in us | A | B | B/A |", "| PASV |", "| STOR to 150 |", "| data to 226 |"}, rows...) {
			if !strings.Contains(out, want) {
				t.Errorf("%v: output lacks %q\nstdout:\n%s\nstderr:\n%s", mode, want, out, stderr)
			}
		}
		if !strings.Contains(stderr, checked) {
			t.Errorf("%v: no check of the uploads\nstderr:\n%s", mode, stderr)
		}
		t.Logf("%v\n%s", mode, out)
	}
}
