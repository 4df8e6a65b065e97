package agent

import (
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/upgate/upgate/backend/agentpb"
)

// uploadServer serves root with a new agent, closed when the test ends,
// and returns it with a function that opens root's u/name for an upload
// (WRITE|CREATE|TRUNC, mode 0644), as an OPEN would.
func uploadServer(t *testing.T, root string) (*Server, func(name string) *handle) {
	t.Helper()
	s, err := New(Config{Token: "t", Root: root, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	upload := uint32(agentpb.OpenFlag_OPEN_FLAG_WRITE | agentpb.OpenFlag_OPEN_FLAG_CREATE | agentpb.OpenFlag_OPEN_FLAG_TRUNC)
	return s, func(name string) *handle {
		t.Helper()
		h, _, err := s.openIn(&scope{r: s.root}, &agentpb.OpenOp{Path: []byte("u/" + name), Flags: upload, Perm: 0o644}, nil)
		if err != nil {
			t.Fatalf("open %s: %v", name, err)
		}
		return h
	}
}

// TestUploadOverAnotherUsersFile: an agent that is not root serves a
// truncating open of another user's regular file in place (the same
// inode, truncated at once, its owner kept), its own file as an atomic
// upload (a temp file), and another user's FIFO as before (replaced, not
// opened). The agent's user is played by s.euid: the test's files are
// "another user's" when it differs from their uid. Interop/differential
// runs the same with a real agent process that is not root.
func TestUploadOverAnotherUsersFile(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "u")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"theirs", "mine"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("old content\n"), 0o666); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.Mkfifo(filepath.Join(dir, "fifo"), 0o666); err != nil {
		t.Fatal(err)
	}
	s, open := uploadServer(t, root)
	ino := func(name string) (uint64, int64) {
		t.Helper()
		var st syscall.Stat_t
		if err := syscall.Lstat(filepath.Join(dir, name), &st); err != nil {
			t.Fatal(err)
		}
		return st.Ino, st.Size
	}

	s.euid = uint32(os.Geteuid()) + 1 // every test file is another user's
	before, _ := ino("theirs")
	h := open("theirs")
	after, size := ino("theirs")
	if h.tmp != "" || h.id != "" || after != before || size != 0 {
		t.Errorf("another user's file: tmp %q, upload %q, inode %d -> %d, size %d; want in place, truncated", h.tmp, h.id, before, after, size)
	}
	if _, err := h.f.Write([]byte("new\n")); err != nil {
		t.Fatal(err)
	}
	h.f.Close()
	if b, _ := os.ReadFile(filepath.Join(dir, "theirs")); string(b) != "new\n" {
		t.Errorf("another user's file holds %q", b)
	}

	h = open("fifo")
	if h.tmp == "" || h.id == "" {
		t.Errorf("another user's FIFO: tmp %q, upload %q; want an atomic upload, as before", h.tmp, h.id)
	}
	h.abort("test")

	s.euid = uint32(os.Geteuid())
	before, _ = ino("mine")
	h = open("mine")
	if after, size := ino("mine"); h.tmp == "" || h.id == "" || after != before || size != int64(len("old content\n")) {
		t.Errorf("own file: tmp %q, upload %q, inode %d -> %d, size %d; want an atomic upload, the file untouched", h.tmp, h.id, before, after, size)
	}
	h.abort("test")
	if got := s.UploadsInProgress(); got != 0 {
		t.Errorf("%d uploads in progress after the aborts", got)
	}
}

