package rclone_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rclone/rclone/fs/config/obscure"
	"golang.org/x/crypto/bcrypt"
)

// The rclone packages whose integration tests run against upgate, and the
// remotes (sections of the rclone config file this test writes) they use.
//
// The WebDAV backend runs three times, once per vendor setting whose
// requests differ: "other" (RFC 4918 alone: no times are kept, so the
// suite skips its modtime tests), "rclone" (as against rclone serve
// webdav: X-OC-Mtime on PUT, COPY and MOVE, taken as set when the reply
// says accepted) and "owncloud" (X-OC-Mtime on PUT, PROPPATCH of
// lastmodified for a time set later or not accepted, OC-Checksum
// headers).
const (
	sftpPackage   = "github.com/rclone/rclone/backend/sftp"
	ftpPackage    = "github.com/rclone/rclone/backend/ftp"
	webdavPackage = "github.com/rclone/rclone/backend/webdav"
	sftpRemote    = "upgatesftp:"
	ftpRemote     = "upgateftp:"
)

// webdavVendors are the WebDAV backend's vendor settings the suite runs
// with; the remote of each is "upgatedav" + vendor + ":".
func webdavVendors() []string { return []string{"other", "rclone", "owncloud"} }

func webdavRemote(vendor string) string { return "upgatedav" + vendor + ":" }

// Bounds. Only a hang gets near them: a suite runs for seconds (a quarter
// of a minute against a -race upgate), and building its test binary takes
// about a minute the first time.
const (
	suiteTimeout = 10 * time.Minute // one "go test" of a suite, build included
	startTimeout = time.Minute      // upgate answering on every port
	stopTimeout  = 30 * time.Second // upgate exiting after SIGTERM (then SIGKILL)
	passiveCount = 128              // FTP passive ports
)

// sftpEncoding is the SFTP remote's encoding: the backend's default
// (Slash,Dot) plus Ctl and Del; see writeRcloneConfig.
const sftpEncoding = "Slash,Ctl,Del,Dot"

// Knobs for looking into a failure (none is needed to run the gate):
//
//	UPGATE_RCLONE_ARTIFACTS=DIR  keep upgate's log, the configs and each suite's go test -json output in DIR
//	UPGATE_RCLONE_BINARY=FILE    run this upgate binary instead of building the repository's
//	UPGATE_RCLONE_RACE=1         build upgate with -race (a reported race fails the test; rclone's
//	                             FTP UploadTimeout, which allows 1 s between the last byte of a
//	                             100 MB upload and the 226, then fails now and then: a -race
//	                             upgate takes 0.6-0.8 s to drain its write window and commit)
//	UPGATE_RCLONE_LOG_LEVEL=L    upgate's log.level (default info, which logs logins, transfers and
//	                             failed calls; debug adds each connection)
//	UPGATE_RCLONE_RUN=REGEXP     passed to the suites as -run
//	UPGATE_RCLONE_SUITES=sftp    run only these suites (comma-separated: sftp, ftp, webdav-other,
//	                             webdav-rclone, webdav-owncloud, baseline)
//	UPGATE_RCLONE_VERBOSE=1      rclone's own debug log (fstest's -verbose)
const (
	envArtifacts = "UPGATE_RCLONE_ARTIFACTS"
	envBinary    = "UPGATE_RCLONE_BINARY"
	envRace      = "UPGATE_RCLONE_RACE"
	envLogLevel  = "UPGATE_RCLONE_LOG_LEVEL"
	envRun       = "UPGATE_RCLONE_RUN"
	envSuites    = "UPGATE_RCLONE_SUITES"
	envVerbose   = "UPGATE_RCLONE_VERBOSE"
)

const (
	user     = "rclone"
	password = "fstests upgate pass"
)

