package backend

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/afero"
)

// Create implements afero.Fs.
func (v *View) Create(name string) (afero.File, error) {
	return v.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o666)
}

// Open implements afero.Fs.
func (v *View) Open(name string) (afero.File, error) { return v.OpenFile(name, os.O_RDONLY, 0) }

// OpenFile implements afero.Fs. A path with an upload in progress opens
// that upload's data, unless the open truncates: then it starts a new
// upload that supersedes the old one.
func (v *View) OpenFile(name string, flag int, perm os.FileMode) (afero.File, error) {
	p := userPath(name)
	write := flag&(os.O_WRONLY|os.O_RDWR) != 0
	if u := v.upload(p); u != nil {
		switch {
		case flag&(os.O_CREATE|os.O_EXCL) == os.O_CREATE|os.O_EXCL:
			return nil, &fs.PathError{Op: "open", Path: p, Err: syscall.EEXIST}
		case write && flag&os.O_TRUNC != 0:
			// A new upload; the older one is discarded once the new one
			// is open (so that a failed open leaves it). The file exists
			// for this session even where only the older upload made it
			// (a new file not yet committed): the open creates it then,
			// with the mode the session sees, as open(2) of an existing
			// file keeps its mode.
			if fi, err := u.info(); err == nil {
				if err := u.mayOpen(fi.Mode(), flag); err != nil {
					return nil, err
				}
				flag |= os.O_CREATE
				perm = fi.Mode() & (fs.ModePerm | fs.ModeSticky)
			}
		default:
			f, err := u.Reopen(flag)
			if err == nil {
				if flag&os.O_TRUNC != 0 {
					v.changedAt(p) // a read-only open truncated the upload's data
				}
				return v.wrap(p, f, flag, u), nil
			}
			if !u.waitIfClosing(err) {
				return nil, err
			}
			// Committed meanwhile: open the committed file.
		}
	} else {
		v.settle()
		// Followers of a committed upload (follow) do not count: one is
		// usually an abandoned handle, and each save of the path would
		// go in place as long as it stays open; a new upload takes it
		// along instead (supersede).
		if write && flag&os.O_TRUNC != 0 && slices.ContainsFunc(v.writers(p), func(w *viewFile) bool { return !w.follower() }) {
			return v.truncateInPlace(name, p, flag, perm)
		}
	}
	f, err := v.Fs.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	if !write && flag&os.O_TRUNC != 0 {
		// A read-only open truncated the file in place (SFTP's OPEN
		// with TRUNC and no WRITE): the session's readers there forget
		// what they read ahead, as after a write.
		v.changedAt(p)
	}
	if IsDir(f) {
		return &viewDir{FileWrapper: FileWrapper{f}, v: v, dir: p}, nil
	}
	if u, ok := f.(Upload); write && (ok && u.Pending() || flag&os.O_TRUNC != 0) {
		// A new upload supersedes the session's older ones at p, and so
		// does a truncating open that writes in place (O_APPEND|O_TRUNC):
		// an older upload committed after it would put back what it
		// truncated.
		if err := v.supersede(p, f); err != nil {
			// The new upload is aborted, not committed: the older one
			// stays the session's.
			if ta, ok := f.(TransferAborter); ok {
				ta.TransferError(err)
			}
			f.Close()
			return nil, err
		}
	}
	return v.wrap(p, f, flag, nil), nil
}

// truncateInPlace opens p, which the session's other handles write in
// place (an append, a write into an existing file), for a truncating
// write: it opens the file as it is and truncates it through the new
// handle, so that all of them write one file, as the descriptors of
// open(2) with O_TRUNC and of the earlier opens share it on sftp-server.
// An atomic upload would replace the file under the older handles at its
// close, and what they wrote after the open, answered OK, would be gone
// (TestSFTPRandom). The price is this save's atomicity: others see the
// file emptied and then written, as sftp-server writes every save, and
// one cut short leaves what arrived. (If another session replaced the
// file since the older handles opened it, they write the replaced file
// and this save goes in place all the same: the View cannot tell one
// file from another at a path.)
func (v *View) truncateInPlace(name, p string, flag int, perm os.FileMode) (afero.File, error) {
	f, err := v.Fs.OpenFile(name, flag&^os.O_TRUNC, perm)
	if err != nil {
		return nil, err
	}
	vf := v.wrap(p, f, flag&^os.O_TRUNC, nil)
	if err := vf.Truncate(0); err != nil {
		vf.Close()
		return nil, err
	}
	return vf, nil
}