// TestUploadKeepsXattrs: an atomic upload over a file carries the
// replaced file's POSIX access ACL and user.* attributes to the new file,
// as a save in place keeps them with the inode; not security.capability
// (a write would have cleared it), and nothing for a file that has none.
func TestUploadKeepsXattrs(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "u")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(dir, "f")
	if err := os.WriteFile(f, []byte("old\n"), 0o664); err != nil {
		t.Fatal(err)
	}
	if err := unix.Lsetxattr(f, "user.origin", []byte("https://example.com/f"), 0); err != nil {
		t.Skipf("no user extended attributes here: %v", err)
	}
	// user::rw-, user:1234:rw-, group::r--, mask::rw-, other::r--
	acl := []byte{2, 0, 0, 0,
		1, 0, 6, 0, 0xff, 0xff, 0xff, 0xff,
		2, 0, 6, 0, 0xd2, 0x04, 0, 0,
		4, 0, 4, 0, 0xff, 0xff, 0xff, 0xff,
		0x10, 0, 6, 0, 0xff, 0xff, 0xff, 0xff,
		0x20, 0, 4, 0, 0xff, 0xff, 0xff, 0xff}
	if err := unix.Lsetxattr(f, "system.posix_acl_access", acl, 0); err != nil {
		t.Skipf("no POSIX ACLs here: %v", err)
	}
	// A file capability (VFS_CAP_REVISION_2, cap_net_bind_service): never
	// carried to new content.
	capability := []byte{0, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	haveCap := unix.Lsetxattr(f, "security.capability", capability, 0) == nil
	want := map[string]string{}
	for _, name := range []string{"user.origin", "system.posix_acl_access"} {
		v, err := lgetxattr(f, name)
		if err != nil {
			t.Fatal(err)
		}
		want[name] = string(v)
	}
	var before unix.Stat_t
	if err := unix.Lstat(f, &before); err != nil {
		t.Fatal(err)
	}

	_, open := uploadServer(t, root)
	h := open("f")
	if h.tmp == "" {
		t.Fatal("not an atomic upload")
	}
	if _, err := h.f.Write([]byte("new\n")); err != nil {
		t.Fatal(err)
	}
	if err := h.commit(); err != nil {
		t.Fatal(err)
	}
	var after unix.Stat_t
	if err := unix.Lstat(f, &after); err != nil {
		t.Fatal(err)
	}
	if after.Ino == before.Ino {
		t.Fatal("the upload did not replace the file")
	}
	if after.Mode != before.Mode {
		t.Errorf("mode %o, was %o", after.Mode, before.Mode)
	}
	for name, v := range want {
		got, err := lgetxattr(f, name)
		if err != nil || string(got) != v {
			t.Errorf("%s after the upload: %q, %v; want %q", name, got, err, v)
		}
	}
	if haveCap {
		if got, err := lgetxattr(f, "security.capability"); err == nil {
			t.Errorf("security.capability carried to the new content: %x", got)
		}
	}
	if b, _ := os.ReadFile(f); string(b) != "new\n" {
		t.Errorf("content %q", b)
	}
}

// TestMkdirSticky: a Mkdir whose mode holds the sticky bit makes the
// directory with it, as mkdir(2) does, so that the setgid bit a setgid
// parent passes on stays (a chmod after the mkdir would clear it); the
// umask applies. mkdir -p (All) still drops it.
func TestMkdirSticky(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "u")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777|os.ModeSetgid); err != nil {
		t.Fatal(err)
	}
	s, _ := uploadServer(t, root)
	sticky := uint32(0o777 | os.ModeSticky)
	for _, req := range []*agentpb.MkdirRequest{{Path: []byte("u/t"), Perm: sticky}, {Path: []byte("u/a/b"), Perm: sticky, All: true}} {
		if _, err := s.mkdir(&scope{r: s.root}, req); err != nil {
			t.Fatalf("mkdir %s: %v", req.GetPath(), err)
		}
	}
	// The umask, read without setting it (Umask would, for the whole
	// process): /proc/self/status's "Umask:\t0022".
	proc, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	var umask uint32
	if _, after, ok := strings.Cut(string(proc), "Umask:\t"); !ok {
		t.Fatal("no Umask in /proc/self/status")
	} else if _, err := fmt.Sscanf(after, "%o", &umask); err != nil {
		t.Fatal(err)
	}
	perm := 0o777 &^ umask
	// A call scoped to u (a user's root) asking for u itself: it exists,
	// and nothing is made inside it.
	sc, err := s.openScope("u")
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	if _, err := s.mkdir(sc, &agentpb.MkdirRequest{Path: []byte("u"), Perm: sticky}); status.Code(err) != codes.AlreadyExists {
		t.Errorf("mkdir of the scope's root: %v, want AlreadyExists", err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "u")); !os.IsNotExist(err) {
		t.Errorf("mkdir of the scope's root made u/u: %v", err)
	}
	for name, want := range map[string]uint32{"u/t": perm | unix.S_ISGID | unix.S_ISVTX, "u/a/b": perm | unix.S_ISGID} {
		var st unix.Stat_t
		if err := unix.Stat(filepath.Join(root, name), &st); err != nil {
			t.Fatal(err)
		}
		if got := st.Mode & 0o7777; got != want {
			t.Errorf("%s: mode %04o, want %04o", name, got, want)
		}
	}
}

// TestFchmodDir: a directory's mode set through its O_PATH descriptor,
// by fchmodat2 and by the fallback for kernels without it (fchmod of the
// directory opened again), setgid included.
func TestFchmodDir(t *testing.T) {
	for name, set := range map[string]func(fd int, m uint32) error{"fchmodat2": fchmodDir, "reopened": fchmodReopened} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "d")
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(fd)
			if err := set(fd, 0o750|unix.S_ISGID); err != nil {
				t.Fatal(err)
			}
			if fi, err := os.Stat(dir); err != nil || fi.Mode() != fs.ModeDir|fs.ModeSetgid|0o750 {
				t.Errorf("after %s: %v, %v; want dgrwxr-x---", name, fi.Mode(), err)
			}
		})
	}
}
