package backend_test

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/afero"

	"github.com/upgate/upgate/backend"
	"github.com/upgate/upgate/backend/fstest"
	"github.com/upgate/upgate/backend/memfs"
	"github.com/upgate/upgate/internal/agenttest"
)

// TestConformanceMountFs runs the suite against a mount table: "/" on one
// agent with "/api" on another.
func TestConformanceMountFs(t *testing.T) {
	web, api := agenttest.Start(t, ""), agenttest.Start(t, "")
	fstest.Run(t, fstest.Config{
		New: func(t *testing.T) afero.Fs {
			root := filepath.Base(t.Name())
			os.MkdirAll(filepath.Join(web.Dir, root), 0o755)
			os.MkdirAll(filepath.Join(api.Dir, root), 0o755)
			m, err := backend.NewMountFs([]backend.Mount{{Path: "/", Fs: web.Fs(t, root)}, {Path: "/api", Fs: api.Fs(t, root)}})
			if err != nil {
				t.Fatal(err)
			}
			return m
		},
		AfterEach: func(t *testing.T) { web.WaitIdle(t, 10*time.Second); api.WaitIdle(t, 10*time.Second) },
		Short:     true,
	})
}

func names(t *testing.T, fsys afero.Fs, dir string) []string {
	t.Helper()
	d, err := fsys.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	n, err := d.Readdirnames(-1)
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(n)
	return n
}

