package gateway

import (
	"context"
	"errors"
	"io/fs"
	"os"
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
	sess *Session
}

var (
	_ afero.Lstater    = (*sessionFs)(nil)
	_ afero.Linker     = (*sessionFs)(nil)
	_ afero.LinkReader = (*sessionFs)(nil)
	_ backend.Hasher   = (*sessionFs)(nil)
	_ backend.StatFSer = (*sessionFs)(nil)
)

func (s *sessionFs) Name() string { return "Session(" + s.Fs.Name() + ")" }

func (s *sessionFs) Create(name string) (afero.File, error) {
	return s.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o666)
}

func (s *sessionFs) Open(name string) (afero.File, error) { return s.OpenFile(name, os.O_RDONLY, 0) }

func (s *sessionFs) OpenFile(name string, flag int, perm os.FileMode) (afero.File, error) {
	s.sess.Touch()
	end := s.sess.BeginTransfer()
	f, err := s.Fs.OpenFile(name, flag, perm)
	if err != nil {
		end()
		return nil, err
	}
	return &sessionFile{File: f, sess: s.sess, end: end}, nil
}

func (s *sessionFs) LstatIfPossible(name string) (os.FileInfo, bool, error) {
	if l, ok := s.Fs.(afero.Lstater); ok {
		return l.LstatIfPossible(name)
	}
	fi, err := s.Fs.Stat(name)
	return fi, false, err
}

func (s *sessionFs) SymlinkIfPossible(oldname, newname string) error {
	if l, ok := s.Fs.(afero.Linker); ok {
		return l.SymlinkIfPossible(oldname, newname)
	}
	return &os.LinkError{Op: "symlink", Old: oldname, New: newname, Err: afero.ErrNoSymlink}
}

func (s *sessionFs) ReadlinkIfPossible(name string) (string, error) {
	if l, ok := s.Fs.(afero.LinkReader); ok {
		return l.ReadlinkIfPossible(name)
	}
	return "", &fs.PathError{Op: "readlink", Path: name, Err: afero.ErrNoReadlink}
}

func (s *sessionFs) Hash(ctx context.Context, name string, algo backend.HashAlgorithm, offset, length int64) ([]byte, error) {
	h, ok := s.Fs.(backend.Hasher)
	if !ok {
		return nil, &fs.PathError{Op: "hash", Path: name, Err: errors.ErrUnsupported}
	}
	end := s.sess.BeginTransfer()
	defer end()
	return h.Hash(ctx, name, algo, offset, length)
}

func (s *sessionFs) StatFS(ctx context.Context, name string) (backend.FSStats, error) {
	if st, ok := s.Fs.(backend.StatFSer); ok {
		return st.StatFS(ctx, name)
	}
	return backend.FSStats{}, &fs.PathError{Op: "statfs", Path: name, Err: errors.ErrUnsupported}
}

// sessionFile ends its transfer when closed.
type sessionFile struct {
	afero.File
	sess *Session
	end  func()
}

var (
	_ backend.TimesSetter     = (*sessionFile)(nil)
	_ backend.ModeSetter      = (*sessionFile)(nil)
	_ backend.TransferAborter = (*sessionFile)(nil)
)

func (f *sessionFile) Close() error {
	defer f.end()
	return f.File.Close()
}

func (f *sessionFile) Read(p []byte) (int, error) {
	n, err := f.File.Read(p)
	f.sess.Touch()
	return n, err
}

func (f *sessionFile) Write(p []byte) (int, error) {
	n, err := f.File.Write(p)
	f.sess.Touch()
	return n, err
}

func (f *sessionFile) ReadAt(p []byte, off int64) (int, error) {
	n, err := f.File.ReadAt(p, off)
	f.sess.Touch()
	return n, err
}

func (f *sessionFile) WriteAt(p []byte, off int64) (int, error) {
	n, err := f.File.WriteAt(p, off)
	f.sess.Touch()
	return n, err
}

func (f *sessionFile) SetTimes(atime, mtime time.Time) error {
	if t, ok := f.File.(backend.TimesSetter); ok {
		return t.SetTimes(atime, mtime)
	}
	return &fs.PathError{Op: "chtimes", Path: f.Name(), Err: errors.ErrUnsupported}
}

func (f *sessionFile) Chmod(mode os.FileMode) error {
	if m, ok := f.File.(backend.ModeSetter); ok {
		return m.Chmod(mode)
	}
	return &fs.PathError{Op: "chmod", Path: f.Name(), Err: errors.ErrUnsupported}
}

func (f *sessionFile) TransferError(err error) {
	if t, ok := f.File.(backend.TransferAborter); ok {
		t.TransferError(err)
	}
}
