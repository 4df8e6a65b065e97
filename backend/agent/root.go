package agent

import (
	"errors"
	"io/fs"
	"os"
	"path"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// root is a directory of the agent root (the whole root, or a scope's
// part of it) through which paths are resolved, no link on the way leading
// out: an os.Root, with a second way through. os.Root opens each directory
// on the way for reading (golang/go#81605, still so in Go 1.26), so a
// directory its user may search but not read (0311, 0100, another user's
// 0711 as home directories often are) stops every path through it with
// EACCES, where open(2), sftp-server and vsftpd pass with the search bit
// alone. Where os.Root answers EACCES, root makes the call again through
// beneath, the kernel's own resolution below the directory, which asks
// each directory on the way for its search bit only; a refusal there is
// the kernel's answer, and the one returned. So a path that os.Root
// serves costs what it did, and a real EACCES costs one more resolution.
type root struct {
	// r is nil where os.Root could not open the directory itself (a
	// scope below a directory its user may not read); b then serves all.
	r *os.Root
	// b resolves with openat2(2); off (b.dir nil) where the kernel or a
	// seccomp profile refuses openat2, and root is then os.Root alone.
	b beneath
}

// openRoot opens dir as the agent root.
func openRoot(dir string) (*root, error) {
	r, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	var fd int
	err = ignoringEINTR(func() (err error) {
		fd, err = unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		return err
	})
	if err != nil {
		r.Close()
		return nil, err
	}
	rt := &root{r: r, b: beneath{dir: os.NewFile(uintptr(fd), dir), name: r.Name()}}
	if !rt.b.works() || !rt.sameDir() {
		// No openat2 here (before Linux 5.6, or a seccomp profile that
		// refuses it), or dir was swapped between the two opens: os.Root
		// alone, as before root existed.
		rt.b.dir.Close()
		rt.b.dir = nil
	}
	return rt, nil
}

// sameDir reports whether r and b hold the same directory.
func (rt *root) sameDir() bool {
	held, err := rt.r.Stat(".")
	if err != nil {
		return false
	}
	fi, err := rt.b.dir.Stat()
	return err == nil && os.SameFile(held, fi)
}

// retry reports whether a call os.Root refused with err is to be made
// again through b.
func (rt *root) retry(err error) bool {
	return rt.b.dir != nil && errors.Is(err, syscall.EACCES)
}

// either makes a call of rt: through os.Root, and where os.Root is absent
// or answers EACCES (retry), through beneath, whose answer then stands.
func either[T any](rt *root, viaRoot func(*os.Root) (T, error), viaBeneath func() (T, error)) (T, error) {
	if rt.r != nil {
		v, err := viaRoot(rt.r)
		if !rt.retry(err) {
			return v, err
		}
	}
	return viaBeneath()
}

// eitherErr is either for a call that returns only an error.
func eitherErr(rt *root, viaRoot func(*os.Root) error, viaBeneath func() error) error {
	_, err := either(rt, func(r *os.Root) (struct{}, error) { return struct{}{}, viaRoot(r) },
		func() (struct{}, error) { return struct{}{}, viaBeneath() })
	return err
}

// Name is the directory's host path.
func (rt *root) Name() string { return rt.b.name }

// Close releases the directory. A call made after it fails, as on a closed
// os.Root ("use of closed file" through b): the descriptor is an
// *os.File's, closed once no call holds it, so that no call meets its
// number reused.
func (rt *root) Close() error {
	var err error
	if rt.r != nil {
		err = rt.r.Close()
	}
	if rt.b.dir != nil {
		err = errors.Join(err, rt.b.dir.Close())
	}
	return err
}

// OpenRoot opens the directory name below rt as a root of its own.
func (rt *root) OpenRoot(name string) (*root, error) {
	if rt.b.dir == nil {
		// os.Root's OpenRoot opens name without O_DIRECTORY: a FIFO
		// there would hold it until a writer came. name is opened as a
		// directory, which cannot wait, first (b's open below is one).
		d, err := openDirIn(rt, name)
		if err != nil {
			return nil, err
		}
		d.Close()
		r, err := rt.r.OpenRoot(name)
		if err != nil {
			return nil, err
		}
		return &root{r: r, b: beneath{name: r.Name()}}, nil
	}
	fd, err := rt.b.open("openat", name, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil, err
	}
	hostPath := path.Join(rt.b.name, name)
	sub := &root{b: beneath{dir: os.NewFile(uintptr(fd), hostPath), name: hostPath}}
	if rt.r != nil {
		// The os.Root of what fd holds: through rt.r, then checked to be
		// that directory. One the agent's user may not read, or another
		// directory renamed there between the two opens, is left to b
		// alone, which holds the one the scope named. (os.Root opens
		// without O_DIRECTORY: a FIFO put there between the two opens
		// would hold this open until a writer came, as it did before
		// root existed; the user could only hold up its own session.)
		if r, err := rt.r.OpenRoot(name); err == nil {
			sub.r = r
			if !sub.sameDir() {
				r.Close()
				sub.r = nil
			}
		}
	}
	return sub, nil
}

// Stat is os.Root's Stat: what name leads to, a final link followed.
func (rt *root) Stat(name string) (fs.FileInfo, error) {
	return either(rt, func(r *os.Root) (fs.FileInfo, error) { return r.Stat(name) }, func() (fs.FileInfo, error) {
		return rt.b.stat("statat", name, true)
	})
}

// Lstat is Stat of name itself, a final link not followed.
func (rt *root) Lstat(name string) (fs.FileInfo, error) {
	return either(rt, func(r *os.Root) (fs.FileInfo, error) { return r.Lstat(name) }, func() (fs.FileInfo, error) {
		return rt.b.stat("statat", name, false)
	})
}

// OpenFile is os.Root's OpenFile.
func (rt *root) OpenFile(name string, flag int, perm fs.FileMode) (*os.File, error) {
	return either(rt, func(r *os.Root) (*os.File, error) { return r.OpenFile(name, flag, perm) }, func() (*os.File, error) {
		fd, err := rt.b.open("openat", name, flag, fileMode(perm))
		if err != nil {
			return nil, err
		}
		// Unlike os.Root's files, this one is not known to os as
		// opened in a root: a directory's DirEntry.Info would lstat
		// its entries by their host paths. The agent's listings
		// fstatat them on the descriptor instead (Server.readDir).
		return os.NewFile(uintptr(fd), path.Join(rt.b.name, name)), nil
	})
}

// Mkdir is os.Root's Mkdir.
func (rt *root) Mkdir(name string, perm fs.FileMode) error {
	return eitherErr(rt, func(r *os.Root) error { return r.Mkdir(name, perm) }, func() error {
		return rt.b.inParent("mkdirat", name, func(dfd int, base string) error {
			return unix.Mkdirat(dfd, base, fileMode(perm))
		})
	})
}

// MkdirAll makes name and what is missing above it, as os.Root's does.
func (rt *root) MkdirAll(name string, perm fs.FileMode) error {
	return eitherErr(rt, func(r *os.Root) error { return r.MkdirAll(name, perm) }, func() error {
		return rt.b.mkdirAll(name, perm, true, 0)
	})
}

// mkdirAll is MkdirAll beneath b, with os.Root's answers: nil for a
// directory (a link to one too), EEXIST for anything else, ENOTDIR for a
// link to anything else; a link that leads nowhere yet has its target
// made where it is a directory on the way (not final), and is EEXIST as
// the name asked for. links counts the links followed so far.
func (b beneath) mkdirAll(name string, perm fs.FileMode, final bool, links int) error {
	switch fi, err := b.stat("mkdirat", name, true); {
	case err == nil && fi.IsDir():
		return nil
	case err == nil:
		errno := syscall.EEXIST
		if li, lerr := b.stat("mkdirat", name, false); lerr == nil && li.Mode()&fs.ModeSymlink != 0 {
			errno = syscall.ENOTDIR
		}
		return &fs.PathError{Op: "mkdirat", Path: name, Err: errno}
	case !errors.Is(err, fs.ErrNotExist):
		return err // a link that leads out among them
	}
	if dir := path.Dir(name); dir != "." && dir != name {
		if err := b.mkdirAll(dir, perm, false, links); err != nil {
			return err
		}
	}
	err := b.inParent("mkdirat", name, func(dfd int, base string) error {
		return unix.Mkdirat(dfd, base, fileMode(perm))
	})
	if !errors.Is(err, fs.ErrExist) {
		return err
	}
	if fi, serr := b.stat("mkdirat", name, true); serr == nil && fi.IsDir() {
		return nil // made meanwhile
	}
	if final {
		return err
	}
	// A link that leads nowhere yet: its target is made, as os.Root's
	// MkdirAll makes it (beneath b: one leading out is refused there).
	var target string
	if rerr := b.inParent("readlinkat", name, func(dfd int, base string) error {
		var err error
		target, err = readlinkat(dfd, base)
		return err
	}); rerr != nil || links >= maxLinks {
		return err
	}
	if path.IsAbs(target) {
		return &fs.PathError{Op: "mkdirat", Path: name, Err: errEscapes}
	}
	return b.mkdirAll(path.Join(path.Dir(name), target), perm, false, links+1)
}

// Remove removes a file, or an empty directory, as os.Root's does.
func (rt *root) Remove(name string) error {
	return eitherErr(rt, func(r *os.Root) error { return r.Remove(name) }, func() error {
		return rt.b.remove(name)
	})
}

// RemoveAll removes name and what it holds, as os.Root's does; a missing
// name is no error.
func (rt *root) RemoveAll(name string) error {
	return eitherErr(rt, func(r *os.Root) error { return r.RemoveAll(name) }, func() error {
		return rt.b.removeAll(name)
	})
}

// Link is os.Root's Link: a hard link, oldname itself (a link is not
// followed).
func (rt *root) Link(oldname, newname string) error {
	return eitherErr(rt, func(r *os.Root) error { return r.Link(oldname, newname) }, func() error {
		return rt.b.inParent2("linkat", oldname, newname, func(ofd int, obase string, nfd int, nbase string) error {
			return unix.Linkat(ofd, obase, nfd, nbase, 0)
		})
	})
}

// Symlink is os.Root's Symlink.
func (rt *root) Symlink(target, name string) error {
	return eitherErr(rt, func(r *os.Root) error { return r.Symlink(target, name) }, func() error {
		return rt.b.inParent("symlinkat", name, func(dfd int, base string) error {
			return unix.Symlinkat(target, dfd, base)
		})
	})
}

// Readlink is os.Root's Readlink.
func (rt *root) Readlink(name string) (string, error) {
	return either(rt, func(r *os.Root) (string, error) { return r.Readlink(name) }, func() (string, error) {
		var target string
		err := rt.b.inParent("readlinkat", name, func(dfd int, base string) error {
			var err error
			target, err = readlinkat(dfd, base)
			return err
		})
		return target, err
	})
}

// readlinkat is readlinkat(2) of base in dfd, whatever the target's length.
func readlinkat(dfd int, base string) (string, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(dfd, base, buf)
		if err != nil {
			return "", err
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
}

// Chmod sets name's mode, a final link followed within the directory.
func (rt *root) Chmod(name string, mode fs.FileMode) error {
	return eitherErr(rt, func(r *os.Root) error { return r.Chmod(name, mode) }, func() error {
		m := fileMode(mode)
		return rt.b.onPath("chmodat", name, func(fd int) error {
			return fchmodHeld(fd, m, func() error {
				return rt.b.reopened(fd, name, func(rfd int) error { return unix.Fchmod(rfd, m) })
			})
		})
	})
}

// Chown sets name's owner and group, a final link followed within the
// directory.
func (rt *root) Chown(name string, uid, gid int) error {
	return eitherErr(rt, func(r *os.Root) error { return r.Chown(name, uid, gid) }, func() error {
		return rt.b.onPath("chownat", name, func(fd int) error {
			return unix.Fchownat(fd, "", uid, gid, unix.AT_EMPTY_PATH)
		})
	})
}

// Chtimes sets name's times, a final link followed within the directory;
// a zero time leaves that time as it is, as os.Root's does.
func (rt *root) Chtimes(name string, atime, mtime time.Time) error {
	return eitherErr(rt, func(r *os.Root) error { return r.Chtimes(name, atime, mtime) }, func() error {
		ts := []unix.Timespec{utimeSpec(atime), utimeSpec(mtime)}
		return rt.b.onPath("chtimesat", name, func(fd int) error {
			err := unix.UtimesNanoAt(fd, "", ts, unix.AT_EMPTY_PATH)
			if err == unix.EINVAL || err == unix.ENOENT {
				// A kernel whose utimensat takes no AT_EMPTY_PATH: through
				// a descriptor for reading (futimens).
				err = rt.b.reopened(fd, name, func(rfd int) error { return futimens(rfd, ts) })
			}
			return err
		})
	})
}

// utimeSpec is t for utimensat(2), UTIME_OMIT for the zero time.
func utimeSpec(t time.Time) unix.Timespec {
	if t.IsZero() {
		return unix.Timespec{Nsec: unix.UTIME_OMIT}
	}
	return unix.NsecToTimespec(t.UnixNano())
}

// fileMode is perm as open(2), mkdir(2) and chmod(2) take it.
func fileMode(perm fs.FileMode) uint32 {
	m := uint32(perm.Perm())
	if perm&fs.ModeSetuid != 0 {
		m |= unix.S_ISUID
	}
	if perm&fs.ModeSetgid != 0 {
		m |= unix.S_ISGID
	}
	if perm&fs.ModeSticky != 0 {
		m |= unix.S_ISVTX
	}
	return m
}

// futimens sets the times of what fd holds: utimensat(2) with no name.
func futimens(fd int, ts []unix.Timespec) error {
	_, _, errno := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(&ts[0])), 0, 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// beneath resolves paths below a directory with openat2(2),
// RESOLVE_BENEATH and RESOLVE_NO_MAGICLINKS: the kernel itself refuses,
// during the lookup, a ".." or a link (absolute, or relative and
// climbing) that would leave the directory (EXDEV, which beneath reports
// as os.Root reports an escape) and a /proc magic link, so that nothing
// looked up can be swapped before it is used. The lookup asks each
// directory on the way for its search bit only, as open(2) does. Paths
// are slash-separated, relative to the directory and clean ("." is the
// directory itself), as os.Root takes them.
type beneath struct {
	dir  *os.File // the directory, O_PATH; nil: openat2 is not to be used
	name string   // its host path, which names the files it opens
}

// errEscapes is beneath's answer for a path that would lead out of its
// directory, worded as os.Root's own (isEscape).
var errEscapes = errors.New("path escapes from parent")

// works reports whether openat2 resolves here.
func (b beneath) works() bool {
	fd, err := b.openat2(".", unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return false
	}
	unix.Close(fd)
	return true
}

// openat2 opens name below the directory; EINTR and EAGAIN (a rename
// anywhere on the system raced RESOLVE_BENEATH's check) are retried, the
// latter a bounded number of times.
func (b beneath) openat2(name string, flag int, mode uint32) (int, error) {
	if flag&unix.O_PATH != 0 {
		// openat2 refuses O_PATH with any flag that O_PATH ignores.
		flag &= unix.O_PATH | unix.O_DIRECTORY | unix.O_NOFOLLOW
	}
	how := unix.OpenHow{
		Flags:   uint64(flag) | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS,
	}
	if flag&(unix.O_CREAT|unix.O_TMPFILE) != 0 {
		how.Mode = uint64(mode)
	}
	fd := -1
	err := withFd(b.dir, func(dfd int) error {
		for tries := 0; ; tries++ {
			var err error
			fd, err = unix.Openat2(dfd, name, &how)
			switch {
			case err == unix.EINTR:
				continue
			case err == unix.EAGAIN && tries < 16:
				continue
			case err == unix.EXDEV:
				err = errEscapes
			}
			return err
		}
	})
	if err != nil {
		return -1, err
	}
	return fd, nil
}

// open is openat2 with its error as a *fs.PathError of op.
func (b beneath) open(op, name string, flag int, mode uint32) (int, error) {
	fd, err := b.openat2(name, flag, mode)
	if err != nil {
		return -1, &fs.PathError{Op: op, Path: name, Err: err}
	}
	return fd, nil
}

// stat is fstat(2) of name opened O_PATH, a final link followed or not.
func (b beneath) stat(op, name string, follow bool) (fs.FileInfo, error) {
	flag := unix.O_PATH
	if !follow {
		flag |= unix.O_NOFOLLOW
	}
	fd, err := b.open(op, name, flag, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), path.Base(name))
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, &fs.PathError{Op: op, Path: name, Err: unwrapPathError(err)}
	}
	return fi, nil
}

