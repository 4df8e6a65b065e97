package backend

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/afero"
)

// These functions use a filesystem's optional capability when it has it
// and answer the fallback otherwise, so that wrappers and frontends find
// capabilities in one way. A missing capability is an error wrapping
// errors.ErrUnsupported.

// IsDir reports whether an open file is a directory, without a Stat call
// when the file can say (FileWrapper and the backend's own files can).
func IsDir(f afero.File) bool {
	if d, ok := f.(interface{ IsDir() bool }); ok {
		return d.IsDir()
	}
	fi, err := f.Stat()
	return err == nil && fi.IsDir()
}

// ReopenHeld opens the data of u, an upload, again for a handle that held
// the path's file open already (HeldReopener); without the capability it
// is Reopen.
func ReopenHeld(u Upload, flag int) (afero.File, error) {
	if h, ok := u.(HeldReopener); ok {
		return h.ReopenHeld(flag)
	}
	return u.Reopen(flag)
}

// Fstat describes an open file as fstat(2) of its descriptor does now
// (FreshStater); a file without the capability answers its Stat, which is
// that already.
func Fstat(f afero.File) (os.FileInfo, error) {
	if s, ok := f.(FreshStater); ok {
		return s.FreshStat()
	}
	return f.Stat()
}

// DropReadAhead makes f forget what it read ahead (ReadAheadDropper); a
// file without read-ahead has nothing to forget.
func DropReadAhead(f afero.File) {
	if d, ok := f.(ReadAheadDropper); ok {
		d.DropReadAhead()
	}
}

// Lstat describes name without following a final symbolic link; without
// afero.Lstater it is Stat.
func Lstat(fsys afero.Fs, name string) (os.FileInfo, error) {
	if l, ok := fsys.(afero.Lstater); ok {
		fi, _, err := l.LstatIfPossible(name)
		return fi, err
	}
	return fsys.Stat(name)
}

// StatSearch describes name as Stat does and fails (EACCES) when it is a
// directory its user may not search (DirSearcher); without the capability
// it is Stat.
func StatSearch(fsys afero.Fs, name string) (os.FileInfo, error) {
	if s, ok := fsys.(DirSearcher); ok {
		return s.StatSearch(name)
	}
	return fsys.Stat(name)
}

// MayChangeIn answers whether the user may change the entry name in the
// directory that holds it (ChangeChecker); without the capability it
// answers an error wrapping errors.ErrUnsupported.
func MayChangeIn(fsys afero.Fs, name string) error {
	if c, ok := fsys.(ChangeChecker); ok {
		return c.MayChangeIn(name)
	}
	return &fs.PathError{Op: "access", Path: name, Err: errors.ErrUnsupported}
}

// RemoveFile removes name, which must not be a directory (EISDIR), as
// unlink(2) does (KindRemover); without the capability an Lstat checks the
// kind first.
func RemoveFile(fsys afero.Fs, name string) error {
	if r, ok := fsys.(KindRemover); ok {
		return r.RemoveFile(name)
	}
	return removeChecked(fsys, name, false)
}

// RemoveDir removes name, which must be an empty directory (ENOTDIR,
// ENOTEMPTY), as rmdir(2) does (KindRemover); without the capability an
// Lstat checks the kind first.
func RemoveDir(fsys afero.Fs, name string) error {
	if r, ok := fsys.(KindRemover); ok {
		return r.RemoveDir(name)
	}
	return removeChecked(fsys, name, true)
}

// removeChecked is RemoveFile (RemoveDir with dir) by an Lstat and Remove.
func removeChecked(fsys afero.Fs, name string, dir bool) error {
	fi, err := Lstat(fsys, name)
	switch {
	case err != nil:
		return err
	case dir && !fi.IsDir():
		return &fs.PathError{Op: "rmdir", Path: name, Err: syscall.ENOTDIR}
	case !dir && fi.IsDir():
		return &fs.PathError{Op: "remove", Path: name, Err: syscall.EISDIR}
	}
	return fsys.Remove(name)
}

// Symlink creates newname pointing at oldname (afero.Linker).
func Symlink(fsys afero.Fs, oldname, newname string) error {
	if l, ok := fsys.(afero.Linker); ok {
		return l.SymlinkIfPossible(oldname, newname)
	}
	return &os.LinkError{Op: "symlink", Old: oldname, New: newname, Err: fmt.Errorf("%w: %w", errors.ErrUnsupported, afero.ErrNoSymlink)}
}

