package sftpbench_test

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

// TestRunQuick runs run.sh in quick mode (16 MiB, 50 files, 20 saves, 200
// creates, a 50-file repository through sshfs, one round) and checks that it
// succeeds and prints the table. The figures are not checked: they only
// mean something at full size, by hand.
func TestRunQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("builds upgate and runs sshd; skipped with -short")
	}
	strict := os.Getenv("UPGATE_REQUIRE_INTEROP") == "1"
	for _, p := range []string{"/usr/sbin/sshd", "/usr/lib/openssh/sftp-server"} {
		if _, err := os.Stat(p); err != nil {
			benchtest.Require(t, "%s not installed (apt-get install openssh-server): %v", p, err)
		}
	}
	for _, tool := range []string{"ssh", "sftp", "ssh-keygen", "lftp"} {
		gwtest.RequireTool(t, tool)
	}
	if out, err := exec.Command("/usr/bin/python3", "-c", "import paramiko").CombinedOutput(); err != nil {
		benchtest.Require(t, "/usr/bin/python3 with paramiko (apt-get install python3-paramiko): %v\n%s", err, out)
	}
	if os.Geteuid() != 0 {
		benchtest.Require(t, "run.sh needs root (it adds a throwaway user for sshd)")
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
	var env []string
	if strict {
		env = append(env, "BENCH_ONLY=login,put,scp,mirror,saves,creates,sshfs")
		withSSHFS = true
	}

	out, stderr := benchtest.RunQuick(t, env...)
	want := []string{
		"| measurement | upgate, embedded agent | upgate, agent process | OpenSSH | embedded/OpenSSH | agent/OpenSSH | goal |",
		"login and one `pwd`", "OpenSSH `sftp -b` put", "OpenSSH `scp -O`", "CPU s per GiB", "of which the agent process", "`lftp mirror -R`",
		"p50", "p99", "creating 200 small files", "One save's five steps",
	}
	rows := 11 // header and ten measurements
	if withSSHFS {
		want = append(want, "`git status`", "`cp -a`")
		rows += 2
	}
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q\nstdout:\n%s\nstderr:\n%s", w, out, stderr)
		}
	}
	if n := strings.Count(out, "\n| "); n != rows {
		t.Errorf("table has %d rows, want %d\n%s", n, rows, out)
	}
	t.Logf("\n%s", out)
}

// TestPairQuick runs pair.sh in quick mode (20 saves or files, one round)
// with one upgate binary as both A and B, twice: saves with embedded agents
// and new files with agent processes, which covers both clients
// (helper.py pair-saves, pair-files) and both kinds of agent. It checks
// that each run succeeds (the script checks every upload on disk itself)
// and prints its table. The figures are not checked.
func TestPairQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("builds upgate and runs two gateways; skipped with -short")
	}
	if out, err := exec.Command("/usr/bin/python3", "-c", "import paramiko").CombinedOutput(); err != nil {
		benchtest.Require(t, "/usr/bin/python3 with paramiko (apt-get install python3-paramiko): %v\n%s", err, out)
	}
	gwtest.RequireTool(t, "ssh-keygen")
	bin := filepath.Join(t.TempDir(), "upgate")
	build := exec.Command("go", "build", "-o", bin, "./cmd/upgate")
	build.Dir = "../.."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, mode := range [][]string{nil, {"--agent"}, {"--files"}} {
		args := append(append([]string{"pair.sh", "--quick"}, mode...), bin, bin)
		out, stderr := benchtest.Run(t, args)
		heading, whole := "### SFTP saves of one file, A against B", "| save |"
		checked := "checked: each round's file holds its last save's 4,096 bytes, its mtime and mode, on each side"
		if slices.Contains(mode, "--files") {
			heading, whole = "### SFTP new files, A against B", "| file |"
			checked = "checked: 20 files of 2,000 bytes, as sent, their mtime and mode set, on each side"
		}
		for _, want := range []string{heading, "| step, p50 in us | A | B | B/A |",
			"| open |", "| write |", "| close |", "| utime |", "| chmod |", whole} {
			if !strings.Contains(out, want) {
				t.Errorf("%v: output lacks %q\nstdout:\n%s\nstderr:\n%s", mode, want, out, stderr)
			}
		}
		if rows := strings.Count(out, "\n| "); rows != 7 {
			t.Errorf("%v: table has %d rows, want 7 (header and six steps)\n%s", mode, rows, out)
		}
		if !strings.Contains(stderr, checked) {
			t.Errorf("%v: no check of the uploads\nstderr:\n%s", mode, stderr)
		}
		t.Logf("%v\n%s", mode, out)
	}
}
