// Package prototest is the protocol-level suite every frontend runs: the
// same client scenarios (bytes up and down with their sha256, directories,
// renames and deletes, listings, mtimes, an upload killed half-way, bad
// input), driven by real clients (rclone's ftp, sftp and webdav backends
// through the rclone binary, and curl) against a gateway that serves one
// protocol, and checked on the agent's disk.
//
// A frontend's test hands Run a StartFn, as rclone's cmd/serve/servetest
// does: the suite owns the scenarios, the frontend only says how a client
// reaches it. A scenario a protocol cannot meet is a field of Target, with
// the reason, not a skip inside the suite.
package prototest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/upgate/upgate/backend/fstest"
	"github.com/upgate/upgate/internal/gwtest"
)

// StartFn starts a gateway serving one frontend for t (everything stops in
// t.Cleanup) and returns how clients reach it.
type StartFn func(t *testing.T) Target

// Target is a running frontend, as a StartFn returns it.
type Target struct {
	// Env is the gateway; the user's files land in Env.UserDir(User).
	Env            *gwtest.Env
	User, Password string
	// Rclone is the rclone remote's options: type and the backend's keys
	// (host and port, or url and vendor), without user and pass, which
	// the suite adds.
	Rclone map[string]string
	// RcloneFlags are more global rclone flags (--ca-cert FILE).
	RcloneFlags []string
	// URL is how curl reaches the user's root: ftp://127.0.0.1:PORT,
	// sftp://..., https://...
	URL string
	// CurlFlags are more curl flags (--cacert FILE; -k for SSH host keys).
	CurlFlags []string
	// ModTime says the protocol keeps the mtime rclone sets (FTP's MFMT,
	// SFTP's SETSTAT, WebDAV's X-OC-Mtime).
	ModTime bool
	// EndIsClose says an upload ends when the client closes its data
	// connection (FTP's stream mode): a killed client's clean FIN looks
	// like a shorter, complete file. The gateway aborts when it sees the
	// control connection gone first, but the two closes race (README,
	// "FTP's end of data"), so the suite accepts a committed prefix of
	// the upload there; never a mix, and never a temp file left.
	EndIsClose bool
}

// Bounds only a hang crosses: every client command takes well under a
// second here.
const (
	commandTimeout = time.Minute
	waitTimeout    = 15 * time.Second
)

// Run runs every scenario against the target start returns. It needs
// rclone and curl (gwtest.RequireTool: skipped without them, failed under
// UPGATE_REQUIRE_INTEROP=1).
func Run(t *testing.T, start StartFn) {
	rclone := gwtest.RequireTool(t, "rclone")
	curl := gwtest.RequireTool(t, "curl")
	tg := start(t)
	c := &clients{tg: tg, rclone: rclone, curl: curl, tmp: t.TempDir()}
	c.writeRcloneConfig(t)
	// Alone: it watches the agent's open files.
	t.Run("InterruptedUpload", c.interruptedUpload)
	// The others work in directories of their own, at once (a client
	// program spends most of its time starting).
	t.Run("Clients", func(t *testing.T) {
		for _, s := range []struct {
			name string
			fn   func(*testing.T)
		}{
			{"UploadDownload", c.uploadDownload},
			{"DirectoriesRenameDelete", c.directoriesRenameDelete},
			{"Listing", c.listing},
			{"ModTime", c.modTime},
			{"BadInput", c.badInput},
		} {
			t.Run(s.name, func(t *testing.T) {
				t.Parallel()
				s.fn(t)
			})
		}
	})
	tg.Env.AgentIdle(t)
}

// clients runs the client programs against one target.
type clients struct {
	tg           Target
	rclone, curl string
	tmp          string // the clients' config, cache and local files
	conf         string // rclone's config file, remote "target"
}

func (c *clients) writeRcloneConfig(t *testing.T) {
	pass := strings.TrimSpace(c.run(t, c.rclone, "obscure", c.tg.Password))
	var b strings.Builder
	b.WriteString("[target]\n")
	keys := make([]string, 0, len(c.tg.Rclone))
	for k := range c.tg.Rclone {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "%s = %s\n", k, c.tg.Rclone[k])
	}
	fmt.Fprintf(&b, "user = %s\npass = %s\n", c.tg.User, pass)
	c.conf = filepath.Join(c.tmp, "rclone.conf")
	if err := os.WriteFile(c.conf, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
}