// TestRcloneSuites runs rclone's generic filesystem suite (fstests) through
// its SFTP, FTP and WebDAV backends against upgate serving a temporary
// directory.
// Every leaf test must pass or be skipped by rclone itself: nothing is
// excluded here.
func TestRcloneSuites(t *testing.T) {
	if testing.Short() {
		t.Skip("builds upgate and rclone's backend tests and runs them for minutes")
	}
	root := repoRoot(t)
	tmp := t.TempDir()
	artifacts := artifactsDir(t)

	bin := os.Getenv(envBinary)
	if bin == "" {
		start := time.Now()
		bin = buildUpgate(t, root, tmp)
		t.Logf("built upgate in %v", time.Since(start).Round(time.Second))
	}

	gw := startUpgate(t, bin, tmp, artifacts)
	rcloneConf := writeRcloneConfig(t, tmp, gw)
	if artifacts != "" {
		copyFile(t, rcloneConf, filepath.Join(artifacts, "rclone.conf"))
	}

	type suite struct{ name, pkg, remote string }
	suites := []suite{{"sftp", sftpPackage, sftpRemote}, {"ftp", ftpPackage, ftpRemote}}
	for _, v := range webdavVendors() {
		suites = append(suites, suite{"webdav-" + v, webdavPackage, webdavRemote(v)})
	}
	only := os.Getenv(envSuites)
	for _, s := range suites {
		if only != "" && !slices.Contains(strings.Split(only, ","), s.name) {
			continue
		}
		t.Run(s.name, func(t *testing.T) {
			checkSuite(t, s.pkg, s.remote, suiteEnv(rcloneConf, tmp), artifacts, s.name+".json")
		})
		if err := gw.alive(); err != nil {
			t.Fatalf("upgate after the %s suite: %v", s.name, err)
		}
	}
	if left := leftovers(t, gw.userDir); len(left) > 0 {
		t.Logf("left in the user's directory after the suites: %q", left)
	}
	// A panic recovered by upgate or a race the race detector found is a
	// failure even when rclone saw nothing wrong.
	for _, bad := range []string{`msg="panic in `, "panic: ", "WARNING: DATA RACE"} {
		if log := readFile(gw.log); strings.Contains(log, bad) {
			t.Errorf("upgate's log %s has %q:\n%s", gw.log, bad, around(log, bad, 40))
		}
	}
}

// TestRcloneSFTPBaseline runs the same SFTP suite against OpenSSH's
// sftp-server, the reference upgate's SFTP follows, so that a failure of
// the suite itself (a new rclone, this machine) shows here too and is not
// mistaken for upgate's. No sshd is involved: rclone's "ssh" option runs an
// external command instead of its own SSH client, and the command given
// here runs sftp-server (or, for rclone's hash commands, sh) in a temporary
// directory, over pipes. rclone's host key pinning tests need its own SSH
// client and skip themselves.
func TestRcloneSFTPBaseline(t *testing.T) {
	if testing.Short() {
		t.Skip("builds rclone's backend tests and runs them")
	}
	if only := os.Getenv(envSuites); only != "" && !slices.Contains(strings.Split(only, ","), "baseline") {
		t.Skipf("%s=%s", envSuites, only)
	}
	server := ""
	for _, p := range []string{"/usr/lib/openssh/sftp-server", "/usr/libexec/sftp-server", "/usr/libexec/openssh/sftp-server", "/usr/lib/ssh/sftp-server"} {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			server = p
			break
		}
	}
	if server == "" {
		if os.Getenv("UPGATE_REQUIRE_INTEROP") == "1" {
			t.Fatal("OpenSSH's sftp-server not found (Debian package openssh-server)")
		}
		t.Skip("OpenSSH's sftp-server not found (Debian package openssh-server)")
	}
	tmp := t.TempDir()
	artifacts := artifactsDir(t)
	home := filepath.Join(tmp, "home")
	if err := os.Mkdir(home, 0o755); err != nil {
		t.Fatal(err)
	}
	// rclone runs "COMMAND -s sftp" for the SFTP subsystem and "COMMAND
	// SHELL-COMMAND" for its hash commands.
	ssh := filepath.Join(tmp, "ssh-to-sftp-server")
	script := fmt.Sprintf(`#!/bin/sh
cd %s || exit 1
if [ "$1" = "-s" ] && [ "$2" = "sftp" ]; then exec %s; fi
exec /bin/sh -c "$*"
`, shellQuote(home), shellQuote(server))
	if err := os.WriteFile(ssh, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(tmp, "rclone.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("[baseline]\ntype = sftp\nssh = %s\nencoding = %s\n", ssh, sftpEncoding)), 0o600); err != nil {
		t.Fatal(err)
	}
	checkSuite(t, sftpPackage, "baseline:", suiteEnv(conf, tmp), artifacts, "baseline-sftp.json")
	if left := leftovers(t, home); len(left) > 0 {
		t.Logf("left in sftp-server's directory after the suite: %q", left)
	}
}

