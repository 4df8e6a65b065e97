package sshfs_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/upgate/upgate/backend/agent"
	"github.com/upgate/upgate/config"
	"github.com/upgate/upgate/internal/agenttest"
	"github.com/upgate/upgate/internal/gwtest"
	"github.com/upgate/upgate/internal/refserver"
)

func TestMain(m *testing.M) {
	// The agent process creates files with this process's umask, which
	// it inherits; OpenSSH's sftp-server runs with -u 022.
	refserver.SetUmask()
	goleak.VerifyTestMain(agenttest.WithUpgate(m, &upgateBinary))
}

// upgateBinary is the upgate binary TestMain builds for the agent
// process; set once, before any test runs.
var upgateBinary string

// cmdTimeout bounds every command of the workload; mountTimeout the wait
// for a mount to appear or go.
const (
	cmdTimeout   = 3 * time.Minute
	mountTimeout = 20 * time.Second
)

// server is an SFTP server to mount: its address, a password login and
// the directory on disk that the login's "/" (or home) is.
type server struct {
	name       string
	addr       string
	user, pass string
	remoteDir  string // the path to mount, as the server names it
	disk       string // the same directory on disk
}

// run runs a command with a timeout in dir and returns its combined
// output; a failure fails the test, which goes on (the workload's steps
// are independent, and every failing one is worth seeing).
func run(t *testing.T, dir string, name string, args ...string) string {
	t.Helper()
	out, err := runErr(dir, nil, name, args...)
	if err != nil {
		t.Errorf("%s %q in %s: %v\n%s", name, args, dir, err, clip(out))
	}
	return out
}

func runErr(dir string, stdin []byte, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.WaitDelay = 5 * time.Second
	cmd.Env = append(os.Environ(), "LC_ALL=C", "GIT_CONFIG_NOSYSTEM=1", "HOME="+dir,
		"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com",
		// The OpenSSH side's files belong to its throwaway user, not to
		// root, who runs git.
		"GIT_CONFIG_COUNT=1", "GIT_CONFIG_KEY_0=safe.directory", "GIT_CONFIG_VALUE_0=*")
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		return string(out), fmt.Errorf("timed out after %v: %w", cmdTimeout, ctx.Err())
	}
	if err != nil {
		return string(out), fmt.Errorf("%s: %w", name, err)
	}
	return string(out), nil
}

// clip keeps the start and the end of a long output.
func clip(s string) string {
	if len(s) <= 3000 {
		return s
	}
	return s[:1500] + fmt.Sprintf("\n... (%d bytes left out) ...\n", len(s)-3000) + s[len(s)-1500:]
}

// mounted reports whether dir is a mount point (in /proc/self/mountinfo).
func mounted(dir string) bool {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) > 4 && f[4] == dir {
			return true
		}
	}
	return false
}

