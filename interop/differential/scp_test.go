package differential_test

import (
	"context"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/upgate/upgate/internal/gwtest"
	"github.com/upgate/upgate/internal/refserver"
)

// scpSide is one server that OpenSSH's scp client copies to and from
// with the legacy SCP protocol (scp -O): sshd running /usr/bin/scp, or
// upgate's SFTP frontend.
type scpSide struct {
	*sftpSide      // fixtures are made over SFTP, which the comparisons have checked
	addr, password string
	local          string // the client's directory: sources, and one download directory per step
	scp, sshpass   string
	downloads      int
}

// scpStep is one scp command line, run in the client's directory. Its
// "HOST:" operands name the server; a download step's "DL" operand is a
// fresh local directory, whose tree is part of the answer.
type scpStep struct {
	name     string
	fixtures []scpFixture // made over SFTP first
	args     []string
}

// scpFixture is a file ("file"), directory ("dir") or symbolic link
// ("link", to target) made on the server before a step.
type scpFixture struct {
	kind, path string
	mode       os.FileMode
	content    string // a file's; a link's target
}

// scpSources is the client's tree the upload steps copy: modes and times
// that -p must carry, a directory its owner may not write into, names
// with spaces.
func scpSources(t *testing.T, dir string) {
	t.Helper()
	old := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	older := time.Date(1999, 12, 31, 23, 59, 58, 0, time.UTC)
	files := []struct {
		path    string
		mode    os.FileMode
		content string
	}{
		{"a.txt", 0o604, "hello\n"},
		{"b.bin", 0o644, string(pattern(300_017, 7))},
		{"empty", 0o640, ""},
		{"exe.sh", 0o755, "#!/bin/sh\necho hi\n"},
		{"ro.txt", 0o444, "read only\n"},
		{"sp ace.txt", 0o644, "spaced\n"},
		{"src/one.txt", 0o600, "one\n"},
		{"src/sub/two.txt", 0o640, "two\n"},
		{"src/sub/deep/three", 0o644, "three\n"},
		{"src/ro/inside.txt", 0o644, "inside a 0555 directory\n"},
		{"suid", 0o644, "setuid\n"},
	}
	for _, f := range files {
		p := filepath.Join(dir, f.path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(f.content), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, f.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, older, old); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(dir, "suid"), os.ModeSetuid|0o755); err != nil {
		t.Fatal(err)
	}
	for _, d := range []struct {
		path string
		mode os.FileMode
	}{{"src/sub/deep", 0o700}, {"src/sub", 0o750}, {"src/ro", 0o555}, {"src", 0o755}} {
		p := filepath.Join(dir, d.path)
		if err := os.Chmod(p, d.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, older, old); err != nil {
			t.Fatal(err)
		}
	}
}

