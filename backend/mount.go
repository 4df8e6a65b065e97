package backend

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/afero"
)

// Mount attaches a filesystem at a path of a user's tree.
type Mount struct {
	// Path is where the mount appears: absolute and clean ("/",
	// "/api").
	Path string
	// Fs serves the mount; its "/" is Path.
	Fs afero.Fs
}

// MountFs composes one tree from several filesystems (typically one per
// agent), like a mount table. A path belongs to the mount with the longest
// matching Path. Directories above mount points that no mount covers are
// read-only and list the mount points. Listing a directory shows the
// mount points directly below it. A rename across mounts fails with
// EXDEV, as rename(2) does across devices; a symlink may not point into
// another mount.
type MountFs struct {
	mounts []Mount // longest Path first
}

var (
	_ afero.Fs         = (*MountFs)(nil)
	_ afero.Lstater    = (*MountFs)(nil)
	_ afero.Linker     = (*MountFs)(nil)
	_ afero.LinkReader = (*MountFs)(nil)
	_ Hasher           = (*MountFs)(nil)
	_ StatFSer         = (*MountFs)(nil)
	_ DirSearcher      = (*MountFs)(nil)
	_ ChangeChecker    = (*MountFs)(nil)
	_ KindRemover      = (*MountFs)(nil)
	_ HardLinker       = (*MountFs)(nil)
	_ LinkTimesSetter  = (*MountFs)(nil)
)

// NewMountFs builds a mount table. Mount paths must be absolute, clean and
// unique.
func NewMountFs(mounts []Mount) (*MountFs, error) {
	seen := map[string]bool{}
	ms := make([]Mount, 0, len(mounts))
	for _, m := range mounts {
		if !path.IsAbs(m.Path) || path.Clean(m.Path) != m.Path {
			return nil, fmt.Errorf("backend: mount path %q is not absolute and clean", m.Path)
		}
		if seen[m.Path] {
			return nil, fmt.Errorf("backend: two mounts at %q", m.Path)
		}
		seen[m.Path] = true
		ms = append(ms, m)
	}
	if len(ms) == 0 {
		return nil, errors.New("backend: no mounts")
	}
	sort.Slice(ms, func(i, j int) bool { return len(ms[i].Path) > len(ms[j].Path) })
	return &MountFs{mounts: ms}, nil
}

// within reports whether p is mount path m or below it.
func within(p, m string) bool {
	return m == "/" || p == m || strings.HasPrefix(p, m+"/")
}

// resolve finds the mount serving name and the path inside it; ok is false
// for the synthetic directories above mount points.
func (m *MountFs) resolve(name string) (mnt *Mount, rel string, ok bool) {
	p := userPath(name)
	for i := range m.mounts {
		if within(p, m.mounts[i].Path) {
			mnt = &m.mounts[i]
			return mnt, "/" + strings.TrimPrefix(strings.TrimPrefix(p, mnt.Path), "/"), true
		}
	}
	return nil, "", false
}

// childMounts names the mount points directly below directory p.
func (m *MountFs) childMounts(p string) []string {
	var out []string
	for _, mnt := range m.mounts {
		if mnt.Path != "/" && path.Dir(mnt.Path) == p {
			out = append(out, path.Base(mnt.Path))
		}
	}
	return out
}

// isMountPoint reports whether p is where a mount other than "/" is
// attached.
func (m *MountFs) isMountPoint(p string) bool {
	for _, mnt := range m.mounts {
		if mnt.Path == p && p != "/" {
			return true
		}
	}
	return false
}

// synthetic reports whether p is a directory above some mount point that
// no mount covers.
func (m *MountFs) synthetic(p string) bool {
	if _, _, ok := m.resolve(p); ok {
		return false
	}
	for _, mnt := range m.mounts {
		if within(mnt.Path, p) {
			return true
		}
	}
	return false
}

// The block size and longest name a directory above the mount points
// reports (StatFS): Linux's page size and NAME_MAX, what the mounts'
// own file systems usually report.
const (
	syntheticBlockSize = 4096
	syntheticNameMax   = 255
)

