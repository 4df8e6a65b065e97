package webdav_test

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/upgate/upgate/backend/fstest"
	"github.com/upgate/upgate/internal/gwtest"
)

// The interop tests drive real clients (rclone's webdav backend, curl,
// litmus) against the gateway over HTTPS and check every effect in the
// agent's directory. A missing client skips its test, unless
// UPGATE_REQUIRE_INTEROP=1 (CI) makes that a failure.

// command runs name with args in dir (and env added to the environment),
// bounded by timeout, and returns its combined output and error; a timeout
// fails the test.
func command(t testing.TB, timeout time.Duration, dir string, env []string, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), "LC_ALL=C.UTF-8"), env...)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("%s %q hung: killed after %v:\n%s", filepath.Base(name), args, timeout, out)
	}
	return string(out), err
}

// rcloneEnv configures rclone's remote "dav" for user on e, with vendor.
func rcloneEnv(t testing.TB, e *env, rclone, user, vendor string) []string {
	t.Helper()
	pass, err := command(t, time.Minute, "", nil, rclone, "obscure", gwtest.Users[user])
	if err != nil {
		t.Fatalf("rclone obscure: %v\n%s", err, pass)
	}
	home := t.TempDir()
	return []string{"HOME=" + home, "XDG_CACHE_HOME=" + home, "RCLONE_CONFIG=" + filepath.Join(home, "none.conf"),
		"RCLONE_CONFIG_DAV_TYPE=webdav", "RCLONE_CONFIG_DAV_URL=" + e.URL + "/", "RCLONE_CONFIG_DAV_VENDOR=" + vendor,
		"RCLONE_CONFIG_DAV_USER=" + user, "RCLONE_CONFIG_DAV_PASS=" + strings.TrimSpace(pass), "RCLONE_CA_CERT=" + e.CA,
		"RCLONE_RETRIES=1", "RCLONE_LOW_LEVEL_RETRIES=1"}
}

// tree is a local directory: path -> content, and path -> mtime.
type tree struct {
	files  map[string][]byte
	mtimes map[string]time.Time
}

func (tr tree) write(t testing.TB, dir string) {
	t.Helper()
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	for p, data := range tr.files {
		name := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(name, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(name, tr.mtimes[p], tr.mtimes[p]); err != nil {
			t.Fatal(err)
		}
	}
}

// wantTree fails unless dir holds exactly tr's files, byte for byte, with
// their mtimes to the second.
func wantTree(t testing.TB, dir string, tr tree) {
	t.Helper()
	seen := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		want, ok := tr.files[rel]
		if !ok {
			t.Errorf("%s is on the agent, not in the source", rel)
			return nil
		}
		seen++
		got, err := os.ReadFile(p)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: %d bytes sha256 %s, want sha256 %s (%v)", rel, len(got), sum(got), sum(want), err)
		}
		fi, err := d.Info()
		if err == nil && !fi.ModTime().Truncate(time.Second).Equal(tr.mtimes[rel].Truncate(time.Second)) {
			t.Errorf("%s: mtime %v, want %v", rel, fi.ModTime().UTC(), tr.mtimes[rel].UTC())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if seen != len(tr.files) {
		t.Errorf("the agent holds %d of the source's %d files", seen, len(tr.files))
	}
}

// TestRcloneMirror: rclone sync mirrors a project tree over WebDAV, with
// mtimes (vendor owncloud: X-OC-Mtime), then mirrors its changes,
// deletions included; rclone check finds no difference. A remote of vendor
// other (no mtimes) mirrors by size.
func TestRcloneMirror(t *testing.T) {
	rclone := gwtest.RequireTool(t, "rclone")
	e := startTLS(t, nil)
	env := rcloneEnv(t, e, rclone, "alice", "owncloud")
	rng := rand.New(rand.NewPCG(1, 2))
	tr := tree{files: map[string][]byte{}, mtimes: map[string]time.Time{}}
	base := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	for i := range 30 {
		p := fmt.Sprintf("src/m%d/c%d/f%d.php", i%4, i%7, i)
		if i%10 == 0 {
			p = fmt.Sprintf("f%d.txt", i)
		}
		data := make([]byte, rng.IntN(100000))
		for j := range data {
			data[j] = byte(rng.Uint32())
		}
		tr.files[p] = data
		tr.mtimes[p] = base.Add(time.Duration(i) * time.Hour)
	}
	local := filepath.Join(t.TempDir(), "project")
	tr.write(t, local)
	rc := func(args ...string) string {
		t.Helper()
		out, err := command(t, 2*time.Minute, "", env, rclone, args...)
		if err != nil {
			t.Fatalf("rclone %q: %v\n%s", args, err, out)
		}
		return out
	}
	rc("sync", local, "dav:project")
	if out := rc("check", local, "dav:project"); !strings.Contains(out, "0 differences found") {
		t.Errorf("rclone check after the first sync:\n%s", out)
	}
	wantTree(t, filepath.Join(e.UserDir("alice"), "project"), tr)

	// Edit, delete, add, and drop a whole directory; sync again.
	n := 0
	for p := range tr.files {
		switch {
		case strings.HasPrefix(p, "src/m3/"):
			delete(tr.files, p)
		case n < 5:
			tr.files[p] = append(tr.files[p], "// edited\n"...)
			tr.mtimes[p] = tr.mtimes[p].Add(time.Minute)
		case n < 10:
			delete(tr.files, p)
		}
		n++
	}
	for i := range 5 {
		p := fmt.Sprintf("src/new/n%d.php", i)
		tr.files[p], tr.mtimes[p] = []byte(p), base
	}
	tr.write(t, local)
	rc("sync", local, "dav:project")
	if out := rc("check", local, "dav:project"); !strings.Contains(out, "0 differences found") {
		t.Errorf("rclone check after the second sync:\n%s", out)
	}
	wantTree(t, filepath.Join(e.UserDir("alice"), "project"), tr)
	if _, err := os.Stat(filepath.Join(e.UserDir("alice"), "project", "src", "m3")); err == nil {
		t.Error("rclone sync left a directory the source dropped")
	}

	// Vendor other: rclone sets no mtimes, and compares sizes.
	other := rcloneEnv(t, e, rclone, "bob", "other")
	out, err := command(t, 2*time.Minute, "", other, rclone, "sync", local, "dav:project")
	if err != nil {
		t.Fatalf("rclone sync, vendor other: %v\n%s", err, out)
	}
	if out, err := command(t, 2*time.Minute, "", other, rclone, "check", "--size-only", local, "dav:project"); err != nil || !strings.Contains(out, "0 differences found") {
		t.Errorf("rclone check, vendor other: %v\n%s", err, out)
	}
	e.AgentIdle(t)
}

// TestCurlMethods: the WebDAV methods as curl sends them, over HTTPS.
func TestCurlMethods(t *testing.T) {
	curl := gwtest.RequireTool(t, "curl")
	e := startTLS(t, nil)
	src := filepath.Join(t.TempDir(), "index.php")
	data := fstest.Data(123456, 109)
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		args []string
		code string
	}{
		{[]string{"-X", "MKCOL", e.URL + "/www"}, "201"},
		{[]string{"-T", src, e.URL + "/www/index.php"}, "201"},
		{[]string{"-X", "PROPFIND", "-H", "Depth: 1", e.URL + "/www/"}, "207"},
		{[]string{"-X", "COPY", "-H", "Destination: " + e.URL + "/www/copy.php", e.URL + "/www/index.php"}, "201"},
		{[]string{"-X", "MOVE", "-H", "Destination: " + e.URL + "/www/moved.php", e.URL + "/www/copy.php"}, "201"},
		{[]string{"-X", "DELETE", e.URL + "/www/moved.php"}, "204"},
		{[]string{"-X", "DELETE", e.URL + "/www/moved.php"}, "404"},
		{[]string{"-o", filepath.Join(t.TempDir(), "back"), e.URL + "/www/index.php"}, "200"},
	}
	for _, s := range steps {
		args := append([]string{"-sS", "-o", os.DevNull, "-w", "%{http_code}", "--max-time", "30", "--cacert", e.CA, "-u", "alice:" + gwtest.Users["alice"]}, s.args...)
		out, err := command(t, time.Minute, "", nil, curl, args...)
		if err != nil || !strings.HasSuffix(strings.TrimSpace(out), s.code) {
			t.Fatalf("curl %q: %v, status %q, want %s", s.args, err, out, s.code)
		}
	}
	wantFile(t, e, "alice", "www/index.php", data)
	wantOnly(t, e, "alice", "www")
	e.AgentIdle(t)
}