// scpSteps are the copies both servers get, in order: uploads first (the
// later downloads fetch what they made).
func scpSteps() []scpStep {
	f := func(path string, mode os.FileMode, content string) scpFixture {
		return scpFixture{kind: "file", path: path, mode: mode, content: content}
	}
	d := func(path string, mode os.FileMode) scpFixture { return scpFixture{kind: "dir", path: path, mode: mode} }
	return []scpStep{
		{name: "upload a file into the home directory", args: []string{"a.txt", "HOST:"}},
		{name: "upload a file to a new name, -p", args: []string{"-p", "a.txt", "HOST:p.txt"}},
		{name: "upload a 0444 file, then an empty one, -p", args: []string{"-p", "ro.txt", "empty", "HOST:"}},
		{name: "upload an executable without -p", args: []string{"exe.sh", "HOST:"}},
		{name: "upload a name with a space", args: []string{"sp ace.txt", "HOST:"}},
		{name: "upload to a target with a space, quoted", fixtures: []scpFixture{d("/with space", 0o755)}, args: []string{"a.txt", `HOST:'with space'`}},
		{name: "upload to ~/ and ~", args: []string{"b.bin", "HOST:~/tilde.bin"}},
		{name: "upload a tree to a new name", args: []string{"-r", "src", "HOST:tree"}},
		{name: "upload a tree to a new name, -p", args: []string{"-rp", "src", "HOST:treep"}},
		{name: "upload a tree into an existing directory", args: []string{"-r", "src", "HOST:tree"}},
		{name: "upload two files into a directory", args: []string{"a.txt", "b.bin", "HOST:tree"}},
		{name: "upload two files onto a file", args: []string{"a.txt", "b.bin", "HOST:p.txt"}},
		{name: "upload into a missing directory", args: []string{"a.txt", "HOST:nodir/x"}},
		{name: "upload to a missing name with a trailing slash", args: []string{"a.txt", "HOST:nodir/"}},
		{name: "upload to a file's name with a trailing slash", args: []string{"a.txt", "HOST:p.txt/"}},
		{name: "upload a tree onto a file", args: []string{"-r", "src", "HOST:p.txt"}},
		{name: "upload over a 0600 file keeps its mode", fixtures: []scpFixture{f("/keep.txt", 0o600, "old\n")}, args: []string{"exe.sh", "HOST:keep.txt"}},
		{name: "upload over a 0600 file with -p takes the source's", fixtures: []scpFixture{f("/keepp.txt", 0o600, "old\n")}, args: []string{"-p", "exe.sh", "HOST:keepp.txt"}},
		{name: "upload over a 0444 file", fixtures: []scpFixture{f("/locked.txt", 0o444, "locked\n")}, args: []string{"a.txt", "HOST:locked.txt"}},
		{name: "upload into a 0555 directory", fixtures: []scpFixture{d("/closed", 0o555)}, args: []string{"a.txt", "HOST:closed/"}},
		{name: "upload a tree into a 0555 directory", args: []string{"-r", "src", "HOST:closed"}},
		{name: "upload a tree over a 0700 directory, -p", fixtures: []scpFixture{d("/over", 0o700), d("/over/sub", 0o777)}, args: []string{"-rp", "src/sub", "HOST:over"}},
		{name: "upload a setuid file, -p", args: []string{"-p", "suid", "HOST:"}},
		{name: "upload a tree into a setgid directory", fixtures: []scpFixture{d("/shared", 0o2775)}, args: []string{"-r", "src/sub", "HOST:shared"}},
		{name: "upload a tree into a setgid directory, -p", fixtures: []scpFixture{d("/sharedp", 0o2775)}, args: []string{"-rp", "src/sub", "HOST:sharedp"}},
		{name: "upload a file whose name is a directory there", fixtures: []scpFixture{d("/isdir", 0o755), d("/isdir/a.txt", 0o755)}, args: []string{"a.txt", "HOST:isdir"}},
		{name: "download a file", args: []string{"HOST:a.txt", "DL"}},
		{name: "download a file, -p", args: []string{"-p", "HOST:p.txt", "DL"}},
		{name: "download a tree", args: []string{"-r", "HOST:tree", "DL"}},
		{name: "download a tree, -p", args: []string{"-rp", "HOST:treep", "DL"}},
		{name: "download a directory without -r", args: []string{"HOST:tree", "DL"}},
		{name: "download a missing file", args: []string{"HOST:nosuch", "DL"}},
		{name: "download a pattern", args: []string{"HOST:tree/src/*.txt", "DL"}},
		{name: "download a pattern of directories, -r", args: []string{"-r", "HOST:tree*/sub", "DL"}},
		{name: "download a pattern that matches nothing", args: []string{"HOST:*.nomatch", "DL"}},
		{name: "download a bracket pattern", args: []string{"HOST:tree/[ab]*", "DL"}},
		{name: "download a pattern in a middle component", args: []string{"HOST:tr??/one.txt", "DL"}},
		{name: "download a name with a star, escaped", fixtures: []scpFixture{f("/st*r", 0o644, "star\n"), f("/stXr", 0o644, "x\n")}, args: []string{`HOST:st\*r`, "DL"}},
		{name: "download a name with a star, quoted", args: []string{`HOST:'st*r'`, "DL"}},
		{name: "download a name with a star, unquoted", args: []string{`HOST:st*r`, "DL"}},
		{name: "download a hidden file and a pattern that skips it", fixtures: []scpFixture{f("/hid/.dot", 0o644, "dot\n"), f("/hid/vis", 0o644, "vis\n")}, args: []string{"-r", "HOST:hid/*", "DL"}},
		{name: "download through a link", fixtures: []scpFixture{{kind: "link", path: "/ln", content: "tree"}}, args: []string{"-r", "HOST:ln", "DL"}},
		{name: "download an unreadable file", fixtures: []scpFixture{f("/secret", 0o000, "secret\n")}, args: []string{"HOST:secret", "DL"}},
		{name: "download a tree holding an unreadable directory", fixtures: []scpFixture{f("/part/ok.txt", 0o644, "ok\n"), d("/part/shut", 0o700), f("/part/shut/x", 0o644, "x\n"), d("/part/shut", 0o000)}, args: []string{"-r", "HOST:part", "DL"}},
		{name: "download with ~/", args: []string{"HOST:~/tilde.bin", "DL"}},
		{name: "download the home directory's name, -r", args: []string{"-r", "HOST:.", "DL"}},
		{name: "upload two files into a missing directory", args: []string{"a.txt", "b.bin", "HOST:nodir2"}},
		{name: "upload two files into a directory below an unsearchable one", fixtures: []scpFixture{d("/shutd", 0o755), d("/shutd/in", 0o755), d("/shutd", 0o000)}, args: []string{"a.txt", "b.bin", "HOST:shutd/in"}},
		{name: "upload a 0444 file without -p", args: []string{"ro.txt", "HOST:ro2.txt"}},
		{name: "download a bracket pattern with a dash", fixtures: []scpFixture{f("/dash/a-1", 0o644, "d\n"), f("/dash/a_1", 0o644, "u\n")}, args: []string{"HOST:dash/a[-_]1", "DL"}},
		{name: "download a pattern with a literal last part", fixtures: []scpFixture{f("/gm1/x", 0o644, "x1\n"), d("/gm2", 0o755)}, args: []string{"HOST:gm*/x", "DL"}},
		{name: "download a negated bracket pattern", fixtures: []scpFixture{f("/neg/a1", 0o644, "a\n"), f("/neg/b1", 0o644, "b\n"), f("/neg/!1", 0o644, "bang\n")}, args: []string{"HOST:neg/[!a]1", "DL"}},
		{name: "download a pattern with an unclosed bracket", fixtures: []scpFixture{f("/ub/a[b1", 0o644, "ab\n")}, args: []string{"HOST:ub/a[b*", "DL"}},
		{name: "download a bracket pattern with ] first", fixtures: []scpFixture{f("/rb/]", 0o644, "rb\n"), f("/rb/q", 0o644, "q\n")}, args: []string{"HOST:rb/[]q]", "DL"}},
		{name: "download a character class", fixtures: []scpFixture{f("/cls/7x", 0o644, "7\n"), f("/cls/ax", 0o644, "a\n")}, args: []string{"HOST:cls/[[:digit:]]x", "DL"}},
		{name: "download directories by a pattern with a trailing slash, -r", args: []string{"-r", "HOST:gm*/", "DL"}},
	}
}