func denyRO(op, name string) error {
	return &fs.PathError{Op: op, Path: userPath(name), Err: syscall.EROFS}
}

// Name implements afero.Fs.
func (m *MountFs) Name() string { return "MountFs" }

// Create implements afero.Fs.
func (m *MountFs) Create(name string) (afero.File, error) {
	return m.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o666)
}

// Open implements afero.Fs.
func (m *MountFs) Open(name string) (afero.File, error) { return m.OpenFile(name, os.O_RDONLY, 0) }

// OpenFile implements afero.Fs.
func (m *MountFs) OpenFile(name string, flag int, perm os.FileMode) (afero.File, error) {
	p := userPath(name)
	mnt, rel, ok := m.resolve(p)
	if !ok {
		if !m.synthetic(p) {
			if flag&os.O_CREATE != 0 && m.synthetic(path.Dir(p)) {
				return nil, denyRO("open", p)
			}
			return nil, &fs.PathError{Op: "open", Path: p, Err: syscall.ENOENT}
		}
		if flag&(os.O_WRONLY|os.O_RDWR|os.O_CREATE|os.O_TRUNC|os.O_APPEND) != 0 {
			return nil, &fs.PathError{Op: "open", Path: p, Err: syscall.EISDIR}
		}
		return &syntheticDir{m: m, name: p}, nil
	}
	f, err := mnt.Fs.OpenFile(rel, flag, perm)
	if err != nil {
		return nil, renamePathErr(err, p)
	}
	return &mountFile{FileWrapper: FileWrapper{f}, m: m, name: p}, nil
}

// renamePathErr makes a mount's error name the user's path.
func renamePathErr(err error, p string) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return &fs.PathError{Op: pe.Op, Path: p, Err: pe.Err}
	}
	return err
}

func (m *MountFs) pathOp(op, name string, fn func(fs afero.Fs, rel string) error) error {
	p := userPath(name)
	mnt, rel, ok := m.resolve(p)
	if !ok {
		if m.synthetic(p) || m.synthetic(path.Dir(p)) {
			return denyRO(op, p) // the directories above mount points are read-only
		}
		return &fs.PathError{Op: op, Path: p, Err: syscall.ENOENT}
	}
	return renamePathErr(fn(mnt.Fs, rel), p)
}

// Mkdir implements afero.Fs.
func (m *MountFs) Mkdir(name string, perm os.FileMode) error {
	if p := userPath(name); m.isMountPoint(p) || m.synthetic(p) {
		return &fs.PathError{Op: "mkdir", Path: p, Err: syscall.EEXIST}
	}
	return m.pathOp("mkdir", name, func(f afero.Fs, rel string) error { return f.Mkdir(rel, perm) })
}

// MkdirAll implements afero.Fs.
func (m *MountFs) MkdirAll(name string, perm os.FileMode) error {
	if p := userPath(name); m.isMountPoint(p) || m.synthetic(p) {
		return nil
	}
	return m.pathOp("mkdir", name, func(f afero.Fs, rel string) error { return f.MkdirAll(rel, perm) })
}

func (m *MountFs) removable(op, name string) error {
	p := userPath(name)
	if p == "/" || m.isMountPoint(p) || m.synthetic(p) {
		return &fs.PathError{Op: op, Path: p, Err: syscall.EBUSY}
	}
	for _, mnt := range m.mounts {
		if mnt.Path != "/" && within(mnt.Path, p) && mnt.Path != p {
			return &fs.PathError{Op: op, Path: p, Err: syscall.EBUSY} // holds a mount point
		}
	}
	return nil
}

// Remove implements afero.Fs.
func (m *MountFs) Remove(name string) error {
	if err := m.removable("remove", name); err != nil {
		return err
	}
	return m.pathOp("remove", name, func(f afero.Fs, rel string) error { return f.Remove(rel) })
}

