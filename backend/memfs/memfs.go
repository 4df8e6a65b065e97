// Package memfs is an in-memory filesystem: the example implementation of
// upgate's filesystem layer (package backend), and a test fixture whose
// every operation can be made to fail.
//
// An FS is an afero.Fs with the optional capabilities the gRPC filesystem
// has, with the same contracts, so that a frontend served from an FS
// behaves as one served from an agent:
//
//   - afero.Lstater, afero.Linker and afero.LinkReader: symbolic links,
//     resolved as the kernel resolves them (at most 40 on one path); an
//     absolute target starts from the FS's root, and ".." never climbs
//     above it;
//   - backend.HardLinker and backend.LinkTimesSetter: hard links and a
//     link's own times;
//   - backend.Hasher: checksums of a file's content;
//   - backend.StatFSer: Options.Size as the filesystem's capacity.
//
// Atomic uploads. An open for writing that truncates, or that creates a
// file, is an upload: its writes go to data no path names until Close
// commits it, replacing whatever the path named (a replaced file's mode
// and owner are kept). Until then every Stat, Open and listing sees the
// old file, or none. TransferError followed by Close, or a Close that
// fails, commits nothing; an exclusive create (O_EXCL) whose name was
// taken meanwhile fails at Close with EEXIST. Uploads implement
// backend.Upload (so backend.View gives a session a POSIX view of its own
// uploads), backend.TransferAborter, backend.TimesSetter (times apply at
// once, as futimens(2)'s) and backend.ModeSetter. A write that
// fails makes Close fail with its error and commit nothing, as the agent
// refuses to commit after a failed write. Appends and writes into an
// existing file without truncating act in place.
//
// Errors are those of the os package: an *fs.PathError (an *os.LinkError
// for Rename and Link) wrapping a syscall.Errno, so that errors.Is(err,
// os.ErrNotExist), errors.Is(err, syscall.ENOTEMPTY) and their kin answer
// as they do for the gRPC filesystem.
//
// Error injection. Inject makes chosen calls fail: the Nth call of an
// operation on a path matching a pattern fails with a given error, or a
// function decides (see Fault). File methods (Write, Close, Readdir, ...)
// are operations too, so that a test can fill the disk in the middle of
// an upload or fail its commit.
//
// Differences from a disk, all on purpose: there are no permission checks
// (the agent's writes run as one user; inject EACCES to test a refusal),
// no umask, and nothing is ever written to disk. An FS is safe for
// concurrent use; one mutex serializes its calls.
package memfs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/afero"

	"github.com/upgate/upgate/backend"
)

// Options configure an FS. The zero value is usable.
type Options struct {
	// Now is the clock for the times of changed files. Nil means
	// time.Now.
	Now func() time.Time
	// Size is the capacity StatFS reports, in bytes. Zero means 1 GiB.
	// Writes beyond it are not refused: inject syscall.ENOSPC for that.
	Size int64
}

// DefaultSize is the capacity StatFS reports for the zero Options.
const DefaultSize = 1 << 30

// FS is an in-memory afero.Fs; see the package documentation. Create it
// with New.
type FS struct {
	now  func() time.Time
	size int64

	// mu guards the tree (root and every node's fields) and uploads, and
	// the state of every open file. Fault functions run without it.
	mu      sync.Mutex
	root    *node
	uploads map[*file]struct{} // uploads in progress, for Rename of a directory above them

	// faultMu guards faults, the injections in force, oldest first. It is
	// never held together with mu.
	faultMu sync.Mutex
	faults  []*Injection
}

var (
	_ afero.Fs                = (*FS)(nil)
	_ afero.Lstater           = (*FS)(nil)
	_ afero.Linker            = (*FS)(nil)
	_ afero.LinkReader        = (*FS)(nil)
	_ backend.Hasher          = (*FS)(nil)
	_ backend.StatFSer        = (*FS)(nil)
	_ backend.HardLinker      = (*FS)(nil)
	_ backend.LinkTimesSetter = (*FS)(nil)
)

// New returns an empty filesystem: a root directory with mode 0755.
func New(opts Options) *FS {
	m := &FS{now: opts.Now, size: opts.Size, uploads: make(map[*file]struct{})}
	if m.now == nil {
		m.now = time.Now
	}
	if m.size <= 0 {
		m.size = DefaultSize
	}
	t := m.now()
	m.root = &node{mode: fs.ModeDir | 0o755, mtime: t, atime: t, nlink: 1, children: map[string]*node{}}
	return m
}

// Name implements afero.Fs.
func (m *FS) Name() string { return "memfs" }

