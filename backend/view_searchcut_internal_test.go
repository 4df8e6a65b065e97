package backend

import (
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spf13/afero"
)

// searchFs is a MemMapFs whose files opened for writing with O_TRUNC are
// uploads in progress (Upload) until closed, and which counts Lstats.
type searchFs struct {
	afero.Fs
	lstats atomic.Int64
}

func (s *searchFs) LstatIfPossible(name string) (os.FileInfo, bool, error) {
	s.lstats.Add(1)
	fi, err := s.Fs.Stat(name)
	return fi, true, err
}

func (s *searchFs) OpenFile(name string, flag int, perm os.FileMode) (afero.File, error) {
	f, err := s.Fs.OpenFile(name, flag, perm)
	if err != nil || flag&os.O_TRUNC == 0 || flag&(os.O_WRONLY|os.O_RDWR) == 0 {
		return f, err
	}
	u := &gatedUpload{File: f}
	u.pending.Store(true)
	return u, nil
}

// gatedUpload's Pending waits while gate is held, as file.Pending waits
// for f.mu while a write of the file waits for its window.
type gatedUpload struct {
	afero.File
	pending atomic.Bool
	gate    sync.Mutex
}

func (u *gatedUpload) Pending() bool {
	u.gate.Lock()
	defer u.gate.Unlock()
	return u.pending.Load()
}
func (u *gatedUpload) Unlink() error                       { u.pending.Store(false); return nil }
func (u *gatedUpload) Move(string) error                   { return nil }
func (u *gatedUpload) Reopen(flag int) (afero.File, error) { return nil, os.ErrInvalid }
func (u *gatedUpload) Close() error                        { u.pending.Store(false); return u.File.Close() }

// View.Chtimes by path records a change for the readers at a path only
// where the session has a handle open: nothing else would ever forget it
// (forgetLocked runs when a handle there closes, or at a rename).
func TestViewChtimesKeepsNoTicks(t *testing.T) {
	v := NewView(&searchFs{Fs: afero.NewMemMapFs()})
	for _, name := range []string{"/a", "/b", "/c"} {
		if err := afero.WriteFile(v.Fs, name, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := v.Chtimes(name, time.Unix(1, 0), time.Unix(2, 0)); err != nil {
			t.Fatal(err)
		}
	}
	v.mu.Lock()
	n := len(v.wrote)
	v.mu.Unlock()
	if n != 0 {
		t.Errorf("v.wrote holds %d paths with no handle open at them after Chtimes; want 0 (grows for the session's life)", n)
	}
}

// searchCut follows the effect of a chmod: one of a directory with no
// upload below it sets nothing (an upload's lookups cost no Lstat), and
// it is clear once no upload is left.
func TestViewSearchCutByEffect(t *testing.T) {
	s := &searchFs{Fs: afero.NewMemMapFs()}
	v := NewView(s)
	for _, d := range []string{"/d", "/e"} {
		if err := v.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	f, err := v.OpenFile("/d/f", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Chmod("/e", 0o700); err != nil { // an ordinary private directory, nowhere above /d/f
		t.Fatal(err)
	}
	if err := v.Chmod("/e", 0o755); err != nil {
		t.Fatal(err)
	}
	before := s.lstats.Load()
	for range 100 {
		if _, err := v.Stat("/d/f"); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.lstats.Load() - before; n != 0 {
		t.Errorf("100 stats of the upload /d/f cost %d extra Lstats after chmod 0700 (and back to 0755) of the unrelated /e; want 0", n)
	}
	f.Close()
	if v.searchCut.Load() {
		t.Errorf("searchCut still set with no upload left and every search bit back")
	}
}

// cutSearch asks Pending (file.Pending takes f.mu, held while a write
// waits for its window or a Chmod/SetTimes for its answer) without v.mu,
// which every View operation takes (a reader's catchUp, an open's
// track): they do not wait for that I/O. It held v.mu (a review).
func TestViewCutSearchWithoutViewMu(t *testing.T) {
	s := &searchFs{Fs: afero.NewMemMapFs()}
	v := NewView(s)
	for _, d := range []string{"/d", "/e"} {
		if err := v.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := afero.WriteFile(s.Fs, "/r", []byte("read me"), 0o644); err != nil {
		t.Fatal(err)
	}
	uf, err := v.OpenFile("/d/f", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer uf.Close()
	up := uf.(*viewFile).File.(*gatedUpload)
	r, err := v.Open("/r")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	up.gate.Lock() // a write of the upload holds its file's lock (window full)
	chmodDone := make(chan struct{})
	go func() { _ = v.Chmod("/e", 0o700); close(chmodDone) }()
	time.Sleep(100 * time.Millisecond)
	readDone := make(chan struct{})
	go func() { buf := make([]byte, 4); _, _ = r.Read(buf); close(readDone) }()
	select {
	case <-readDone:
	case <-time.After(5 * time.Second):
		t.Errorf("a read of /r (another file) waited on v.mu, which cutSearch holds while it waits for the upload's Pending")
	}
	up.gate.Unlock()
	<-chmodDone
	<-readDone
}
