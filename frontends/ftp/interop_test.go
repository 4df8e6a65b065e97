package ftp_test

import (
	"bytes"
	"context"
	"crypto/sha256"
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

	"github.com/upgate/upgate/backend/agent"
	"github.com/upgate/upgate/config"
	"github.com/upgate/upgate/internal/agenttest"
	"github.com/upgate/upgate/internal/gwtest"
	"github.com/upgate/upgate/internal/testpki"
)

// The interop tests drive the real lftp (`mirror -R`, as scripted
// deployments do) against the gateway and compare the agent's directory
// with the local tree byte for byte, mtimes included.

// treeFiles is how many files makeTree writes.
const treeFiles = 500

// makeTree writes a tree of treeFiles files under dir: three levels of
// directories, dotfiles, names with spaces and UTF-8, empty files, three
// 5 MiB files and small random ones, each with its own whole-second mtime
// in the past. It returns the files' slash-separated relative paths.
func makeTree(t *testing.T, dir string, rng *mrand.Rand) []string {
	t.Helper()
	special := []struct {
		name string
		size int
	}{
		{".env", 120}, {".htaccess", 300}, {".hidden/dir/file", 64},
		{"ünï cødé.php", 2000}, {"with space.txt", 50}, {"d0/s1/ünï cødé.php", 700},
		{"d1/with space/x y.txt", 10},
		{"empty.txt", 0}, {"d2/empty", 0}, {"d3/s0/l1/.empty", 0},
		{"big/a.bin", 5 << 20}, {"big/b.bin", 5 << 20}, {"d1/s2/l0/c.bin", 5 << 20},
	}
	var dirs []string
	for a := range 4 {
		for b := range 3 {
			for c := range 2 {
				dirs = append(dirs, fmt.Sprintf("d%d/s%d/l%d", a, b, c))
			}
		}
	}
	// An empty directory: mirror must create it too.
	if err := os.MkdirAll(filepath.Join(dir, "emptydir"), 0o755); err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, s := range special {
		files = append(files, s.name)
		writeTreeFile(t, dir, s.name, randBytes(rng, s.size))
	}
	for i := 0; len(files) < treeFiles; i++ {
		var name string
		switch i % 4 {
		case 0:
			name = fmt.Sprintf("%s/f%03d.php", dirs[rng.IntN(len(dirs))], i)
		case 1:
			d := dirs[rng.IntN(len(dirs))]
			name = fmt.Sprintf("%s/f%03d.txt", d[:strings.LastIndex(d, "/")], i)
		case 2:
			name = fmt.Sprintf("d%d/f%03d.css", rng.IntN(4), i)
		default:
			name = fmt.Sprintf("top%03d.js", i)
		}
		size := rng.IntN(8 << 10)
		if i%50 == 0 {
			size = 0
		}
		files = append(files, name)
		writeTreeFile(t, dir, name, randBytes(rng, size))
	}
	// Distinct whole-second mtimes, about a month ago.
	base := time.Now().Add(-30 * 24 * time.Hour).Truncate(time.Second)
	for i, f := range files {
		mt := base.Add(time.Duration(i*7) * time.Second)
		if err := os.Chtimes(filepath.Join(dir, filepath.FromSlash(f)), mt, mt); err != nil {
			t.Fatal(err)
		}
	}
	return files
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

func writeTreeFile(t *testing.T, dir, name string, data []byte) {
	t.Helper()
	p := filepath.Join(dir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// treeEntry is what compareTrees compares of one path.
type treeEntry struct {
	dir   bool
	size  int64
	sum   [32]byte
	mtime int64 // unix seconds; files only
}

func scanTree(t *testing.T, root string) map[string]treeEntry {
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
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			out[rel] = treeEntry{dir: true}
			return nil
		}
		if !d.Type().IsRegular() {
			return fmt.Errorf("%s: not a regular file (%v)", rel, d.Type())
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		out[rel] = treeEntry{size: int64(len(data)), sum: sha256.Sum256(data), mtime: fi.ModTime().Unix()}
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", root, err)
	}
	return out
}

// compareTrees fails unless remote holds exactly local's directories and
// files, with the same contents and mtimes (to the second), and no upload
// temp file.
func compareTrees(t *testing.T, local, remote string) {
	t.Helper()
	l, r := scanTree(t, local), scanTree(t, remote)
	var problems []string
	for p, le := range l {
		re, ok := r[p]
		switch {
		case !ok:
			problems = append(problems, "missing remotely: "+p)
		case le.dir != re.dir:
			problems = append(problems, fmt.Sprintf("%s: dir %v locally, %v remotely", p, le.dir, re.dir))
		case le.dir:
		case le.size != re.size || le.sum != re.sum:
			problems = append(problems, fmt.Sprintf("%s: content differs (%d bytes locally, %d remotely)", p, le.size, re.size))
		case le.mtime != re.mtime:
			problems = append(problems, fmt.Sprintf("%s: mtime %s locally, %s remotely", p,
				time.Unix(le.mtime, 0).UTC().Format(time.DateTime), time.Unix(re.mtime, 0).UTC().Format(time.DateTime)))
		}
	}
	for p := range r {
		if _, ok := l[p]; !ok {
			problems = append(problems, "extra remotely: "+p)
		}
		if strings.HasPrefix(filepath.Base(p), agent.TempPrefix) {
			problems = append(problems, "upload temp file left: "+p)
		}
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		if len(problems) > 30 {
			problems = append(problems[:30], fmt.Sprintf("... and %d more", len(problems)-30))
		}
		t.Fatalf("agent tree %s differs from %s (%d local entries, %d remote):\n%s", remote, local, len(l), len(r), strings.Join(problems, "\n"))
	}
}

// noTempFiles fails if any upload temp file is left under root.
func noTempFiles(t *testing.T, root string) {
	t.Helper()
	for _, p := range agenttest.TempFilesUnder(t, root) {
		t.Errorf("upload temp file left: %s", p)
	}
}

// lftp runs one lftp script against the gateway at addr and returns its
// output (with -d, the protocol dialogue).
func lftp(t *testing.T, debug bool, script string) string {
	t.Helper()
	gwtest.RequireTool(t, "lftp")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	args := []string{"-c", script}
	if debug {
		args = append([]string{"-d"}, args...)
	}
	cmd := exec.CommandContext(ctx, "lftp", args...)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir(), "LC_ALL=C.UTF-8")
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		tail := string(out)
		if len(tail) > 8000 {
			tail = "..." + tail[len(tail)-8000:]
		}
		t.Fatalf("lftp %s: %v after %v\n%s", script, err, time.Since(start).Round(time.Millisecond), tail)
	}
	t.Logf("lftp took %v: %s", time.Since(start).Round(time.Millisecond), script[strings.LastIndex(script, ";")+1:])
	return string(out)
}