// lookup resolves name for op and returns what it names, or ENOENT. FS.mu
// is held.
func (m *FS) lookup(op, name string, follow bool) (where, error) {
	w, err := m.walk(op, name, follow)
	if err == nil && w.n == nil {
		err = &fs.PathError{Op: op, Path: name, Err: syscall.ENOENT}
	}
	return w, err
}

// touch sets a directory's times after a change of its entries. FS.mu is
// held.
func (m *FS) touch(n *node) {
	t := m.now()
	n.mtime, n.atime = t, t
}

// Create implements afero.Fs.
func (m *FS) Create(name string) (afero.File, error) {
	return m.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o666)
}

// Open implements afero.Fs.
func (m *FS) Open(name string) (afero.File, error) { return m.OpenFile(name, os.O_RDONLY, 0) }

// Mkdir implements afero.Fs.
func (m *FS) Mkdir(name string, perm os.FileMode) error {
	p := clean(name)
	if err := m.fault(OpMkdir, p); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.mkdir(p, perm)
}

// mkdir makes directory p. FS.mu is held.
func (m *FS) mkdir(p string, perm os.FileMode) error {
	w, err := m.walk("mkdir", p, false)
	switch {
	case err != nil:
		return err
	case w.n != nil:
		return &fs.PathError{Op: "mkdir", Path: p, Err: syscall.EEXIST}
	}
	t := m.now()
	w.dir.children[w.base] = &node{mode: fs.ModeDir | perm&(fs.ModePerm|fs.ModeSticky), mtime: t, atime: t, nlink: 1, children: map[string]*node{}}
	m.touch(w.dir)
	return nil
}

// MkdirAll implements afero.Fs: the directories on the way are made too;
// a file on the way is ENOTDIR.
func (m *FS) MkdirAll(name string, perm os.FileMode) error {
	p := clean(name)
	if err := m.fault(OpMkdir, p); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	parts := strings.Split(strings.TrimPrefix(p, "/"), "/")
	for i := range parts {
		q := "/" + strings.Join(parts[:i+1], "/")
		if q == "/" {
			continue
		}
		w, err := m.walk("mkdir", q, true)
		switch {
		case err != nil:
			return err
		case w.n != nil && w.n.isDir():
			continue
		case w.n != nil:
			return &fs.PathError{Op: "mkdir", Path: q, Err: syscall.ENOTDIR}
		}
		if err := m.mkdir(q, perm); err != nil {
			return err
		}
	}
	return nil
}

// Remove implements afero.Fs: a file, a link or an empty directory.
func (m *FS) Remove(name string) error {
	p := clean(name)
	if err := m.fault(OpRemove, p); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.remove(p, false)
}