// mount runs sshfs in the foreground (-f, so that the test owns its
// process), with extra options if any, and waits for the mount. t.Cleanup
// unmounts (fusermount -u, then umount -l as a last resort) and ends sshfs.
func mount(t *testing.T, s server, mnt string, extra ...string) {
	t.Helper()
	sshfsPath := gwtest.RequireTool(t, "sshfs")
	fusermount := gwtest.RequireTool(t, "fusermount3")
	if _, err := os.Stat("/dev/fuse"); err != nil {
		if os.Getenv("UPGATE_REQUIRE_INTEROP") == "1" {
			t.Fatalf("/dev/fuse: %v", err)
		}
		t.Skipf("no /dev/fuse: %v", err)
	}
	host, port, err := net.SplitHostPort(s.addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"-f",
		"-o", "password_stdin",
		"-o", "port=" + port,
		"-o", "StrictHostKeyChecking=no,UserKnownHostsFile=/dev/null,PreferredAuthentications=password,PubkeyAuthentication=no",
		"-o", "ServerAliveInterval=15"}, extra...)
	cmd := exec.Command(sshfsPath, append(args, fmt.Sprintf("%s@%s:%s", s.user, host, s.remoteDir), mnt)...)
	cmd.Stdin = strings.NewReader(s.pass + "\n")
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	cmd.Env = append(os.Environ(), "SSH_AUTH_SOCK=")
	if err := cmd.Start(); err != nil {
		t.Fatalf("sshfs: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		if mounted(mnt) {
			if out, err := runErr("/", nil, fusermount, "-u", mnt); err != nil {
				t.Logf("fusermount -u %s: %v\n%s", mnt, err, out)
				if out, err := runErr("/", nil, "umount", "-l", mnt); err != nil {
					t.Errorf("umount -l %s: %v\n%s", mnt, err, out)
				}
			}
		}
		select {
		case <-exited:
		case <-time.After(mountTimeout):
			t.Errorf("sshfs (pid %d) still runs %v after the unmount; killing it", cmd.Process.Pid, mountTimeout)
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("sshfs output for %s:\n%s", s.name, clip(log.String()))
		}
	})
	deadline := time.Now().Add(mountTimeout)
	for !mounted(mnt) {
		select {
		case <-exited:
			t.Fatalf("sshfs to %s exited before mounting:\n%s", s.name, log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("sshfs to %s did not mount within %v", s.name, mountTimeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// makeSource writes n files (a few KiB each, some empty, a few 300 KiB,
// one executable) in nested directories with fixed mtimes, and a symlink.
func makeSource(t *testing.T, dir string, n int) {
	t.Helper()
	x := uint32(12345)
	next := func() uint32 { x = x*1664525 + 1013904223; return x }
	for i := 0; i < n; i++ {
		p := filepath.Join(dir, fmt.Sprintf("d%d", i%7), fmt.Sprintf("s%d", i%3), fmt.Sprintf("file-%03d.txt", i))
		size := int(next() % 8192)
		switch {
		case i%50 == 0:
			size = 0
		case i%97 == 0:
			size = 300 << 10
		}
		b := make([]byte, size)
		for j := range b {
			b[j] = "abcdefghij klmnop\nqrstuvwxyz"[next()%28]
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o644)
		if i == 5 {
			mode = 0o755
		}
		if err := os.WriteFile(p, b, mode); err != nil {
			t.Fatal(err)
		}
		mt := time.Unix(1600000000+int64(i)*3600, 0)
		if err := os.Chtimes(p, mt, mt); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "foo.conf"), []byte("key=foo\nother=foo bar\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("d0/s0/file-000.txt", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
}

// junk matches the temporary files a workload must not leave behind:
// upgate's upload temp files, sed -i's, vim's swap files, rsync's
// .name.XXXXXX, and our editor's .tmp.
var junk = regexp.MustCompile(`^(` + regexp.QuoteMeta(agent.TempPrefix) + `.*|sed[A-Za-z0-9]{6}|\..*\.sw[a-p]|\..+\.[A-Za-z0-9]{6}|.*\.tmp)$`)

// findJunk lists junk files under dir, outside .git directories.
func findJunk(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == ".git" {
			return filepath.SkipDir
		}
		if junk.MatchString(d.Name()) {
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// diffR is diff -r between a and b (excluding .git): empty when equal.
func diffR(a, b string) string {
	out, err := runErr("/", nil, "diff", "-r", "--no-dereference", "--exclude=.git", a, b)
	if err != nil {
		return out + err.Error()
	}
	return out
}

// treeSum describes a tree for comparison between servers: each entry's
// path, type, mode, size, mtime (file times the workload preserved) and
// sha256, sorted. Directory mtimes are left out (every write changes
// them).
func treeSum(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == root {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		st, err := os.Lstat(p)
		if err != nil {
			return err
		}
		perm := st.Sys().(*syscall.Stat_t).Mode & 0o7777
		switch {
		case st.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			mt := st.ModTime().UTC().Format(time.RFC3339)
			if d := time.Since(st.ModTime()); d < 10*time.Minute && d > -10*time.Minute {
				mt = "now"
			}
			out = append(out, fmt.Sprintf("%s file %04o %d %s %s", rel, perm, st.Size(), mt, hex.EncodeToString(sum[:8])))
		case st.IsDir():
			out = append(out, fmt.Sprintf("%s dir %04o", rel, perm))
		case st.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			out = append(out, fmt.Sprintf("%s link %s", rel, target))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

// problems collects what went wrong for one server, each under a key
// that names the check without the server's paths, so that the two
// servers' problems can be matched: one that OpenSSH shows as well is
// sshfs's own (or the workload's), not upgate's.
type problems struct {
	t     *testing.T
	name  string
	paths []string // server-specific paths, shown as <...> in keys
	keys  []string
	text  map[string]string
}

func newProblems(t *testing.T, name string, paths ...string) *problems {
	return &problems{t: t, name: name, paths: paths, text: map[string]string{}}
}

// fail records a problem: key identifies the check, details say more.
func (p *problems) fail(key, format string, args ...any) {
	for i, path := range p.paths {
		key = strings.ReplaceAll(key, path, fmt.Sprintf("<%d>", i))
	}
	if _, ok := p.text[key]; !ok {
		p.keys = append(p.keys, key)
	}
	p.text[key] += fmt.Sprintf(format, args...) + "\n"
}

// run runs a command; a failure is a problem keyed by the step and the
// command.
func (p *problems) run(step, dir string, name string, args ...string) string {
	out, err := runErr(dir, nil, name, args...)
	if err != nil {
		p.fail(fmt.Sprintf("%s: %s %s failed", step, name, strings.Join(args, " ")), "%v\n%s", err, clip(out))
	}
	return out
}

// workload runs the whole workload through mnt (server s mounted there)
// and returns each step's duration, in order.
func workload(t *testing.T, p *problems, s server, src, srcRepo, tarball, mnt string) []time.Duration {
	t.Helper()
	var times []time.Duration
	step := func(name string, fn func(step string)) {
		t.Helper()
		start := time.Now()
		fn(name)
		d := time.Since(start)
		times = append(times, d)
		t.Logf("%s: %-36s %8.2fs", s.name, name, d.Seconds())
	}
	step("git init + commit", func(st string) {
		repo := filepath.Join(mnt, "gitinit")
		p.run(st, mnt, "git", "init", "-q", repo)
		if err := os.WriteFile(filepath.Join(repo, "README"), []byte("hello\n"), 0o644); err != nil {
			p.fail(st+": write README", "%v", err)
		}
		p.run(st, repo, "git", "add", "README")
		p.run(st, repo, "git", "commit", "-q", "-m", "first")
		if err := os.WriteFile(filepath.Join(repo, "README"), []byte("hello again\n"), 0o644); err != nil {
			p.fail(st+": rewrite README", "%v", err)
		}
		p.run(st, repo, "git", "commit", "-q", "-am", "second")
		if got := p.run(st, repo, "git", "log", "--format=%s"); got != "second\nfirst\n" {
			p.fail(st+": git log", "%q", got)
		}
		p.run(st, repo, "git", "fsck", "--strict")
		if out := p.run(st, repo, "git", "status", "--porcelain"); out != "" {
			p.fail(st+": git status not clean", "%q", out)
		}
	})
	step("git clone", func(st string) {
		p.run(st, mnt, "git", "clone", "-q", "--no-hardlinks", srcRepo, filepath.Join(mnt, "clone"))
		p.run(st, filepath.Join(mnt, "clone"), "git", "fsck", "--strict")
		if out := p.run(st, filepath.Join(mnt, "clone"), "git", "status", "--porcelain"); out != "" {
			p.fail(st+": git status not clean", "%q", out)
		}
	})
	// Ownership is left out of rsync -a, tar x and cp -a: root runs them,
	// and neither server lets its login chown (upgate does not chown at
	// all; the OpenSSH login is not root). Link times too (-J): sshfs
	// cannot set a symlink's times on any server.
	rsync := []string{"-a", "--no-owner", "--no-group", "--omit-link-times"}
	step("rsync -a (first)", func(st string) {
		p.run(st, mnt, "rsync", append(rsync, src+"/", filepath.Join(mnt, "rsync")+"/")...)
	})
	step("rsync -a (second, no change)", func(st string) {
		out := p.run(st, mnt, "rsync", append(rsync, "--stats", "--itemize-changes", src+"/", filepath.Join(mnt, "rsync")+"/")...)
		if !strings.Contains(out, "Total transferred file size: 0 bytes") {
			p.fail(st+": transferred file content", "%s", clip(out))
		}
		var changed []string
		for _, line := range strings.Split(out, "\n") {
			if itemized.MatchString(line) {
				changed = append(changed, line)
			}
		}
		for i, line := range changed {
			if i == 10 {
				p.fail(fmt.Sprintf("%s: changed %d more", st, len(changed)-10), "")
				break
			}
			p.fail(st+": changed "+line, "")
		}
	})
	step("tar x", func(st string) {
		dst := filepath.Join(mnt, "tar")
		if err := os.Mkdir(dst, 0o755); err != nil {
			p.fail(st+": mkdir", "%v", err)
		}
		p.run(st, dst, "tar", "--no-same-owner", "-xf", tarball)
	})
	step("cp -a", func(st string) {
		p.run(st, mnt, "cp", "-R", "--preserve=mode,timestamps,links", src, filepath.Join(mnt, "cpa"))
	})
	step("editor save (swap, write, rename)", func(st string) {
		dir := filepath.Join(mnt, "edit")
		orig := filepath.Join(dir, "file.txt")
		if err := os.Mkdir(dir, 0o755); err != nil {
			p.fail(st+": mkdir", "%v", err)
		}
		if err := os.WriteFile(orig, []byte("original\n"), 0o640); err != nil {
			p.fail(st+": write the original", "%v", err)
		}
		for round := 0; round < 3; round++ {
			swp := filepath.Join(dir, ".file.txt.swp")
			tmp := filepath.Join(dir, "file.txt.tmp")
			if err := os.WriteFile(swp, []byte("swap"), 0o600); err != nil {
				p.fail(st+": write the swap file", "%v", err)
			}
			if err := os.WriteFile(tmp, fmt.Appendf(nil, "new content %d\n", round), 0o640); err != nil {
				p.fail(st+": write the new content", "%v", err)
			}
			if err := os.Rename(tmp, orig); err != nil {
				p.fail(st+": rename over the original", "%v", err)
			}
			if err := os.Remove(swp); err != nil {
				p.fail(st+": remove the swap file", "%v", err)
			}
		}
	})
	step("sed -i", func(st string) {
		p.run(st, mnt, "sed", "-i", "s/foo/bar/g", filepath.Join(mnt, "cpa", "foo.conf"))
	})
	step(">> append", func(st string) {
		f := filepath.Join(mnt, "edit", "file.txt")
		for i := 0; i < 3; i++ {
			p.run(st, mnt, "sh", "-c", fmt.Sprintf("echo 'appended line %d' >> \"$1\"", i), "sh", f)
		}
		// A log kept open for appending, emptied by another program
		// meanwhile (": > log", logrotate's copytruncate): the appends
		// after it land in the emptied file.
		log := filepath.Join(mnt, "edit", "app.log")
		p.run(st, mnt, "sh", "-c", `exec 3>>"$1"; echo one >&3; : > "$1"; echo two >&3; exec 3>&-`, "sh", log)
		// A new file kept open for writing by one program while another
		// saves over it: both write the one file (its upload and the
		// save's; the first followed the second, which it used to be
		// refused: EIO at the write or the close).
		out := filepath.Join(mnt, "edit", "out.txt")
		p.run(st, mnt, "sh", "-c", `exec 3>"$1"; echo first > "$1"; echo 2 >&3; exec 3>&-`, "sh", out)
	})
	return times
}

// check verifies the results of workload on the server's own disk, not
// through sshfs.
func check(t *testing.T, p *problems, s server, src string) {
	t.Helper()
	for _, sub := range []string{"rsync", "tar", "cpa", "clone"} {
		if d := diffR(src, filepath.Join(s.disk, sub)); d != "" {
			if sub == "cpa" && strings.Count(d, "\n") <= 8 && strings.Contains(d, "foo.conf") && !strings.Contains(d, "Only in") {
				continue // the sed -i step changed foo.conf on purpose; checked below
			}
			p.fail("diff -r source "+sub, "%s", clip(d))
		}
	}
	if b, err := os.ReadFile(filepath.Join(s.disk, "cpa", "foo.conf")); err != nil || string(b) != "key=bar\nother=bar bar\n" {
		p.fail("sed -i: cpa/foo.conf content", "%q, %v", b, err)
	}
	if st, err := os.Stat(filepath.Join(s.disk, "cpa", "foo.conf")); err != nil || st.Mode().Perm() != 0o640 {
		p.fail("sed -i: cpa/foo.conf mode not kept", "%v, %v; want 0640", st, err)
	}
	if b, err := os.ReadFile(filepath.Join(s.disk, "edit", "app.log")); err != nil || string(b) != "two\n" {
		p.fail("edit/app.log: appended, emptied, appended", "%q, %v; want %q", b, err, "two\n")
	}
	if b, err := os.ReadFile(filepath.Join(s.disk, "edit", "out.txt")); err != nil || string(b) != "2\nrst\n" {
		p.fail("edit/out.txt: open, saved over, written through the first", "%q, %v; want %q", b, err, "2\nrst\n")
	}
	want := "new content 2\nappended line 0\nappended line 1\nappended line 2\n"
	if b, err := os.ReadFile(filepath.Join(s.disk, "edit", "file.txt")); err != nil || string(b) != want {
		p.fail("edit/file.txt content", "%q, %v; want %q", b, err, want)
	}
	if st, err := os.Stat(filepath.Join(s.disk, "edit", "file.txt")); err != nil || st.Mode().Perm() != 0o640 {
		p.fail("edit/file.txt mode", "%v, %v; want 0640", st, err)
	}
	ents, err := os.ReadDir(filepath.Join(s.disk, "edit"))
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if want := []string{"app.log", "file.txt", "out.txt"}; err != nil || !slices.Equal(names, want) {
		p.fail("edit/ holds what the steps made, nothing else", "%q (%v); want %q", names, err, want)
	}
	if j := findJunk(t, s.disk); len(j) > 0 {
		for i, f := range j {
			rel, _ := filepath.Rel(s.disk, f)
			if i < 20 {
				p.fail("junk left behind: "+filepath.Dir(rel)+"/"+junkKind(filepath.Base(f)), "%s", rel)
			}
		}
	}
	// Mode, size, mtime and content of what rsync -a and tar x preserved.
	want0 := treeSum(t, src)
	for _, sub := range []string{"rsync", "tar"} {
		got := treeSum(t, filepath.Join(s.disk, sub))
		for _, line := range strings.Split(listDiff(want0, got), "\n") {
			if line != "" {
				p.fail(sub+": differs from the source: "+line, "")
			}
		}
	}
}

// itemized matches an rsync --itemize-changes line: rsync lists only
// what it changed.
var itemized = regexp.MustCompile(`^[<>ch.*][fdLDS][^ ]{9} `)

// junkKind names a junk file's kind without its random part.
func junkKind(name string) string {
	switch {
	case strings.HasPrefix(name, agent.TempPrefix):
		return agent.TempPrefix + "*"
	case strings.HasPrefix(name, "sed"):
		return "sedXXXXXX"
	case strings.HasSuffix(name, ".tmp"):
		return name
	case strings.Contains(name, ".sw"):
		return name
	}
	return "." + strings.SplitN(strings.TrimPrefix(name, "."), ".", 2)[0] + ".XXXXXX (rsync)"
}

// listDiff shows the lines only in want (-) and only in got (+), at most
// 12.
func listDiff(want, got []string) string {
	in := map[string]int{}
	for _, w := range want {
		in[w]++
	}
	for _, g := range got {
		in[g]--
	}
	var l []string
	for k, v := range in {
		if v > 0 {
			l = append(l, "- "+k)
		} else if v < 0 {
			l = append(l, "+ "+k)
		}
	}
	sort.Strings(l)
	if len(l) > 12 {
		l = append(l[:12], fmt.Sprintf("... %d more", len(l)-12))
	}
	return strings.Join(l, "\n")
}

// TestSSHFSWorkload mounts OpenSSH's sftp-server and upgate's SFTP with
// sshfs and runs the same workload through each mount: git init and
// commits, git clone of a 300-file repository, rsync -a twice (the second
// must transfer nothing), tar x, cp -a, an editor's save (swap file, new
// content, rename over the original), sed -i and >> appends. Afterwards
// diff -r against the source is empty, modes and mtimes are kept and no
// temporary file is left, on each server's disk. Each step's time is
// logged for both servers.
func TestSSHFSWorkload(t *testing.T) {
	if testing.Short() {
		t.Skip("sshfs workload; skipped with -short")
	}
	for _, tool := range []string{"git", "rsync", "tar", "diff", "sed"} {
		gwtest.RequireTool(t, tool)
	}
	work := t.TempDir()
	src := filepath.Join(work, "src")
	makeSource(t, src, 300)
	srcRepo := filepath.Join(work, "repo")
	run(t, work, "cp", "-a", src, srcRepo)
	run(t, srcRepo, "git", "init", "-q")
	run(t, srcRepo, "git", "add", "-A")
	run(t, srcRepo, "git", "commit", "-q", "-m", "generated")
	tarball := filepath.Join(work, "src.tar")
	run(t, src, "tar", "-cf", tarball, ".")

	ref := refserver.StartOpenSSH(t)
	// upgate's agent runs as deployments run it: "upgate agent" in a
	// process of its own, as a user that is not root, so that the
	// kernel checks its permissions as it checks OpenSSH's login's.
	e := gwtest.StartAgentProcess(t, upgateBinary, func(cfg *config.Config) {
		cfg.Listen = config.Listen{SFTP: "127.0.0.1:0"}
		cfg.SFTP.HostKeys = []string{filepath.Join(t.TempDir(), "hostkey-ed25519")}
	})
	ugDir := e.UserDir("alice")
	servers := []server{
		{name: "openssh", addr: ref.Addr, user: ref.User, pass: ref.Password, remoteDir: ref.Dir, disk: ref.Dir},
		{name: "upgate", addr: e.Srv.SFTPAddr.String(), user: "alice", pass: gwtest.Users["alice"], remoteDir: "/", disk: ugDir},
	}
	steps := []string{"git init + commit", "git clone", "rsync -a (first)", "rsync -a (second, no change)", "tar x", "cp -a",
		"editor save (swap, write, rename)", "sed -i", ">> append"}
	timings := map[string][]time.Duration{}
	found := map[string]*problems{}
	for _, s := range servers {
		t.Run(s.name, func(t *testing.T) {
			mnt := filepath.Join(work, "mnt-"+s.name)
			mount(t, s, mnt)
			p := newProblems(t, s.name, mnt, s.disk, work)
			found[s.name] = p
			timings[s.name] = workload(t, p, s, src, srcRepo, tarball, mnt)
			if s.name == "upgate" {
				e.AgentIdle(t)
			}
			check(t, p, s, src)
		})
	}
	// What goes wrong on OpenSSH too is sshfs's own doing (or the
	// workload's): logged. What goes wrong on upgate alone fails.
	ref0, ug := found["openssh"], found["upgate"]
	if ref0 != nil {
		for _, k := range ref0.keys {
			t.Logf("sshfs with OpenSSH too (not upgate's doing): %s\n%s", k, ref0.text[k])
		}
	}
	if ug != nil {
		for _, k := range ug.keys {
			if ref0 != nil {
				if _, ok := ref0.text[k]; ok {
					continue
				}
			}
			t.Errorf("upgate only: %s\n%s", k, clip(ug.text[k]))
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "sshfs workload timings (seconds, this machine, one run):\n| step | OpenSSH sftp-server | upgate |\n| --- | --- | --- |\n")
	for i, name := range steps {
		row := "| " + name
		for _, s := range servers {
			if ts := timings[s.name]; i < len(ts) {
				row += fmt.Sprintf(" | %.2f", ts[i].Seconds())
			} else {
				row += " | -"
			}
		}
		fmt.Fprintln(&b, row+" |")
	}
	t.Log(b.String())
}
