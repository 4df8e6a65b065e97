package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// rootFixture is a tree of files, directories and links of every kind
// root's two ways must answer alike for: inside, dangling, looping,
// climbing out, absolute.
func rootFixture(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	for _, err := range []error{
		os.MkdirAll(filepath.Join(d, "dir/sub"), 0o755),
		os.WriteFile(filepath.Join(d, "dir/f"), []byte("x"), 0o644),
		os.WriteFile(filepath.Join(d, "f"), []byte("x"), 0o644),
		os.Mkdir(filepath.Join(d, "empty"), 0o755),
		os.Symlink("dir", filepath.Join(d, "ldir")),
		os.Symlink("dir/f", filepath.Join(d, "lf")),
		os.Symlink("nothere", filepath.Join(d, "dang")),
		os.Symlink("loop", filepath.Join(d, "loop")),
		os.Symlink("../..", filepath.Join(d, "dir/up")),
		os.Symlink("/etc", filepath.Join(d, "abs")),
		os.Symlink("dir/../f", filepath.Join(d, "dotdot")),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	return d
}

// answer renders a call's result: its errno (or "escape"), or what it
// returned.
func answer(v any, err error) string {
	if err != nil {
		if isEscape(err) {
			return "ERR escape"
		}
		var errno syscall.Errno
		if errors.As(err, &errno) {
			return "ERR " + errno.Error()
		}
		return "ERR " + err.Error()
	}
	if fi, ok := v.(fs.FileInfo); ok {
		return fmt.Sprintf("OK %s %v %d", fi.Name(), fi.Mode(), fi.Size())
	}
	return fmt.Sprintf("OK %v", v)
}

// TestRootWaysAgree: every call of root answers through openat2 alone
// (beneath, the way below a directory os.Root cannot open) as through
// os.Root, for every kind of name in rootFixture, each call on a fresh
// tree: the second way changes where a path works, not what a call does.
func TestRootWaysAgree(t *testing.T) {
	names := []string{".", "f", "dir", "dir/f", "dir/sub", "ldir", "ldir/f", "lf", "dang", "loop", "loop/x", "dir/up",
		"dir/up/x", "abs", "abs/passwd", "dotdot", "f/x", "nothere", "nothere/x", "empty", "ldir/new", "dang/x"}
	closed := func(f *os.File, err error) string {
		if err == nil {
			f.Close()
		}
		return answer(nil, err)
	}
	calls := []struct {
		name string
		call func(rt *root, n string) string
	}{
		{"Stat", func(rt *root, n string) string { return answer(rt.Stat(n)) }},
		{"Lstat", func(rt *root, n string) string { return answer(rt.Lstat(n)) }},
		{"Readlink", func(rt *root, n string) string { return answer(rt.Readlink(n)) }},
		{"Open", func(rt *root, n string) string { return closed(rt.OpenFile(n, os.O_RDONLY, 0)) }},
		{"Create", func(rt *root, n string) string { return closed(rt.OpenFile(n, os.O_WRONLY|os.O_CREATE, 0o644)) }},
		{"CreateExcl", func(rt *root, n string) string {
			return closed(rt.OpenFile(n, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644))
		}},
		{"Mkdir", func(rt *root, n string) string { return answer(nil, rt.Mkdir(n, 0o755)) }},
		{"MkdirAll", func(rt *root, n string) string { return answer(nil, rt.MkdirAll(n, 0o755)) }},
		{"MkdirAll-below", func(rt *root, n string) string { return answer(nil, rt.MkdirAll(n+"/a/b", 0o755)) }},
		{"Remove", func(rt *root, n string) string { return answer(nil, rt.Remove(n)) }},
		{"RemoveAll", func(rt *root, n string) string { return answer(nil, rt.RemoveAll(n)) }},
		{"Chmod", func(rt *root, n string) string { return answer(nil, rt.Chmod(n, 0o700)) }},
		{"Chtimes", func(rt *root, n string) string { return answer(nil, rt.Chtimes(n, time.Unix(1, 0), time.Time{})) }},
		{"Symlink", func(rt *root, n string) string { return answer(nil, rt.Symlink("f", n)) }},
		{"Link-from", func(rt *root, n string) string { return answer(nil, rt.Link(n, "newlink")) }},
		{"Link-to", func(rt *root, n string) string { return answer(nil, rt.Link("f", n)) }},
		{"OpenRoot", func(rt *root, n string) string {
			sub, err := rt.OpenRoot(n)
			if err == nil {
				sub.Close()
			}
			return answer(nil, err)
		}},
	}
	for _, c := range calls {
		for _, n := range names {
			var got [2]string
			for i, beneathOnly := range []bool{false, true} {
				rt, err := openRoot(rootFixture(t))
				if err != nil {
					t.Fatal(err)
				}
				if beneathOnly {
					if rt.b.dir == nil {
						t.Skip("no openat2 here")
					}
					rt.r.Close()
					rt.r = nil
				}
				got[i] = c.call(rt, n)
				rt.Close()
			}
			if got[0] != got[1] {
				t.Errorf("%s(%q): os.Root %s, openat2 %s", c.name, n, got[0], got[1])
			}
		}
	}
}

// TestRemoveAllBeneathStaysPut: RemoveAll through openat2 alone goes on
// below its top directory through the descriptors it opened, so that a
// directory inside it swapped for a link (to another directory of the
// root) while it runs is not followed: what the link leads to stays. A
// first version resolved every entry's path from the root again, and
// emptied the other directory in most runs (a review's race).
func TestRemoveAllBeneathStaysPut(t *testing.T) {
	const runs, files = 10, 1000
	for run := range runs {
		d := t.TempDir()
		for _, dir := range []string{"trash/sub", "precious"} {
			if err := os.MkdirAll(filepath.Join(d, dir), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		for i := range files {
			n := fmt.Sprintf("n%04d", i)
			for _, p := range []string{filepath.Join(d, "trash/sub", n), filepath.Join(d, "precious", n)} {
				if err := os.WriteFile(p, []byte("keep"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
		rt, err := openRoot(d)
		if err != nil {
			t.Fatal(err)
		}
		if rt.b.dir == nil {
			t.Skip("no openat2 here")
		}
		rt.r.Close()
		rt.r = nil
		swapped := make(chan struct{})
		go func() {
			defer close(swapped)
			// Once RemoveAll has begun emptying trash/sub, swap it
			// for a link to precious (bounded: it may be done first).
			deadline := time.Now().Add(5 * time.Second)
			for time.Now().Before(deadline) {
				if _, err := os.Lstat(filepath.Join(d, "trash/sub/n0000")); err != nil {
					break
				}
			}
			_ = os.Rename(filepath.Join(d, "trash/sub"), filepath.Join(d, "moved"))
			_ = os.Symlink("../precious", filepath.Join(d, "trash/sub"))
		}()
		err = rt.RemoveAll("trash")
		<-swapped
		rt.Close()
		left, rerr := os.ReadDir(filepath.Join(d, "precious"))
		if rerr != nil || len(left) != files {
			t.Fatalf("run %d: RemoveAll(trash) answered %v; precious/ now holds %d of %d files (%v)", run, err, len(left), files, rerr)
		}
	}
}

// TestReopenedHoldsItsFile: the fallback an older kernel takes for chmod
// and times by the second way (no fchmodat2, no utimensat AT_EMPTY_PATH;
// this kernel has both, so it is called here directly) acts on the file it
// held, and on nothing else: not a FIFO (whose open would wait or act),
// not another file swapped in under the name.
func TestReopenedHoldsItsFile(t *testing.T) {
	d := t.TempDir()
	for _, err := range []error{
		os.WriteFile(filepath.Join(d, "f"), []byte("x"), 0o644),
		os.WriteFile(filepath.Join(d, "g"), []byte("y"), 0o644),
		syscall.Mkfifo(filepath.Join(d, "fifo"), 0o644),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	rt, err := openRoot(d)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	if rt.b.dir == nil {
		t.Skip("no openat2 here")
	}
	held := func(name string) int {
		t.Helper()
		fd, err := rt.b.openat2(name, unix.O_PATH, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { syscall.Close(fd) })
		return fd
	}
	chmod := func(m uint32) func(int) error {
		return func(fd int) error { return syscall.Fchmod(fd, m) }
	}
	if err := rt.b.reopened(held("f"), "f", chmod(0o600)); err != nil {
		t.Errorf("f: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(d, "f")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("f after: %v, %v; want 0600", fi, err)
	}
	if err := rt.b.reopened(held("fifo"), "fifo", chmod(0o600)); !errors.Is(err, errNotRegular) {
		t.Errorf("fifo: %v, want errNotRegular", err)
	}
	fd := held("f")
	if err := os.Rename(filepath.Join(d, "g"), filepath.Join(d, "f")); err != nil {
		t.Fatal(err)
	}
	if err := rt.b.reopened(fd, "f", chmod(0o640)); !errors.Is(err, syscall.EAGAIN) {
		t.Errorf("f swapped: %v, want EAGAIN", err)
	}
	if fi, err := os.Stat(filepath.Join(d, "f")); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("the file swapped in: %v, %v; want 0644 untouched", fi, err)
	}
}
