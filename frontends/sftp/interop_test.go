package sftp_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/upgate/upgate/internal/agenttest"
	"github.com/upgate/upgate/internal/gwtest"
)

// The interop tests drive real clients (OpenSSH sftp, lftp, curl, rclone,
// paramiko) against the gateway and check every effect in the agent's
// directory. A missing client skips its test, unless
// UPGATE_REQUIRE_INTEROP=1 (CI) makes that a failure.

// command runs name with args (and env added to the environment), bounded
// by timeout, and returns its combined output; a failure or a timeout
// fails the test with the output.
func command(t testing.TB, timeout time.Duration, env []string, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(cleanEnv(), env...)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("%s timed out after %v:\n%s", name, timeout, out)
	}
	if err != nil {
		t.Fatalf("%s %q: %v\n%s", name, args, err, out)
	}
	return string(out)
}

// cleanEnv is the environment for client programs: no ssh agent, so only
// the credentials a test gives are tried.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "SSH_AUTH_SOCK=") || strings.HasPrefix(kv, "LC_ALL=") || strings.HasPrefix(kv, "LANG=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "LC_ALL=C.UTF-8")
}

func port(t testing.TB, e *env) string {
	t.Helper()
	_, p, err := net.SplitHostPort(e.Addr)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func newRand(t testing.TB) *mrand.Rand {
	seed := uint64(time.Now().UnixNano())
	t.Logf("random seed %d", seed)
	return mrand.New(mrand.NewPCG(seed, seed>>7))
}

func randBytes(rng *mrand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		v := rng.Uint64()
		for j := 0; j < 8 && i+j < n; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

// writeFile writes data at dir/name with a whole-second mtime.
func writeFile(t testing.TB, dir, name string, data []byte, mtime time.Time) {
	t.Helper()
	p := filepath.Join(dir, filepath.FromSlash(name))
	mustWrite(t, p, data)
	if err := os.Chtimes(p, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

// makeTree writes n files under dir: nested directories, dotfiles, names
// with spaces and UTF-8, empty files, two 5 MiB files, small random ones,
// each with its own whole-second mtime in the past; and one empty
// directory. It returns the files' slash-separated relative paths.
func makeTree(t testing.TB, dir string, rng *mrand.Rand, n int, big bool) []string {
	t.Helper()
	special := []struct {
		name string
		size int
	}{
		{".env", 120}, {".htaccess", 300}, {".hidden/dir/file", 64},
		{"ünï cødé.php", 2000}, {"with space.txt", 50}, {"d0/s1/ünï cødé.php", 700},
		{"d1/with space/x y.txt", 10}, {"日本語/ファイル.txt", 99},
		{"empty.txt", 0}, {"d2/empty", 0}, {"d3/s0/.empty", 0},
	}
	if big {
		special = append(special, struct {
			name string
			size int
		}{"big/a.bin", 5 << 20}, struct {
			name string
			size int
		}{"d1/s2/b.bin", 5 << 20})
	}
	if err := os.MkdirAll(filepath.Join(dir, "emptydir"), 0o755); err != nil {
		t.Fatal(err)
	}
	base := time.Now().Add(-400 * 24 * time.Hour).Truncate(time.Second)
	var files []string
	add := func(name string, size int) {
		files = append(files, name)
		writeFile(t, dir, name, randBytes(rng, size), base.Add(time.Duration(len(files))*time.Hour+time.Duration(rng.IntN(3600))*time.Second))
	}
	for _, s := range special {
		add(s.name, s.size)
	}
	for i := 0; len(files) < n; i++ {
		var name string
		switch i % 4 {
		case 0:
			name = fmt.Sprintf("d%d/s%d/f%03d.php", rng.IntN(4), rng.IntN(3), i)
		case 1:
			name = fmt.Sprintf("d%d/f%03d.txt", rng.IntN(4), i)
		case 2:
			name = fmt.Sprintf("d%d/s%d/l%d/f%03d.css", rng.IntN(4), rng.IntN(3), rng.IntN(2), i)
		default:
			name = fmt.Sprintf("top%03d.js", i)
		}
		add(name, rng.IntN(20000))
	}
	return files
}

// treeEntry is what the comparison looks at: type, size, content and
// mtime to the second.
type treeEntry struct {
	dir   bool
	size  int64
	sum   string
	mtime int64
}

// scanTree maps every file and directory under root (slash-separated
// relative paths) to its entry.
func scanTree(t testing.TB, root string) map[string]treeEntry {
	t.Helper()
	out := make(map[string]treeEntry)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == root {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		e := treeEntry{dir: d.IsDir()}
		if !e.dir {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			e.size, e.sum, e.mtime = int64(len(b)), sum256(b), fi.ModTime().Unix()
		}
		out[filepath.ToSlash(rel)] = e
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// compareTrees fails the test unless remote holds exactly local's files
// and directories, byte for byte, with the same mtimes to the second.
func compareTrees(t testing.TB, local, remote string, mtimes bool) {
	t.Helper()
	l, r := scanTree(t, local), scanTree(t, remote)
	var problems []string
	for name, le := range l {
		re, ok := r[name]
		switch {
		case !ok:
			problems = append(problems, "missing: "+name)
		case le.dir != re.dir:
			problems = append(problems, "type differs: "+name)
		case le.size != re.size || le.sum != re.sum:
			problems = append(problems, fmt.Sprintf("content differs: %s (%d bytes, want %d)", name, re.size, le.size))
		case mtimes && le.mtime != re.mtime:
			problems = append(problems, fmt.Sprintf("mtime differs: %s: %s, want %s", name,
				time.Unix(re.mtime, 0).UTC().Format(time.DateTime), time.Unix(le.mtime, 0).UTC().Format(time.DateTime)))
		}
	}
	for name := range r {
		if _, ok := l[name]; !ok {
			problems = append(problems, "extra: "+name)
		}
	}
	sort.Strings(problems)
	if len(problems) > 0 {
		if len(problems) > 30 {
			problems = append(problems[:30], fmt.Sprintf("... and %d more", len(problems)-30))
		}
		t.Fatalf("%s differs from %s:\n%s", remote, local, strings.Join(problems, "\n"))
	}
	t.Logf("%d entries identical", len(l))
}

// sshOpts are the OpenSSH options every client run uses.
var sshOpts = []string{"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"}

func TestInteropOpenSSHKey(t *testing.T) {
	sftpBin := gwtest.RequireTool(t, "sftp")
	keygen := gwtest.RequireTool(t, "ssh-keygen")
	tmp := t.TempDir()
	key := filepath.Join(tmp, "id_ed25519")
	command(t, 30*time.Second, nil, keygen, "-q", "-t", "ed25519", "-N", "", "-f", key)
	pub := strings.TrimSpace(string(mustRead(t, key+".pub")))
	e := start(t, withKeys("alice", pub))
	rng := newRand(t)
	remote := e.UserDir("alice")

	local := filepath.Join(tmp, "local")
	up := randBytes(rng, 300_000)
	writeFile(t, local, "up.txt", up, time.Now())
	if err := os.Chmod(filepath.Join(local, "up.txt"), 0o640); err != nil {
		t.Fatal(err)
	}
	stamp := time.Date(2011, 12, 13, 14, 15, 16, 0, time.UTC)
	writeFile(t, local, "stamped.txt", []byte("keep my mtime"), stamp)
	tree := filepath.Join(local, "tree")
	for i, name := range []string{"a.txt", "sub/b.bin", "sub/deeper/c.txt", "sub/deeper/.dot"} {
		writeFile(t, tree, name, randBytes(rng, 1000*i+10), time.Now())
	}
	if err := os.Chmod(filepath.Join(tree, "sub", "b.bin"), 0o600); err != nil {
		t.Fatal(err)
	}
	down := randBytes(rng, 700_000)
	writeFile(t, remote, "remote.bin", down, time.Now())

	batch := filepath.Join(tmp, "batch")
	got := filepath.Join(tmp, "got.bin")
	script := strings.Join([]string{
		"put " + filepath.Join(local, "up.txt") + " /up.txt",
		"put -p " + filepath.Join(local, "stamped.txt") + " /stamped.txt",
		"get /remote.bin " + got,
		"mkdir /newdir",
		"put -r " + tree + " /newdir/tree",
		"rename /up.txt /renamed.txt",
		"chmod 600 /renamed.txt",
		"ln -s renamed.txt /link.txt",
		"mkdir /gone",
		"rmdir /gone",
		"rm /newdir/tree/a.txt",
		"ls -la /newdir/tree",
		"bye",
	}, "\n") + "\n"
	mustWrite(t, batch, []byte(script))
	args := append([]string{"-i", key, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes"}, sshOpts...)
	args = append(args, "-P", port(t, e), "-b", batch, "alice@127.0.0.1")
	out := command(t, 60*time.Second, nil, sftpBin, args...)
	t.Logf("sftp -b:\n%s", out)

	if b := mustRead(t, filepath.Join(remote, "renamed.txt")); sum256(b) != sum256(up) {
		t.Errorf("renamed.txt: %d bytes, content differs", len(b))
	}
	if fi, err := os.Stat(filepath.Join(remote, "renamed.txt")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("renamed.txt mode after chmod 600: %v, %v", fi.Mode(), err)
	}
	if _, err := os.Stat(filepath.Join(remote, "up.txt")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("up.txt after rename: %v", err)
	}
	if target, err := os.Readlink(filepath.Join(remote, "link.txt")); err != nil || target != "renamed.txt" {
		t.Errorf("link.txt -> %q, %v", target, err)
	}
	if fi, err := os.Stat(filepath.Join(remote, "stamped.txt")); err != nil || !fi.ModTime().Equal(stamp) {
		t.Errorf("stamped.txt (put -p) mtime: %v, %v; want %v", fi.ModTime().UTC(), err, stamp)
	}
	if b := mustRead(t, got); sum256(b) != sum256(down) {
		t.Errorf("get: %d bytes, content differs", len(b))
	}
	if err := os.Remove(filepath.Join(tree, "a.txt")); err != nil {
		t.Fatal(err)
	}
	compareTrees(t, tree, filepath.Join(remote, "newdir", "tree"), false)
	// OpenSSH's put sends the local mode with OPEN.
	if fi, err := os.Stat(filepath.Join(remote, "newdir", "tree", "sub", "b.bin")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("tree/sub/b.bin mode: %v, %v; want the local 0600", fi.Mode(), err)
	}
	if _, err := os.Stat(filepath.Join(remote, "gone")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("gone after rmdir: %v", err)
	}
	if tmp := agenttest.TempFilesUnder(t, remote); len(tmp) != 0 {
		t.Errorf("temp files left: %v", tmp)
	}
	waitNoSessions(t, e, 10*time.Second)
	e.AgentIdle(t)
}

func TestInteropOpenSSHPassword(t *testing.T) {
	sftpBin := gwtest.RequireTool(t, "sftp")
	sshpass := gwtest.RequireTool(t, "sshpass")
	e := start(t, nil)
	tmp := t.TempDir()
	data := randBytes(newRand(t), 123_456)
	writeFile(t, tmp, "pw.bin", data, time.Now())
	batch := filepath.Join(tmp, "batch")
	mustWrite(t, batch, []byte("put "+filepath.Join(tmp, "pw.bin")+" /pw.bin\nget /pw.bin "+filepath.Join(tmp, "back.bin")+"\nls -l /\n"))
	args := []string{"-p", gwtest.Users["alice"], sftpBin, "-o", "BatchMode=no", "-o", "PreferredAuthentications=password", "-o", "PubkeyAuthentication=no"}
	args = append(args, sshOpts...)
	args = append(args, "-P", port(t, e), "-b", batch, "alice@127.0.0.1")
	out := command(t, 60*time.Second, nil, sshpass, args...)
	if !strings.Contains(out, "pw.bin") {
		t.Errorf("ls output lacks pw.bin:\n%s", out)
	}
	if b := mustRead(t, filepath.Join(e.UserDir("alice"), "pw.bin")); sum256(b) != sum256(data) {
		t.Errorf("uploaded: %d bytes, content differs", len(b))
	}
	if b := mustRead(t, filepath.Join(tmp, "back.bin")); sum256(b) != sum256(data) {
		t.Errorf("downloaded: %d bytes, content differs", len(b))
	}
	waitNoSessions(t, e, 10*time.Second)
}

// lftpSFTP runs an lftp script against the gateway over sftp://.
func lftpSFTP(t testing.TB, e *env, script string) string {
	t.Helper()
	bin := gwtest.RequireTool(t, "lftp")
	gwtest.RequireTool(t, "ssh")
	full := "set cmd:fail-exit yes; set net:max-retries 1; set net:timeout 30; " +
		"set sftp:connect-program 'ssh -a -x -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o PubkeyAuthentication=no'; " +
		fmt.Sprintf("open -u alice,%s sftp://127.0.0.1:%s; ", gwtest.Users["alice"], port(t, e)) + script
	return command(t, 5*time.Minute, nil, bin, "-c", full)
}

func TestInteropLftpMirror(t *testing.T) {
	gwtest.RequireTool(t, "lftp")
	e := start(t, nil)
	rng := newRand(t)
	local := filepath.Join(t.TempDir(), "site")
	files := makeTree(t, local, rng, 500, true)
	remote := filepath.Join(e.UserDir("alice"), "site")

	begin := time.Now()
	lftpSFTP(t, e, "mirror -R --no-perms "+local+" /site")
	t.Logf("mirror -R of %d files: %v", len(files), time.Since(begin).Round(time.Millisecond))
	compareTrees(t, local, remote, true)

	// Edits (newer mtimes, sizes both same and different), additions and
	// deletions, then an incremental mirror.
	now := time.Now().Add(-time.Hour).Truncate(time.Second)
	for i, name := range files[20:60] {
		p := filepath.Join(local, filepath.FromSlash(name))
		old := mustRead(t, p)
		data := randBytes(rng, len(old)) // same size: only the mtime tells
		if i%2 == 1 {
			data = append(data, "more"...)
		}
		writeFile(t, local, name, data, now.Add(time.Duration(i)*time.Second))
	}
	for i := range 25 {
		writeFile(t, local, fmt.Sprintf("new/n%02d/added %d.txt", i%3, i), randBytes(rng, rng.IntN(5000)), now)
	}
	for _, name := range files[100:130] {
		if err := os.Remove(filepath.Join(local, filepath.FromSlash(name))); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.RemoveAll(filepath.Join(local, ".hidden")); err != nil {
		t.Fatal(err)
	}
	begin = time.Now()
	lftpSFTP(t, e, "mirror -R --only-newer --delete --no-perms "+local+" /site")
	t.Logf("incremental mirror -R: %v", time.Since(begin).Round(time.Millisecond))
	compareTrees(t, local, remote, true)
	if tmp := agenttest.TempFilesUnder(t, e.UserDir("alice")); len(tmp) != 0 {
		t.Errorf("temp files left: %v", tmp)
	}
	waitNoSessions(t, e, 10*time.Second)
	e.AgentIdle(t)
}

func TestInteropCurl(t *testing.T) {
	curl := gwtest.RequireTool(t, "curl")
	e := start(t, nil)
	tmp := t.TempDir()
	data := randBytes(newRand(t), 2<<20+17)
	writeFile(t, tmp, "c.bin", data, time.Now())
	base := fmt.Sprintf("sftp://127.0.0.1:%s", port(t, e))
	auth := "alice:" + gwtest.Users["alice"]
	command(t, 60*time.Second, nil, curl, "-sS", "-k", "-u", auth, "--ftp-create-dirs", "-T", filepath.Join(tmp, "c.bin"), base+"/curl/dir/c.bin")
	if b := mustRead(t, filepath.Join(e.UserDir("alice"), "curl", "dir", "c.bin")); sum256(b) != sum256(data) {
		t.Errorf("uploaded: %d bytes, content differs", len(b))
	}
	back := filepath.Join(tmp, "back.bin")
	command(t, 60*time.Second, nil, curl, "-sS", "-k", "-u", auth, "-o", back, base+"/curl/dir/c.bin")
	if b := mustRead(t, back); sum256(b) != sum256(data) {
		t.Errorf("downloaded: %d bytes, content differs", len(b))
	}
	// A second upload replaces the file.
	writeFile(t, tmp, "c2.bin", []byte("second"), time.Now())
	command(t, 60*time.Second, nil, curl, "-sS", "-k", "-u", auth, "-T", filepath.Join(tmp, "c2.bin"), base+"/curl/dir/c.bin")
	if b := mustRead(t, filepath.Join(e.UserDir("alice"), "curl", "dir", "c.bin")); string(b) != "second" {
		t.Errorf("after the second upload: %q", b[:min(len(b), 20)])
	}
	waitNoSessions(t, e, 10*time.Second)
	e.AgentIdle(t)
}

func TestInteropRclone(t *testing.T) {
	rclone := gwtest.RequireTool(t, "rclone")
	e := start(t, nil)
	tmp := t.TempDir()
	env := []string{"RCLONE_CONFIG=" + filepath.Join(tmp, "rclone.conf"), "HOME=" + tmp}
	obscured := strings.TrimSpace(command(t, 30*time.Second, env, rclone, "obscure", gwtest.Users["alice"]))
	command(t, 30*time.Second, env, rclone, "config", "create", "--", "up", "sftp", // "--": the obscured password may start with "-"
		"host", "127.0.0.1", "port", port(t, e), "user", "alice", "pass", obscured)
	src := filepath.Join(tmp, "src")
	makeTree(t, src, newRand(t), 100, false)
	out := command(t, 3*time.Minute, env, rclone, "sync", src, "up:dst", "--sftp-set-modtime", "--create-empty-src-dirs")
	t.Logf("rclone sync: %s", out)
	out = command(t, 3*time.Minute, env, rclone, "check", src, "up:dst")
	// rclone finds md5sum by running it on empty input, then checks every
	// file's sum with "md5sum PATH" over exec.
	if !strings.Contains(out, "0 differences found") || strings.Contains(out, "could not be checked") || strings.Contains(out, "No common hash") {
		t.Errorf("rclone check:\n%s", out)
	}
	t.Logf("rclone check:\n%s", out)
	compareTrees(t, src, filepath.Join(e.UserDir("alice"), "dst"), true)
	if tmp := agenttest.TempFilesUnder(t, e.UserDir("alice")); len(tmp) != 0 {
		t.Errorf("temp files left: %v", tmp)
	}
	waitNoSessions(t, e, 10*time.Second)
	e.AgentIdle(t)
}

const paramikoScript = `
import json, sys
import paramiko

host, port, user, pw, up, down = sys.argv[1:7]
t = paramiko.Transport((host, int(port)))
t.connect(username=user, password=pw)
s = paramiko.SFTPClient.from_transport(t)
out = {}
s.put(up, "/pm/up.bin")
s.get("/pm/remote.bin", down)
s.chmod("/pm/up.bin", 0o640)
s.utime("/pm/up.bin", (1000000000, 1100000000))
with s.open("/pm/old.txt", "w") as f:
    f.write(b"old")
with s.open("/pm/new.txt", "w") as f:
    f.write(b"new content")
    f.utime((1200000000, 1300000000))  # FSETSTAT before CLOSE
s.posix_rename("/pm/new.txt", "/pm/old.txt")
with s.open("/pm/log.txt", "w") as f:
    f.write(b"line 1\n")
with s.open("/pm/log.txt", "a") as f:
    f.write(b"line 2\n")
st = s.stat("/pm/up.bin")
out["mode"] = st.st_mode & 0o777
out["mtime"] = st.st_mtime
out["listing"] = sorted(s.listdir("/pm"))
s.close()
t.close()
print(json.dumps(out))
`

func TestInteropParamiko(t *testing.T) {
	const python = "/usr/bin/python3" // Debian's python3-paramiko is importable only here
	if _, err := os.Stat(python); err != nil {
		gwtest.RequireTool(t, python)
	}
	if err := exec.Command(python, "-c", "import paramiko").Run(); err != nil {
		if os.Getenv("UPGATE_REQUIRE_INTEROP") == "1" {
			t.Fatalf("paramiko is required (UPGATE_REQUIRE_INTEROP=1): %v", err)
		}
		t.Skip("paramiko not importable by /usr/bin/python3")
	}
	e := start(t, nil)
	tmp := t.TempDir()
	rng := newRand(t)
	up, down := randBytes(rng, 1<<20+3), randBytes(rng, 500_000)
	writeFile(t, tmp, "up.bin", up, time.Now())
	dir := filepath.Join(e.UserDir("alice"), "pm")
	script := filepath.Join(tmp, "client.py")
	mustWrite(t, script, []byte(paramikoScript))
	writeFile(t, dir, "remote.bin", down, time.Now())
	out := command(t, 2*time.Minute, nil, python, script, "127.0.0.1", port(t, e), "alice", gwtest.Users["alice"],
		filepath.Join(tmp, "up.bin"), filepath.Join(tmp, "down.bin"))
	var res struct {
		Mode    int      `json:"mode"`
		Mtime   int64    `json:"mtime"`
		Listing []string `json:"listing"`
	}
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)[strings.LastIndex(strings.TrimSpace(out), "\n")+1:]), &res); err != nil {
		t.Fatalf("paramiko output %q: %v", out, err)
	}
	t.Logf("paramiko: %+v", res)
	if res.Mode != 0o640 || res.Mtime != 1100000000 {
		t.Errorf("paramiko's stat after chmod/utime: mode %o mtime %d", res.Mode, res.Mtime)
	}
	atime, _ := statTimes(t, filepath.Join(dir, "up.bin")) // before reading it: relatime
	if atime.Unix() != 1000000000 {
		t.Errorf("up.bin atime %d, want 1000000000", atime.Unix())
	}
	if b := mustRead(t, filepath.Join(dir, "up.bin")); sum256(b) != sum256(up) {
		t.Errorf("put: %d bytes, content differs", len(b))
	}
	if b := mustRead(t, filepath.Join(tmp, "down.bin")); sum256(b) != sum256(down) {
		t.Errorf("get: %d bytes, content differs", len(b))
	}
	fi, err := os.Stat(filepath.Join(dir, "up.bin"))
	if err != nil || fi.Mode().Perm() != 0o640 || fi.ModTime().Unix() != 1100000000 {
		t.Errorf("up.bin on disk: %v %v, %v; want 0640, mtime 1100000000", fi.Mode(), fi.ModTime().Unix(), err)
	}
	fi, err = os.Stat(filepath.Join(dir, "old.txt"))
	if err != nil || fi.ModTime().Unix() != 1300000000 {
		t.Errorf("old.txt mtime (FSETSTAT before CLOSE, then posix_rename): %v, %v", fi.ModTime().Unix(), err)
	}
	if b := mustRead(t, filepath.Join(dir, "old.txt")); string(b) != "new content" {
		t.Errorf("old.txt after posix_rename over it: %q", b)
	}
	if _, err := os.Stat(filepath.Join(dir, "new.txt")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("new.txt after posix_rename: %v", err)
	}
	if b := mustRead(t, filepath.Join(dir, "log.txt")); string(b) != "line 1\nline 2\n" {
		t.Errorf("log.txt after an append: %q", b)
	}
	if !bytes.Equal([]byte(strings.Join(res.Listing, ",")), []byte("log.txt,old.txt,remote.bin,up.bin")) {
		t.Errorf("listing %v", res.Listing)
	}
	waitNoSessions(t, e, 10*time.Second)
	e.AgentIdle(t)
}
