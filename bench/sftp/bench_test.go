package sftpbench_test

import (
	"os"
	"os/exec"
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
		env = append(env, "BENCH_ONLY=login,put,mirror,saves,creates,sshfs")
		withSSHFS = true
	}

	out, stderr := benchtest.RunQuick(t, env...)
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
			t.Errorf("output lacks %q\nstdout:\n%s\nstderr:\n%s", w, out, stderr)
		}
	}
	if n := strings.Count(out, "\n| "); n != rows {
		t.Errorf("table has %d rows, want %d\n%s", n, rows, out)
	}
	t.Logf("\n%s", out)
}