// litmusExpected are the litmus tests upgate fails, each on purpose or
// for a limit of x/net/webdav. Tests litmus skips after one of them are
// not listed. Any other failure fails TestLitmus, and so does one of these
// passing (the list is then stale).
var litmusExpected = map[string]string{
	"props/propfind_invalid2": "x/net/webdav accepts an undeclared namespace prefix in a PROPFIND body",
	"props/propset":           "no dead property is stored: PROPPATCH sets only mtimes (see the README)",
	"props/propmanyns":        "no dead property is stored",
	"props/propget":           "no dead property is stored",
	"locks/owner_modify":      "no dead property is stored (the test PROPPATCHes one under a lock)",
	"locks/lock_shared":       "x/net/webdav grants exclusive locks only (501)",
}

// TestLitmus runs litmus, the WebDAV server test suite (Debian's litmus
// 0.13), against the frontend: every test passes but the ones in
// litmusExpected.
func TestLitmus(t *testing.T) {
	litmus := gwtest.RequireTool(t, "litmus")
	e := start(t, nil)
	e.do(t, "alice", "MKCOL", "/litmus", nil).want(t, "MKCOL", 201)
	line := regexp.MustCompile(`(\d+)\. ([a-z0-9_]+)\.*\s+(pass|FAIL|SKIPPED)`)
	failed := make(map[string]string)
	for _, suite := range []string{"basic", "copymove", "props", "locks", "http"} {
		dir := t.TempDir() // litmus writes debug.log where it runs
		out, _ := command(t, 2*time.Minute, dir, []string{"TESTS=" + suite, "HOME=" + dir}, litmus, e.URL+"/litmus/", "alice", gwtest.Users["alice"])
		passed := 0
		for _, l := range strings.Split(out, "\n") {
			m := line.FindAllStringSubmatch(l, -1)
			if len(m) == 0 {
				continue
			}
			last := m[len(m)-1]
			switch name := suite + "/" + last[2]; last[3] {
			case "pass":
				passed++
			case "FAIL":
				failed[name] = strings.TrimSpace(l[strings.Index(l, "FAIL"):])
			}
		}
		if passed == 0 {
			t.Errorf("litmus %s: no test passed:\n%s", suite, out)
		}
		t.Logf("litmus %s: %d passed", suite, passed)
	}
	for name, why := range failed {
		if _, ok := litmusExpected[name]; !ok {
			t.Errorf("litmus %s: %s", name, why)
		}
	}
	for name, why := range litmusExpected {
		if _, ok := failed[name]; !ok {
			t.Errorf("litmus %s passes now (it was expected to fail: %s): update litmusExpected and the README", name, why)
		}
	}
}
