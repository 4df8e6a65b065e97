package memfs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
	"time"

	"github.com/spf13/afero"

	"github.com/upgate/upgate/backend"
)

// file is an open file or directory. Its fields are guarded by FS.mu.
type file struct {
	m    *FS
	name string // the path it was opened as; an upload's target
	n    *node  // what it reads and writes
	flag int
	dir  bool

	offset int64
	closed bool
	// up is the atomic upload this open started, nil for any other open.
	up *upload
	// abort is TransferError's cause: Close then commits nothing.
	abort error
	// writeErr is the first write that failed (an injected fault): Close
	// then fails with it and commits nothing, as the agent refuses to
	// commit after a failed write.
	writeErr error
	// entries is a directory's listing, taken at the first Readdir;
	// listed says it was taken.
	entries []os.FileInfo
	listed  bool
}

// upload is an atomic upload in progress: its node is in no directory
// until Close links it at target.
type upload struct {
	target   string // clean path; Move and a Rename of a directory above change it
	excl     bool   // O_EXCL: the commit must not replace a file created meanwhile
	unlinked bool   // Unlink discarded it: commit nothing
}

var (
	_ afero.File              = (*file)(nil)
	_ backend.Upload          = (*file)(nil)
	_ backend.TransferAborter = (*file)(nil)
	_ backend.TimesSetter     = (*file)(nil)
	_ backend.ModeSetter      = (*file)(nil)
)

// OpenFile implements afero.Fs with os.OpenFile's flags. A truncating or
// creating open for writing starts an atomic upload (see the package
// documentation), unless the path is a symbolic link: then it writes
// through the link in place, as open(2) does. A directory opens for
// listing only (EISDIR for writing).
func (m *FS) OpenFile(name string, flag int, perm os.FileMode) (afero.File, error) {
	p := clean(name)
	if err := m.fault(OpOpen, p); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	write := flag&(os.O_WRONLY|os.O_RDWR) != 0
	create := flag&os.O_CREATE != 0
	excl := create && flag&os.O_EXCL != 0
	lw, err := m.walk("open", p, false)
	if err != nil {
		return nil, err
	}
	switch {
	case lw.n != nil && excl:
		return nil, &fs.PathError{Op: "open", Path: p, Err: syscall.EEXIST}
	case lw.n != nil && lw.n.isDir() && (write || flag&os.O_TRUNC != 0): // O_TRUNC asks for writing
		return nil, &fs.PathError{Op: "open", Path: p, Err: syscall.EISDIR}
	case lw.n != nil && lw.n.isDir():
		return &file{m: m, name: p, n: lw.n, flag: flag, dir: true}, nil
	case write && flag&os.O_APPEND == 0 && p != "/" && (lw.n == nil && create || lw.n != nil && !lw.n.isSymlink() && flag&os.O_TRUNC != 0):
		return m.startUpload(p, lw, flag, perm), nil
	}
	// In place: through a final link, if any.
	w, err := m.walk("open", p, true)
	switch {
	case err != nil:
		return nil, err
	case w.n == nil && !create:
		return nil, &fs.PathError{Op: "open", Path: p, Err: syscall.ENOENT}
	case w.n == nil:
		t := m.now()
		w.n = &node{mode: perm & (fs.ModePerm | fs.ModeSticky), mtime: t, atime: t, nlink: 1}
		w.dir.children[w.base] = w.n
		m.touch(w.dir)
	case w.n.isDir() && (write || flag&os.O_TRUNC != 0): // O_TRUNC asks for writing
		return nil, &fs.PathError{Op: "open", Path: p, Err: syscall.EISDIR}
	case w.n.isDir():
		return &file{m: m, name: p, n: w.n, flag: flag, dir: true}, nil
	}
	f := &file{m: m, name: p, n: w.n, flag: flag}
	if flag&os.O_TRUNC != 0 { // as open(2) on Linux, read-only too
		w.n.data = nil
		m.touchFile(w.n)
	}
	if flag&os.O_APPEND != 0 {
		f.offset = int64(len(w.n.data))
	}
	return f, nil
}

// startUpload opens an atomic upload of p, whose lookup is w. A replaced
// file's mode and owner carry over. FS.mu is held.
func (m *FS) startUpload(p string, w where, flag int, perm os.FileMode) *file {
	t := m.now()
	n := &node{mode: perm & (fs.ModePerm | fs.ModeSticky), mtime: t, atime: t}
	if old := w.n; old != nil {
		n.mode, n.uid, n.gid = old.mode&(fs.ModePerm|fs.ModeSticky), old.uid, old.gid
	}
	f := &file{m: m, name: p, n: n, flag: flag, up: &upload{target: p, excl: flag&(os.O_CREATE|os.O_EXCL) == os.O_CREATE|os.O_EXCL}}
	m.uploads[f] = struct{}{}
	return f
}