// command runs a client with its environment, bounded by commandTimeout,
// and returns its combined output and error; a timeout fails the test.
func (c *clients) command(t testing.TB, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "HOME="+c.tmp, "XDG_CACHE_HOME="+filepath.Join(c.tmp, "cache"), "LC_ALL=C.UTF-8")
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("%s %q hung: killed after %v:\n%s", filepath.Base(name), args, commandTimeout, out)
	}
	return string(out), err
}

// run is command that fails the test when the client fails.
func (c *clients) run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := c.command(t, name, args...)
	if err != nil {
		t.Fatalf("%s %q: %v\n%s", filepath.Base(name), args, err, out)
	}
	return out
}

// rcloneArgs are the global flags of every rclone call: no retries, so a
// refusal is an error at once.
func (c *clients) rcloneArgs(args ...string) []string {
	base := []string{"--config", c.conf, "-q", "--retries", "1", "--low-level-retries", "1", "--contimeout", "10s", "--timeout", "30s"}
	return append(append(base, c.tg.RcloneFlags...), args...)
}

func (c *clients) rcloneRun(t testing.TB, args ...string) string {
	t.Helper()
	return c.run(t, c.rclone, c.rcloneArgs(args...)...)
}

func (c *clients) curlArgs(args ...string) []string {
	base := []string{"-sS", "--fail", "--max-time", "30", "-u", c.tg.User + ":" + c.tg.Password}
	return append(append(base, c.tg.CurlFlags...), args...)
}

// disk is the user's directory on the agent.
func (c *clients) disk(p string) string {
	return filepath.Join(c.tg.Env.UserDir(c.tg.User), filepath.FromSlash(p))
}

// local writes a file under the clients' local directory.
func (c *clients) local(t testing.TB, p string, data []byte) string {
	t.Helper()
	name := filepath.Join(c.tmp, "local", filepath.FromSlash(p))
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return name
}

func digest(b []byte) string { return fmt.Sprintf("%x", sha256.Sum256(b)) }

// wantDisk fails unless p holds data on the agent.
func (c *clients) wantDisk(t testing.TB, p string, data []byte) {
	t.Helper()
	got, err := os.ReadFile(c.disk(p))
	if err != nil {
		t.Fatalf("%s on the agent: %v", p, err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("%s on the agent: %d bytes sha256 %s, want %d bytes sha256 %s", p, len(got), digest(got), len(data), digest(data))
	}
}

// wantGone fails unless p is absent on the agent.
func (c *clients) wantGone(t testing.TB, p string) {
	t.Helper()
	if _, err := os.Lstat(c.disk(p)); !os.IsNotExist(err) {
		t.Fatalf("%s on the agent: %v, want it gone", p, err)
	}
}

// uploadDownload: files of several sizes go up with rclone and curl and
// come back byte for byte.
func (c *clients) uploadDownload(t *testing.T) {
	files := map[string][]byte{
		"big.bin":        fstest.Data(1<<20+7, 101),
		"small.txt":      []byte("hello\n"),
		"empty":          {},
		"sub/nested.php": []byte("<?php echo 'nested';\n"),
	}
	src := filepath.Join(c.tmp, "local", "updown")
	for p, data := range files {
		c.local(t, "updown/"+p, data)
	}
	c.rcloneRun(t, "copy", src, "target:updown")
	for p, data := range files {
		c.wantDisk(t, "updown/"+p, data)
	}
	back := filepath.Join(c.tmp, "back")
	c.rcloneRun(t, "copy", "target:updown", back)
	for p, data := range files {
		got, err := os.ReadFile(filepath.Join(back, filepath.FromSlash(p)))
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("rclone copy back %s: %d bytes sha256 %s, %v; want sha256 %s", p, len(got), digest(got), err, digest(data))
		}
	}
	c.rcloneRun(t, "check", src, "target:updown")
	if out := c.rcloneRun(t, "cat", "target:updown/big.bin"); digest([]byte(out)) != digest(files["big.bin"]) {
		t.Fatalf("rclone cat big.bin: sha256 %s", digest([]byte(out)))
	}

	data := fstest.Data(700000, 102)
	f := c.local(t, "curl.bin", data)
	c.run(t, c.curl, c.curlArgs("-T", f, c.tg.URL+"/updown/curl.bin")...)
	c.wantDisk(t, "updown/curl.bin", data)
	out := filepath.Join(c.tmp, "curl.out")
	c.run(t, c.curl, c.curlArgs("-o", out, c.tg.URL+"/updown/curl.bin")...)
	if got, _ := os.ReadFile(out); digest(got) != digest(data) {
		t.Fatalf("curl download: %d bytes sha256 %s, want %s", len(got), digest(got), digest(data))
	}
}