// RemoveFile implements KindRemover; mount points and the directories
// above them are directories.
func (m *MountFs) RemoveFile(name string) error {
	if p := userPath(name); p == "/" || m.isMountPoint(p) || m.synthetic(p) {
		return &fs.PathError{Op: "remove", Path: p, Err: syscall.EISDIR}
	}
	if err := m.removable("remove", name); err != nil {
		return err // holds a mount point
	}
	return m.pathOp("remove", name, func(f afero.Fs, rel string) error { return RemoveFile(f, rel) })
}

// RemoveDir implements KindRemover.
func (m *MountFs) RemoveDir(name string) error {
	if err := m.removable("rmdir", name); err != nil {
		return err
	}
	return m.pathOp("rmdir", name, func(f afero.Fs, rel string) error { return RemoveDir(f, rel) })
}

// MayChangeIn implements ChangeChecker. A mount point, a directory above
// one and a directory holding one cannot change (EBUSY, as Remove and
// Rename answer), and the directories above mount points are read-only.
func (m *MountFs) MayChangeIn(name string) error {
	if err := m.removable("access", name); err != nil {
		return err
	}
	return m.pathOp("access", name, func(f afero.Fs, rel string) error { return MayChangeIn(f, rel) })
}

// RemoveAll implements afero.Fs.
func (m *MountFs) RemoveAll(name string) error {
	if err := m.removable("remove", name); err != nil {
		return err
	}
	return m.pathOp("remove", name, func(f afero.Fs, rel string) error { return f.RemoveAll(rel) })
}

// Rename implements afero.Fs; across mounts it fails with EXDEV.
func (m *MountFs) Rename(oldname, newname string) error {
	op, np := userPath(oldname), userPath(newname)
	linkErr := func(err error) error { return &os.LinkError{Op: "rename", Old: op, New: np, Err: err} }
	if err := m.removable("rename", op); err != nil {
		return linkErr(syscall.EBUSY)
	}
	if m.isMountPoint(np) || m.synthetic(np) {
		return linkErr(syscall.EBUSY)
	}
	om, orel, ok1 := m.resolve(op)
	nm, nrel, ok2 := m.resolve(np)
	if !ok1 || !ok2 {
		return linkErr(syscall.ENOENT)
	}
	if om != nm {
		return linkErr(syscall.EXDEV)
	}
	return om.Fs.Rename(orel, nrel)
}

// statKind is what MountFs.stat asks of the mount's filesystem.
type statKind int

const (
	statFollow statKind = iota // Stat
	statLink                   // Lstat
	statSearch                 // StatSearch
)

func (m *MountFs) stat(name string, kind statKind) (os.FileInfo, error) {
	p := userPath(name)
	mnt, rel, ok := m.resolve(p)
	if !ok {
		if m.synthetic(p) {
			return syntheticInfo(path.Base(p)), nil
		}
		return nil, &fs.PathError{Op: "stat", Path: p, Err: syscall.ENOENT}
	}
	var fi os.FileInfo
	var err error
	switch kind {
	case statLink:
		fi, err = Lstat(mnt.Fs, rel)
	case statSearch:
		fi, err = StatSearch(mnt.Fs, rel)
	default:
		fi, err = mnt.Fs.Stat(rel)
	}
	if err != nil {
		return nil, renamePathErr(err, p)
	}
	if rel == "/" {
		fi = renamedInfo{fi, path.Base(p)} // a mount's root shows under its mount point's name
	}
	return fi, nil
}

// Stat implements afero.Fs.
func (m *MountFs) Stat(name string) (os.FileInfo, error) { return m.stat(name, statFollow) }

// StatSearch implements DirSearcher; the directories above mount points
// may be entered.
func (m *MountFs) StatSearch(name string) (os.FileInfo, error) { return m.stat(name, statSearch) }

// LstatIfPossible implements afero.Lstater.
func (m *MountFs) LstatIfPossible(name string) (os.FileInfo, bool, error) {
	fi, err := m.stat(name, statLink)
	return fi, true, err
}

// Chmod implements afero.Fs.
func (m *MountFs) Chmod(name string, mode os.FileMode) error {
	return m.pathOp("chmod", name, func(f afero.Fs, rel string) error { return f.Chmod(rel, mode) })
}

