package backend

import (
	"context"
	"io/fs"
	"os"
	"syscall"
	"time"

	"github.com/spf13/afero"
)

// ReadOnly returns a filesystem that serves reads from fsys and refuses
// every write with a permission error (EROFS, which os.ErrPermission does
// not match, so it is wrapped to match both). Lstat, Readlink, Hasher and
// StatFSer pass through when fsys has them.
func ReadOnly(fsys afero.Fs) afero.Fs { return &readOnly{fsys} }

type readOnly struct{ fs afero.Fs }

var (
	_ afero.Lstater    = (*readOnly)(nil)
	_ afero.LinkReader = (*readOnly)(nil)
	_ Hasher           = (*readOnly)(nil)
	_ StatFSer         = (*readOnly)(nil)
	_ HardLinker       = (*readOnly)(nil)
	_ LinkTimesSetter  = (*readOnly)(nil)
	_ DirSearcher      = (*readOnly)(nil)
	_ ChangeChecker    = (*readOnly)(nil)
)

// errReadOnly matches both os.ErrPermission and syscall.EROFS.
type errReadOnly struct{}

func (errReadOnly) Error() string { return "read-only file system" }
func (errReadOnly) Is(target error) bool {
	return target == fs.ErrPermission || target == syscall.EROFS
}

func denied(op, name string) error { return &fs.PathError{Op: op, Path: name, Err: errReadOnly{}} }

func (r *readOnly) Name() string                           { return "ReadOnly(" + r.fs.Name() + ")" }
func (r *readOnly) Create(name string) (afero.File, error) { return nil, denied("create", name) }
func (r *readOnly) Mkdir(name string, _ os.FileMode) error { return denied("mkdir", name) }
func (r *readOnly) MkdirAll(name string, _ os.FileMode) error {
	return denied("mkdir", name)
}
func (r *readOnly) Remove(name string) error    { return denied("remove", name) }
func (r *readOnly) RemoveAll(name string) error { return denied("remove", name) }
func (r *readOnly) Rename(oldname, newname string) error {
	return &os.LinkError{Op: "rename", Old: oldname, New: newname, Err: errReadOnly{}}
}
func (r *readOnly) Link(oldname, newname string) error {
	return &os.LinkError{Op: "link", Old: oldname, New: newname, Err: errReadOnly{}}
}
func (r *readOnly) Lchtimes(name string, _, _ time.Time) error {
	return denied("lchtimes", name)
}
func (r *readOnly) Chmod(name string, _ os.FileMode) error { return denied("chmod", name) }
func (r *readOnly) Chown(name string, _, _ int) error      { return denied("chown", name) }
func (r *readOnly) Chtimes(name string, _, _ time.Time) error {
	return denied("chtimes", name)
}
func (r *readOnly) Stat(name string) (os.FileInfo, error) { return r.fs.Stat(name) }

// MayChangeIn implements ChangeChecker: nothing may change (EROFS), once
// the filesystem below has answered for the directory (its lookup, its
// bits); one that cannot tell (ErrUnsupported) says so.
func (r *readOnly) MayChangeIn(name string) error {
	if err := MayChangeIn(r.fs, name); err != nil {
		return err
	}
	return denied("access", name)
}

// StatSearch implements DirSearcher.
func (r *readOnly) StatSearch(name string) (os.FileInfo, error) { return StatSearch(r.fs, name) }
func (r *readOnly) Open(name string) (afero.File, error)        { return r.OpenFile(name, os.O_RDONLY, 0) }

// OpenFile opens for reading only; the file refuses a mode and times too.
func (r *readOnly) OpenFile(name string, flag int, perm os.FileMode) (afero.File, error) {
	if flag&(os.O_WRONLY|os.O_RDWR|os.O_APPEND|os.O_CREATE|os.O_TRUNC) != 0 {
		return nil, denied("open", name)
	}
	f, err := r.fs.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &readOnlyFile{FileWrapper{f}}, nil
}

// readOnlyFile is a file of a read-only filesystem, open for reading: it
// refuses what fchmod(2) and futimens(2) of a descriptor open for reading
// would still set (SFTP's FSETSTAT of a file or a directory opened with
// OPEN), and every write.
type readOnlyFile struct{ FileWrapper }

func (f *readOnlyFile) Chmod(os.FileMode) error       { return denied("chmod", f.Name()) }
func (f *readOnlyFile) SetTimes(_, _ time.Time) error { return denied("chtimes", f.Name()) }
func (f *readOnlyFile) Truncate(int64) error          { return denied("truncate", f.Name()) }
func (f *readOnlyFile) Write([]byte) (int, error)     { return 0, denied("write", f.Name()) }
func (f *readOnlyFile) WriteAt([]byte, int64) (int, error) {
	return 0, denied("write", f.Name())
}
func (f *readOnlyFile) WriteString(string) (int, error) { return 0, denied("write", f.Name()) }

func (r *readOnly) LstatIfPossible(name string) (os.FileInfo, bool, error) {
	fi, err := Lstat(r.fs, name)
	_, ok := r.fs.(afero.Lstater)
	return fi, ok, err
}

func (r *readOnly) ReadlinkIfPossible(name string) (string, error) { return Readlink(r.fs, name) }

func (r *readOnly) Hash(ctx context.Context, name string, algo HashAlgorithm, offset, length int64) ([]byte, error) {
	return Hash(ctx, r.fs, name, algo, offset, length)
}

// StatFS reports fsys's filesystem as read-only (ST_RDONLY), as statvfs(3)
// reports a file system mounted read-only.
func (r *readOnly) StatFS(ctx context.Context, name string) (FSStats, error) {
	st, err := StatFS(ctx, r.fs, name)
	st.ReadOnly = err == nil
	return st, err
}