// wrap tracks a file open for writing (flag, the open's flags, says),
// and counts a file open for reading at p; into is the session's upload
// whose data f was opened into (Upload.Reopen), or nil.
func (v *View) wrap(p string, f afero.File, flag int, into *viewFile) afero.File {
	if flag&(os.O_WRONLY|os.O_RDWR) == 0 {
		v.mu.Lock()
		v.readers[p]++
		v.mu.Unlock()
		r := &viewReader{FileWrapper: FileWrapper{f}, v: v, path: p}
		r.into.Store(into)
		v.listReader(r)
		return r
	}
	vf := &viewFile{FileWrapper: FileWrapper{f}, v: v, path: p, flag: flag, closed: make(chan struct{})}
	v.track(vf)
	if u, ok := f.(Upload); ok && v.followReaders && u.Pending() {
		v.intoSave(p, f, vf)
	}
	return vf
}

// Stat implements afero.Fs: an upload in progress answers for its path.
func (v *View) Stat(name string) (os.FileInfo, error) { return v.stat(name, v.Fs.Stat) }

// StatSearch implements DirSearcher; an upload in progress is a file.
func (v *View) StatSearch(name string) (os.FileInfo, error) {
	return v.stat(name, func(name string) (os.FileInfo, error) { return StatSearch(v.Fs, name) })
}

func (v *View) stat(name string, stat func(string) (os.FileInfo, error)) (fi os.FileInfo, err error) {
	p := userPath(name)
	err = v.withUpload(p, func(u *viewFile) error {
		fi, err = u.infoNow()
		return err
	}, func() error {
		v.settle()
		fi, err = stat(name)
		return err
	})
	return fi, err
}

// LstatIfPossible implements afero.Lstater.
func (v *View) LstatIfPossible(name string) (fi os.FileInfo, ok bool, err error) {
	p := userPath(name)
	_, ok = v.Fs.(afero.Lstater)
	err = v.withUpload(p, func(u *viewFile) error {
		fi, err = u.infoNow()
		return err
	}, func() error {
		v.settle()
		fi, err = Lstat(v.Fs, name)
		return err
	})
	return fi, ok, err
}

// Remove implements afero.Fs. Removing a path with an upload in progress
// discards the upload and removes the old file, if there is one.
func (v *View) Remove(name string) error { return v.remove(name, v.Fs.Remove) }

// RemoveFile implements KindRemover: as Remove, the session's upload at
// name is discarded.
func (v *View) RemoveFile(name string) error {
	return v.remove(name, func(name string) error { return RemoveFile(v.Fs, name) })
}

// RemoveDir implements KindRemover: the session's upload at name is a
// file (ENOTDIR), and stays. The filesystem is asked first all the same,
// for the kernel's answers before that one (a directory its user may not
// search or write: EACCES, seed 1606); it holds no directory there, only
// the upload's temp file beside it, so it answers ENOENT, which is the
// upload's ENOTDIR. (An agent session knows its upload, and answers
// ENOTDIR, or EACCES where the directory refuses write, itself.)
func (v *View) RemoveDir(name string) error {
	p := userPath(name)
	if v.upload(p) == nil {
		return RemoveDir(v.Fs, name)
	}
	if err := RemoveDir(v.Fs, name); err == nil || !errors.Is(err, fs.ErrNotExist) {
		return err // nil: a directory the container made there meanwhile
	}
	return &fs.PathError{Op: "rmdir", Path: p, Err: syscall.ENOTDIR}
}

// remove is Remove with remove as the filesystem's.
func (v *View) remove(name string, remove func(string) error) error {
	p := userPath(name)
	u, refused := v.reachable(p)
	if refused {
		// The lookup of p is refused: so is the removal, and the
		// upload stays.
		return remove(name)
	}
	had := u != nil
	ws := v.writers(p)
	v.markGone(map[string][]*viewFile{p: ws})
	if had {
		if err := v.dropSome(p, nil, ws); err != nil {
			return err
		}
	}
	err := remove(name)
	if had && errors.Is(err, fs.ErrNotExist) {
		err = nil
	}
	if err == nil || errors.Is(err, fs.ErrNotExist) {
		// p names nothing of theirs now (removed here, or already by
		// the container): its writers are forgotten, once it is gone.
		// A removal refused leaves them the path's: their held-back
		// writes are still pushed before a listing or a stat of it
		// (TestSFTPRandom seed 4372: a REMOVE refused in a 0555
		// directory made the next listing miss a write answered OK).
		// Only those there before the removal: an upload another
		// channel of the session opened at p since is not discarded (a
		// review). (With none of them an upload, this only forgets.)
		if !had {
			_ = v.dropSome(p, nil, ws)
		}
		v.unlistReaders(p)
	}
	return err
}