// checkSuite runs one suite, logs its counts and fails for each leaf test
// that failed.
func checkSuite(t *testing.T, pkg, remote string, env []string, artifacts, rawName string) {
	t.Helper()
	raw := ""
	if artifacts != "" {
		raw = filepath.Join(artifacts, rawName)
	}
	res := runSuite(t, pkg, remote, env, raw)
	t.Logf("%s, -remote %s: %d passed, %d failed, %d skipped (leaf tests); suite %v, go test %v (build included)",
		pkg, remote, res.passed, len(res.failed), res.skipped, res.suite.Round(time.Second), res.wall.Round(time.Second))
	for _, f := range res.failed {
		t.Errorf("%s failed:\n%s", f.name, f.output)
	}
	if res.problem != "" {
		t.Errorf("%s: %s", pkg, res.problem)
	}
	if res.passed == 0 && os.Getenv(envRun) == "" {
		t.Errorf("%s: no test passed", pkg)
	}
}

// artifactsDir is the directory named by UPGATE_RCLONE_ARTIFACTS, created,
// or "".
func artifactsDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv(envArtifacts)
	if dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// repoRoot is the upgate repository this module sits in (two levels up).
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	mod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil || !bytes.HasPrefix(mod, []byte("module github.com/upgate/upgate\n")) {
		t.Fatalf("%s is not upgate's repository root (go.mod: %v)", root, err)
	}
	return root
}

func buildUpgate(t *testing.T, root, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "upgate")
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	args := []string{"build", "-o", bin}
	if os.Getenv(envRace) == "1" {
		args = append(args, "-race")
	}
	cmd := exec.CommandContext(ctx, "go", append(args, "./cmd/upgate")...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/upgate: %v\n%s", err, out)
	}
	return bin
}

// gateway is a running "upgate serve".
type gateway struct {
	ftpPort, sftpPort, webdavPort, adminPort int
	userDir                                  string // the user's files, in the embedded agent's root
	done                                     chan struct{}
	err                                      error // Wait's result, once done is closed
	log                                      string
}

func (g *gateway) alive() error {
	select {
	case <-g.done:
		return fmt.Errorf("exited: %v; log %s:\n%s", g.err, g.log, tail(readFile(g.log), 60))
	default:
		return nil
	}
}

// startUpgate writes a configuration (loopback listeners on free ports, an
// embedded agent rooted in dir, one user) and starts "upgate serve" in a
// process group of its own, stopped when the test ends.
func startUpgate(t *testing.T, bin, dir, artifacts string) *gateway {
	t.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	ports := freePorts(t, 4)
	pasv := freePortRange(t, passiveCount)
	level := os.Getenv(envLogLevel)
	if level == "" {
		level = "info"
	}
	dataDir := filepath.Join(dir, "data")
	g := &gateway{
		ftpPort: ports[0], sftpPort: ports[1], adminPort: ports[2], webdavPort: ports[3],
		userDir: filepath.Join(dataDir, user),
		done:    make(chan struct{}),
		log:     filepath.Join(dir, "upgate.log"),
	}
	if artifacts != "" {
		g.log = filepath.Join(artifacts, "upgate.log")
	}
	// Every key not set here keeps its default (connection limits, the
	// defender, timeouts): the suites pass within them.
	conf := fmt.Sprintf(`# upgate for rclone's integration suites (interop/rclone)
listen:
  ftp: 127.0.0.1:%d
  ftps: ""
  sftp: 127.0.0.1:%d
  admin: 127.0.0.1:%d
  webdav: 127.0.0.1:%d
connections:
  drain_timeout: 5s
ftp:
  passive_ports: "%d-%d"
sftp:
  host_keys: [%q]
agents:
  local:
    embedded: true
    root: %q
users:
  - name: %s
    password_hash: %q
    mounts:
      - {path: /, agent: local, root: %s}
log:
  level: %s
  format: text
`, g.ftpPort, g.sftpPort, g.adminPort, g.webdavPort, pasv, pasv+passiveCount-1,
		filepath.Join(dir, "ssh_host_ed25519_key"), dataDir, user, hash, user, level)
	confFile := filepath.Join(dir, "upgate.yaml")
	if err := os.WriteFile(confFile, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	if artifacts != "" {
		copyFile(t, confFile, filepath.Join(artifacts, "upgate.yaml"))
	}
	logf, err := os.Create(g.log)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", "--config", confFile)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatal(err)
	}
	go func() {
		g.err = cmd.Wait()
		logf.Close()
		close(g.done)
	}()
	t.Cleanup(func() {
		pgid := cmd.Process.Pid
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-g.done:
			if g.err != nil {
				t.Errorf("upgate exited with %v after SIGTERM; log %s:\n%s", g.err, g.log, tail(readFile(g.log), 40))
			}
			return
		case <-time.After(stopTimeout):
		}
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		select {
		case <-g.done:
		case <-time.After(10 * time.Second):
		}
		t.Errorf("upgate did not exit within %v of SIGTERM; killed", stopTimeout)
	})

	// Ready: /readyz answers 200 once every frontend listens; then each
	// port must accept a connection.
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(startTimeout)
	for {
		if err := g.alive(); err != nil {
			t.Fatalf("upgate %v", err)
		}
		resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", g.adminPort))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("upgate not ready within %v (last: %v); log:\n%s", startTimeout, err, tail(readFile(g.log), 60))
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, p := range []int{g.ftpPort, g.sftpPort, g.webdavPort} {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", p), 5*time.Second)
		if err != nil {
			t.Fatalf("upgate ready but port %d: %v", p, err)
		}
		c.Close()
	}
	return g
}