// Chown implements afero.Fs.
func (m *MountFs) Chown(name string, uid, gid int) error {
	return m.pathOp("chown", name, func(f afero.Fs, rel string) error { return f.Chown(rel, uid, gid) })
}

// Chtimes implements afero.Fs.
func (m *MountFs) Chtimes(name string, atime, mtime time.Time) error {
	return m.pathOp("chtimes", name, func(f afero.Fs, rel string) error { return f.Chtimes(rel, atime, mtime) })
}

// Lchtimes implements LinkTimesSetter.
func (m *MountFs) Lchtimes(name string, atime, mtime time.Time) error {
	return m.pathOp("lchtimes", name, func(f afero.Fs, rel string) error { return Lchtimes(f, rel, atime, mtime) })
}

// SymlinkIfPossible implements afero.Linker. The link and an absolute
// target must be in the same mount.
func (m *MountFs) SymlinkIfPossible(oldname, newname string) error {
	link := userPath(newname)
	mnt, rel, ok := m.resolve(link)
	if !ok {
		return &os.LinkError{Op: "symlink", Old: oldname, New: link, Err: syscall.EROFS}
	}
	target := oldname
	if path.IsAbs(target) {
		tm, trel, ok := m.resolve(target)
		if !ok || tm != mnt {
			return &os.LinkError{Op: "symlink", Old: oldname, New: link, Err: syscall.EXDEV}
		}
		target = trel
	} else if tm, _, ok := m.resolve(path.Join(path.Dir(link), target)); !ok || tm != mnt {
		return &os.LinkError{Op: "symlink", Old: oldname, New: link, Err: syscall.EXDEV}
	}
	l, ok := mnt.Fs.(afero.Linker)
	if !ok {
		return &os.LinkError{Op: "symlink", Old: oldname, New: link, Err: afero.ErrNoSymlink}
	}
	return l.SymlinkIfPossible(target, rel)
}

// Link implements HardLinker; across mounts it fails with EXDEV.
func (m *MountFs) Link(oldname, newname string) error {
	op, np := userPath(oldname), userPath(newname)
	om, orel, ok1 := m.resolve(op)
	nm, nrel, ok2 := m.resolve(np)
	switch {
	case !ok1 || !ok2:
		return &os.LinkError{Op: "link", Old: op, New: np, Err: syscall.ENOENT}
	case om != nm:
		return &os.LinkError{Op: "link", Old: op, New: np, Err: syscall.EXDEV}
	}
	return Link(om.Fs, orel, nrel)
}

// ReadlinkIfPossible implements afero.LinkReader.
func (m *MountFs) ReadlinkIfPossible(name string) (string, error) {
	var target string
	err := m.pathOp("readlink", name, func(f afero.Fs, rel string) error {
		l, ok := f.(afero.LinkReader)
		if !ok {
			return &fs.PathError{Op: "readlink", Path: rel, Err: afero.ErrNoReadlink}
		}
		var err error
		target, err = l.ReadlinkIfPossible(rel)
		return err
	})
	return target, err
}

// Hash implements Hasher for the mount holding name.
func (m *MountFs) Hash(ctx context.Context, name string, algo HashAlgorithm, offset, length int64) ([]byte, error) {
	var sum []byte
	err := m.pathOp("hash", name, func(f afero.Fs, rel string) error {
		h, ok := f.(Hasher)
		if !ok {
			return errors.ErrUnsupported
		}
		var err error
		sum, err = h.Hash(ctx, rel, algo, offset, length)
		return err
	})
	return sum, err
}

