package agent_test

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/afero"

	"github.com/upgate/upgate/backend"
	"github.com/upgate/upgate/internal/agenttest"
)

// searchOnlyEnv names, in the child TestSearchOnlyDirectories starts, the
// agent root its parent prepared.
const searchOnlyEnv = "UPGATE_TEST_SEARCH_ONLY_ROOT"

// nobody is the user the child runs as: the kernel grants root every
// directory, so only another user meets a directory it may search but
// not read.
const nobody = 65534

// TestSearchOnlyDirectories: paths through a directory the agent's user
// may search but not read (root's 0711, as a home directory often is; its
// own 0300) work as open(2) lets them work, and so as on sftp-server and
// vsftpd: a user's scope below one, and stat, read, upload, rename, mkdir,
// chmod, times, links and removal there. Listing such a directory is
// refused, as readdir(2) is. os.Root alone refused every path through one
// (golang/go#81605); the agent's root then takes openat2 (root.go). The
// agent runs as nobody in a child process of the test binary, over a tree
// made here as root.
func TestSearchOnlyDirectories(t *testing.T) {
	if dir := os.Getenv(searchOnlyEnv); dir != "" {
		searchOnlyChild(t, dir)
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root, to make the tree and run the agent as another user")
	}
	top := t.TempDir()
	// t.TempDir's two levels are 0700: nobody must pass them.
	for _, d := range []string{filepath.Dir(top), top} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	root := filepath.Join(top, "root")
	mk := func(p string, mode fs.FileMode, owner int) {
		t.Helper()
		if err := os.Mkdir(filepath.Join(root, p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(filepath.Join(root, p), owner, owner); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(root, p), mode); err != nil {
			t.Fatal(err)
		}
	}
	put := func(p, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(root, p), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(filepath.Join(root, p), nobody, nobody); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	mk("home", 0o700, 0)
	mk("home/alice", 0o755, nobody)
	put("home/alice/f", "alice's file\n")
	mk("home/alice/app", 0o755, nobody)
	put("home/alice/app/index.php", "<?php echo 1;\n")
	if err := os.Chmod(filepath.Join(root, "home"), 0o711); err != nil {
		t.Fatal(err)
	}
	mk("sticky", fs.ModeSticky|0o777, 0)
	if err := os.WriteFile(filepath.Join(root, "sticky/roots"), []byte("root's"), 0o666); err != nil {
		t.Fatal(err)
	}
	put("sticky/nobodys", "nobody's")
	// Directories nobody may read but not search (0600), to move up:
	// r600 holds a file, r600l a link (whose target needs a search); in
	// alice's scope (below root's 0711 home: the agent's second way
	// through directories) and in pub's (os.Root's).
	mk("pub", 0o755, nobody)
	for _, top := range []string{"home/alice", "pub"} {
		mk(top+"/deep", 0o755, nobody)
		for _, d := range []string{"r600", "r600l"} {
			mk(top+"/deep/"+d, 0o755, nobody)
			put(top+"/deep/"+d+"/f", "F")
		}
		if err := os.Symlink("f", filepath.Join(root, top, "deep/r600l/l")); err != nil {
			t.Fatal(err)
		}
		if err := os.Lchown(filepath.Join(root, top, "deep/r600l/l"), nobody, nobody); err != nil {
			t.Fatal(err)
		}
		for _, d := range []string{"r600", "r600l"} {
			if err := os.Chmod(filepath.Join(root, top, "deep", d), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	mk("d300", 0o700, nobody)
	put("d300/f", "F300")
	if err := os.Chmod(filepath.Join(root, "d300"), 0o300); err != nil {
		t.Fatal(err)
	}

	// The child is this test binary, copied where nobody may run it (the
	// go tool's build directory is root's 0700).
	bin := filepath.Join(top, "agent.test")
	src, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, src, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^TestSearchOnlyDirectories$", "-test.v", "-test.timeout=60s")
	cmd.Env = append(os.Environ(), searchOnlyEnv+"="+root, "HOME=/", "TMPDIR="+os.TempDir())
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("--- PASS: TestSearchOnlyDirectories")) {
		t.Fatalf("the child, as nobody: %v\n%s", err, out)
	}

	// What the child left, seen as root.
	want := map[string]string{
		"home/alice/f":             "alice's file\n",
		"home/alice/app/index.php": "<?php echo 2;\n",
		"home/alice/app/new.php":   "<?php new();\n",
		"d300/f":                   "F300",
		"d300/g":                   "G",
	}
	for p, content := range want {
		if got, err := os.ReadFile(filepath.Join(root, p)); err != nil || string(got) != content {
			t.Errorf("%s: %q, %v; want %q", p, got, err, content)
		}
	}
	for _, d := range []string{"home/alice/r600", "home/alice/deep/r600l", "pub/r600", "pub/deep/r600l"} {
		if fi, err := os.Lstat(filepath.Join(root, d)); err != nil || !fi.IsDir() {
			t.Errorf("%s: %v, want the directory there", d, err)
		}
	}
	for _, gone := range []string{"home/alice/moved", "d300/sub", "home/alice/l", "home/alice/deep/r600", "home/alice/r600l", "pub/deep/r600", "pub/r600l"} {
		if _, err := os.Lstat(filepath.Join(root, gone)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: %v, want it removed", gone, err)
		}
	}
	if fi, err := os.Stat(filepath.Join(root, "home/alice/app/new.php")); err != nil || fi.Mode().Perm() != 0o600 ||
		!fi.ModTime().Equal(time.Unix(1700000000, 0)) {
		t.Errorf("new.php: %v, %v; want mode 0600, mtime 1700000000", fi, err)
	}
	if tmp := agenttest.TempFilesUnder(t, root); len(tmp) != 0 {
		t.Errorf("temp files left: %q", tmp)
	}
}

// searchOnlyChild is TestSearchOnlyDirectories's agent side, as nobody,
// over the tree its parent made at dir.
func searchOnlyChild(t *testing.T, dir string) {
	if os.Geteuid() != nobody {
		t.Fatalf("the child runs as %d, not nobody", os.Geteuid())
	}
	a := agenttest.Start(t, dir)
	mtime := time.Unix(1700000000, 0)
	read := func(fsys afero.Fs, p string) string {
		t.Helper()
		f, err := fsys.Open(p)
		if err != nil {
			t.Fatalf("open %s: %v", p, err)
		}
		defer f.Close()
		b, err := io.ReadAll(f)
		if err != nil {
			t.Fatalf("read %s: %v", p, err)
		}
		return string(b)
	}
	write := func(fsys afero.Fs, p, content string) {
		t.Helper()
		f, err := fsys.Create(p)
		if err != nil {
			t.Fatalf("create %s: %v", p, err)
		}
		if _, err := f.Write([]byte(content)); err != nil {
			t.Fatalf("write %s: %v", p, err)
		}
		if err := f.Close(); err != nil {
			t.Fatalf("close %s: %v", p, err)
		}
	}
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}

	// alice's scope lies below root's 0711 home.
	alice := a.Fs(t, "home/alice")
	if got := read(alice, "/f"); got != "alice's file\n" {
		t.Errorf("alice /f: %q", got)
	}
	write(alice, "/app/index.php", "<?php echo 2;\n") // an upload replacing a file
	write(alice, "/app/new.php", "<?php new();\n")
	must("chmod", alice.Chmod("/app/new.php", 0o600))
	must("chtimes", alice.Chtimes("/app/new.php", mtime, mtime))
	must("mkdir", alice.Mkdir("/moving", 0o755))
	must("rename", alice.Rename("/moving", "/moved"))
	must("symlink", alice.SymlinkIfPossible("app/index.php", "/l"))
	if target, err := alice.ReadlinkIfPossible("/l"); err != nil || target != "app/index.php" {
		t.Errorf("readlink /l: %q, %v", target, err)
	}
	if got := read(alice, "/l"); got != "<?php echo 2;\n" {
		t.Errorf("read through /l: %q", got)
	}
	must("remove link", alice.Remove("/l"))
	must("rmdir", alice.Remove("/moved"))
	// Moved up: a 0600 directory of files as rename(2) moves it (its
	// entries' kinds read without a search); one holding a link is
	// refused, the link's target unreadable.
	for name, fsys := range map[string]afero.Fs{"alice": alice, "pub": a.Fs(t, "pub")} {
		must("rename a 0600 directory up in "+name, fsys.Rename("/deep/r600", "/r600"))
		if err := fsys.Rename("/deep/r600l", "/r600l"); err == nil || !strings.Contains(err.Error(), "cannot check the link") {
			t.Errorf("%s: rename a 0600 directory holding a link up: %v, want it refused", name, err)
		}
	}
	names, err := afero.ReadDir(alice, "/app")
	must("readdir /app", err)
	var got []string
	for _, fi := range names {
		got = append(got, fi.Name()+" "+fi.Mode().String())
	}
	if want := []string{"index.php -rw-r--r--", "new.php -rw-------"}; !slices.Equal(got, want) {
		t.Errorf("readdir /app: %q, want %q", got, want)
	}

	// The whole root: through home (0711) by name, into d300 (0300).
	all := a.Fs(t, "")
	fi, err := all.Stat("/home/alice/f")
	if err != nil || fi.Size() != int64(len("alice's file\n")) {
		t.Errorf("stat /home/alice/f: %v, %v", fi, err)
	}
	if _, err := afero.ReadDir(all, "/home"); !errors.Is(err, fs.ErrPermission) {
		t.Errorf("readdir /home (0711, root's): %v, want a permission error", err)
	}
	if got := read(all, "/d300/f"); got != "F300" {
		t.Errorf("/d300/f: %q", got)
	}
	write(all, "/d300/g", "G")
	must("mkdir d300/sub", all.Mkdir("/d300/sub", 0o755))
	must("rmdir d300/sub", all.Remove("/d300/sub"))
	if _, err := afero.ReadDir(all, "/d300"); !errors.Is(err, fs.ErrPermission) {
		t.Errorf("readdir /d300 (0300): %v, want a permission error", err)
	}

	// MayChangeIn (SessionRequest.may_change_in) asks the directory's
	// write and search bits of nobody, as link(2) and rename(2) do:
	// root's 0711 home refuses, nobody's own 0300 allows, a scope's own
	// directory is not the session's to change (its parent lies outside
	// it: the agent's answer, GRPCFs sends the request), and a missing
	// directory or a file on the way answer as the lookup does. In a
	// sticky directory only what nobody owns, or nothing yet, may change.
	for _, c := range []struct {
		fsys *backend.GRPCFs
		name string
		want error
	}{
		{all, "/home/x", syscall.EACCES},
		{all, "/home/alice/x", nil},
		{all, "/d300/g", nil},
		{alice, "/app/new.php", nil},
		{alice, "/", syscall.EACCES},
		{alice, "/missing/x", syscall.ENOENT},
		{alice, "/f/x", syscall.ENOTDIR},
		{all, "/sticky/roots", syscall.EPERM},
		{all, "/sticky/nobodys", nil},
		{all, "/sticky/new", nil},
		{all, "/", syscall.EACCES},
	} {
		err := c.fsys.MayChangeIn(c.name)
		if c.want == nil && err != nil || c.want != nil && !errors.Is(err, c.want) {
			t.Errorf("MayChangeIn(%s) of %s: %v, want %v", c.name, c.fsys.Name(), err, c.want)
		}
	}
	a.WaitIdle(t, 5*time.Second)
}