// Link makes newname a hard link to oldname (HardLinker).
func Link(fsys afero.Fs, oldname, newname string) error {
	if l, ok := fsys.(HardLinker); ok {
		return l.Link(oldname, newname)
	}
	return &os.LinkError{Op: "link", Old: oldname, New: newname, Err: errors.ErrUnsupported}
}

// Lchtimes sets name's own times, not following a final link
// (LinkTimesSetter).
func Lchtimes(fsys afero.Fs, name string, atime, mtime time.Time) error {
	if l, ok := fsys.(LinkTimesSetter); ok {
		return l.Lchtimes(name, atime, mtime)
	}
	return &fs.PathError{Op: "lchtimes", Path: name, Err: errors.ErrUnsupported}
}

// Readlink returns a symbolic link's target (afero.LinkReader).
func Readlink(fsys afero.Fs, name string) (string, error) {
	if l, ok := fsys.(afero.LinkReader); ok {
		return l.ReadlinkIfPossible(name)
	}
	return "", &fs.PathError{Op: "readlink", Path: name, Err: fmt.Errorf("%w: %w", errors.ErrUnsupported, afero.ErrNoReadlink)}
}

// Hash computes a checksum where the file lives (Hasher).
func Hash(ctx context.Context, fsys afero.Fs, name string, algo HashAlgorithm, offset, length int64) ([]byte, error) {
	if h, ok := fsys.(Hasher); ok {
		return h.Hash(ctx, name, algo, offset, length)
	}
	return nil, &fs.PathError{Op: "hash", Path: name, Err: errors.ErrUnsupported}
}

// StatFS describes the filesystem holding name (StatFSer).
func StatFS(ctx context.Context, fsys afero.Fs, name string) (FSStats, error) {
	if s, ok := fsys.(StatFSer); ok {
		return s.StatFS(ctx, name)
	}
	return FSStats{}, &fs.PathError{Op: "statfs", Path: name, Err: errors.ErrUnsupported}
}

// maxLinkHops bounds the symbolic links RealPath follows, as the kernel's
// 40 does.
const maxLinkHops = 40

// RealPath resolves name as realpath(3) does, as OpenSSH's sftp-server
// answers REALPATH and as vsftpd's getcwd after a CWD shows it: ".", ".."
// and every symbolic link on the way are resolved against what is on disk
// (".." after a link climbs from where the link leads, not lexically).
// Every component but the last must exist (ENOENT otherwise); the last
// may be missing. As with sftp-server's own realpath (OpenBSD's, not
// glibc's), a file followed by ".." is not refused: "f/.." names f's
// directory (the session's upload counts as a file); a file followed by a
// name fails at that name's lookup (ENOTDIR). A link's absolute target
// is taken in the filesystem's own namespace. Without afero.Lstater and
// afero.LinkReader it cleans name lexically.
func RealPath(fsys afero.Fs, name string) (string, error) {
	if _, ok := fsys.(afero.Lstater); !ok {
		return userPath(name), nil
	}
	var stack []string
	todo := strings.Split(name, "/")
	hops := 0
	file := false // the last element on stack is a file
	for len(todo) > 0 {
		elem := todo[0]
		todo = todo[1:]
		switch elem {
		case "", ".":
			continue
		case "..":
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
			file = false
			continue
		}
		cur := "/" + path.Join(append(stack, elem)...)
		if file {
			// The lookup of a name in a file: lstat(2) answers ENOTDIR
			// (asked here, not of the filesystem, which may not hold
			// the session's upload at all).
			return "", &fs.PathError{Op: "realpath", Path: cur, Err: syscall.ENOTDIR}
		}
		last := !slices.ContainsFunc(todo, func(e string) bool { return e != "" && e != "." })
		fi, err := Lstat(fsys, cur)
		switch {
		case errors.Is(err, fs.ErrNotExist) && last:
			stack = append(stack, elem)
			continue
		case err != nil:
			return "", err
		case fi.Mode()&fs.ModeSymlink != 0:
			if hops++; hops > maxLinkHops {
				return "", &fs.PathError{Op: "realpath", Path: cur, Err: syscall.ELOOP}
			}
			target, err := Readlink(fsys, cur)
			if err != nil {
				return "", err
			}
			if path.IsAbs(target) {
				stack = nil
			}
			todo = append(strings.Split(target, "/"), todo...)
			continue
		}
		stack = append(stack, elem)
		file = !fi.IsDir()
	}
	return "/" + path.Join(stack...), nil
}
