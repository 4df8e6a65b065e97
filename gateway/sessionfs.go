package gateway

import (
	"context"
	"errors"
	"io"
	"os"
	"sync/atomic"
	"time"

	"github.com/spf13/afero"

	"github.com/upgate/upgate/backend"
)

// sessionFs ties a user's filesystem to their session: every open file is
// a transfer in progress (never idle; a drain waits for it), and file I/O
// is activity. It forwards every optional capability of backend's
// filesystems and files.
type sessionFs struct {
	afero.Fs
	sess    *Session
	metrics *Metrics
	files   *fileLimits
	tr      *transfers // nil: ends are only logged and counted
}

var (
	_ afero.Lstater           = (*sessionFs)(nil)
	_ afero.Linker            = (*sessionFs)(nil)
	_ afero.LinkReader        = (*sessionFs)(nil)
	_ backend.Hasher          = (*sessionFs)(nil)
	_ backend.StatFSer        = (*sessionFs)(nil)
	_ backend.HardLinker      = (*sessionFs)(nil)
	_ backend.LinkTimesSetter = (*sessionFs)(nil)
)

func (s *sessionFs) Name() string { return "Session(" + s.Fs.Name() + ")" }

func (s *sessionFs) Create(name string) (afero.File, error) {
	return s.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o666)
}

func (s *sessionFs) Open(name string) (afero.File, error) { return s.OpenFile(name, os.O_RDONLY, 0) }

func (s *sessionFs) OpenFile(name string, flag int, perm os.FileMode) (afero.File, error) {
	s.sess.Touch()
	release, err := s.files.acquire(s.sess.User(), name)
	if err != nil {
		s.sess.log.Warn("open refused", "path", name, "err", err)
		return nil, err
	}
	start := time.Now()
	transfer := s.sess.BeginTransfer()
	end := func() {
		transfer()
		release()
	}
	f, err := s.Fs.OpenFile(name, flag, perm)
	if err != nil {
		end()
		return nil, err
	}
	if backend.IsDir(f) {
		return &sessionFile{FileWrapper: backend.FileWrapper{File: f}, sess: s.sess, end: end, dir: true}, nil
	}
	dir := "download"
	if flag&(os.O_WRONLY|os.O_RDWR) != 0 {
		dir = "upload"
	}
	sf := &sessionFile{FileWrapper: backend.FileWrapper{File: f}, sess: s.sess, end: end, direction: dir, start: start, metrics: s.metrics, tr: s.tr}
	if sf.tr != nil {
		sf.tr.begin(sf)
	}
	return sf, nil
}

func (s *sessionFs) LstatIfPossible(name string) (os.FileInfo, bool, error) {
	fi, err := backend.Lstat(s.Fs, name)
	_, ok := s.Fs.(afero.Lstater)
	return fi, ok, err
}

func (s *sessionFs) SymlinkIfPossible(oldname, newname string) error {
	return backend.Symlink(s.Fs, oldname, newname)
}

func (s *sessionFs) Lchtimes(name string, atime, mtime time.Time) error {
	return backend.Lchtimes(s.Fs, name, atime, mtime)
}

func (s *sessionFs) Link(oldname, newname string) error {
	return backend.Link(s.Fs, oldname, newname)
}

func (s *sessionFs) ReadlinkIfPossible(name string) (string, error) {
	return backend.Readlink(s.Fs, name)
}

// Hash counts as a transfer: the agent reads the whole file.
func (s *sessionFs) Hash(ctx context.Context, name string, algo backend.HashAlgorithm, offset, length int64) ([]byte, error) {
	end := s.sess.BeginTransfer()
	defer end()
	return backend.Hash(ctx, s.Fs, name, algo, offset, length)
}

func (s *sessionFs) StatFS(ctx context.Context, name string) (backend.FSStats, error) {
	return backend.StatFS(ctx, s.Fs, name)
}

// sessionFile ends its transfer when closed, and then logs it and counts
// it: one line per finished or aborted transfer.
type sessionFile struct {
	backend.FileWrapper
	sess      *Session
	end       func()
	dir       bool      // a directory listing, not a transfer
	direction string    // "upload" or "download"
	start     time.Time // before the open: a save's latency runs from here
	metrics   *Metrics
	tr        *transfers
	bytes     atomic.Int64
	aborted   atomic.Pointer[error]
}

var (
	_ backend.TimesSetter     = (*sessionFile)(nil)
	_ backend.ModeSetter      = (*sessionFile)(nil)
	_ backend.TransferAborter = (*sessionFile)(nil)
)

func (f *sessionFile) Close() error {
	defer f.end()
	err := f.File.Close()
	if f.dir {
		return err
	}
	var aborted error
	if p := f.aborted.Load(); p != nil {
		aborted = *p
	}
	result := "completed"
	if f.direction == "upload" {
		result = "committed"
	}
	switch {
	case aborted != nil:
		result = "aborted"
	case err != nil:
		result = "failed"
	}
	d := time.Since(f.start)
	f.metrics.Transfers.WithLabelValues(f.sess.Protocol, f.direction, result).Inc()
	log := f.sess.log.Info
	if result == "failed" {
		log = f.sess.log.Warn
	}
	args := []any{"direction", f.direction, "path", f.Name(), "bytes", f.bytes.Load(),
		"duration", d.Round(time.Millisecond), "result", result}
	e := errors.Join(aborted, err)
	if e != nil {
		args = append(args, "err", e.Error())
	}
	if f.tr != nil {
		f.tr.ended(f, result, e, d)
	}
	log("transfer", args...)
	return err
}

func (f *sessionFile) Read(p []byte) (int, error) {
	n, err := f.File.Read(p)
	f.moved(n)
	return n, err
}

func (f *sessionFile) Write(p []byte) (int, error) {
	n, err := f.File.Write(p)
	f.moved(n)
	return n, err
}

// ReadFrom passes an io.Copy into the file on, counting what it moves as
// Write does.
func (f *sessionFile) ReadFrom(r io.Reader) (int64, error) {
	return backend.ReadFrom(f.File, readerFunc(func(p []byte) (int, error) {
		n, err := r.Read(p)
		f.moved(n)
		return n, err
	}))
}

// readerFunc is an io.Reader made of a function.
type readerFunc func([]byte) (int, error)

func (r readerFunc) Read(p []byte) (int, error) { return r(p) }

func (f *sessionFile) ReadAt(p []byte, off int64) (int, error) {
	n, err := f.File.ReadAt(p, off)
	f.moved(n)
	return n, err
}

func (f *sessionFile) WriteAt(p []byte, off int64) (int, error) {
	n, err := f.File.WriteAt(p, off)
	f.moved(n)
	return n, err
}

func (f *sessionFile) moved(n int) {
	f.bytes.Add(int64(n))
	f.sess.Touch()
}

// TransferError records the abort for the transfer's log line and passes
// it on.
func (f *sessionFile) TransferError(err error) {
	f.aborted.CompareAndSwap(nil, &err)
	f.FileWrapper.TransferError(err)
}
