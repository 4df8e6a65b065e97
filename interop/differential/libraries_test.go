package differential_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/upgate/upgate/internal/gwtest"
	"github.com/upgate/upgate/internal/refserver"
)

// The SSH client libraries that scripts and deployment tools are written
// with each get a script in testdata that replays what such code does:
// phpseclib 3 (Flysystem's SFTP adapter, PHP deployment scripts), Ruby's
// net-scp and net-sftp (Capistrano's upload! and download!), and Python's
// asyncssh (its SFTP client uses OpenSSH's extensions where offered, and
// it has an SCP client of its own). A script takes PORT USER PASSWORD
// BASE LOCAL (BASE the server path of the steps' "/", left out of every
// answer; LOCAL a scratch directory of the client's) and prints one JSON
// line per step: {"step", "result", and optionally "status"}.

// libraryScript is one such script: the interpreter that runs it (a
// tool looked up on PATH, or an absolute path) and what else it needs.
type libraryScript struct {
	interpreter string
	script      string // under testdata
	needs       string // a file the library installs, checked first ("" for none)
	pkg         string // the Debian package that installs it
}

// run runs the script against the server s (its SSH address addr, its
// user's password): the steps' answers, and the server's tree.
func (l libraryScript) run(t *testing.T, s *sftpSide, addr, password string) ([]stepResult, map[string]treeEntry) {
	t.Helper()
	interp := l.interpreter
	if !filepath.IsAbs(interp) {
		interp = gwtest.RequireTool(t, interp)
	}
	for _, f := range []string{interp, l.needs} {
		if f == "" {
			continue
		}
		if _, err := os.Stat(f); err != nil {
			if os.Getenv("UPGATE_REQUIRE_INTEROP") == "1" {
				t.Fatalf("%s is required (UPGATE_REQUIRE_INTEROP=1; Debian's %s): %v", f, l.pkg, err)
			}
			t.Skipf("%s not installed (Debian's %s): %v", f, l.pkg, err)
		}
	}
	script, err := filepath.Abs(filepath.Join("testdata", l.script))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, interp, script, portOf(t, addr), s.user, password, s.prefix, t.TempDir())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %s %s: %v\n%s%s", s.name, interp, script, err, out, stderr.Bytes())
	}
	var res []stepResult
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var line struct {
			Step   string          `json:"step"`
			Result json.RawMessage `json:"result"`
			Status string          `json:"status"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("%s: %s printed %q: %v", s.name, l.script, sc.Text(), err)
		}
		answer := string(line.Result)
		if line.Status != "" {
			answer = fmt.Sprintf("%s %s", answer, line.Status)
		}
		res = append(res, stepResult{step: line.Step, answer: answer})
	}
	if s.idle != nil {
		s.idle()
	}
	return res, snapshot(t, s.dir)
}

// differential runs the script against OpenSSH's sshd and upgate and
// compares every step's answer and the trees, as proto in deliberateDiffs.
func (l libraryScript) differential(t *testing.T, proto string) {
	srv := refserver.StartOpenSSH(t)
	ref := dialSFTP(t, "openssh", srv.Addr, srv.ClientConfig())
	ref.user, ref.prefix, ref.dir = srv.User, srv.Dir, srv.Dir
	ug, u, _ := startUpgateSFTP(t)
	ug.idle = func() { u.AgentIdle(t) }
	refRes, refTree := l.run(t, ref, srv.Addr, srv.Password)
	ugRes, ugTree := l.run(t, ug, u.Srv.SFTPAddr.String(), gwtest.Users["alice"])
	if len(refRes) != len(ugRes) {
		t.Fatalf("openssh answered %d steps, upgate %d", len(refRes), len(ugRes))
	}
	compareWithUpgate(t, proto, "openssh", refRes, refTree, ugRes, ugTree)
}

// selfCheck runs the script against two sshd servers: the harness must
// see no difference at all.
func (l libraryScript) selfCheck(t *testing.T, proto string) {
	if testing.Short() {
		t.Skip("harness self-check; skipped with -short")
	}
	side := func() ([]stepResult, map[string]treeEntry) {
		srv := refserver.StartOpenSSH(t)
		s := dialSFTP(t, "openssh", srv.Addr, srv.ClientConfig())
		s.user, s.prefix, s.dir = srv.User, srv.Dir, srv.Dir
		return l.run(t, s, srv.Addr, srv.Password)
	}
	r1, t1 := side()
	r2, t2 := side()
	compareSelf(t, proto, "openssh", r1, t1, r2, t2)
}

// TestLibrariesSelfCheck runs each library's script against two sshd
// servers.
func TestLibrariesSelfCheck(t *testing.T) {
	for proto, l := range libraries() {
		t.Run(proto, func(t *testing.T) { l.selfCheck(t, proto) })
	}
}

// libraries are the scripts, by the name deliberateDiffs knows each by.
func libraries() map[string]libraryScript {
	return map[string]libraryScript{
		"phpseclib": {interpreter: "php", script: "phpseclib.php",
			needs: "/usr/share/php/phpseclib3/autoload.php", pkg: "php-cli, php-phpseclib3"},
		"netscp": {interpreter: "ruby", script: "netscp.rb",
			needs: "/usr/share/rubygems-integration/all/specifications/net-scp-4.0.0.gemspec", pkg: "ruby-net-scp, ruby-net-sftp"},
		"asyncssh": {interpreter: "/usr/bin/python3", script: "asyncssh_steps.py",
			needs: "/usr/lib/python3/dist-packages/asyncssh/__init__.py", pkg: "python3-asyncssh"},
	}
}

// TestPhpseclibDifferential runs phpseclib 3 (testdata/phpseclib.php).
// phpseclib picks the argument order of SSH_FXP_SYMLINK by the server's
// name (frontends/sftp's serverVersion): under a name of its own,
// upgate made its links with the two paths swapped.
func TestPhpseclibDifferential(t *testing.T) {
	libraries()["phpseclib"].differential(t, "phpseclib")
}

// TestNetSCPDifferential runs Ruby's net-scp and net-sftp
// (testdata/netscp.rb).
func TestNetSCPDifferential(t *testing.T) {
	libraries()["netscp"].differential(t, "netscp")
}

// TestAsyncSSHDifferential runs Python's asyncssh
// (testdata/asyncssh_steps.py) with Debian's /usr/bin/python3, where
// python3-asyncssh installs it.
func TestAsyncSSHDifferential(t *testing.T) {
	libraries()["asyncssh"].differential(t, "asyncssh")
}