// RemoveAll implements afero.Fs: a missing path is no error.
func (m *FS) RemoveAll(name string) error {
	p := clean(name)
	if err := m.fault(OpRemove, p); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	err := m.remove(p, true)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// remove unlinks p. FS.mu is held.
func (m *FS) remove(p string, all bool) error {
	if p == "/" {
		return &fs.PathError{Op: "remove", Path: p, Err: syscall.EACCES}
	}
	w, err := m.lookup("remove", p, false)
	if err != nil {
		return err
	}
	if w.n.isDir() && len(w.n.children) > 0 && !all {
		return &fs.PathError{Op: "remove", Path: p, Err: syscall.ENOTEMPTY}
	}
	delete(w.dir.children, w.base)
	w.n.nlink--
	m.touch(w.dir)
	return nil
}

// Rename implements afero.Fs as rename(2): it replaces an existing file,
// or an empty directory with a directory. Uploads in progress below a
// renamed directory commit under its new name.
func (m *FS) Rename(oldname, newname string) error {
	op, np := clean(oldname), clean(newname)
	if err := m.fault(OpRename, op, np); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	fail := func(err error) error { return linkError("rename", op, np, err) }
	if op == "/" || np == "/" {
		return fail(syscall.EACCES)
	}
	from, err := m.lookup("rename", op, false)
	if err != nil {
		return fail(err)
	}
	to, err := m.walk("rename", np, false)
	if err != nil {
		return fail(err)
	}
	switch {
	case to.n == from.n:
		return nil // the same file: nothing to do
	case from.n.isDir() && strings.HasPrefix(to.path, from.path+"/"):
		return fail(syscall.EINVAL) // into itself
	case to.n != nil && from.n.isDir() && !to.n.isDir():
		return fail(syscall.ENOTDIR)
	case to.n != nil && !from.n.isDir() && to.n.isDir():
		return fail(syscall.EISDIR)
	case to.n != nil && to.n.isDir() && len(to.n.children) > 0:
		return fail(syscall.ENOTEMPTY)
	}
	if to.n != nil {
		to.n.nlink--
	}
	delete(from.dir.children, from.base)
	to.dir.children[to.base] = from.n
	m.touch(from.dir)
	m.touch(to.dir)
	if from.n.isDir() {
		for f := range m.uploads {
			if rest, ok := strings.CutPrefix(f.up.target, from.path+"/"); ok {
				f.up.target = to.path + "/" + rest
				f.name = f.up.target
			}
		}
	}
	return nil
}

// Stat implements afero.Fs, following symbolic links.
func (m *FS) Stat(name string) (os.FileInfo, error) { return m.stat(OpStat, name, true) }

// LstatIfPossible implements afero.Lstater: a final symbolic link is
// described, not followed.
func (m *FS) LstatIfPossible(name string) (os.FileInfo, bool, error) {
	fi, err := m.stat(OpLstat, name, false)
	return fi, true, err
}

func (m *FS) stat(op Op, name string, follow bool) (os.FileInfo, error) {
	p := clean(name)
	if err := m.fault(op, p); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	w, err := m.lookup(string(op), p, follow)
	if err != nil {
		return nil, err
	}
	return w.n.info(lastName(p, "/")), nil
}

// lastName is the name a FileInfo for p (clean, absolute) carries: p's
// last element as the client named it, not its link's target's; fallback
// for "/".
func lastName(p, fallback string) string {
	if p == "/" {
		return fallback
	}
	return p[strings.LastIndexByte(p, '/')+1:]
}

// checkMode refuses setuid and setgid bits, as the agent does.
func checkMode(op, p string, mode os.FileMode) (os.FileMode, error) {
	if mode&(fs.ModeSetuid|fs.ModeSetgid) != 0 {
		return 0, &fs.PathError{Op: op, Path: p, Err: fmt.Errorf("%w: setuid and setgid bits are refused", syscall.EPERM)}
	}
	return mode & (fs.ModePerm | fs.ModeSticky), nil
}

// Chmod implements afero.Fs. The setuid bit is refused (EPERM), and the
// setgid bit everywhere but on a directory, as the agent refuses them.
func (m *FS) Chmod(name string, mode os.FileMode) error {
	p := clean(name)
	if err := m.fault(OpChmod, p); err != nil {
		return err
	}
	setgid := mode & fs.ModeSetgid
	mode, err := checkMode("chmod", p, mode&^fs.ModeSetgid)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	w, err := m.lookup("chmod", p, true)
	if err != nil {
		return err
	}
	if setgid != 0 && !w.n.mode.IsDir() {
		return &fs.PathError{Op: "chmod", Path: p, Err: fmt.Errorf("%w: the setgid bit is set on directories only", syscall.EPERM)}
	}
	w.n.mode = w.n.mode&fs.ModeType | mode | setgid
	return nil
}

// Chown implements afero.Fs; -1 leaves that id as it is.
func (m *FS) Chown(name string, uid, gid int) error {
	p := clean(name)
	if err := m.fault(OpChown, p); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	w, err := m.lookup("chown", p, true)
	if err != nil {
		return err
	}
	if uid >= 0 {
		w.n.uid = uint32(uid)
	}
	if gid >= 0 {
		w.n.gid = uint32(gid)
	}
	return nil
}

// setTimes sets n's times; a zero time leaves that time as it is. FS.mu
// is held.
func setTimes(n *node, atime, mtime time.Time) {
	if !atime.IsZero() {
		n.atime = atime
	}
	if !mtime.IsZero() {
		n.mtime = mtime
	}
}

// Chtimes implements afero.Fs, following symbolic links. A zero time
// leaves that time as it is.
func (m *FS) Chtimes(name string, atime, mtime time.Time) error {
	return m.chtimes(OpChtimes, name, atime, mtime, true)
}

// Lchtimes implements backend.LinkTimesSetter: a final link's own times.
func (m *FS) Lchtimes(name string, atime, mtime time.Time) error {
	return m.chtimes(OpLchtimes, name, atime, mtime, false)
}

func (m *FS) chtimes(op Op, name string, atime, mtime time.Time, follow bool) error {
	p := clean(name)
	if err := m.fault(op, p); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	w, err := m.lookup(string(op), p, follow)
	if err != nil {
		return err
	}
	setTimes(w.n, atime, mtime)
	return nil
}

// SymlinkIfPossible implements afero.Linker: newname becomes a link whose
// content is oldname, as given.
func (m *FS) SymlinkIfPossible(oldname, newname string) error {
	np := clean(newname)
	if err := m.fault(OpSymlink, np); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	fail := func(err error) error {
		if pe, ok := errors.AsType[*fs.PathError](err); ok {
			err = pe.Err
		}
		return &os.LinkError{Op: "symlink", Old: oldname, New: np, Err: err}
	}
	if oldname == "" {
		return fail(syscall.ENOENT)
	}
	w, err := m.walk("symlink", np, false)
	switch {
	case err != nil:
		return fail(err)
	case w.n != nil:
		return fail(syscall.EEXIST)
	}
	t := m.now()
	w.dir.children[w.base] = &node{mode: fs.ModeSymlink | 0o777, mtime: t, atime: t, nlink: 1, target: oldname}
	m.touch(w.dir)
	return nil
}

// ReadlinkIfPossible implements afero.LinkReader; a name that is no link
// is EINVAL.
func (m *FS) ReadlinkIfPossible(name string) (string, error) {
	p := clean(name)
	if err := m.fault(OpReadlink, p); err != nil {
		return "", err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	w, err := m.lookup("readlink", p, false)
	if err != nil {
		return "", err
	}
	if !w.n.isSymlink() {
		return "", &fs.PathError{Op: "readlink", Path: p, Err: syscall.EINVAL}
	}
	return w.n.target, nil
}

// Link implements backend.HardLinker: newname becomes another name of the
// file oldname (a directory is EPERM, as link(2) answers).
func (m *FS) Link(oldname, newname string) error {
	op, np := clean(oldname), clean(newname)
	if err := m.fault(OpLink, op, np); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	fail := func(err error) error { return linkError("link", op, np, err) }
	from, err := m.lookup("link", op, false)
	if err != nil {
		return fail(err)
	}
	if from.n.isDir() {
		return fail(syscall.EPERM)
	}
	to, err := m.walk("link", np, false)
	switch {
	case err != nil:
		return fail(err)
	case to.n != nil:
		return fail(syscall.EEXIST)
	}
	to.dir.children[to.base] = from.n
	from.n.nlink++
	m.touch(to.dir)
	return nil
}

// Hash implements backend.Hasher: the checksum of length bytes of name's
// content from offset (length 0: to the end), computed here.
func (m *FS) Hash(ctx context.Context, name string, algo backend.HashAlgorithm, offset, length int64) ([]byte, error) {
	p := clean(name)
	if err := m.fault(OpHash, p); err != nil {
		return nil, err
	}
	h, ok := algo.New()
	if !ok {
		return nil, &fs.PathError{Op: "hash", Path: p, Err: fmt.Errorf("%w: unsupported hash algorithm %q", syscall.EINVAL, algo)}
	}
	if offset < 0 || length < 0 {
		return nil, &fs.PathError{Op: "hash", Path: p, Err: syscall.EINVAL}
	}
	if err := ctx.Err(); err != nil {
		return nil, &fs.PathError{Op: "hash", Path: p, Err: err}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	w, err := m.lookup("hash", p, true)
	if err != nil {
		return nil, err
	}
	if w.n.isDir() {
		return nil, &fs.PathError{Op: "hash", Path: p, Err: syscall.EISDIR}
	}
	data := w.n.data[min(offset, int64(len(w.n.data))):]
	if length > 0 {
		data = data[:min(length, int64(len(data)))]
	}
	h.Write(data)
	return h.Sum(nil), nil
}

// StatFS implements backend.StatFSer: Options.Size in 4 KiB blocks, less
// the bytes of the files in the tree.
func (m *FS) StatFS(ctx context.Context, name string) (backend.FSStats, error) {
	p := clean(name)
	if err := m.fault(OpStatFS, p); err != nil {
		return backend.FSStats{}, err
	}
	if err := ctx.Err(); err != nil {
		return backend.FSStats{}, &fs.PathError{Op: "statfs", Path: p, Err: err}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, err := m.lookup("statfs", p, true); err != nil {
		return backend.FSStats{}, err
	}
	const block = 4096
	used, files := m.usage()
	total := uint64(m.size) / block
	free := total - min(total, (used+block-1)/block)
	return backend.FSStats{BlockSize: block, FragmentSize: block, Blocks: total, BlocksFree: free, BlocksAvailable: free,
		Files: total, FilesFree: total - min(total, files), NameMax: 255}, nil
}

// usage counts the bytes and the nodes of the tree, each node once
// whatever its number of names. FS.mu is held.
func (m *FS) usage() (bytes, nodes uint64) {
	seen := map[*node]bool{}
	var visit func(n *node)
	visit = func(n *node) {
		if seen[n] {
			return
		}
		seen[n] = true
		nodes++
		bytes += uint64(len(n.data))
		for _, c := range n.children {
			visit(c)
		}
	}
	visit(m.root)
	return bytes, nodes
}

// linkError is the error of a two-path operation, carrying the errno of a
// lookup's PathError rather than the PathError itself, as os.Rename's and
// os.Link's errors do.
func linkError(op, oldname, newname string, err error) error {
	if pe, ok := errors.AsType[*fs.PathError](err); ok {
		err = pe.Err
	}
	return &os.LinkError{Op: op, Old: oldname, New: newname, Err: err}
}