// writeRcloneConfig writes the rclone config file with the two remotes.
//
// The SFTP remote leaves shell_type unset: rclone probes it (upgate refuses
// the probe's "echo", so rclone assumes a Unix shell) and then finds md5sum
// and sha1sum, which upgate serves.
//
// Encoding: upgate refuses ASCII control characters and DEL in names on
// purpose (they forge FTP replies and log lines; DESIGN.md, "Names"), and
// its documented advice to rclone users is to map them with the remote's
// encoding. The FTP backend's default encoding already does (Ctl and Del are
// in it), so the FTP remote keeps its default. The SFTP backend's default
// is Slash,Dot (plus NUL), so the SFTP remote adds Ctl and Del, and nothing
// else: invalid UTF-8 is not encoded, so the suite's invalid UTF-8 name
// reaches upgate as bytes, as upgate promises to carry it. The WebDAV
// remotes keep the backend's default, no encoding: the suite's names are
// in rclone's standard form, where a control character is already a
// Unicode symbol (U+2400 and on), so none reaches upgate.
//
// The WebDAV remotes speak plain HTTP: upgate serves it on loopback.
func writeRcloneConfig(t *testing.T, dir string, g *gateway) string {
	t.Helper()
	pass, err := obscure.Obscure(password)
	if err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf(`[%s]
type = sftp
host = 127.0.0.1
port = %d
user = %s
pass = %s
encoding = %s

[%s]
type = ftp
host = 127.0.0.1
port = %d
user = %s
pass = %s
`, strings.TrimSuffix(sftpRemote, ":"), g.sftpPort, user, pass, sftpEncoding,
		strings.TrimSuffix(ftpRemote, ":"), g.ftpPort, user, pass)
	for _, v := range webdavVendors() {
		conf += fmt.Sprintf(`
[%s]
type = webdav
url = http://127.0.0.1:%d/
vendor = %s
user = %s
pass = %s
`, strings.TrimSuffix(webdavRemote(v), ":"), g.webdavPort, v, user, pass)
	}
	file := filepath.Join(dir, "rclone.conf")
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// suiteResult counts a suite's leaf tests (tests without subtests).
type suiteResult struct {
	passed, skipped int
	failed          []failure
	suite           time.Duration // the test binary's run, as go test reports it
	wall            time.Duration // the whole go test, build included
	problem         string        // a failure that is no leaf test's (build error, panic, timeout)
}

type failure struct{ name, output string }

// testEvent is one line of "go test -json" (cmd/test2json).
type testEvent struct {
	Action  string
	Package string
	Test    string
	Elapsed float64
	Output  string
}

// runSuite runs "go test PKG -remote REMOTE" in the environment env (which
// names the rclone config) and counts its leaf tests. With raw set, go test's
// -json output is kept in that file.
func runSuite(t *testing.T, pkg, remote string, env []string, raw string) suiteResult {
	t.Helper()
	args := []string{"test", "-json", "-count=1", "-timeout", (suiteTimeout - time.Minute).String(), pkg, "-remote", remote}
	if r := os.Getenv(envRun); r != "" {
		args = append(args, "-run", r)
	}
	if os.Getenv(envVerbose) != "" {
		args = append(args, "-verbose")
	}
	ctx, cancel := context.WithTimeout(t.Context(), suiteTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var rawOut io.Writer = io.Discard
	if raw != "" {
		f, err := os.Create(raw)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		rawOut = f
	}

	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	final := map[string]string{}            // test -> pass, fail or skip
	output := map[string]*strings.Builder{} // test -> its output lines
	var pkgAction string
	var pkgOutput strings.Builder
	var res suiteResult
	sc := bufio.NewScanner(io.TeeReader(stdout, rawOut))
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		var ev testEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			pkgOutput.Write(sc.Bytes())
			pkgOutput.WriteByte('\n')
			continue
		}
		if ev.Test == "" {
			switch ev.Action {
			case "pass", "fail", "skip":
				pkgAction = ev.Action
				res.suite = time.Duration(ev.Elapsed * float64(time.Second))
			case "output", "build-output":
				pkgOutput.WriteString(ev.Output)
			case "build-fail":
				pkgAction = "fail"
			}
			continue
		}
		switch ev.Action {
		case "output":
			b := output[ev.Test]
			if b == nil {
				b = new(strings.Builder)
				output[ev.Test] = b
			}
			b.WriteString(ev.Output)
		case "pass", "fail", "skip":
			final[ev.Test] = ev.Action
		}
	}
	scanErr := sc.Err()
	waitErr := cmd.Wait()
	res.wall = time.Since(start)

	names := make([]string, 0, len(final))
	for name := range final {
		names = append(names, name)
	}
	slices.Sort(names)
	for i, name := range names {
		// Sorted, a test's subtests follow it directly.
		if i+1 < len(names) && strings.HasPrefix(names[i+1], name+"/") {
			continue
		}
		switch final[name] {
		case "pass":
			res.passed++
		case "skip":
			res.skipped++
		case "fail":
			out := ""
			if b := output[name]; b != nil {
				out = tail(b.String(), 40)
			}
			res.failed = append(res.failed, failure{name, out})
		}
	}
	// A test that started and never ended is a panic or a timeout.
	var unfinished []string
	for name := range output {
		if _, ok := final[name]; !ok {
			unfinished = append(unfinished, name)
		}
	}
	slices.Sort(unfinished)
	switch {
	case scanErr != nil:
		res.problem = fmt.Sprintf("reading go test -json: %v", scanErr)
	case ctx.Err() != nil:
		res.problem = fmt.Sprintf("killed after %v; unfinished %q", suiteTimeout, unfinished)
	case pkgAction != "pass" && len(res.failed) == 0:
		res.problem = fmt.Sprintf("package %s (%v), no leaf test failed; unfinished %q; output:\n%s\nstderr:\n%s",
			pkgAction, waitErr, unfinished, tail(pkgOutput.String(), 60), tail(stderr.String(), 40))
	case pkgAction == "pass" && waitErr != nil:
		res.problem = fmt.Sprintf("go test: %v\n%s", waitErr, tail(stderr.String(), 40))
	}
	return res
}