// run runs one step on the side: the exit status, what scp printed and,
// for a download, the tree it made.
func (s *scpSide) run(t *testing.T, st scpStep) string {
	t.Helper()
	s.fixtures(t, st.fixtures)
	host := s.user + "@127.0.0.1:"
	var dl string
	args := []string{"-p", s.password, s.scp, "-O", "-q", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
		"-o", "LogLevel=ERROR", "-o", "BatchMode=no", "-o", "PreferredAuthentications=password", "-o", "PubkeyAuthentication=no",
		"-P", portOf(t, s.addr)}
	for _, a := range st.args {
		switch {
		case a == "DL":
			s.downloads++
			dl = filepath.Join(s.local, fmt.Sprintf("dl%02d", s.downloads))
			if err := os.Mkdir(dl, 0o755); err != nil {
				t.Fatal(err)
			}
			a = dl
		case strings.HasPrefix(a, "HOST:"):
			a = host + strings.TrimPrefix(a, "HOST:")
		}
		args = append(args, a)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.sshpass, args...)
	cmd.Dir = filepath.Join(s.local, "src0")
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s: %s: %v", s.name, st.name, err)
	}
	answer := fmt.Sprintf("exit %d %q", code, strings.ReplaceAll(string(out), host, "HOST:"))
	if dl != "" {
		answer += downloaded(t, dl)
	}
	return answer
}