// touchFile sets a file's times after a change of its content. FS.mu is
// held.
func (m *FS) touchFile(n *node) {
	t := m.now()
	n.mtime, n.atime = t, t
}

// usable reports why the file cannot be used for op, if it cannot. FS.mu
// is held.
func (f *file) usable(op string) error {
	if f.closed {
		return &fs.PathError{Op: op, Path: f.name, Err: os.ErrClosed}
	}
	return nil
}

func (f *file) readable() bool { return f.flag&(os.O_WRONLY|os.O_RDWR) != os.O_WRONLY }
func (f *file) writable() bool { return f.flag&(os.O_WRONLY|os.O_RDWR) != 0 }

// path is the file's current name, for a fault check made before FS.mu
// is taken.
func (f *file) path() string {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	return f.name
}

// Name implements afero.File: the path it was opened as (an upload's
// target, which Move and a Rename of a directory above it change).
func (f *file) Name() string { return f.path() }

// IsDir reports whether the handle is a directory (backend.IsDir asks).
func (f *file) IsDir() bool { return f.dir }

// Stat implements afero.File: the open file's state, an upload's
// included, under its name.
func (f *file) Stat() (os.FileInfo, error) {
	if err := f.m.fault(OpFstat, f.path()); err != nil {
		return nil, err
	}
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if err := f.usable("stat"); err != nil {
		return nil, err
	}
	return f.n.info(lastName(f.name, "/")), nil
}

// Read implements io.Reader.
func (f *file) Read(p []byte) (int, error) {
	if err := f.m.fault(OpRead, f.path()); err != nil {
		return 0, err
	}
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	n, err := f.readAt(p, f.offset)
	f.offset += int64(n)
	if errors.Is(err, io.EOF) && n > 0 {
		err = nil // io.Reader: EOF comes with the next call
	}
	return n, err
}

// ReadAt implements io.ReaderAt: a short read returns io.EOF.
func (f *file) ReadAt(p []byte, off int64) (int, error) {
	if err := f.m.fault(OpRead, f.path()); err != nil {
		return 0, err
	}
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	return f.readAt(p, off)
}