// onPath runs fn on name opened O_PATH, a final link followed.
func (b beneath) onPath(op, name string, fn func(fd int) error) error {
	fd, err := b.open(op, name, unix.O_PATH, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := ignoringEINTR(func() error { return fn(fd) }); err != nil {
		return &fs.PathError{Op: op, Path: name, Err: err}
	}
	return nil
}

// reopened runs fn on name opened for reading beneath b, where it is still
// the regular file or directory held (O_PATH): the fallback of calls an
// O_PATH descriptor cannot make on an older kernel, which, unlike chmod(2)
// and utimensat(2), asks the read permission. Nothing else is opened (a
// device's open may act), and a name swapped meanwhile is refused
// (EAGAIN). Never through /proc, which need not be procfs where the agent
// runs.
func (b beneath) reopened(held int, name string, fn func(fd int) error) error {
	var want unix.Stat_t
	if err := unix.Fstat(held, &want); err != nil {
		return err
	}
	if t := want.Mode & unix.S_IFMT; t != unix.S_IFREG && t != unix.S_IFDIR {
		return errNotRegular
	}
	fd, err := b.openat2(name, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var got unix.Stat_t
	if err := unix.Fstat(fd, &got); err != nil {
		return err
	}
	if got.Dev != want.Dev || got.Ino != want.Ino {
		return unix.EAGAIN
	}
	return fn(fd)
}

// inParent runs fn on the directory that holds name, opened O_PATH
// beneath b, and name's last component there (the directory itself, ".",
// for "."); fn's error comes back as a *fs.PathError of op.
func (b beneath) inParent(op, name string, fn func(dfd int, base string) error) error {
	err := b.withParent(name, func(dfd int, base string) error {
		return ignoringEINTR(func() error { return fn(dfd, base) })
	})
	if err != nil {
		return &fs.PathError{Op: op, Path: name, Err: err}
	}
	return nil
}

// withParent runs fn on the directory that holds name, opened O_PATH
// beneath b; its errors, and the open's, come back bare.
func (b beneath) withParent(name string, fn func(dfd int, base string) error) error {
	dfd, err := b.openat2(path.Dir(name), unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	defer unix.Close(dfd)
	return fn(dfd, path.Base(name))
}

// inParent2 is inParent for two names (a link's).
func (b beneath) inParent2(op, oldname, newname string, fn func(ofd int, obase string, nfd int, nbase string) error) error {
	err := b.withParent(oldname, func(ofd int, obase string) error {
		return b.withParent(newname, func(nfd int, nbase string) error {
			return ignoringEINTR(func() error { return fn(ofd, obase, nfd, nbase) })
		})
	})
	if err != nil {
		return &os.LinkError{Op: op, Old: oldname, New: newname, Err: err}
	}
	return nil
}

// remove unlinks name, or removes it as an empty directory, as os.Root's
// Remove does: the error of the call that fits what name is.
func (b beneath) remove(name string) error {
	return b.inParent("removeat", name, func(dfd int, base string) error {
		err := unix.Unlinkat(dfd, base, 0)
		if err == nil {
			return nil
		}
		derr := unix.Unlinkat(dfd, base, unix.AT_REMOVEDIR)
		if derr == nil {
			return nil
		}
		if derr != unix.ENOTDIR {
			var st unix.Stat_t
			if unix.Fstatat(dfd, base, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
				return derr
			}
		}
		return err
	})
}

// removeAll removes name and, if it is a directory, what it holds, as
// os.Root's RemoveAll does: name's directory is resolved beneath b once,
// and everything below it through the descriptors of the directories
// opened on the way, never through a link (a directory swapped for a link
// meanwhile is removed as the link). A missing name is no error; the
// first failure is returned after the rest was tried.
func (b beneath) removeAll(name string) error {
	if name == "." {
		return &fs.PathError{Op: "RemoveAll", Path: name, Err: syscall.EINVAL}
	}
	err := b.withParent(name, removeAllAt)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return &fs.PathError{Op: "RemoveAll", Path: name, Err: err}
	}
	return nil
}

// removeAllAt removes base in the directory dfd and, if it is a directory,
// what it holds (removeAll).
func removeAllAt(dfd int, base string) error {
	err := ignoringEINTR(func() error { return unix.Unlinkat(dfd, base, 0) })
	if err == nil || err == unix.ENOENT {
		return nil
	}
	var st unix.Stat_t
	if serr := unix.Fstatat(dfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); serr != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return err // not a directory: unlink's answer
	}
	var fd int
	oerr := ignoringEINTR(func() (err error) {
		fd, err = unix.Openat(dfd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		return err
	})
	var first error
	if oerr == nil {
		d := os.NewFile(uintptr(fd), base)
		names, rerr := d.Readdirnames(-1) // all first: removing while reading could skip some
		first = unwrapPathError(rerr)
		if err := withFd(d, func(fd int) error {
			for _, n := range names {
				if err := removeAllAt(fd, n); err != nil && first == nil {
					first = err
				}
			}
			return nil
		}); err != nil && first == nil {
			first = err
		}
		d.Close()
	} else if oerr != unix.ENOENT {
		first = oerr
	}
	err = ignoringEINTR(func() error { return unix.Unlinkat(dfd, base, unix.AT_REMOVEDIR) })
	switch {
	case err == nil || err == unix.ENOENT:
		return first
	case first != nil:
		return first
	}
	return err
}