// directoriesRenameDelete: mkdir -p, a file and a directory renamed, a
// file, an empty directory and a tree removed.
func (c *clients) directoriesRenameDelete(t *testing.T) {
	c.rcloneRun(t, "mkdir", "target:ops/a/b")
	if fi, err := os.Stat(c.disk("ops/a/b")); err != nil || !fi.IsDir() {
		t.Fatalf("rclone mkdir ops/a/b: %v", err)
	}
	data := []byte("rename me\n")
	c.rcloneRun(t, "copyto", c.local(t, "ops.txt", data), "target:ops/a/file.txt")
	c.rcloneRun(t, "moveto", "target:ops/a/file.txt", "target:ops/renamed.txt")
	c.wantGone(t, "ops/a/file.txt")
	c.wantDisk(t, "ops/renamed.txt", data)
	c.rcloneRun(t, "moveto", "target:ops/a", "target:ops/c")
	c.wantGone(t, "ops/a")
	if fi, err := os.Stat(c.disk("ops/c/b")); err != nil || !fi.IsDir() {
		t.Fatalf("ops/a renamed to ops/c: ops/c/b %v", err)
	}
	c.rcloneRun(t, "deletefile", "target:ops/renamed.txt")
	c.wantGone(t, "ops/renamed.txt")
	c.rcloneRun(t, "rmdir", "target:ops/c/b")
	c.wantGone(t, "ops/c/b")
	c.rcloneRun(t, "copyto", c.local(t, "ops2.txt", data), "target:ops/c/d/e.txt")
	c.rcloneRun(t, "purge", "target:ops")
	c.wantGone(t, "ops")
}