// suiteEnv is this process's environment for the suites, with the rclone
// config file conf, a cache directory under dir and nothing that changes
// rclone's behaviour inherited (RCLONE_* settings, an SSH agent).
func suiteEnv(conf, dir string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "RCLONE_") || strings.HasPrefix(kv, "SSH_AUTH_SOCK=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "RCLONE_CONFIG="+conf, "RCLONE_CACHE_DIR="+filepath.Join(dir, "rclone-cache"))
}

// freePorts returns n distinct loopback ports that were free a moment ago.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// freePortRange returns the first of n consecutive loopback ports that are
// all free, below the kernel's ephemeral range (so that no client socket
// takes one of them during the run).
func freePortRange(t *testing.T, n int) int {
	t.Helper()
	hi := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if lo, err := strconv.Atoi(f[0]); err == nil && lo > 10000+n {
				hi = lo
			}
		}
	}
	lo := 10000
	for range 50 {
		base := lo + rand.IntN(hi-lo-n)
		if rangeFree(base, n) {
			return base
		}
	}
	t.Fatalf("no %d consecutive free ports in [%d, %d)", n, lo, hi)
	return 0
}

func rangeFree(base, n int) bool {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for p := base; p < base+n; p++ {
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			return false
		}
		ls = append(ls, l)
	}
	return true
}

// leftovers lists what is left under dir, relative to it.
func leftovers(t *testing.T, dir string) []string {
	t.Helper()
	var left []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			rel, _ := filepath.Rel(dir, p)
			left = append(left, rel)
		}
		return nil
	})
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Errorf("walking %s: %v", dir, err)
	}
	return left
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err == nil {
		err = os.WriteFile(to, b, 0o600)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// readFile is the file's contents, or the error reading it.
func readFile(name string) string {
	b, err := os.ReadFile(name)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) <= n {
		return strings.Join(lines, "\n")
	}
	return fmt.Sprintf("[%d lines before]\n%s", len(lines)-n, strings.Join(lines[len(lines)-n:], "\n"))
}

// around is n lines of s around the first line that contains sub.
func around(s, sub string, n int) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if strings.Contains(l, sub) {
			lo, hi := max(0, i-n/4), min(len(lines), i+n)
			return strings.Join(lines[lo:hi], "\n")
		}
	}
	return ""
}

// shellQuote quotes s for sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
