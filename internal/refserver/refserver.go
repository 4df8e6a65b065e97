// Package refserver starts the reference servers that upgate is compared
// with, from a Go test: Debian's OpenSSH sshd with its sftp-server
// ([StartOpenSSH]), Debian's vsftpd ([StartVSFTPD]) and Debian's Apache
// with mod_dav_fs ([StartApacheDAV]).
//
// Each server runs as a real process, started by the test as root, on
// 127.0.0.1 with a free port, with its own configuration files in a fresh
// temporary directory, and logs in a throwaway local user made for it with
// useradd (and a random password set with chpasswd). t.Cleanup stops the
// server and everything it started (its process group and every process
// descended from it, each killed by its pid), removes the user with
// userdel and then the directory, also when the test fails. Every wait is
// bounded in time.
//
// The servers create files with umask 022 (sftp-server -u 022, vsftpd's
// local_umask=022, Apache the test process's), which is the umask upgate's tests assume for the
// gateway process too (see [SetUmask]).
//
// A missing binary or a test not running as root skips the test, unless
// UPGATE_REQUIRE_INTEROP=1 (CI) makes that a failure, as with
// gwtest.RequireTool.
package refserver

import (
	"bufio"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// Umask is the file-creation mask every server of a comparison works with.
const Umask = 0o022

// SetUmask sets the test process's umask to [Umask], so that an
// in-process upgate (whose embedded agent creates files with the process
// umask) creates files as the reference servers do. The umask is
// process-wide: call it from TestMain or before any test runs in parallel.
func SetUmask() { syscall.Umask(Umask) }

// startTimeout bounds how long a server may take to answer its first
// connection; stopTimeout how long it may take to exit after SIGTERM
// before it gets SIGKILL.
const (
	startTimeout = 15 * time.Second
	stopTimeout  = 5 * time.Second
)

// require skips (or, with UPGATE_REQUIRE_INTEROP=1, fails) the test when
// it cannot run the reference servers: not root, or a program missing.
func require(t testing.TB, programs ...string) map[string]string {
	t.Helper()
	skip := func(format string, args ...any) {
		t.Helper()
		if os.Getenv("UPGATE_REQUIRE_INTEROP") == "1" {
			t.Fatalf("refserver (UPGATE_REQUIRE_INTEROP=1): "+format, args...)
		}
		t.Skipf("refserver: "+format, args...)
	}
	if os.Geteuid() != 0 {
		skip("needs root (it adds a throwaway local user)")
	}
	paths := map[string]string{}
	for _, p := range append([]string{"useradd", "userdel", "chpasswd"}, programs...) {
		if filepath.IsAbs(p) {
			if _, err := os.Stat(p); err != nil {
				skip("%s missing: %v", p, err)
			}
			paths[p] = p
			continue
		}
		found, err := exec.LookPath(p)
		if err != nil {
			for _, dir := range []string{"/usr/sbin", "/sbin"} {
				if _, serr := os.Stat(filepath.Join(dir, p)); serr == nil {
					found, err = filepath.Join(dir, p), nil
					break
				}
			}
		}
		if err != nil {
			skip("%s not installed", p)
		}
		paths[p] = found
	}
	return paths
}

// randomHex is n random bytes in hex.
func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// workDir makes a fresh directory for one server's files, readable by the
// throwaway user (t.TempDir's parents are mode 0700), removed in
// t.Cleanup.
func workDir(t testing.TB, prefix string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "upgate-"+prefix+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("refserver: removing %s: %v", dir, err)
		}
	})
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// localUser is a throwaway local account.
type localUser struct {
	Name     string
	Password string
	UID, GID int
	Home     string
}