// RemoveAll implements afero.Fs.
func (v *View) RemoveAll(name string) error {
	p := userPath(name)
	gone := v.writersUnder(p)
	v.markGone(gone)
	if err := v.dropAll(gone); err != nil {
		return err
	}
	if err := v.Fs.RemoveAll(name); err != nil {
		return err
	}
	v.unlistReaders(p)
	return nil
}

// Rename implements afero.Fs. A file with an upload in progress takes its
// new name now and commits under it; the old file at its old name, which
// this session no longer sees, is removed.
func (v *View) Rename(oldname, newname string) error {
	op, np := userPath(oldname), userPath(newname)
	if op == np {
		if v.upload(op) != nil {
			return nil // a rename onto itself, of a file that exists for this session
		}
		return v.Fs.Rename(oldname, newname)
	}
	u := v.upload(op)
	replaced := v.writers(np)
	if u == nil && v.upload(np) != nil && !strings.HasPrefix(np, op+"/") {
		// (A directory into itself is EINVAL, the filesystem's answer.)
		// The session's upload at newname is a file to it: a directory
		// cannot replace it, as rename(2) answers ENOTDIR (it used to
		// take its place and discard the upload), after the write bits
		// of both directories (TestSFTPRandom seeds 9869, 12415).
		if fi, err := Lstat(v.Fs, oldname); err == nil && fi.IsDir() {
			return &os.LinkError{Op: "rename", Old: op, New: np, Err: v.refusedBefore(syscall.ENOTDIR, oldname, newname)}
		}
	}
	if u != nil {
		if err := u.Move(np); u.waitIfClosing(err) {
			u = nil // committed meanwhile: rename the committed file
		} else if err != nil {
			return err
		}
	}
	if u != nil {
		// What stood at the old name was replaced by the upload in this
		// session's view; the rename takes it away.
		if err := v.Fs.Remove(oldname); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	} else {
		v.settle()
		if err := v.Fs.Rename(oldname, newname); err != nil {
			return err
		}
	}
	// The readers that followed saves at newname keep the files they
	// read, which the rename replaced; those at oldname move with their
	// files (before anything that can fail: the rename is made).
	v.markGone(map[string][]*viewFile{np: replaced})
	v.unlistReaders(np)
	v.rekeyReaders(op, np)
	// What the rename replaced: the writers at newname before it, not an
	// upload another channel of the session opened there meanwhile.
	if err := v.dropSome(np, nil, replaced); err != nil {
		return err
	}
	// Uploads below a renamed directory moved with it on disk; their
	// files learn their new names (a Move to where they already are).
	for _, w := range v.rekey(op, np) {
		if w.Pending() {
			if err := w.Move(w.path); err != nil {
				return err
			}
		}
	}
	return nil
}

// Chtimes implements afero.Fs. On a file open for writing the times apply
// to it at once (TimesSetter).
func (v *View) Chtimes(name string, atime, mtime time.Time) error {
	p := userPath(name)
	return v.withUpload(p, func(u *viewFile) error {
		return u.SetTimes(atime, mtime)
	}, func() error {
		// A file the session writes in place is set by its path, after
		// what the session holds back, as SETSTAT's utimes(2): through
		// the kernel's lookup (a directory that lost its search bit
		// refuses it, where a handle would not: TestSFTPRandom seed
		// 2346), and on whatever the path names now.
		v.settle()
		if err := v.Fs.Chtimes(name, atime, mtime); err != nil {
			return err
		}
		// The session's readers read again (file.SetTimes), at p or at
		// another name of the file.
		v.changedAnywhere()
		return nil
	})
}

// Lchtimes implements LinkTimesSetter: an upload in progress is no link,
// so it is Chtimes there.
func (v *View) Lchtimes(name string, atime, mtime time.Time) error {
	p := userPath(name)
	return v.withUpload(p, func(u *viewFile) error {
		return u.SetTimes(atime, mtime)
	}, func() error {
		v.settle()
		if err := Lchtimes(v.Fs, name, atime, mtime); err != nil {
			return err
		}
		v.changedAt(p)
		return nil
	})
}

