package memfs_test

import (
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/spf13/afero"

	"github.com/upgate/upgate/backend"
	"github.com/upgate/upgate/backend/memfs"
)

// followingReader is a memfs holding /f ("old"), a View over it whose
// readers follow saves, and a reader of /f through it.
func followingReader(t *testing.T) (*memfs.FS, *backend.View, afero.File) {
	t.Helper()
	m := memfs.New(memfs.Options{})
	if err := afero.WriteFile(m, "/f", []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	v := backend.NewView(m, backend.ReadersFollowSaves())
	r, err := v.Open("/f")
	if err != nil {
		t.Fatal(err)
	}
	return m, v, r
}

// TestViewReaderAfterContainerRemove: the session's remove of a path the
// container removed first (ENOENT) stops its readers following: a new
// file made there later is another file. (A review.)
func TestViewReaderAfterContainerRemove(t *testing.T) {
	m, v, r := followingReader(t)
	defer r.Close()
	if err := m.Remove("/f"); err != nil { // the container
		t.Fatal(err)
	}
	if err := v.Remove("/f"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("session's remove: %v", err)
	}
	w, err := v.OpenFile("/f", os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	fmtWrite(t, w, "a new file")
	defer w.Close()
	if got := readAt(t, r, 0); got != "old" {
		t.Errorf("reader of an unlinked file after a new file was created at its path: %q, want %q", got, "old")
	}
}

// viewReader.Close drops the joined handle's Close error (viewFile.Close
// returns it).
// TestViewReaderCloseErrorOfJoined: a reader's Close reports its
// joined handle's error. (A review.)
func TestViewReaderCloseErrorOfJoined(t *testing.T) {
	m, v, r := followingReader(t)
	w, err := v.OpenFile("/f", os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	// The first Close on /f from now is the reader's joined handle.
	in := m.Inject(memfs.Fault{Op: memfs.OpClose, Path: "/f", Nth: 1, Err: syscall.EIO})
	err = r.Close()
	in.Remove()
	if err == nil {
		t.Errorf("reader's Close: nil, want the joined handle's EIO")
	}
}

// Every handle follow opens is closed (a review): counts opens and closes of /f
// through the View (readers following twice, one removed, one closing
// while it is being joined, the rest closed at the session's end).
func TestViewReaderFollowNoLeak(t *testing.T) {
	m := memfs.New(memfs.Options{})
	if err := afero.WriteFile(m, "/f", []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	var opens, closes atomic.Int64
	var hook atomic.Pointer[func()]
	inO := m.Inject(memfs.Fault{Op: memfs.OpOpen, Func: func(memfs.Op, string) error {
		opens.Add(1)
		if h := hook.Swap(nil); h != nil {
			(*h)()
		}
		return nil
	}})
	inC := m.Inject(memfs.Fault{Op: memfs.OpClose, Func: func(memfs.Op, string) error { closes.Add(1); return nil }})
	defer inO.Remove()
	defer inC.Remove()
	v := backend.NewView(m, backend.ReadersFollowSaves())
	var rs []afero.File
	for range 3 {
		r, err := v.Open("/f")
		if err != nil {
			t.Fatal(err)
		}
		rs = append(rs, r)
	}
	var ws []afero.File
	for range 2 {
		w, err := v.OpenFile("/f", os.O_WRONLY|os.O_TRUNC, 0)
		if err != nil {
			t.Fatal(err)
		}
		fmtWrite(t, w, "x")
		ws = append(ws, w)
	}
	// rs[0] closes while a third save's follow opens its handle.
	h := func() {}
	n := 0
	h = func() {
		n++
		// 1st open: the save itself; 2nd, 3rd: the two writers' follows;
		// 4th: rs[0]'s follow.
		if n == 4 {
			rs[0].Close()
			return
		}
		hook.Store(&h)
	}
	hook.Store(&h)
	w3, err := v.OpenFile("/f", os.O_WRONLY|os.O_TRUNC, 0)
	hook.Store(nil)
	if err != nil {
		t.Fatal(err)
	}
	ws = append(ws, w3)
	if n != 4 {
		t.Fatalf("the hook ran %d times, want 4", n)
	}
	if err := v.Remove("/f"); err != nil {
		t.Fatal(err)
	}
	for _, f := range append(ws, rs[1:]...) {
		f.Close()
	}
	// The setup's WriteFile came before the counters.
	if o, c := opens.Load(), closes.Load(); o != c {
		t.Errorf("opens %d, closes %d: %d handles leaked", o, c, o-c)
	}
}

// Readers read while saves supersede each other and readers close
// (-race; a review).
func TestViewReaderFollowConcurrent(t *testing.T) {
	m := memfs.New(memfs.Options{})
	if err := afero.WriteFile(m, "/f", []byte("old content"), 0o644); err != nil {
		t.Fatal(err)
	}
	v := backend.NewView(m, backend.ReadersFollowSaves())
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				r, err := v.Open("/f")
				if err != nil {
					continue
				}
				b := make([]byte, 8)
				for range 20 {
					r.ReadAt(b, 0)
					r.Read(b)
					r.Stat()
					r.Seek(0, 0)
				}
				r.Close()
			}
		}()
	}
	for i := range 200 {
		w, err := v.OpenFile("/f", os.O_WRONLY|os.O_TRUNC|os.O_CREATE, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		fmtWrite(t, w, "save")
		if i%2 == 0 {
			w.Close()
		} else {
			defer w.Close()
		}
	}
	close(stop)
	wg.Wait()
}

// A reader follows a save the commit of which then fails: it reads data
// the path never held, while the session's own open of the path reads
// the old file.
// TestViewReaderAfterFailedCommit: a reader that followed a save whose
// commit then failed reads what the path holds, as the session's opens
// do. (A review.)
func TestViewReaderAfterFailedCommit(t *testing.T) {
	m, v, r := followingReader(t)
	defer r.Close()
	w, err := v.OpenFile("/f", os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmtWrite(t, w, "lost")
	in := m.Inject(memfs.Fault{Op: memfs.OpClose, Path: "/f", Nth: 1, Err: syscall.ENOSPC})
	if err := w.Close(); err == nil {
		t.Fatal("close: want ENOSPC")
	}
	in.Remove()
	if got := read(t, v, "/f"); got != "old" {
		t.Fatalf("/f after the failed commit: %q", got)
	}
	if got := readAt(t, r, 0); got != "old" {
		t.Errorf("reader after the failed commit reads %q; the session's open of /f reads %q", got, "old")
	}
}