// StatFS implements StatFSer for the mount holding name. A directory
// above the mount points has no capacity of its own: it is reported as a
// read-only file system with no blocks and no inodes (as df shows a
// pseudo file system), so that a client that asks about its root (sshfs,
// for df or a file manager's free space) gets an answer, not an error.
func (m *MountFs) StatFS(ctx context.Context, name string) (FSStats, error) {
	p := userPath(name)
	mnt, rel, ok := m.resolve(p)
	switch {
	case !ok && m.synthetic(p):
		return FSStats{BlockSize: syntheticBlockSize, FragmentSize: syntheticBlockSize, NameMax: syntheticNameMax, ReadOnly: true}, nil
	case !ok:
		return FSStats{}, &fs.PathError{Op: "statfs", Path: p, Err: syscall.ENOENT} // as statvfs(2) of a missing name
	}
	s, ok := mnt.Fs.(StatFSer)
	if !ok {
		return FSStats{}, &fs.PathError{Op: "statfs", Path: p, Err: errors.ErrUnsupported}
	}
	st, err := s.StatFS(ctx, rel)
	return st, renamePathErr(err, p)
}

// mountFile is a file of one mount shown under its user path; it passes
// the optional file capabilities through.
type mountFile struct {
	FileWrapper
	m    *MountFs
	name string
	// children are the mount points a listing has yet to show (nil until
	// the first Readdir); listed is set once the mount's own listing ended.
	children []os.FileInfo
	listed   bool
}

func (f *mountFile) Name() string { return f.name }

// Move makes the mount's upload commit as newname, a user path of the
// same mount (another mount: EXDEV, as rename(2) across devices).
func (f *mountFile) Move(newname string) error {
	np := userPath(newname)
	om, _, _ := f.m.resolve(f.name)
	nm, nrel, ok := f.m.resolve(np)
	if !ok || om != nm || f.m.isMountPoint(np) {
		return &os.LinkError{Op: "rename", Old: f.name, New: np, Err: syscall.EXDEV}
	}
	if err := f.FileWrapper.Move(nrel); err != nil {
		return err
	}
	f.name = np
	return nil
}

// Reopen opens the upload's data again under the same user path.
func (f *mountFile) Reopen(flag int) (afero.File, error) {
	return f.reopened(f.FileWrapper.Reopen(flag))
}

// ReopenHeld is Reopen for a handle that held the file open already
// (HeldReopener).
func (f *mountFile) ReopenHeld(flag int) (afero.File, error) {
	return f.reopened(f.FileWrapper.ReopenHeld(flag))
}

// reopened is nf, the upload's data opened again, under f's user path.
func (f *mountFile) reopened(nf afero.File, err error) (afero.File, error) {
	if err != nil {
		return nil, renamePathErr(err, f.name)
	}
	return &mountFile{FileWrapper: FileWrapper{nf}, m: f.m, name: f.name}, nil
}

// ReadFrom passes an io.Copy into the file on (see backend.ReadFrom).
func (f *mountFile) ReadFrom(r io.Reader) (int64, error) { return ReadFrom(f.File, r) }

// Readdir adds the mount points directly below this directory, page by
// page: an entry a mount point hides is left out of every page, and the
// mount points follow the last entry.
func (f *mountFile) Readdir(count int) ([]os.FileInfo, error) {
	if f.children == nil {
		f.children = f.m.mountPointInfos(f.name)
	}
	// A page is full unless the listing ended: callers take a short page
	// for the end, so entries a mount point hides are made up for from
	// the pages that follow.
	var fis []os.FileInfo
	for !f.listed && (count <= 0 || len(fis) < count) {
		want := count
		if count > 0 {
			want = count - len(fis)
		}
		page, err := f.File.Readdir(want)
		for _, fi := range page {
			if !f.hides(fi.Name()) {
				fis = append(fis, fi)
			}
		}
		switch {
		case err != nil && !errors.Is(err, io.EOF):
			return fis, err
		case err == nil && count > 0 && len(page) == want:
		default:
			f.listed = true
		}
	}
	if !f.listed {
		return fis, nil
	}
	if count <= 0 {
		fis = append(fis, f.children...)
		f.children = f.children[:0]
		sort.Slice(fis, func(i, j int) bool { return fis[i].Name() < fis[j].Name() })
		return fis, nil
	}
	n := min(count-len(fis), len(f.children))
	fis = append(fis, f.children[:n]...)
	f.children = f.children[n:]
	if len(fis) == 0 {
		return nil, io.EOF
	}
	return fis, nil
}