// Chmod implements afero.Fs. An upload in progress takes the mode itself;
// the old file keeps its own until the upload replaces it.
func (v *View) Chmod(name string, mode os.FileMode) error {
	p := userPath(name)
	return v.withUpload(p, func(u *viewFile) error {
		return u.Chmod(mode)
	}, func() error {
		if err := v.Fs.Chmod(name, mode); err != nil {
			return err
		}
		v.cutSearch(p)
		return nil
	})
}

// Mkdir implements afero.Fs.
func (v *View) Mkdir(name string, perm os.FileMode) error {
	if p := userPath(name); v.upload(p) != nil {
		return &fs.PathError{Op: "mkdir", Path: p, Err: syscall.EEXIST}
	}
	return v.Fs.Mkdir(name, perm)
}

// SymlinkIfPossible implements afero.Linker.
func (v *View) SymlinkIfPossible(oldname, newname string) error {
	if p := userPath(newname); v.upload(p) != nil {
		return &os.LinkError{Op: "symlink", Old: oldname, New: p, Err: syscall.EEXIST}
	}
	return Symlink(v.Fs, oldname, newname)
}

// Link implements HardLinker. An upload in progress has no name on disk
// yet to link to: linking it is refused as busy (git, which links its
// object files into place, falls back to a rename), unless the new name
// exists (EEXIST), its directory is missing or cannot be searched, or
// refuses its user write (EACCES, with a ChangeChecker below), as link(2)
// answers first. Linking onto one is EEXIST,
// once the old name is found: link(2) looks that up first, so a missing
// or unreachable one answers its own error (TestSFTPRandom seeds 8281,
// 8261).
func (v *View) Link(oldname, newname string) error {
	op, np := userPath(oldname), userPath(newname)
	exists := &os.LinkError{Op: "link", Old: op, New: np, Err: syscall.EEXIST}
	switch {
	case v.upload(op) != nil:
		if v.upload(np) != nil {
			return exists
		}
		_, err := Lstat(v.Fs, newname)
		switch {
		case err == nil:
			return exists
		case !errors.Is(err, fs.ErrNotExist):
			return err
		}
		// A missing name, or a missing directory above it: link(2)
		// answers the latter (TestSFTPRandom seed 8730), and then a
		// directory its user may not write.
		if _, err := v.Fs.Stat(path.Dir(np)); err != nil {
			return err
		}
		return &os.LinkError{Op: "link", Old: op, New: np, Err: v.refusedBefore(syscall.EBUSY, newname)}
	case v.upload(np) != nil:
		v.settle()
		if _, err := Lstat(v.Fs, oldname); err != nil {
			return err
		}
		return exists
	}
	v.settle()
	return Link(v.Fs, oldname, newname)
}

// refusedBefore answers a rename or a link that meets the session's
// upload in progress, which is not on disk yet, so that the filesystem
// cannot answer for it: the first refusal of a change of names in their
// directories (ChangeChecker: EACCES, EPERM, EROFS), which the kernel
// checks before anything else of theirs, or else own, the View's answer
// for the upload. A filesystem that cannot tell for a name is taken to
// allow it.
func (v *View) refusedBefore(own syscall.Errno, names ...string) error {
	for _, name := range names {
		err := MayChangeIn(v.Fs, name)
		if err == nil || errors.Is(err, errors.ErrUnsupported) {
			continue
		}
		if pe, ok := errors.AsType[*fs.PathError](err); ok {
			return pe.Err
		}
		return err
	}
	return own
}

// ReadlinkIfPossible implements afero.LinkReader.
func (v *View) ReadlinkIfPossible(name string) (string, error) {
	if p := userPath(name); v.upload(p) != nil {
		return "", &fs.PathError{Op: "readlink", Path: p, Err: syscall.EINVAL}
	}
	return Readlink(v.Fs, name)
}

// Hash implements Hasher. The agent hashes what a path names on disk, so
// a path with an upload in progress (the old file there is not what this
// session sees) is refused as busy.
func (v *View) Hash(ctx context.Context, name string, algo HashAlgorithm, offset, length int64) ([]byte, error) {
	p := userPath(name)
	if v.upload(p) != nil {
		return nil, &fs.PathError{Op: "hash", Path: p, Err: syscall.EBUSY}
	}
	v.settle()
	return Hash(ctx, v.Fs, name, algo, offset, length)
}

// StatFS implements StatFSer. A path with an upload in progress is not on
// disk yet: its directory's filesystem is asked.
func (v *View) StatFS(ctx context.Context, name string) (FSStats, error) {
	if p := userPath(name); v.upload(p) != nil {
		name = path.Dir(p)
	}
	return StatFS(ctx, v.Fs, name)
}