func TestMountTable(t *testing.T) {
	web, api := agenttest.Start(t, ""), agenttest.Start(t, "")
	m, err := backend.NewMountFs([]backend.Mount{{Path: "/", Fs: web.Fs(t, "")}, {Path: "/srv/api", Fs: api.Fs(t, "")}})
	if err != nil {
		t.Fatal(err)
	}
	fstest.WriteFile(t, m, "/index.php", []byte("web"))
	if err := m.MkdirAll("/srv", 0o755); err != nil {
		t.Fatal(err)
	}
	fstest.WriteFile(t, m, "/srv/api/app.php", []byte("api"))
	if got, _ := os.ReadFile(filepath.Join(api.Dir, "app.php")); string(got) != "api" {
		t.Fatalf("a file under the mount point landed elsewhere: %q", got)
	}
	if _, err := os.Stat(filepath.Join(web.Dir, "srv", "api", "app.php")); !os.IsNotExist(err) {
		t.Fatalf("a file under the mount point is on the parent mount too: %v", err)
	}
	// Listing the parent shows the mount point, as a directory.
	if got := names(t, m, "/srv"); len(got) != 1 || got[0] != "api" {
		t.Fatalf("listing /srv: %v", got)
	}
	if fi, err := m.Stat("/srv/api"); err != nil || !fi.IsDir() || fi.Name() != "api" {
		t.Fatalf("stat of the mount point: %v %v", fi, err)
	}
	// Across mounts: EXDEV, nothing moves.
	if err := m.Rename("/index.php", "/srv/api/index.php"); !errors.Is(err, syscall.EXDEV) {
		t.Fatalf("rename across mounts: %v, want EXDEV", err)
	}
	if err := m.Rename("/srv/api/app.php", "/srv/api/v2.php"); err != nil {
		t.Fatalf("rename within a mount: %v", err)
	}
	// Mount points stay.
	if err := m.Remove("/srv/api"); !errors.Is(err, syscall.EBUSY) {
		t.Errorf("remove of a mount point: %v, want EBUSY", err)
	}
	if err := m.RemoveAll("/srv"); !errors.Is(err, syscall.EBUSY) {
		t.Errorf("remove of a directory holding a mount point: %v, want EBUSY", err)
	}
	if err := m.Rename("/srv/api", "/elsewhere"); !errors.Is(err, syscall.EBUSY) {
		t.Errorf("rename of a mount point: %v, want EBUSY", err)
	}
	// By kind (SFTP's REMOVE and RMDIR): a mount point is a directory,
	// and what holds one is not removed, whatever the parent mount has
	// there (a file on its disk, hidden by the mount table).
	if err := backend.RemoveFile(m, "/srv/api"); !errors.Is(err, syscall.EISDIR) {
		t.Errorf("RemoveFile of a mount point: %v, want EISDIR", err)
	}
	if err := backend.RemoveDir(m, "/srv/api"); !errors.Is(err, syscall.EBUSY) {
		t.Errorf("RemoveDir of a mount point: %v, want EBUSY", err)
	}
	if err := backend.RemoveDir(m, "/srv"); !errors.Is(err, syscall.EBUSY) {
		t.Errorf("RemoveDir of a directory holding a mount point: %v, want EBUSY", err)
	}
	m2, err := backend.NewMountFs([]backend.Mount{{Path: "/", Fs: web.Fs(t, "")}, {Path: "/held/api", Fs: api.Fs(t, "")}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(web.Dir, "held"), []byte("a file under a mount point's parent"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := backend.RemoveFile(m2, "/held"); err == nil {
		t.Errorf("RemoveFile of a path holding a mount point succeeded")
	}
	if _, err := os.Stat(filepath.Join(web.Dir, "held")); err != nil {
		t.Errorf("the parent mount's file under the mount point: %v, want it kept", err)
	}
	// Symlinks stay inside their mount.
	if err := m.SymlinkIfPossible("/index.php", "/srv/api/link"); !errors.Is(err, syscall.EXDEV) {
		t.Errorf("symlink into another mount: %v, want EXDEV", err)
	}
	if err := m.SymlinkIfPossible("/srv/api/v2.php", "/srv/api/link"); err != nil {
		t.Fatalf("symlink within a mount: %v", err)
	}
	if got := string(fstest.ReadFile(t, m, "/srv/api/link")); got != "api" {
		t.Fatalf("read through the link: %q", got)
	}
	if target, _ := os.Readlink(filepath.Join(api.Dir, "link")); target != "v2.php" {
		t.Fatalf("link target on the agent %q, want a relative v2.php", target)
	}
}

func TestMountTableSyntheticRoot(t *testing.T) {
	web, api := agenttest.Start(t, ""), agenttest.Start(t, "")
	m, err := backend.NewMountFs([]backend.Mount{{Path: "/web", Fs: web.Fs(t, "")}, {Path: "/api", Fs: backend.ReadOnly(api.Fs(t, ""))}})
	if err != nil {
		t.Fatal(err)
	}
	if got := names(t, m, "/"); len(got) != 2 || got[0] != "api" || got[1] != "web" {
		t.Fatalf("listing /: %v", got)
	}
	if fi, err := m.Stat("/"); err != nil || !fi.IsDir() {
		t.Fatalf("stat /: %v %v", fi, err)
	}
	if _, err := m.Create("/loose.txt"); err == nil {
		t.Error("created a file outside every mount")
	}
	if err := m.Mkdir("/new", 0o755); !errors.Is(err, syscall.EROFS) {
		t.Errorf("mkdir outside every mount: %v, want EROFS", err)
	}
	if err := m.Mkdir("/web", 0o755); !errors.Is(err, os.ErrExist) {
		t.Errorf("mkdir of a mount point: %v, want ErrExist", err)
	}
	if _, err := m.Stat("/nowhere"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stat outside every mount: %v", err)
	}
	fstest.WriteFile(t, m, "/web/a.txt", []byte("a"))
	if _, err := m.Create("/api/a.txt"); !errors.Is(err, os.ErrPermission) {
		t.Errorf("write to a read-only mount: %v, want a permission error", err)
	}
	if entries, _ := os.ReadDir(api.Dir); len(entries) != 0 {
		t.Errorf("the read-only mount's agent dir changed: %v", entries)
	}

	// The root above the mounts has no capacity and takes nothing: a
	// read-only file system with no blocks (sshfs asks it for df); a
	// read-only mount is its agent's file system, read-only.
	ctx := t.Context()
	if st, err := backend.StatFS(ctx, m, "/"); err != nil || !st.ReadOnly || st.Blocks != 0 || st.BlockSize == 0 || st.NameMax == 0 {
		t.Errorf("statfs /: %+v, %v; want read-only, no blocks, a block size and a longest name", st, err)
	}
	web1, err := backend.StatFS(ctx, m, "/web/a.txt")
	if err != nil || web1.ReadOnly || web1.Blocks == 0 {
		t.Errorf("statfs /web/a.txt: %+v, %v; want the agent's writable file system", web1, err)
	}
	if st, err := backend.StatFS(ctx, m, "/api"); err != nil || !st.ReadOnly || st.Blocks != web1.Blocks {
		t.Errorf("statfs /api (a read-only mount): %+v, %v; want the agent's file system (%d blocks), read-only", st, err, web1.Blocks)
	}
	if _, err := backend.StatFS(ctx, m, "/nowhere"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("statfs outside every mount: %v, want ErrNotExist", err)
	}
}

// TestMountReaddirPagesStayFull: a directory read page by page through a
// mount table, where a mount point hides an entry of the parent, gives
// full pages until the last (FTP and SFTP take a short page for the end)
// and every entry once.
func TestMountReaddirPagesStayFull(t *testing.T) {
	root, api := memfs.New(memfs.Options{}), memfs.New(memfs.Options{})
	for _, n := range []string{"a", "b", "c", "d", "e"} {
		fstest.WriteFile(t, root, "/"+n, []byte(n))
	}
	m, err := backend.NewMountFs([]backend.Mount{{Path: "/", Fs: root}, {Path: "/b", Fs: api}})
	if err != nil {
		t.Fatal(err)
	}
	d, err := m.Open("/")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var got []string
	short := false
	for range 10 {
		page, err := d.Readdir(2)
		if short && len(page) > 0 {
			t.Fatalf("entries %v after a short page (%v before it): callers stop at a short page", page, got)
		}
		for _, fi := range page {
			got = append(got, fi.Name())
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		short = len(page) < 2
	}
	sort.Strings(got)
	if want := []string{"a", "b", "c", "d", "e"}; !slices.Equal(got, want) {
		t.Fatalf("listed %v, want %v", got, want)
	}
}

// searchFs refuses to let its user search the directories named
// "closed", as an agent running as a user without search permission on
// them does (DirSearcher).
type searchFs struct{ *memfs.FS }

func (s searchFs) StatSearch(name string) (os.FileInfo, error) {
	fi, err := s.Stat(name)
	if err == nil && fi.IsDir() && filepath.Base(name) == "closed" {
		return nil, &os.PathError{Op: "chdir", Path: name, Err: syscall.EACCES}
	}
	return fi, err
}

// TestStatSearchForwarded: DirSearcher passes through the layers a
// session's filesystem is made of (View over MountFs over readOnly), each
// mapping the path, and is Stat where the filesystem below has none.
func TestStatSearchForwarded(t *testing.T) {
	mk := func() *memfs.FS {
		m := memfs.New(memfs.Options{})
		for _, d := range []string{"/open", "/closed"} {
			if err := m.Mkdir(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		return m
	}
	plain := mk()
	m, err := backend.NewMountFs([]backend.Mount{
		{Path: "/", Fs: searchFs{mk()}},
		{Path: "/ro", Fs: backend.ReadOnly(searchFs{mk()})},
		{Path: "/x/plain", Fs: plain},
	})
	if err != nil {
		t.Fatal(err)
	}
	v := backend.NewView(m)
	for _, tc := range []struct {
		name   string
		denied bool
	}{
		{"/open", false},
		{"/closed", true},
		{"/ro/open", false},
		{"/ro/closed", true},
		{"/x/plain/closed", false},
	} {
		fi, err := backend.StatSearch(v, tc.name)
		if tc.denied {
			if !errors.Is(err, os.ErrPermission) {
				t.Errorf("StatSearch %s: %v, %v; want a permission error", tc.name, fi, err)
			}
			if _, err := v.Stat(tc.name); err != nil {
				t.Errorf("Stat %s: %v; want the directory (only StatSearch asks)", tc.name, err)
			}
			continue
		}
		if err != nil || !fi.IsDir() {
			t.Errorf("StatSearch %s: %v, %v; want a directory", tc.name, fi, err)
		}
	}
}