// listing: a tree made on the agent's disk is listed as it is: names,
// sizes, directories, dotfiles.
func (c *clients) listing(t *testing.T) {
	want := map[string]int64{ // path -> size, -1 for a directory
		"d": -1, "d/e": -1, "d/e/deep.txt": 3, "a.php": 5, ".env": 4, "name with spaces.txt": 0, "d/x.bin": 4096,
	}
	for p, size := range want {
		full := c.disk("list/" + p)
		if size < 0 {
			if err := os.MkdirAll(full, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, make([]byte, size), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var entries []struct {
		Path  string
		Size  int64
		IsDir bool
	}
	if err := json.Unmarshal([]byte(c.rcloneRun(t, "lsjson", "-R", "target:list")), &entries); err != nil {
		t.Fatal(err)
	}
	got := make(map[string]int64)
	for _, e := range entries {
		if e.IsDir {
			e.Size = -1
		}
		got[e.Path] = e.Size
	}
	for p, size := range want {
		if g, ok := got[p]; !ok || g != size {
			t.Errorf("lsjson -R: %s size %d (listed %v), want %d", p, g, ok, size)
		}
	}
	if len(got) != len(want) {
		t.Errorf("lsjson -R lists %d entries %v, want %d", len(got), got, len(want))
	}
}

// modTime: rclone sets the source's mtime on what it uploads, and lists
// it back, where the protocol can set times.
func (c *clients) modTime(t *testing.T) {
	if !c.tg.ModTime {
		t.Skip("the protocol cannot set a file's mtime (Target.ModTime)")
	}
	mtime := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	f := c.local(t, "mtime/old.php", []byte("<?php // old\n"))
	if err := os.Chtimes(f, mtime, mtime); err != nil {
		t.Fatal(err)
	}
	c.rcloneRun(t, "copy", filepath.Dir(f), "target:mtime")
	fi, err := os.Stat(c.disk("mtime/old.php"))
	if err != nil {
		t.Fatal(err)
	}
	if !fi.ModTime().Equal(mtime) {
		t.Errorf("mtime on the agent %v, want %v", fi.ModTime().UTC(), mtime)
	}
	var entries []struct{ ModTime time.Time }
	if err := json.Unmarshal([]byte(c.rcloneRun(t, "lsjson", "target:mtime/old.php")), &entries); err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || !entries[0].ModTime.Truncate(time.Second).Equal(mtime) {
		t.Errorf("lsjson mtime %v, want %v", entries, mtime)
	}
}

// interruptedUpload: curl uploads from a pipe and is killed half-way; the
// upload is aborted: a replaced file keeps its old content, a new one
// never appears, and no temp file is left.
func (c *clients) interruptedUpload(t *testing.T) {
	old := fstest.Data(50000, 103)
	c.rcloneRun(t, "copyto", c.local(t, "old.bin", old), "target:intr/old.bin")
	agent, ok := c.tg.Env.Srv.Gateway.AgentPool().Embedded(gwtest.Agent)
	if !ok {
		t.Fatal("no embedded agent")
	}
	for _, name := range []string{"old.bin", "new.bin"} {
		c.tg.Env.AgentIdle(t)
		ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
		cmd := exec.CommandContext(ctx, c.curl, c.curlArgs("-T", "-", c.tg.URL+"/intr/"+name)...)
		cmd.Env = append(os.Environ(), "HOME="+c.tmp)
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			cancel()
			t.Fatal(err)
		}
		// Whatever ends this iteration, curl is killed and reaped.
		reaped := false
		reap := func() {
			if !reaped {
				reaped = true
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
				stdin.Close()
				cancel()
			}
		}
		t.Cleanup(reap)
		sent := fstest.Data(1<<20, 104)
		if _, err := stdin.Write(sent); err != nil {
			t.Fatalf("feeding curl: %v", err)
		}
		// The upload is open on the agent: kill the client mid-way.
		deadline := time.Now().Add(waitTimeout)
		for agent.OpenHandles() == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("curl's upload of %s never opened on the agent", name)
			}
			time.Sleep(10 * time.Millisecond)
		}
		reap()
		c.tg.Env.AgentIdle(t)
		if c.tg.EndIsClose {
			got, err := os.ReadFile(c.disk("intr/" + name))
			switch {
			case name == "new.bin" && os.IsNotExist(err):
			case name == "old.bin" && err == nil && bytes.Equal(got, old):
			case err == nil && bytes.HasPrefix(sent, got):
				t.Logf("curl killed uploading %s: %d bytes of %d committed (the data connection's FIN came first)", name, len(got), len(sent))
				if name == "new.bin" {
					if err := os.Remove(c.disk("intr/new.bin")); err != nil {
						t.Fatal(err)
					}
				} else {
					old = got
				}
			default:
				t.Fatalf("after curl was killed uploading %s: %d bytes sha256 %s, %v; want the old content, or a prefix of the upload", name, len(got), digest(got), err)
			}
		}
		c.wantDisk(t, "intr/old.bin", old)
		ents, err := os.ReadDir(c.disk("intr"))
		if err != nil {
			t.Fatal(err)
		}
		if len(ents) != 1 || ents[0].Name() != "old.bin" {
			var names []string
			for _, e := range ents {
				names = append(names, e.Name())
			}
			t.Fatalf("after curl was killed uploading %s, intr/ holds %q, want only old.bin", name, names)
		}
	}
}

// badInput: what cannot be done is refused with an error the client
// reports, at once, and the session goes on serving.
func (c *clients) badInput(t *testing.T) {
	c.rcloneRun(t, "copyto", c.local(t, "bad.txt", []byte("file")), "target:bad/file.txt")
	for _, args := range [][]string{
		{"cat", "target:bad/missing.txt"},
		{"mkdir", "target:bad/file.txt/sub"},
		{"copyto", c.local(t, "bad2.txt", []byte("x")), "target:bad/file.txt/under-a-file.txt"},
		{"moveto", "target:bad/missing.txt", "target:bad/moved.txt"},
	} {
		if out, err := c.command(t, c.rclone, c.rcloneArgs(args...)...); err == nil {
			t.Errorf("rclone %q succeeded:\n%s", args, out)
		}
	}
	if out, err := c.command(t, c.curl, c.curlArgs("-o", filepath.Join(c.tmp, "missing.out"), c.tg.URL+"/bad/missing.txt")...); err == nil {
		t.Errorf("curl download of a missing file succeeded:\n%s", out)
	}
	c.wantDisk(t, "bad/file.txt", []byte("file"))
	var left []string
	_ = filepath.WalkDir(c.disk("bad"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && p != c.disk("bad") {
			left = append(left, d.Name())
		}
		return nil
	})
	if !slices.Equal(left, []string{"file.txt"}) {
		t.Errorf("bad/ holds %q after the refusals, want only file.txt", left)
	}
	if got := c.rcloneRun(t, "cat", "target:bad/file.txt"); got != "file" {
		t.Errorf("after the refusals rclone cat reads %q", got)
	}
}
