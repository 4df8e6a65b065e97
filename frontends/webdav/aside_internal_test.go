package webdav

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/spf13/afero"

	"github.com/upgate/upgate/backend/memfs"
)

// TestMoveAside drives a MOVE onto a collection as x/net/webdav does
// (RemoveAll of the destination, then Rename) over an in-memory
// filesystem with failures injected where the disk could fail, and
// checks that nothing is lost and nothing is left under the aside name:
// a rename that fails puts the old destination back, unless another
// session made a file there meanwhile, which stays (a review); an old
// destination that cannot be removed once the rename is done undoes the
// move, with the removal's error.
func TestMoveAside(t *testing.T) {
	setup := func(t *testing.T) (*memfs.FS, *fileSystem, context.Context) {
		t.Helper()
		m := memfs.New(memfs.Options{})
		for _, d := range []string{"/src", "/dst"} {
			if err := m.Mkdir(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		for p, data := range map[string]string{"/src/new": "new", "/dst/old": "old"} {
			if err := afero.WriteFile(m, p, []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		q := &request{method: "MOVE", path: "/src", dst: "/dst", deep: true}
		return m, &fileSystem{fs: m, log: slog.New(slog.DiscardHandler)}, context.WithValue(context.Background(), requestKey{}, q)
	}
	read := func(t *testing.T, m *memfs.FS, p string) string {
		t.Helper()
		b, err := afero.ReadFile(m, p)
		if err != nil {
			return "(" + err.Error() + ")"
		}
		return string(b)
	}
	asides := func(t *testing.T, m *memfs.FS) []string {
		t.Helper()
		names, err := afero.ReadDir(m, "/")
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, fi := range names {
			if strings.HasPrefix(fi.Name(), asidePrefix) {
				out = append(out, fi.Name())
			}
		}
		return out
	}

	t.Run("done", func(t *testing.T) {
		m, f, ctx := setup(t)
		if err := f.RemoveAll(ctx, "/dst"); err != nil {
			t.Fatal(err)
		}
		if err := f.Rename(ctx, "/src", "/dst"); err != nil {
			t.Fatal(err)
		}
		if got := read(t, m, "/dst/new"); got != "new" {
			t.Errorf("/dst/new: %s", got)
		}
		if a := asides(t, m); len(a) != 0 {
			t.Errorf("left aside: %v", a)
		}
	})

	t.Run("rename fails", func(t *testing.T) {
		m, f, ctx := setup(t)
		m.Inject(memfs.Fault{Op: memfs.OpRename, Path: "/src", Err: syscall.EXDEV})
		if err := f.RemoveAll(ctx, "/dst"); err != nil {
			t.Fatal(err)
		}
		if err := f.Rename(ctx, "/src", "/dst"); err == nil || !strings.Contains(err.Error(), "cross-device") {
			t.Fatalf("rename: %v, want EXDEV", err)
		}
		if got, old := read(t, m, "/src/new"), read(t, m, "/dst/old"); got != "new" || old != "old" {
			t.Errorf("/src/new %s, /dst/old %s: want both where they were", got, old)
		}
		if a := asides(t, m); len(a) != 0 {
			t.Errorf("left aside: %v", a)
		}
	})

	t.Run("rename fails, destination taken meanwhile", func(t *testing.T) {
		m, f, ctx := setup(t)
		// The old destination a file, which a plain rename back would
		// put over the other session's.
		if err := m.RemoveAll("/dst"); err != nil {
			t.Fatal(err)
		}
		if err := afero.WriteFile(m, "/dst", []byte("old"), 0o644); err != nil {
			t.Fatal(err)
		}
		m.Inject(memfs.Fault{Op: memfs.OpRename, Path: "/src", Func: func(memfs.Op, string) error {
			if err := afero.WriteFile(m, "/dst", []byte("theirs"), 0o644); err != nil {
				t.Error(err)
			}
			return syscall.ENOTDIR
		}})
		if err := f.RemoveAll(ctx, "/dst"); err != nil {
			t.Fatal(err)
		}
		if err := f.Rename(ctx, "/src", "/dst"); err == nil {
			t.Fatal("rename answered nil")
		}
		if got := read(t, m, "/dst"); got != "theirs" {
			t.Errorf("/dst: %s, want the other session's file", got)
		}
		a := asides(t, m)
		if len(a) != 1 || read(t, m, "/"+a[0]) != "old" {
			t.Errorf("asides %v: want the old destination kept there", a)
		}
	})

	t.Run("old destination cannot be removed", func(t *testing.T) {
		m, f, ctx := setup(t)
		m.Inject(memfs.Fault{Op: memfs.OpRemove, Path: "/" + asidePrefix + "*", Err: syscall.EPERM})
		if err := f.RemoveAll(ctx, "/dst"); err != nil {
			t.Fatal(err)
		}
		if err := f.Rename(ctx, "/src", "/dst"); err == nil || !strings.Contains(err.Error(), "not permitted") {
			t.Fatalf("rename: %v, want the removal's EPERM", err)
		}
		if got, old := read(t, m, "/src/new"), read(t, m, "/dst/old"); got != "new" || old != "old" {
			t.Errorf("/src/new %s, /dst/old %s: want the move undone", got, old)
		}
		if a := asides(t, m); len(a) != 0 {
			t.Errorf("left aside: %v", a)
		}
	})

	t.Run("source gone", func(t *testing.T) {
		m, f, ctx := setup(t)
		if err := m.RemoveAll("/src"); err != nil {
			t.Fatal(err)
		}
		if err := f.RemoveAll(ctx, "/dst"); !os.IsNotExist(err) {
			t.Fatalf("RemoveAll: %v, want ENOENT", err)
		}
		if old := read(t, m, "/dst/old"); old != "old" {
			t.Errorf("/dst/old %s", old)
		}
	})
}
