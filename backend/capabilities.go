package backend

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/spf13/afero"
)

// These functions use a filesystem's optional capability when it has it
// and answer the fallback otherwise, so that wrappers and frontends find
// capabilities in one way. A missing capability is an error wrapping
// errors.ErrUnsupported.

// Lstat describes name without following a final symbolic link; without
// afero.Lstater it is Stat.
func Lstat(fsys afero.Fs, name string) (os.FileInfo, error) {
	if l, ok := fsys.(afero.Lstater); ok {
		fi, _, err := l.LstatIfPossible(name)
		return fi, err
	}
	return fsys.Stat(name)
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
