package memfs_test

import (
	"errors"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spf13/afero"

	"github.com/upgate/upgate/backend"
	"github.com/upgate/upgate/backend/memfs"
)

// TestViewFollowClosedDuringSupersede: a handle that closes while a newer
// truncating open supersedes it (its close racing the open, as two
// requests of one session may) follows nothing: it was put back into the
// View's writers after its Close untracked it, and the handle follow
// opened was never closed; the dead writer then made every later save of
// the path an in-place truncation, visible to other sessions. (A review.)
func TestViewFollowClosedDuringSupersede(t *testing.T) {
	m := memfs.New(memfs.Options{})
	v := backend.NewView(m)
	up, err := v.Create("/f")
	if err != nil {
		t.Fatal(err)
	}
	fmtWrite(t, up, "old")
	var n atomic.Int32
	in := m.Inject(memfs.Fault{Op: memfs.OpOpen, Path: "/f", Func: func(memfs.Op, string) error {
		// 1: the second Create's open; 2: follow's Reopen of it, after
		// drop took its snapshot and unlinked up: up closes now.
		if n.Add(1) == 2 {
			if err := up.Close(); err != nil {
				t.Errorf("close of the first upload: %v", err)
			}
		}
		return nil
	}})
	nw, err := v.Create("/f")
	in.Remove()
	if err != nil {
		t.Fatal(err)
	}
	fmtWrite(t, nw, "new")
	if err := nw.Close(); err != nil {
		t.Fatal(err)
	}
	if got := read(t, m, "/f"); got != "new" {
		t.Fatalf("/f after the second upload committed: %q", got)
	}
	// Every handle of the session is closed now. A third save must be an
	// atomic upload: other sessions see "new" until it closes.
	third, err := v.Create("/f")
	if err != nil {
		t.Fatal(err)
	}
	fmtWrite(t, third, "third")
	if got := read(t, m, "/f"); got != "new" {
		t.Errorf("another session sees %q during the third (atomic) save, want %q: a closed handle is still tracked as a writer at /f, so the save truncated in place", got, "new")
	}
	if err := third.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestViewAbandonedFollowerKeepsSavesAtomic: an abandoned handle of a
// superseded upload (rclone's FsPutError) follows the newer upload, and
// once that commits, the session's next save of the path is still an
// atomic upload (a follower does not make it truncate in place), as
// README says: "an abandoned handle ... can neither capture later
// operations on the path". (A review.)
func TestViewAbandonedFollowerKeepsSavesAtomic(t *testing.T) {
	m := memfs.New(memfs.Options{})
	v := backend.NewView(m)
	abandoned, err := v.Create("/f")
	if err != nil {
		t.Fatal(err)
	}
	fmtWrite(t, abandoned, "partial")
	nw, err := v.Create("/f")
	if err != nil {
		t.Fatal(err)
	}
	fmtWrite(t, nw, "v1")
	if err := nw.Close(); err != nil {
		t.Fatal(err)
	}
	next, err := v.Create("/f")
	if err != nil {
		t.Fatal(err)
	}
	fmtWrite(t, next, "v2-being-written")
	if got := read(t, m, "/f"); got != "v1" {
		t.Errorf("another session sees %q while the next save is in progress, want %q (the save is no longer atomic)", got, "v1")
	}
	_ = next.Close()
	_ = abandoned.Close()
}

// TestViewFollowOffset: a follower's file offset is carried to the handle
// it follows, as a shared descriptor's: `exec 3>f; echo first >&3; echo x
// > f; echo y >&3` leaves "x\n\0\0\0\0y\n"; Seek goes to the data it
// follows. (A review.)
func TestViewFollowOffset(t *testing.T) {
	m := memfs.New(memfs.Options{})
	v := backend.NewView(m)
	fd3, err := v.OpenFile("/f", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	fmtWrite(t, fd3, "first\n")
	nw, err := v.OpenFile("/f", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	fmtWrite(t, nw, "x\n")
	if off, err := fd3.Seek(0, io.SeekCurrent); err != nil || off != 6 {
		t.Logf("Seek(0, SeekCurrent) on the follower: %d, %v", off, err)
	}
	fmtWrite(t, fd3, "y\n")
	if err := nw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := fd3.Close(); err != nil {
		t.Fatal(err)
	}
	if got, want := read(t, m, "/f"), "x\n\x00\x00\x00\x00y\n"; got != want {
		t.Errorf("/f: %q, want %q (as on a POSIX filesystem)", got, want)
	}
	// Seek to the end reports the discarded file's size, not the data
	// the handle now reads and writes.
	a, _ := v.OpenFile("/g", os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	fmtWrite(t, a, "0123456789")
	b, _ := v.OpenFile("/g", os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	fmtWrite(t, b, "ab")
	if end, _ := a.Seek(0, io.SeekEnd); end != 2 {
		t.Errorf("Seek(0, SeekEnd) on the follower: %d, want 2 (the size of the data it follows)", end)
	}
	_ = b.Close()
	_ = a.Close()
}

// TestViewRefollowUnderWrite: a write through a follower that is in
// flight when a newer truncating open makes it follow again lands: follow
// waits for it before it closes the old joined handle (it used to close
// it under the write: "file already closed"). (A review.)
func TestViewRefollowUnderWrite(t *testing.T) {
	m := memfs.New(memfs.Options{})
	v := backend.NewView(m)
	fd3, err := v.Create("/f")
	if err != nil {
		t.Fatal(err)
	}
	n1, err := v.Create("/f") // fd3 follows n1
	if err != nil {
		t.Fatal(err)
	}
	entered, release := make(chan struct{}), make(chan struct{})
	var once atomic.Bool
	in := m.Inject(memfs.Fault{Op: memfs.OpWrite, Path: "/f", Func: func(memfs.Op, string) error {
		if once.CompareAndSwap(false, true) {
			close(entered)
			<-release
		}
		return nil
	}})
	defer in.Remove()
	werr := make(chan error, 1)
	go func() { _, err := fd3.WriteAt([]byte("w"), 0); werr <- err }()
	<-entered
	// The write is still in flight when the newer open makes fd3 follow
	// again: follow waits for it.
	time.AfterFunc(100*time.Millisecond, func() { close(release) })
	n2, err := v.Create("/f") // fd3 (and n1) follow n2
	if err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-werr:
		if err != nil {
			t.Errorf("a write through the follower, concurrent with a newer truncating open: %v (it should land in either upload)", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("write hung")
	}
	for _, f := range []afero.File{n2, n1, fd3} {
		if err := f.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
			t.Logf("close: %v", err)
		}
	}
}

// TestViewFollowInPlaceTruncate: a truncating open that writes in place
// (O_APPEND|O_TRUNC) supersedes the session's upload of the path, and the
// upload's handle follows the file that open truncated, at its offset, as
// two descriptors of sftp-server share the file. It used to refuse every
// later write: a save lost (TestSFTPRandom, seed 1212).
func TestViewFollowInPlaceTruncate(t *testing.T) {
	m := memfs.New(memfs.Options{})
	v := backend.NewView(m)
	up, err := v.OpenFile("/f", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	fmtWrite(t, up, "abc")
	app, err := v.OpenFile("/f", os.O_RDWR|os.O_APPEND|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := up.WriteAt([]byte("E04"), 1); err != nil {
		t.Fatalf("write through the first handle after the truncating append open: %v", err)
	}
	fmtWrite(t, up, "!") // its offset: 3, carried over
	fmtWrite(t, app, "Z")
	if err := up.Close(); err != nil {
		t.Fatal(err)
	}
	if err := app.Close(); err != nil {
		t.Fatal(err)
	}
	if got, want := read(t, m, "/f"), "\x00E0!Z"; got != want {
		t.Fatalf("/f: %q, want %q", got, want)
	}
}

// TestViewMayOpenRacingClose: a truncating open of the session's upload
// whose mode lacks the owner's write bit (0444, so mayOpen asks the
// filesystem) racing that upload's close (sshfs sends CLOSE without
// waiting): once the upload committed, the open meets the committed file,
// as it would have without the race; mayOpen's probe of the closed upload
// used to refuse it. (A review.)
func TestViewMayOpenRacingClose(t *testing.T) {
	m := memfs.New(memfs.Options{})
	v := backend.NewView(m)
	up, err := v.OpenFile("/f", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o444)
	if err != nil {
		t.Fatal(err)
	}
	fmtWrite(t, up, "data")
	var once sync.Once
	in := m.Inject(memfs.Fault{Op: memfs.OpFstat, Path: "/f", Func: func(memfs.Op, string) error {
		once.Do(func() {
			if err := up.Close(); err != nil { // the CLOSE, served meanwhile
				t.Errorf("close: %v", err)
			}
		})
		return nil
	}})
	f, err := v.OpenFile("/f", os.O_WRONLY|os.O_TRUNC, 0)
	in.Remove()
	if err != nil {
		t.Fatalf("truncating open racing the upload's close: %v", err)
	}
	fmtWrite(t, f, "new")
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if got := read(t, m, "/f"); got != "new" {
		t.Fatalf("/f: %q, want %q", got, "new")
	}
}
