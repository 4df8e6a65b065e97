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
// a transfer in progress (never idle; a drain waits for it), file I/O is
// activity, and every operation and file I/O is work (Registry.Active).
// Once a reload revoked the session's login, every operation fails with
// ErrRevoked and open uploads abort when closed (revoke.go). It forwards
// every optional capability of backend's filesystems and files.
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
	_ backend.DirSearcher     = (*sessionFs)(nil)
	_ backend.KindRemover     = (*sessionFs)(nil)
)

func (s *sessionFs) Name() string { return "Session(" + s.Fs.Name() + ")" }

func (s *sessionFs) Create(name string) (afero.File, error) {
	return s.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o666)
}

func (s *sessionFs) Open(name string) (afero.File, error) { return s.OpenFile(name, os.O_RDONLY, 0) }

func (s *sessionFs) OpenFile(name string, flag int, perm os.FileMode) (afero.File, error) {
	s.sess.Touch()
	if err := s.sess.work("open", name); err != nil {
		return nil, err
	}
	release, err := s.files.acquire(s.sess.User(), name)
	if err != nil {
		s.sess.log.Warn("open refused", "path", name, "err", err)
		return nil, err
	}
	start := s.sess.r.now()
	transfer := s.sess.BeginTransfer()
	closed := s.sess.fileOpened()
	end := func() {
		closed()
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

// guard runs op on name unless the session's login was revoked, counted
// as a path operation in progress while it runs.
func (s *sessionFs) guard(op, name string, fn func() error) error {
	if err := s.sess.work(op, name); err != nil {
		return err
	}
	defer s.sess.pathOp()()
	return fn()
}

func (s *sessionFs) Mkdir(name string, perm os.FileMode) error {
	return s.guard("mkdir", name, func() error { return s.Fs.Mkdir(name, perm) })
}

func (s *sessionFs) MkdirAll(name string, perm os.FileMode) error {
	return s.guard("mkdir", name, func() error { return s.Fs.MkdirAll(name, perm) })
}

func (s *sessionFs) Remove(name string) error {
	return s.guard("remove", name, func() error { return s.Fs.Remove(name) })
}

// RemoveFile implements backend.KindRemover.
func (s *sessionFs) RemoveFile(name string) error {
	return s.guard("remove", name, func() error { return backend.RemoveFile(s.Fs, name) })
}

// RemoveDir implements backend.KindRemover.
func (s *sessionFs) RemoveDir(name string) error {
	return s.guard("rmdir", name, func() error { return backend.RemoveDir(s.Fs, name) })
}

func (s *sessionFs) RemoveAll(name string) error {
	return s.guard("remove", name, func() error { return s.Fs.RemoveAll(name) })
}

func (s *sessionFs) Rename(oldname, newname string) error {
	return s.guard("rename", oldname, func() error { return s.Fs.Rename(oldname, newname) })
}

func (s *sessionFs) Stat(name string) (os.FileInfo, error) {
	if err := s.sess.work("stat", name); err != nil {
		return nil, err
	}
	return s.Fs.Stat(name)
}

func (s *sessionFs) StatSearch(name string) (os.FileInfo, error) {
	if err := s.sess.work("stat", name); err != nil {
		return nil, err
	}
	return backend.StatSearch(s.Fs, name)
}

func (s *sessionFs) Chmod(name string, mode os.FileMode) error {
	return s.guard("chmod", name, func() error { return s.Fs.Chmod(name, mode) })
}

func (s *sessionFs) Chown(name string, uid, gid int) error {
	return s.guard("chown", name, func() error { return s.Fs.Chown(name, uid, gid) })
}

func (s *sessionFs) Chtimes(name string, atime, mtime time.Time) error {
	return s.guard("chtimes", name, func() error { return s.Fs.Chtimes(name, atime, mtime) })
}

func (s *sessionFs) LstatIfPossible(name string) (os.FileInfo, bool, error) {
	_, ok := s.Fs.(afero.Lstater)
	if err := s.sess.work("lstat", name); err != nil {
		return nil, ok, err
	}
	fi, err := backend.Lstat(s.Fs, name)
	return fi, ok, err
}

func (s *sessionFs) SymlinkIfPossible(oldname, newname string) error {
	return s.guard("symlink", newname, func() error { return backend.Symlink(s.Fs, oldname, newname) })
}

func (s *sessionFs) Lchtimes(name string, atime, mtime time.Time) error {
	return s.guard("chtimes", name, func() error { return backend.Lchtimes(s.Fs, name, atime, mtime) })
}

func (s *sessionFs) Link(oldname, newname string) error {
	return s.guard("link", newname, func() error { return backend.Link(s.Fs, oldname, newname) })
}

func (s *sessionFs) ReadlinkIfPossible(name string) (string, error) {
	if err := s.sess.work("readlink", name); err != nil {
		return "", err
	}
	return backend.Readlink(s.Fs, name)
}

// Hash counts as a transfer: the agent reads the whole file.
func (s *sessionFs) Hash(ctx context.Context, name string, algo backend.HashAlgorithm, offset, length int64) ([]byte, error) {
	if err := s.sess.work("hash", name); err != nil {
		return nil, err
	}
	end := s.sess.BeginTransfer()
	defer end()
	defer s.sess.pathOp()()
	return backend.Hash(ctx, s.Fs, name, algo, offset, length)
}

func (s *sessionFs) StatFS(ctx context.Context, name string) (backend.FSStats, error) {
	if err := s.sess.work("statfs", name); err != nil {
		return backend.FSStats{}, err
	}
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
	if f.direction == "upload" {
		if err := f.sess.work("upload", f.Name()); err != nil {
			// Nothing a revoked session wrote is committed.
			f.TransferError(err)
		}
	}
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
	d := f.sess.r.now().Sub(f.start)
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
	if err := f.sess.work("read", f.Name()); err != nil {
		return 0, err
	}
	n, err := f.File.Read(p)
	f.moved(n)
	return n, err
}

func (f *sessionFile) Write(p []byte) (int, error) {
	if err := f.sess.work("write", f.Name()); err != nil {
		return 0, err
	}
	n, err := f.File.Write(p)
	f.moved(n)
	return n, err
}

// ReadFrom passes an io.Copy into the file on, counting what it moves as
// Write does.
func (f *sessionFile) ReadFrom(r io.Reader) (int64, error) {
	return backend.ReadFrom(f.File, readerFunc(func(p []byte) (int, error) {
		if err := f.sess.work("write", f.Name()); err != nil {
			return 0, err
		}
		n, err := r.Read(p)
		f.moved(n)
		return n, err
	}))
}

// readerFunc is an io.Reader made of a function.
type readerFunc func([]byte) (int, error)

func (r readerFunc) Read(p []byte) (int, error) { return r(p) }

func (f *sessionFile) ReadAt(p []byte, off int64) (int, error) {
	if err := f.sess.work("read", f.Name()); err != nil {
		return 0, err
	}
	n, err := f.File.ReadAt(p, off)
	f.moved(n)
	return n, err
}

func (f *sessionFile) WriteAt(p []byte, off int64) (int, error) {
	if err := f.sess.work("write", f.Name()); err != nil {
		return 0, err
	}
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