// addUser creates a throwaway user whose home is home (created, owned by
// the user, mode 0755), with a random password. t.Cleanup kills whatever
// still runs as the user and removes it. The cleanup is registered before
// useradd runs, so that it runs however the test ends.
func addUser(t testing.TB, tools map[string]string, home string) *localUser {
	t.Helper()
	u := &localUser{Name: "upgref" + randomHex(4), Password: randomHex(12), Home: home}
	t.Cleanup(func() { removeUser(t, tools, u) })
	run(t, tools["useradd"], "--system", "--no-create-home", "--home-dir", home,
		"--shell", "/bin/sh", "--user-group", u.Name)
	cmd := exec.Command(tools["chpasswd"])
	cmd.Stdin = strings.NewReader(u.Name + ":" + u.Password + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("refserver: chpasswd %s: %v\n%s", u.Name, err, out)
	}
	lu, err := user.Lookup(u.Name)
	if err != nil {
		t.Fatalf("refserver: %v", err)
	}
	u.UID, _ = strconv.Atoi(lu.Uid)
	u.GID, _ = strconv.Atoi(lu.Gid)
	if err := os.MkdirAll(home, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(home, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(home, u.UID, u.GID); err != nil {
		t.Fatal(err)
	}
	return u
}

// removeUser kills every process of the user (by pid) and removes it,
// if it still is the account addUser made (same home directory).
func removeUser(t testing.TB, tools map[string]string, u *localUser) {
	lu, err := user.Lookup(u.Name)
	if err != nil {
		return // never created, or already gone
	}
	if home := lookupHome(u.Name); home != u.Home {
		t.Errorf("refserver: user %s has home %q, not %q: not removing it", u.Name, home, u.Home)
		return
	}
	uid, _ := strconv.Atoi(lu.Uid)
	killPids(processesOf(uid), syscall.SIGKILL)
	var out []byte
	for i := 0; i < 10; i++ { // userdel refuses while a process of the user runs
		cmd := exec.Command(tools["userdel"], "-f", u.Name)
		if out, err = cmd.CombinedOutput(); err == nil {
			return
		}
		killPids(processesOf(uid), syscall.SIGKILL)
		time.Sleep(100 * time.Millisecond)
	}
	t.Errorf("refserver: userdel -f %s: %v\n%s", u.Name, err, out)
}

// lookupHome reads the user's home directory from the passwd database.
func lookupHome(name string) string {
	lu, err := user.Lookup(name)
	if err != nil {
		return ""
	}
	return lu.HomeDir
}

func run(t testing.TB, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("refserver: %s %q: %v\n%s", name, args, err, out)
	}
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// freeRange returns lo, hi: n consecutive ports on 127.0.0.1 that were all
// free a moment ago. At most 50 tries.
func freeRange(t testing.TB, n int) (int, int) {
	t.Helper()
	for try := 0; try < 50; try++ {
		var b [2]byte
		_, _ = rand.Read(b[:])
		lo := 40000 + int(b[0])<<8%20000 + int(b[1])
		ok := true
		for p := lo; p < lo+n && ok; p++ {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
			if err != nil {
				ok = false
				break
			}
			l.Close()
		}
		if ok {
			return lo, lo + n - 1
		}
	}
	t.Fatalf("refserver: no %d free consecutive ports found", n)
	return 0, 0
}

// daemon is a server process the test started, in a process group (and,
// with setsid, a session) of its own.
type daemon struct {
	name   string
	cmd    *exec.Cmd
	log    string        // file holding its stdout and stderr
	exited chan struct{} // closed when Wait returned
	err    error         // Wait's result, set before exited closes
}

// startDaemon starts path with args in a session of its own, its output
// to logFile, and registers its stop in t.Cleanup: every descendant and
// the process group get SIGTERM, then SIGKILL after stopTimeout.
func startDaemon(t testing.TB, name, logFile, path string, args ...string) *daemon {
	t.Helper()
	out, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"}
	if err := cmd.Start(); err != nil {
		t.Fatalf("refserver: starting %s: %v", name, err)
	}
	d := &daemon{name: name, cmd: cmd, log: logFile, exited: make(chan struct{})}
	go func() {
		d.err = cmd.Wait()
		close(d.exited)
	}()
	t.Cleanup(func() { d.stop(t) })
	return d
}

// stop ends the daemon and every process it started, each by pid: first
// its descendants and its process group get SIGTERM, then, after
// stopTimeout, SIGKILL. The pids are collected while the daemon still
// runs, so that orphans reparented to init are not missed.
func (d *daemon) stop(t testing.TB) {
	pid := d.cmd.Process.Pid
	victims := append(descendants(pid), pid)
	select {
	case <-d.exited:
	default:
		_ = syscall.Kill(-pid, syscall.SIGTERM)
	}
	killPids(victims, syscall.SIGTERM)
	deadline := time.Now().Add(stopTimeout)
	for time.Now().Before(deadline) {
		if len(alive(victims)) == 0 && len(groupMembers(pid)) == 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if left := alive(append(victims, groupMembers(pid)...)); len(left) > 0 {
		t.Logf("refserver: %s: pids %v outlived SIGTERM for %v; killing them", d.name, left, stopTimeout)
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		killPids(left, syscall.SIGKILL)
	}
	select {
	case <-d.exited:
	case <-time.After(stopTimeout):
		t.Errorf("refserver: %s (pid %d) did not exit after SIGKILL within %v", d.name, pid, stopTimeout)
	}
}

// logOnFailure reports the daemon's log, and the other log files it
// writes (Apache's error log), when the test failed, to help explain
// why.
func (d *daemon) logOnFailure(t testing.TB, more ...string) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, file := range append([]string{d.log}, more...) {
			if b, err := os.ReadFile(file); err == nil && len(b) > 0 {
				if len(b) > 8000 {
					b = b[len(b)-8000:]
				}
				t.Logf("refserver: %s log (%s), last part:\n%s", d.name, file, b)
			}
		}
	})
}