// downloaded shows the tree a download step made in dir, sorted, for
// the end of its answer.
func downloaded(t *testing.T, dir string) string {
	t.Helper()
	tree := snapshot(t, dir)
	var out strings.Builder
	for _, k := range slices.Sorted(maps.Keys(tree)) {
		fmt.Fprintf(&out, " %s: %s;", k, tree[k])
	}
	return out.String()
}

// fixtures makes fxs on the server, over SFTP.
func (s *scpSide) fixtures(t *testing.T, fxs []scpFixture) {
	t.Helper()
	for _, fx := range fxs {
		p := s.p(fx.path)
		var err error
		switch fx.kind {
		case "dir":
			if err = s.pc.Mkdir(p); err != nil {
				if _, serr := s.pc.Lstat(p); serr == nil {
					err = nil // a second fixture of it: only its mode changes
				}
			}
		case "file":
			if err = s.pc.MkdirAll(s.p(filepath.Dir(fx.path))); err == nil {
				if r := s.writeFile(fx.path, []byte(fx.content)); r != "OK" {
					err = fmt.Errorf("%s", r)
				}
			}
		case "link":
			err = s.pc.Symlink(fx.content, p)
		}
		if err == nil && fx.kind != "link" {
			err = s.pc.Chmod(p, fx.mode)
		}
		if err != nil {
			t.Fatalf("%s: fixture %s %s: %v", s.name, fx.kind, fx.path, err)
		}
	}
}

// portOf is addr's port.
func portOf(t *testing.T, addr string) string {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// newSCPSide wraps an SFTP side for the scp client, with a client
// directory of its own holding the sources.
func newSCPSide(t *testing.T, s *sftpSide, addr, password string) *scpSide {
	t.Helper()
	side := &scpSide{sftpSide: s, addr: addr, password: password, local: t.TempDir(),
		scp: gwtest.RequireTool(t, "scp"), sshpass: gwtest.RequireTool(t, "sshpass")}
	scpSources(t, filepath.Join(side.local, "src0"))
	return side
}

// runSCP runs every step on s: the answers and the server's tree.
func runSCP(t *testing.T, s *scpSide) ([]stepResult, map[string]treeEntry) {
	t.Helper()
	var out []stepResult
	for _, st := range scpSteps() {
		out = append(out, stepResult{step: st.name, answer: s.run(t, st)})
	}
	if s.idle != nil {
		s.idle()
	}
	// Directories the steps shut are opened again, for the snapshot.
	for _, p := range []string{"/part/shut", "/shutd"} {
		_ = s.pc.Chmod(s.p(p), 0o700)
	}
	return out, snapshot(t, s.dir)
}

// openSSHSCPSide starts sshd (its scp is Debian's /usr/bin/scp) for the
// scp client.
func openSSHSCPSide(t *testing.T) *scpSide {
	t.Helper()
	srv := refserver.StartOpenSSH(t)
	s := dialSFTP(t, "openssh", srv.Addr, srv.ClientConfig())
	s.user = srv.User
	s.prefix, s.dir = srv.Dir, srv.Dir
	return newSCPSide(t, s, srv.Addr, srv.Password)
}

// TestSCPDifferential copies files and trees with OpenSSH's scp client
// in its legacy SCP mode (scp -O) to and from OpenSSH's sshd and upgate
// and compares each command's exit status and messages, every tree it
// downloaded, and the server's tree at the end.
func TestSCPDifferential(t *testing.T) {
	ref := openSSHSCPSide(t)
	ugSFTP, u, _ := startUpgateSFTP(t)
	ugSFTP.idle = func() { u.AgentIdle(t) }
	ug := newSCPSide(t, ugSFTP, u.Srv.SFTPAddr.String(), gwtest.Users["alice"])
	refRes, refTree := runSCP(t, ref)
	ugRes, ugTree := runSCP(t, ug)
	compareWithUpgate(t, "scp", "openssh", refRes, refTree, ugRes, ugTree)
}

// TestSCPDifferentialSelfCheck runs the scp steps against two sshd
// servers: the harness must see no difference at all.
func TestSCPDifferentialSelfCheck(t *testing.T) {
	if testing.Short() {
		t.Skip("harness self-check; skipped with -short")
	}
	one, two := openSSHSCPSide(t), openSSHSCPSide(t)
	r1, t1 := runSCP(t, one)
	r2, t2 := runSCP(t, two)
	compareSelf(t, "scp", "openssh", r1, t1, r2, t2)
}
