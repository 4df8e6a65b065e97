package memfs_test

import (
	"io"
	"os"
	"testing"

	"github.com/spf13/afero"

	"github.com/upgate/upgate/backend"
	"github.com/upgate/upgate/backend/memfs"
)

// readAt reads up to 100 bytes of f at off.
func readAt(t *testing.T, f afero.File, off int64) string {
	t.Helper()
	b := make([]byte, 100)
	n, err := f.ReadAt(b, off)
	if err != nil && err != io.EOF {
		t.Fatalf("ReadAt %d: %v", off, err)
	}
	return string(b[:n])
}

// TestViewReadersFollowSaves: with ReadersFollowSaves, a handle open for
// reading reads what the session's later save of its path writes, before
// and after that save commits, at its own offset, as a descriptor of
// sftp-server reads the file a later O_TRUNC open emptied; so does one
// opened into an upload that a newer save supersedes (TestSFTPRandom seed
// 2700). One whose path the session removed first keeps its file, as a
// descriptor of the unlinked file does. Without the option every reader
// keeps the file it opened.
func TestViewReadersFollowSaves(t *testing.T) {
	for _, follow := range []bool{true, false} {
		m := memfs.New(memfs.Options{})
		if err := afero.WriteFile(m, "/f", []byte("old content"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := afero.WriteFile(m, "/g", []byte("gone"), 0o644); err != nil {
			t.Fatal(err)
		}
		var opts []backend.ViewOption
		if follow {
			opts = append(opts, backend.ReadersFollowSaves())
		}
		v := backend.NewView(m, opts...)
		r, err := v.Open("/f")
		if err != nil {
			t.Fatal(err)
		}
		if got := readAt(t, r, 0); got != "old content" {
			t.Fatalf("before the save: %q", got)
		}
		buf := make([]byte, 4)
		if _, err := r.Read(buf); err != nil { // the offset moves to 4
			t.Fatal(err)
		}
		w, err := v.OpenFile("/f", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		fmtWrite(t, w, "new save!")
		want := map[bool]string{true: "new save!", false: "old content"}[follow]
		if got := readAt(t, r, 0); got != want {
			t.Errorf("follow=%v, during the save: %q, want %q", follow, got, want)
		}
		n, _ := r.Read(buf)
		if got, want := string(buf[:n]), map[bool]string{true: "save", false: "cont"}[follow]; got != want {
			t.Errorf("follow=%v, Read at the reader's offset: %q, want %q", follow, got, want)
		}
		// A reader opened into the upload, then superseded by another.
		r2, err := v.Open("/f")
		if err != nil {
			t.Fatal(err)
		}
		w2, err := v.OpenFile("/f", os.O_WRONLY|os.O_TRUNC, 0)
		if err != nil {
			t.Fatal(err)
		}
		fmtWrite(t, w2, "third")
		want2 := map[bool]string{true: "third", false: "new save!"}[follow]
		if got := readAt(t, r2, 0); got != want2 {
			t.Errorf("follow=%v, a reader of the first upload after the second: %q, want %q", follow, got, want2)
		}
		for _, f := range []afero.File{w2, w} {
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
		}
		want = map[bool]string{true: "third", false: "old content"}[follow]
		if got := readAt(t, r, 0); got != want {
			t.Errorf("follow=%v, after the commit: %q, want %q", follow, got, want)
		}
		if got := read(t, m, "/f"); got != "third" {
			t.Errorf("follow=%v: /f holds %q, want the last save", follow, got)
		}

		// Removed, then saved again: the reader keeps the removed file.
		rg, err := v.Open("/g")
		if err != nil {
			t.Fatal(err)
		}
		if err := v.Remove("/g"); err != nil {
			t.Fatal(err)
		}
		wg, err := v.OpenFile("/g", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		fmtWrite(t, wg, "another file")
		if got := readAt(t, rg, 0); got != "gone" {
			t.Errorf("follow=%v, a reader of a removed path after a new save there: %q, want %q", follow, got, "gone")
		}
		for _, f := range []afero.File{wg, rg, r2, r} {
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
		}
	}
}