// hides reports whether a mount point directly below the directory hides
// the entry name.
func (f *mountFile) hides(name string) bool {
	for _, c := range f.m.childMounts(f.name) {
		if c == name {
			return true
		}
	}
	return false
}

func (f *mountFile) Readdirnames(n int) ([]string, error) {
	fis, err := f.Readdir(n)
	names := make([]string, len(fis))
	for i, fi := range fis {
		names[i] = fi.Name()
	}
	return names, err
}

// mountPointInfos describes the mount points directly below dir, as a
// listing of dir shows them.
func (m *MountFs) mountPointInfos(dir string) []os.FileInfo {
	out := []os.FileInfo{}
	for _, c := range m.childMounts(dir) {
		fi, err := m.Stat(path.Join(dir, c))
		if err != nil {
			fi = syntheticInfo(c)
		}
		out = append(out, renamedInfo{fi, c})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name() < out[j].Name() })
	return out
}

// syntheticDir is a read-only directory above mount points.
type syntheticDir struct {
	m      *MountFs
	name   string
	listed bool
}

func (d *syntheticDir) Name() string                       { return d.name }
func (d *syntheticDir) IsDir() bool                        { return true }
func (d *syntheticDir) Stat() (os.FileInfo, error)         { return syntheticInfo(path.Base(d.name)), nil }
func (d *syntheticDir) Close() error                       { return nil }
func (d *syntheticDir) Sync() error                        { return nil }
func (d *syntheticDir) Read([]byte) (int, error)           { return 0, d.isDir("read") }
func (d *syntheticDir) ReadAt([]byte, int64) (int, error)  { return 0, d.isDir("read") }
func (d *syntheticDir) Seek(int64, int) (int64, error)     { return 0, d.isDir("seek") }
func (d *syntheticDir) Write([]byte) (int, error)          { return 0, d.isDir("write") }
func (d *syntheticDir) WriteAt([]byte, int64) (int, error) { return 0, d.isDir("write") }
func (d *syntheticDir) WriteString(string) (int, error)    { return 0, d.isDir("write") }
func (d *syntheticDir) Truncate(int64) error               { return d.isDir("truncate") }
func (d *syntheticDir) isDir(op string) error {
	return &fs.PathError{Op: op, Path: d.name, Err: syscall.EISDIR}
}

func (d *syntheticDir) Readdir(count int) ([]os.FileInfo, error) {
	if d.listed {
		if count > 0 {
			return nil, io.EOF
		}
		return nil, nil
	}
	d.listed = true
	// Mount points below this directory, and directories leading to
	// deeper ones.
	names := map[string]bool{}
	for _, mnt := range d.m.mounts {
		if mnt.Path != d.name && within(mnt.Path, d.name) {
			rest := strings.TrimPrefix(strings.TrimPrefix(mnt.Path, d.name), "/")
			names[strings.SplitN(rest, "/", 2)[0]] = true
		}
	}
	var out []os.FileInfo
	for n := range names {
		fi, err := d.m.Stat(path.Join(d.name, n))
		if err != nil {
			fi = syntheticInfo(n)
		}
		out = append(out, renamedInfo{fi, n})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name() < out[j].Name() })
	return out, nil
}

func (d *syntheticDir) Readdirnames(n int) ([]string, error) {
	fis, err := d.Readdir(n)
	names := make([]string, len(fis))
	for i, fi := range fis {
		names[i] = fi.Name()
	}
	return names, err
}

// syntheticInfo describes a directory above mount points.
func syntheticInfo(name string) os.FileInfo {
	if name == "" {
		name = "/"
	}
	return &fileInfo{name: name, mode: fs.ModeDir | 0o555, mtime: time.Unix(0, 0)}
}

// renamedInfo is a FileInfo shown under another name.
type renamedInfo struct {
	os.FileInfo
	name string
}

func (r renamedInfo) Name() string { return r.name }