// waitBanner dials addr until it answers with a line starting with
// prefix, the daemon exits, or startTimeout passes.
func (d *daemon) waitBanner(t testing.TB, addr, prefix string) {
	t.Helper()
	deadline := time.Now().Add(startTimeout)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-d.exited:
			b, _ := os.ReadFile(d.log)
			t.Fatalf("refserver: %s exited at start (%v):\n%s", d.name, d.err, b)
		default:
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = c.SetDeadline(time.Now().Add(3 * time.Second))
			line, rerr := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if rerr == nil && strings.HasPrefix(line, prefix) {
				return
			}
			err = fmt.Errorf("read %q: %w", line, rerr)
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	b, _ := os.ReadFile(d.log)
	t.Fatalf("refserver: %s did not answer on %s within %v (%v):\n%s", d.name, addr, startTimeout, last, b)
}

// procStat reads the parent pid, process group and real uid of pid from
// /proc. ok is false when the process is gone or a zombie.
func procStat(pid int) (ppid, pgid, uid int, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, 0, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, 0, false
	}
	f := strings.Fields(s[i+1:]) // state ppid pgrp ...
	if len(f) < 3 || f[0] == "Z" || f[0] == "X" {
		return 0, 0, 0, false
	}
	ppid, _ = strconv.Atoi(f[1])
	pgid, _ = strconv.Atoi(f[2])
	st, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
	if err != nil {
		return 0, 0, 0, false
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		uid = int(sys.Uid)
	}
	return ppid, pgid, uid, true
}

// allPids lists the pids in /proc.
func allPids() []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// descendants lists the live processes descended from root.
func descendants(root int) []int {
	children := map[int][]int{}
	for _, pid := range allPids() {
		if ppid, _, _, ok := procStat(pid); ok {
			children[ppid] = append(children[ppid], pid)
		}
	}
	var out []int
	queue := []int{root}
	for len(queue) > 0 && len(out) < 10000 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out
}

// groupMembers lists the live processes in process group pgid.
func groupMembers(pgid int) []int {
	var out []int
	for _, pid := range allPids() {
		if _, pg, _, ok := procStat(pid); ok && pg == pgid {
			out = append(out, pid)
		}
	}
	return out
}

// processesOf lists the live processes whose owner is uid.
func processesOf(uid int) []int {
	var out []int
	for _, pid := range allPids() {
		if _, _, u, ok := procStat(pid); ok && u == uid {
			out = append(out, pid)
		}
	}
	return out
}

// alive keeps the pids still running (not zombies).
func alive(pids []int) []int {
	var out []int
	for _, pid := range pids {
		if _, _, _, ok := procStat(pid); ok {
			out = append(out, pid)
		}
	}
	return out
}

func killPids(pids []int, sig syscall.Signal) {
	for _, pid := range pids {
		if pid > 1 {
			_ = syscall.Kill(pid, sig)
		}
	}
}

// newKey makes an ed25519 key pair: the signer and its authorized_keys
// line.
func newKey() (ssh.Signer, string, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, "", fmt.Errorf("generating key: %w", err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, "", fmt.Errorf("signer: %w", err)
	}
	return s, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(s.PublicKey()))), nil
}

var errNoHostKey = errors.New("no host key")

// readHostKey parses an OpenSSH public key file.
func readHostKey(path string) (ssh.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading host key: %w", err)
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return nil, fmt.Errorf("%s: %w", path, errNoHostKey)
	}
	raw, err := base64.StdEncoding.DecodeString(f[1])
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	k, err := ssh.ParsePublicKey(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}