func lftpOpen(e *env, settings string) string {
	_, port, _ := net.SplitHostPort(e.Addr)
	return "set cmd:fail-exit yes; set net:max-retries 1; set net:timeout 20; " + settings +
		fmt.Sprintf("open -u alice,%s -p %s 127.0.0.1; ", gwtest.Users["alice"], port)
}

func newRand(t *testing.T) *mrand.Rand {
	seed := uint64(time.Now().UnixNano())
	t.Logf("tree seed %d", seed)
	return mrand.New(mrand.NewPCG(seed, 0x75706761746521))
}

// TestInteropLftpMirror uploads a 500-file tree with `lftp mirror -R`,
// then local edits, additions and deletions with `--only-newer --delete`.
func TestInteropLftpMirror(t *testing.T) {
	gwtest.RequireTool(t, "lftp")
	e := start(t, nil)
	local := t.TempDir()
	rng := newRand(t)
	files := makeTree(t, local, rng)
	open := lftpOpen(e, "set ftp:ssl-allow no; ")
	remote := filepath.Join(e.UserDir("alice"), "site")

	lftp(t, false, open+fmt.Sprintf("mirror -R --no-perms %s /site", local))
	compareTrees(t, local, remote)
	e.AgentIdle(t)

	// Local changes: 20 edits (some the same size with a newer mtime), 10
	// additions (some in a new directory), 15 deleted files and one deleted
	// directory.
	gone := "d2/s1/l0"
	var candidates []string
	for _, f := range files {
		if !strings.HasPrefix(f, gone+"/") && !strings.HasPrefix(f, "big/") && f != "d1/s2/l0/c.bin" {
			candidates = append(candidates, f)
		}
	}
	rng.Shuffle(len(candidates), func(i, j int) { candidates[i], candidates[j] = candidates[j], candidates[i] })
	newer := time.Now().Add(-24 * time.Hour).Truncate(time.Second)
	for i, f := range candidates[:20] {
		p := filepath.Join(local, filepath.FromSlash(f))
		old, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		size := len(old)
		if i%2 == 0 || size == 0 {
			size += 1 + rng.IntN(3000) // a new size
		}
		data := randBytes(rng, size)
		if size == len(old) && bytes.Equal(data, old) {
			data[0]++
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		mt := newer.Add(time.Duration(i) * time.Second)
		if err := os.Chtimes(p, mt, mt); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 10 {
		name := fmt.Sprintf("added/new %d.php", i)
		if i >= 6 {
			name = fmt.Sprintf("d0/s0/added%d.txt", i)
		}
		writeTreeFile(t, local, name, randBytes(rng, rng.IntN(5000)))
		mt := newer.Add(time.Duration(100+i) * time.Second)
		if err := os.Chtimes(filepath.Join(local, filepath.FromSlash(name)), mt, mt); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range candidates[20:35] {
		if err := os.Remove(filepath.Join(local, filepath.FromSlash(f))); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.RemoveAll(filepath.Join(local, filepath.FromSlash(gone))); err != nil {
		t.Fatal(err)
	}

	lftp(t, false, open+fmt.Sprintf("mirror -R --only-newer --delete --no-perms %s /site", local))
	compareTrees(t, local, remote)
	for _, f := range candidates[20:35] {
		if _, err := os.Lstat(filepath.Join(remote, filepath.FromSlash(f))); err == nil {
			t.Errorf("%s deleted locally but still in the agent", f)
		}
	}
	if _, err := os.Lstat(filepath.Join(remote, filepath.FromSlash(gone))); err == nil {
		t.Errorf("directory %s deleted locally but still in the agent", gone)
	}
	noTempFiles(t, e.Root)
	e.AgentIdle(t)
}

// TestInteropLftpMirrorFTPS mirrors the tree over explicit FTPS with
// protected data channels and four parallel connections.
func TestInteropLftpMirrorFTPS(t *testing.T) {
	gwtest.RequireTool(t, "lftp")
	pki := testpki.New(t)
	cert, key := pki.Issue(t, "127.0.0.1", testpki.Loopback, false)
	e := start(t, func(c *config.Config) {
		c.FTP.TLS.Cert, c.FTP.TLS.Key = cert, key
	})
	local := t.TempDir()
	makeTree(t, local, newRand(t))
	open := lftpOpen(e, fmt.Sprintf("set ftp:ssl-force yes; set ftp:ssl-protect-data yes; set ssl:ca-file %s; set ssl:verify-certificate yes; ", pki.CAFile))
	out := lftp(t, true, open+fmt.Sprintf("mirror -R --no-perms --parallel=4 %s /site", local))
	for _, want := range []string{"---> AUTH TLS", "---> PROT P"} {
		if !strings.Contains(out, want) {
			t.Errorf("lftp's dialogue lacks %q: the session did not use TLS", want)
		}
	}
	t.Logf("lftp logged in %d times (--parallel=4), sent PROT P %d times", strings.Count(out, "---> USER"), strings.Count(out, "---> PROT P"))
	if strings.Contains(out, "---> USER") && strings.Index(out, "---> USER") < strings.Index(out, "---> AUTH TLS") {
		t.Errorf("lftp sent USER before AUTH TLS")
	}
	compareTrees(t, local, filepath.Join(e.UserDir("alice"), "site"))
	noTempFiles(t, e.Root)
	e.AgentIdle(t)
}