// readAt reads at off. FS.mu is held.
func (f *file) readAt(p []byte, off int64) (int, error) {
	if err := f.usable("read"); err != nil {
		return 0, err
	}
	switch {
	case f.dir:
		return 0, &fs.PathError{Op: "read", Path: f.name, Err: syscall.EISDIR}
	case !f.readable():
		return 0, &fs.PathError{Op: "read", Path: f.name, Err: syscall.EBADF}
	case off < 0:
		return 0, &fs.PathError{Op: "read", Path: f.name, Err: syscall.EINVAL}
	case off >= int64(len(f.n.data)):
		return 0, io.EOF
	}
	n := copy(p, f.n.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// failWrite fails a write with an injected error, which Close repeats.
func (f *file) failWrite(err error) error {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if f.writeErr == nil && f.writable() && !f.closed {
		f.writeErr = err
	}
	return err
}

// Write implements io.Writer; with O_APPEND it writes at the end.
func (f *file) Write(p []byte) (int, error) {
	if err := f.m.fault(OpWrite, f.path()); err != nil {
		return 0, f.failWrite(err)
	}
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	off := f.offset
	if f.flag&os.O_APPEND != 0 {
		off = int64(len(f.n.data))
	}
	n, err := f.writeAt(p, off)
	f.offset = off + int64(n)
	return n, err
}

// WriteAt implements io.WriterAt; a file opened with O_APPEND refuses it,
// as *os.File does.
func (f *file) WriteAt(p []byte, off int64) (int, error) {
	if err := f.m.fault(OpWrite, f.path()); err != nil {
		return 0, f.failWrite(err)
	}
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if f.flag&os.O_APPEND != 0 {
		return 0, &fs.PathError{Op: "writeat", Path: f.name, Err: errors.New("invalid use of WriteAt on file opened with O_APPEND")}
	}
	return f.writeAt(p, off)
}

// WriteString implements afero.File.
func (f *file) WriteString(s string) (int, error) { return f.Write([]byte(s)) }

// writeAt writes at off, growing the file with zeros as needed. FS.mu is
// held.
func (f *file) writeAt(p []byte, off int64) (int, error) {
	if err := f.usable("write"); err != nil {
		return 0, err
	}
	switch {
	case f.dir:
		return 0, &fs.PathError{Op: "write", Path: f.name, Err: syscall.EISDIR}
	case !f.writable():
		return 0, &fs.PathError{Op: "write", Path: f.name, Err: syscall.EBADF}
	case off < 0:
		return 0, &fs.PathError{Op: "write", Path: f.name, Err: syscall.EINVAL}
	case len(p) == 0:
		return 0, nil
	}
	if end := off + int64(len(p)); end > int64(len(f.n.data)) {
		f.n.data = grow(f.n.data, end)
	}
	copy(f.n.data[off:], p)
	f.m.touchFile(f.n)
	return len(p), nil
}

// grow extends data to size, zero-filled, doubling its capacity as needed
// so that a file written piece by piece is copied O(log n) times.
func grow(data []byte, size int64) []byte {
	if size <= int64(cap(data)) {
		old := len(data)
		data = data[:size]
		clear(data[old:])
		return data
	}
	out := make([]byte, size, max(size, 2*int64(cap(data))))
	copy(out, data)
	return out
}

// Seek implements io.Seeker.
func (f *file) Seek(offset int64, whence int) (int64, error) {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if err := f.usable("seek"); err != nil {
		return 0, err
	}
	var base int64
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		base = f.offset
	case io.SeekEnd:
		base = int64(len(f.n.data))
	default:
		return 0, &fs.PathError{Op: "seek", Path: f.name, Err: syscall.EINVAL}
	}
	if base+offset < 0 {
		return 0, &fs.PathError{Op: "seek", Path: f.name, Err: syscall.EINVAL}
	}
	f.offset = base + offset
	return f.offset, nil
}

// Truncate implements afero.File.
func (f *file) Truncate(size int64) error {
	if err := f.m.fault(OpTruncate, f.path()); err != nil {
		return err
	}
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if err := f.usable("truncate"); err != nil {
		return err
	}
	switch {
	case f.dir:
		return &fs.PathError{Op: "truncate", Path: f.name, Err: syscall.EISDIR}
	case !f.writable():
		return &fs.PathError{Op: "truncate", Path: f.name, Err: syscall.EBADF}
	case size < 0:
		return &fs.PathError{Op: "truncate", Path: f.name, Err: syscall.EINVAL}
	}
	if size <= int64(len(f.n.data)) {
		f.n.data = f.n.data[:size]
	} else {
		f.n.data = grow(f.n.data, size)
	}
	f.m.touchFile(f.n)
	return nil
}

// Sync implements afero.File: there is nowhere further to write to.
func (f *file) Sync() error {
	if err := f.m.fault(OpSync, f.path()); err != nil {
		return err
	}
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	return f.usable("sync")
}

// Readdir implements afero.File with os.File's semantics: the entries, by
// name, as they were at the first call; count <= 0 returns all that
// remain, count > 0 at most count, and io.EOF once none remain.
func (f *file) Readdir(count int) ([]os.FileInfo, error) {
	if err := f.m.fault(OpReaddir, f.path()); err != nil {
		return nil, err
	}
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if err := f.usable("readdir"); err != nil {
		return nil, err
	}
	if !f.dir {
		return nil, &fs.PathError{Op: "readdir", Path: f.name, Err: syscall.ENOTDIR}
	}
	if !f.listed {
		f.listed = true
		for _, name := range f.n.sortedNames() {
			f.entries = append(f.entries, f.n.children[name].info(name))
		}
	}
	n := len(f.entries)
	if count > 0 {
		if n == 0 {
			return nil, io.EOF
		}
		n = min(n, count)
	}
	out := f.entries[:n:n]
	f.entries = f.entries[n:]
	return out, nil
}

// Readdirnames implements afero.File.
func (f *file) Readdirnames(count int) ([]string, error) {
	fis, err := f.Readdir(count)
	names := make([]string, len(fis))
	for i, fi := range fis {
		names[i] = fi.Name()
	}
	return names, err
}

// SetTimes implements backend.TimesSetter: the times apply now, as
// futimens(2)'s, and a later write moves the mtime. A zero time leaves
// that time as it is.
func (f *file) SetTimes(atime, mtime time.Time) error {
	if err := f.m.fault(OpFutimes, f.path()); err != nil {
		return err
	}
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if err := f.usable("chtimes"); err != nil {
		return err
	}
	setTimes(f.n, atime, mtime)
	return nil
}

// Chmod implements backend.ModeSetter: an upload's mode changes too. The
// setuid bit is refused (EPERM), and the setgid bit but on a directory,
// as the agent refuses them.
func (f *file) Chmod(mode os.FileMode) error {
	p := f.path()
	if err := f.m.fault(OpFchmod, p); err != nil {
		return err
	}
	setgid := mode & fs.ModeSetgid
	if !f.dir {
		setgid = 0
	}
	mode, err := checkMode("chmod", p, mode&^setgid)
	if err != nil {
		return err
	}
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if err := f.usable("chmod"); err != nil {
		return err
	}
	f.n.mode = f.n.mode&fs.ModeType | mode | setgid
	return nil
}

// TransferError implements backend.TransferAborter: Close then commits
// nothing and reports the failure.
func (f *file) TransferError(err error) {
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if f.abort == nil {
		f.abort = err
	}
}

// Pending implements backend.Upload: the file is an upload in progress
// that Close will commit.
func (f *file) Pending() bool {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	return f.pending()
}

// pending is Pending with FS.mu held.
func (f *file) pending() bool { return f.up != nil && !f.up.unlinked && !f.closed }

// notUpload is the error of an Upload method on a file that is not an
// upload in progress. FS.mu is held.
func (f *file) notUpload(op string) error {
	if err := f.usable(op); err != nil {
		return err
	}
	if !f.pending() {
		return &fs.PathError{Op: op, Path: f.name, Err: errors.ErrUnsupported}
	}
	return nil
}

// Unlink implements backend.Upload: the upload is discarded now; later
// writes go nowhere visible and Close commits nothing.
func (f *file) Unlink() error {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if err := f.notUpload("unlink"); err != nil {
		return err
	}
	f.up.unlinked = true
	delete(f.m.uploads, f)
	return nil
}

// Move implements backend.Upload: the upload will commit as newname,
// whose directory must exist; a directory there is EISDIR. It replaces
// what it lands on, even after an exclusive create.
func (f *file) Move(newname string) error {
	np := clean(newname)
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if err := f.notUpload("rename"); err != nil {
		return err
	}
	fail := func(err error) error {
		if pe, ok := errors.AsType[*fs.PathError](err); ok {
			err = pe.Err
		}
		return &os.LinkError{Op: "rename", Old: f.name, New: np, Err: err}
	}
	if np == "/" {
		return fail(syscall.EISDIR)
	}
	w, err := f.m.walk("rename", np, false)
	switch {
	case err != nil:
		return fail(err)
	case w.n != nil && w.n.isDir():
		return fail(syscall.EISDIR)
	}
	f.up.target, f.up.excl = np, false
	f.name = np
	return nil
}

// Reopen implements backend.Upload: a new file on the upload's data, in
// place; it never commits, and once the upload commits it is the
// committed file.
func (f *file) Reopen(flag int) (afero.File, error) {
	p := f.path()
	if err := f.m.fault(OpOpen, p); err != nil {
		return nil, err
	}
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if err := f.notUpload("open"); err != nil {
		return nil, err
	}
	if flag&(os.O_CREATE|os.O_EXCL) == os.O_CREATE|os.O_EXCL {
		return nil, &fs.PathError{Op: "open", Path: f.name, Err: syscall.EEXIST}
	}
	g := &file{m: f.m, name: f.name, n: f.n, flag: flag &^ (os.O_CREATE | os.O_EXCL)}
	if flag&os.O_TRUNC != 0 { // as open(2) on Linux, read-only too
		f.n.data = nil
		f.m.touchFile(f.n)
	}
	if flag&os.O_APPEND != 0 {
		g.offset = int64(len(f.n.data))
	}
	return g, nil
}

// Close implements io.Closer. An upload commits: its data replaces what
// its path names, and Close returns nil exactly when it did. An upload
// that TransferError marked, one a write of which failed (Close returns
// that write's error), or whose Close fails (an injected fault, a
// directory removed under it, an exclusive create that lost the race)
// commits nothing. A second Close is os.ErrClosed.
func (f *file) Close() error {
	ferr := f.m.fault(OpClose, f.path())
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	if err := f.usable("close"); err != nil {
		return err
	}
	f.closed = true
	if f.up != nil {
		delete(f.m.uploads, f)
	}
	switch {
	case f.dir || !f.writable():
		return ferr
	case f.abort != nil:
		return &fs.PathError{Op: "close", Path: f.name, Err: fmt.Errorf("transfer aborted: %w", f.abort)}
	case f.writeErr != nil:
		return f.writeErr
	case ferr != nil:
		return ferr
	case f.up != nil && !f.up.unlinked:
		if err := f.m.commit(f.up, f.n); err != nil {
			return err
		}
	}
	return nil
}

// commit links an upload's node at its target, replacing what is there.
// FS.mu is held.
func (m *FS) commit(up *upload, n *node) error {
	w, err := m.walk("close", up.target, false)
	switch {
	case err != nil:
		return err
	case w.n != nil && up.excl:
		return &fs.PathError{Op: "close", Path: up.target, Err: syscall.EEXIST}
	case w.n != nil && w.n.isDir():
		return &fs.PathError{Op: "close", Path: up.target, Err: syscall.EISDIR}
	case w.n != nil:
		w.n.nlink--
	}
	n.nlink = 1
	w.dir.children[w.base] = n
	m.touch(w.dir)
	return nil
}
