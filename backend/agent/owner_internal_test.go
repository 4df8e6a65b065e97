package agent

import (
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/upgate/upgate/backend/agentpb"
)

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
	s, err := New(Config{Token: "t", Root: root, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	upload := uint32(agentpb.OpenFlag_OPEN_FLAG_WRITE | agentpb.OpenFlag_OPEN_FLAG_CREATE | agentpb.OpenFlag_OPEN_FLAG_TRUNC)
	open := func(name string) *handle {
		t.Helper()
		h, _, err := s.openIn(&scope{r: s.root}, &agentpb.OpenOp{Path: []byte("u/" + name), Flags: upload, Perm: 0o644})
		if err != nil {
			t.Fatalf("open %s: %v", name, err)
		}
		return h
	}
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
