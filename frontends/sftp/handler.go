package sftp

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"runtime/debug"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/pkg/sftp"
	"github.com/spf13/afero"

	"github.com/upgate/upgate/backend"
	"github.com/upgate/upgate/gateway"
	"github.com/upgate/upgate/internal/wiretext"
)

// handler serves pkg/sftp's request server over one user's filesystem,
// a backend.View: the session's own uploads in progress are visible to it
// there, so the handler needs no bookkeeping of its own. FSTAT and
// FSETSTAT act on the open file itself (openFile implements the fork's
// FileStater and FileSetStater), as fstat(2) and fchmod(2) would.
type handler struct {
	fs   afero.Fs
	sess *gateway.Session
	log  *slog.Logger
	ctx  context.Context
}

var (
	_ sftp.FileReader           = (*handler)(nil)
	_ sftp.OpenFileWriter       = (*handler)(nil)
	_ sftp.PosixRenameFileCmder = (*handler)(nil)
	_ sftp.StatVFSFileCmder     = (*handler)(nil)
	_ sftp.LstatFileLister      = (*handler)(nil)
	_ sftp.RealPathFileLister   = (*handler)(nil)
	_ sftp.ReadlinkFileLister   = (*handler)(nil)
	_ sftp.LsetstatFileCmder    = (*handler)(nil)
)

func newHandler(ctx context.Context, fsys afero.Fs, sess *gateway.Session) *handler {
	return &handler{fs: fsys, sess: sess, log: sess.Logger(), ctx: ctx}
}

func (h *handler) handlers() sftp.Handlers {
	return sftp.Handlers{FileGet: h, FilePut: h, FileCmd: h, FileList: h}
}

// guard turns a panic on one of pkg/sftp's worker goroutines into an
// error, logging the stack: the client gets an SFTP FAILURE status
// ("internal error during write") and the session goes on. Every method
// pkg/sftp calls defers it.
func (h *handler) guard(op string, err *error) {
	if r := recover(); r != nil {
		h.log.Error("panic in SFTP handler", "op", op, "panic", r, "stack", string(debug.Stack()))
		*err = errors.New("internal error during " + op)
	}
}

// status is the one translation from a backend error to what pkg/sftp
// turns into an SFTP status: NO_SUCH_FILE and PERMISSION_DENIED where
// they apply, FAILURE with the error's text otherwise.
func status(err error) error {
	if err == nil {
		return nil
	}
	var pe *fs.PathError
	switch {
	case errors.Is(err, os.ErrNotExist):
		if errors.As(err, &pe) {
			err = &fs.PathError{Op: pe.Op, Path: pe.Path, Err: syscall.ENOENT}
		} else {
			return sftp.ErrSSHFxNoSuchFile
		}
	case errors.Is(err, os.ErrPermission):
		if errors.As(err, &pe) {
			err = &fs.PathError{Op: pe.Op, Path: pe.Path, Err: syscall.EACCES}
		} else {
			return sftp.ErrSSHFxPermissionDenied
		}
	case errors.Is(err, errors.ErrUnsupported):
		return sftp.ErrSSHFxOpUnsupported
	}
	if msg := err.Error(); !utf8.ValidString(msg) {
		return textError{err, wiretext.Valid(msg)}
	}
	return err
}

// textError is an error whose text is made valid UTF-8: SFTP's status
// message is UTF-8 text (paramiko fails to decode anything else), and a
// name may hold any bytes. Its code comes from the error it wraps.
type textError struct {
	err error
	msg string
}

func (e textError) Error() string { return e.msg }
func (e textError) Unwrap() error { return e.err }

func openFlags(r *sftp.Request, flag int) int {
	pf := r.Pflags()
	if pf.Creat {
		flag |= os.O_CREATE
	}
	if pf.Trunc {
		flag |= os.O_TRUNC
	}
	if pf.Excl && pf.Creat {
		// EXCL without CREAT means nothing, as O_EXCL without O_CREAT to
		// open(2) (sftp-server passes it on): a truncating open with it
		// replaces the file; passed on, older agents took it for an
		// exclusive create and failed the commit.
		flag |= os.O_EXCL
	}
	if pf.Append {
		// Every write lands at the end, whatever its offset, as OpenSSH
		// does: the fork serves an APPEND handle's writes in arrival
		// order, and openFile.WriteAt appends them.
		flag |= os.O_APPEND
	}
	return flag
}

// Fileread opens a file for reading (SSH_FXP_OPEN with READ, or no access
// flag at all).
func (h *handler) Fileread(r *sftp.Request) (_ io.ReaderAt, err error) {
	defer h.guard("open", &err)
	h.sess.SetOp("read " + r.Filepath)
	if err := h.slash(r, false); err != nil {
		return nil, status(err)
	}
	f, err := h.fs.OpenFile(r.Filepath, os.O_RDONLY, 0)
	if err != nil {
		return nil, status(err)
	}
	// A directory opens, as open(2) opens it read-only; reading it fails
	// with EISDIR, as OpenSSH's READ of such a handle does.
	return &openFile{FileWrapper: backend.FileWrapper{File: f}, h: h, name: r.Filepath}, nil
}

// Filewrite opens a file for writing (SSH_FXP_OPEN with WRITE).
func (h *handler) Filewrite(r *sftp.Request) (_ io.WriterAt, err error) {
	defer h.guard("open", &err)
	return h.openWrite(r, os.O_WRONLY)
}

// OpenFile opens a file for reading and writing (READ|WRITE), or for
// reading with CREAT, TRUNC or APPEND (the fork sends those here, without
// WRITE too): sftp-server's open(2) is O_RDONLY with them then, which
// creates or truncates the file all the same, opens a directory, and
// checks only the read permission (a 0555 file opens).
func (h *handler) OpenFile(r *sftp.Request) (_ sftp.WriterAtReaderAt, err error) {
	defer h.guard("open", &err)
	if !r.Pflags().Write {
		return h.openWrite(r, os.O_RDONLY)
	}
	return h.openWrite(r, os.O_RDWR)
}

func (h *handler) openWrite(r *sftp.Request, flag int) (*openFile, error) {
	h.sess.SetOp("write " + r.Filepath)
	flag = openFlags(r, flag)
	if err := h.slash(r, flag&os.O_CREATE != 0); err != nil {
		return nil, status(err)
	}
	f, err := h.fs.OpenFile(r.Filepath, flag, openPerm(r))
	if err != nil {
		return nil, status(err)
	}
	return &openFile{FileWrapper: backend.FileWrapper{File: f}, h: h, name: r.Filepath, writable: r.Pflags().Write, append: flag&os.O_APPEND != 0}, nil
}

// slash applies POSIX's rule for a path the client ended with "/" (the
// fork's Request.TrailingSlash; Filepath is clean): it must name a
// directory. A file so named is ENOTDIR, a missing one created so is
// EISDIR, as open(2) answers.
func (h *handler) slash(r *sftp.Request, create bool) error {
	if !r.TrailingSlash() {
		return nil
	}
	fi, err := h.fs.Stat(r.Filepath)
	switch {
	case err == nil && !fi.IsDir():
		return &fs.PathError{Op: "open", Path: r.Filepath + "/", Err: syscall.ENOTDIR}
	case errors.Is(err, fs.ErrNotExist) && create:
		return &fs.PathError{Op: "open", Path: r.Filepath + "/", Err: syscall.EISDIR}
	}
	return nil
}

// entrySlash applies POSIX's rule for a path ended with "/" that names
// the entry itself (unlink, rename): fi, the entry's Lstat, must be a
// directory. A file, or a link even to a directory, is ENOTDIR, as
// unlink("link/") and rename("link/", x) answer on Linux (sftp-server
// passes the path as given).
func entrySlash(r *sftp.Request, op string, fi os.FileInfo) error {
	if r.TrailingSlash() && !fi.IsDir() {
		return &fs.PathError{Op: op, Path: r.Filepath + "/", Err: syscall.ENOTDIR}
	}
	return nil
}

// openPerm is the mode an OPEN asks a new file to get: its permissions
// attribute with the sticky bit, as open(2) gives them in OpenSSH's
// sftp-server (and as SETSTAT keeps them, see mode), 0644 when it names
// none (sftp-server: 0666 less its umask). Setuid and setgid are never
// given.
func openPerm(r *sftp.Request) os.FileMode {
	if r.AttrFlags().Permissions {
		if a := r.Attributes(); a != nil {
			return a.FileMode() & (os.ModePerm | os.ModeSticky)
		}
	}
	return 0o644
}

// mode is what a MKDIR's or FSETSTAT's permissions may set, and a
// SETSTAT's but a directory's setgid bit (chmod): keptMode's for a file.
func (h *handler) mode(name string, m os.FileMode) os.FileMode {
	return keptMode(h.log, name, m, false)
}

// keptMode is what a client's mode may set, over SFTP or scp -p:
// permissions and the sticky bit, and on a directory (dir) its setgid
// bit. Setuid, and setgid elsewhere, are dropped (logged): the agent
// refuses them there, and a client that preserves modes (rsync -a, cp -a
// of a setgid file, scp -p) must not fail over them.
func keptMode(log *slog.Logger, name string, m os.FileMode, dir bool) os.FileMode {
	keep := os.ModePerm | os.ModeSticky
	if dir {
		keep |= os.ModeSetgid
	}
	if m&^keep&(os.ModeSetuid|os.ModeSetgid) != 0 {
		log.Info("setuid/setgid bits dropped", "path", name, "mode", m.String())
	}
	return m & keep
}

// chmodDir sets the mode m, which may hold the setgid bit, on the
// directory name: an agent that refuses the bit (older than setgid
// directories, which refuse it everywhere) gets the mode without it.
func chmodDir(fsys afero.Fs, log *slog.Logger, name string, m os.FileMode) error {
	err := fsys.Chmod(name, m)
	if err != nil && m&os.ModeSetgid != 0 && errors.Is(err, fs.ErrPermission) {
		log.Info("setgid bit refused by the agent, set without it", "path", name, "mode", m.String(), "err", err)
		err = fsys.Chmod(name, m&^os.ModeSetgid)
	}
	return err
}

// chmod is a SETSTAT's mode: what mode keeps and, on a directory, the
// setgid bit, as sftp-server sets it (`chmod g+s` of a shared directory,
// rsync -a or cp -a over sshfs of one): on a directory it only passes
// the group on to new entries. Only a mode asking for setgid costs the
// Stat that tells a directory (a link followed, as SETSTAT follows it);
// the agent sets the bit on a directory alone, whatever raced. An agent
// that refuses it (older than this, which refuses setgid everywhere) gets
// the mode without it, as before.
func (h *handler) chmod(name string, m os.FileMode) error {
	perm := h.mode(name, m&^os.ModeSetgid)
	if m&os.ModeSetgid == 0 {
		return h.fs.Chmod(name, perm)
	}
	fi, err := h.fs.Stat(name)
	if err != nil {
		return h.fs.Chmod(name, perm) // its error, as without setgid
	}
	if !fi.IsDir() {
		h.log.Info("setgid bit dropped: not a directory", "path", name, "mode", m.String())
		return h.fs.Chmod(name, perm)
	}
	return chmodDir(h.fs, h.log, name, perm|os.ModeSetgid)
}

// Filecmd handles Setstat, Rename, Rmdir, Mkdir, Link, Symlink, Remove.
func (h *handler) Filecmd(r *sftp.Request) (err error) {
	defer h.guard(r.Method, &err)
	h.sess.SetOp(r.Method + " " + r.Filepath)
	defer h.sess.SetOp("idle")
	switch r.Method {
	case "Setstat":
		if err := h.slash(r, false); err != nil {
			return status(err)
		}
		return status(h.setstat(r))
	case "Rename":
		if err := h.renameSlash(r); err != nil {
			return status(err)
		}
		return status(h.rename(r.Filepath, r.Target))
	case "Rmdir":
		// rmdir(2): one call, its errors in the kernel's order.
		return status(backend.RemoveDir(h.fs, r.Filepath))
	case "Remove":
		if r.TrailingSlash() {
			fi, err := backend.Lstat(h.fs, r.Filepath)
			if err != nil {
				return status(err)
			}
			if err := entrySlash(r, "remove", fi); err != nil {
				return status(err)
			}
		}
		// unlink(2): never a directory (EISDIR).
		return status(backend.RemoveFile(h.fs, r.Filepath))
	case "Mkdir":
		perm := os.FileMode(0o755)
		if r.AttrFlags().Permissions {
			if a := r.Attributes(); a != nil {
				perm = h.mode(r.Filepath, a.FileMode())
			}
		}
		// With the sticky bit, as mkdir(2) in sftp-server takes it: the
		// agent makes the directory with it (and with the setgid bit a
		// setgid parent passes on).
		if err := h.fs.Mkdir(r.Filepath, perm.Perm()|perm&os.ModeSticky); err != nil {
			return status(err)
		}
		if perm&os.ModeSticky != 0 {
			// An agent older than the sticky bit's passing made it
			// without: add it to the permissions the umask left.
			fi, err := backend.Lstat(h.fs, r.Filepath)
			if err != nil {
				return status(err)
			}
			if fi.Mode()&os.ModeSticky == 0 {
				return status(h.fs.Chmod(r.Filepath, fi.Mode().Perm()|os.ModeSticky))
			}
		}
		return nil
	case "Symlink":
		// pkg/sftp: Filepath is the link's target, Target the link.
		return status(backend.Symlink(h.fs, r.Filepath, r.Target))
	case "Link":
		// hardlink@openssh.com: Filepath is the existing file, Target
		// the new name.
		return status(backend.Link(h.fs, r.Filepath, r.Target))
	}
	return sftp.ErrSSHFxOpUnsupported
}

// rename is SFTP v3's RENAME. OpenSSH's never replaces what exists at the
// target; upgate replaces a file by a file, atomically, as posix-rename
// does (WinSCP's .filepart and PhpStorm's "temporary file" uploads rename
// over the file they upload, and a client's own remove-then-rename leaves
// a window without the file), and refuses the rest as OpenSSH does: a
// directory is never replaced by a plain RENAME, nor a file by a
// directory.
func (h *handler) rename(from, to string) error {
	dst, err := backend.Lstat(h.fs, to)
	if err != nil {
		return h.renameFirstOld(from, to)
	}
	src, err := backend.Lstat(h.fs, from)
	if err != nil {
		return err
	}
	if src.IsDir() && dst.Mode()&fs.ModeSymlink != 0 {
		// sftp-server looks at the new name of a directory with stat(2),
		// links followed: a link that leads nowhere, or into a loop, is
		// no file to it, and rename(2) answers (ENOTDIR; TestSFTPRandom
		// seed 8365).
		if _, err := h.fs.Stat(to); err != nil {
			return h.renameFirstOld(from, to)
		}
	}
	if src.IsDir() || dst.IsDir() {
		return &os.LinkError{Op: "rename", Old: from, New: to, Err: syscall.EEXIST}
	}
	return h.renameFirstOld(from, to)
}

// renameFirstOld renames from to to; when that fails looking a name up
// (EACCES, ENOENT, ENOTDIR, ELOOP), an old name that cannot be looked at
// answers that instead, as sftp-server's RENAME lstats it before anything
// else (a missing file into a directory that cannot be searched is
// NO_SUCH_FILE, not rename(2)'s EACCES; TestSFTPRandom seed 8396). It
// costs nothing where the rename works. Other failures stand as they
// are: one reported after the rename was made (the View's) would find
// the old name gone.
func (h *handler) renameFirstOld(from, to string) error {
	err := h.fs.Rename(from, to)
	if err == nil {
		return nil
	}
	if !errors.Is(err, fs.ErrPermission) && !errors.Is(err, fs.ErrNotExist) &&
		!errors.Is(err, syscall.ENOTDIR) && !errors.Is(err, syscall.ELOOP) {
		return err
	}
	if _, lerr := backend.Lstat(h.fs, from); lerr != nil {
		return lerr
	}
	return err
}

// PosixRename is posix-rename@openssh.com: an atomic replace.
func (h *handler) PosixRename(r *sftp.Request) (err error) {
	defer h.guard("rename", &err)
	if err := h.renameSlash(r); err != nil {
		return status(err)
	}
	return status(h.fs.Rename(r.Filepath, r.Target))
}

// renameSlash refuses a rename whose source or new path the client ended
// with "/" unless the source is a directory itself (entrySlash; the fork's
// TargetTrailingSlash), as rename(2) answers ENOTDIR.
func (h *handler) renameSlash(r *sftp.Request) error {
	if !r.TrailingSlash() && !r.TargetTrailingSlash() {
		return nil
	}
	fi, err := backend.Lstat(h.fs, r.Filepath)
	if err != nil {
		return err
	}
	if err := entrySlash(r, "rename", fi); err != nil {
		return err
	}
	if r.TargetTrailingSlash() && !fi.IsDir() {
		return &os.LinkError{Op: "rename", Old: r.Filepath, New: r.Target + "/", Err: syscall.ENOTDIR}
	}
	return nil
}

// setstat applies a path's SETSTAT: size, permissions, times. uid/gid are
// ignored: the agent writes as the container's user.
func (h *handler) setstat(r *sftp.Request) error {
	return setAttrs(r, "setstat", h.pathSetters(r.Filepath))
}

// pathSetters set the attributes of what name names now (SETSTAT).
func (h *handler) pathSetters(name string) attrSetters {
	return attrSetters{
		truncate: func(size int64) error { return h.truncate(name, size) },
		chmod:    func(m os.FileMode) error { return h.chmod(name, m) },
		chtimes:  func(atime, mtime time.Time) error { return h.fs.Chtimes(name, atime, mtime) },
	}
}

// attrSetters set a SETSTAT's or FSETSTAT's attributes on what it names.
type attrSetters struct {
	truncate func(size int64) error
	chmod    func(mode os.FileMode) error // the mode as asked: chmod keeps what it may
	chtimes  func(atime, mtime time.Time) error
}

// setAttrs applies r's size, permissions and times with set, each
// whatever became of the one before, and answers the last failure, as
// sftp-server's SETSTAT and FSETSTAT do.
func setAttrs(r *sftp.Request, op string, set attrSetters) error {
	flags, attrs := r.AttrFlags(), r.Attributes()
	if attrs == nil {
		return &fs.PathError{Op: op, Path: r.Filepath, Err: syscall.EINVAL}
	}
	var last error
	if flags.Size {
		if err := set.truncate(int64(attrs.Size)); err != nil {
			last = err
		}
	}
	if flags.Permissions {
		if err := set.chmod(attrs.FileMode()); err != nil {
			last = err
		}
	}
	if flags.Acmodtime {
		if err := set.chtimes(time.Unix(int64(attrs.Atime), 0), time.Unix(int64(attrs.Mtime), 0)); err != nil {
			last = err
		}
	}
	return last
}

// errLinkMode is fchmodat(2)'s EOPNOTSUPP with AT_SYMLINK_NOFOLLOW on a
// link, answered FAILURE as sftp-server answers it.
var errLinkMode = errors.New("the mode of a symbolic link cannot be changed")

// Lsetstat is lsetstat@openssh.com: SETSTAT that does not follow a final
// link, as sftp-server serves it: a size is refused before anything else
// (BAD_MESSAGE: nonsensical for a link); a mode is set on anything but a
// link, whose mode Linux cannot change (fchmodat's EOPNOTSUPP: FAILURE);
// times are set on the link itself; each whatever became of the one
// before, answering the last failure (the random SFTP differential: a
// size was set on a file, a link's mode answered OP_UNSUPPORTED and its
// times then went unset).
func (h *handler) Lsetstat(r *sftp.Request) (err error) {
	defer h.guard("lsetstat", &err)
	flags, attrs := r.AttrFlags(), r.Attributes()
	if attrs == nil || flags.Size {
		return status(&fs.PathError{Op: "lsetstat", Path: r.Filepath, Err: syscall.EINVAL})
	}
	var last error
	if flags.Permissions {
		switch fi, err := backend.Lstat(h.fs, r.Filepath); {
		case err != nil:
			last = err
		case fi.Mode()&os.ModeSymlink != 0:
			// Not EOPNOTSUPP itself, which status answers OP_UNSUPPORTED.
			last = &fs.PathError{Op: "lchmod", Path: r.Filepath, Err: errLinkMode}
		default:
			if err := h.chmod(r.Filepath, attrs.FileMode()); err != nil {
				last = err
			}
		}
	}
	if flags.Acmodtime {
		if err := backend.Lchtimes(h.fs, r.Filepath, time.Unix(int64(attrs.Atime), 0), time.Unix(int64(attrs.Mtime), 0)); err != nil {
			last = err
		}
	}
	return status(last)
}

// truncate changes a file's size in place (an upload in progress of this
// session's included: the view opens its data).
func (h *handler) truncate(name string, size int64) error {
	f, err := h.fs.OpenFile(name, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// statvfsReadOnly is statvfs@openssh.com's SSH2_FXE_STATVFS_ST_RDONLY flag
// (OpenSSH's PROTOCOL, 4.4), as sftp-server sets it from ST_RDONLY.
const statvfsReadOnly = 0x1

// StatVFS answers statvfs@openssh.com from the agent's filesystem.
func (h *handler) StatVFS(r *sftp.Request) (_ *sftp.StatVFS, err error) {
	defer h.guard("statvfs", &err)
	ctx, cancel := context.WithTimeout(h.ctx, time.Minute)
	defer cancel()
	st, err := backend.StatFS(ctx, h.fs, r.Filepath)
	if err != nil {
		return nil, status(err)
	}
	v := &sftp.StatVFS{
		Bsize: st.BlockSize, Frsize: st.FragmentSize, Blocks: st.Blocks, Bfree: st.BlocksFree, Bavail: st.BlocksAvailable,
		Files: st.Files, Ffree: st.FilesFree, Favail: st.FilesFree, Namemax: st.NameMax,
	}
	if st.ReadOnly {
		v.Flag |= statvfsReadOnly
	}
	return v, nil
}

// Filelist handles List, Stat and Readlink.
func (h *handler) Filelist(r *sftp.Request) (_ sftp.ListerAt, err error) {
	defer h.guard(r.Method, &err)
	switch r.Method {
	case "List":
		d, err := h.fs.Open(r.Filepath)
		if err != nil {
			if errors.Is(err, os.ErrPermission) {
				// opendir(3)'s open(2) O_DIRECTORY answers ENOTDIR for
				// a file before it checks the file's permission: a
				// file mode 0200 is NO_SUCH_FILE on sftp-server.
				if fi, serr := h.fs.Stat(r.Filepath); serr == nil && !fi.IsDir() {
					err = &fs.PathError{Op: "opendir", Path: r.Filepath, Err: syscall.ENOTDIR}
				}
			}
			return nil, status(err)
		}
		if !backend.IsDir(d) {
			d.Close()
			return nil, &fs.PathError{Op: "opendir", Path: r.Filepath, Err: syscall.ENOTDIR}
		}
		// "." and "..", as OpenSSH lists them.
		l := &dirLister{h: h, d: d}
		if self, err := d.Stat(); err == nil {
			parent := self
			if p := path.Dir(path.Clean("/" + r.Filepath)); p != path.Clean("/"+r.Filepath) {
				if fi, err := h.fs.Stat(p); err == nil {
					parent = fi
				}
			}
			l.dots = []os.FileInfo{statInfo(renamed{self, "."}), statInfo(renamed{parent, ".."})}
		}
		return l, nil
	case "Stat":
		if err := h.slash(r, false); err != nil {
			return nil, status(err)
		}
		fi, err := h.fs.Stat(r.Filepath)
		if err != nil {
			return nil, status(err)
		}
		return listerAt{statInfo(fi)}, nil
	}
	return nil, sftp.ErrSSHFxOpUnsupported
}

// Lstat handles LSTAT: a link itself, not its target.
func (h *handler) Lstat(r *sftp.Request) (_ sftp.ListerAt, err error) {
	defer h.guard("lstat", &err)
	if r.TrailingSlash() {
		// lstat("link/") follows the link: the slash asks for a directory.
		r.Method = "Stat"
		return h.Filelist(r)
	}
	fi, err := backend.Lstat(h.fs, r.Filepath)
	if err != nil {
		return nil, status(err)
	}
	return listerAt{statInfo(fi)}, nil
}

// RealPath answers REALPATH as OpenSSH does: against "/" (every user's
// tree starts there), resolving ".." and symbolic links on disk; every
// component but the last must exist.
func (h *handler) RealPath(p string) (_ string, err error) {
	defer h.guard("realpath", &err)
	rp, err := backend.RealPath(h.fs, "/"+p)
	return rp, status(err)
}

// Readlink handles READLINK.
func (h *handler) Readlink(p string) (_ string, err error) {
	defer h.guard("readlink", &err)
	target, err := backend.Readlink(h.fs, p)
	return target, status(err)
}

// listerAt serves a listing to pkg/sftp in pages.
type listerAt []os.FileInfo

func (l listerAt) ListAt(out []os.FileInfo, off int64) (int, error) {
	if off >= int64(len(l)) {
		return 0, io.EOF
	}
	n := copy(out, l[off:])
	if n < len(out) {
		return n, io.EOF
	}
	return n, nil
}

// dirLister serves a listing to pkg/sftp page by page as it reads it from
// the backend, so that it holds one page at a time whatever the directory
// holds: "." and ".." first, then the entries in the agent's order
// (OpenSSH's sftp-server does not sort either). pkg/sftp closes it with
// the handle.
type dirLister struct {
	h *handler
	d afero.File

	mu   sync.Mutex // guards the fields below
	dots []os.FileInfo
	next int64 // the offset pkg/sftp asks for next
	eof  bool
}

var _ io.Closer = (*dirLister)(nil)

// ListAt implements sftp.ListerAt. pkg/sftp asks for offsets in order.
func (l *dirLister) ListAt(out []os.FileInfo, off int64) (n int, err error) {
	defer l.h.guard("readdir", &err)
	l.mu.Lock()
	defer l.mu.Unlock()
	if off != l.next {
		return 0, &fs.PathError{Op: "readdir", Path: l.d.Name(), Err: syscall.EINVAL}
	}
	for n < len(out) && len(l.dots) > 0 {
		out[n] = l.dots[0]
		l.dots, n = l.dots[1:], n+1
	}
	if n < len(out) && !l.eof {
		fis, rerr := l.d.Readdir(len(out) - n)
		for _, fi := range fis {
			out[n] = statInfo(fi)
			n++
		}
		switch {
		case errors.Is(rerr, io.EOF), rerr == nil && n < len(out):
			l.eof = true
		case rerr != nil:
			l.next += int64(n)
			return n, status(rerr)
		}
	}
	l.next += int64(n)
	if l.eof && n < len(out) {
		return n, io.EOF
	}
	return n, nil
}

// Close ends the listing.
func (l *dirLister) Close() (err error) {
	defer l.h.guard("closedir", &err)
	return l.d.Close()
}

// renamed is a FileInfo listed under another name.
type renamed struct {
	os.FileInfo
	name string
}

func (r renamed) Name() string { return r.name }

// stated is a FileInfo whose Sys is a stat(2) result, from which pkg/sftp
// sends the owner, the link count (in a listing's long name) and the atime.
type stated struct {
	os.FileInfo
	st syscall.Stat_t
}

func (s *stated) Sys() any { return &s.st }

// statInfo gives fi the stat(2) fields a backend FileInfo carries.
func statInfo(fi os.FileInfo) os.FileInfo {
	bs, ok := fi.Sys().(*backend.Stat)
	if !ok {
		return fi
	}
	s := &stated{FileInfo: fi}
	s.st.Uid, s.st.Gid, s.st.Nlink = bs.UID, bs.GID, bs.Nlink
	atime := bs.Atime
	if atime.IsZero() {
		atime = fi.ModTime()
	}
	s.st.Atim = syscall.NsecToTimespec(atime.UnixNano())
	return s
}

// openFile is a file pkg/sftp reads or writes with ReadAt/WriteAt from up
// to eight workers at once (the backend file is safe for that), or, on an
// APPEND handle, one write after the other in arrival order. Close commits;
// TransferError (the connection dropped) makes Close abort. FSTAT and
// FSETSTAT on its handle act on it (Stat, SetStat).
type openFile struct {
	backend.FileWrapper
	h    *handler
	name string
	// writable: the client's OPEN asked for WRITE. An OPEN with CREAT,
	// TRUNC or APPEND but without WRITE reads only, as sftp-server's
	// open(2) O_RDONLY: its FSETSTAT of a size is refused (ftruncate(2)
	// EINVAL).
	writable bool
	append   bool
	closed   sync.Once
}

var (
	_ sftp.FileStater    = (*openFile)(nil)
	_ sftp.FileSetStater = (*openFile)(nil)
)

// WriteAt writes at off; on an APPEND handle, at the end of the file
// whatever off says (see openFlags).
func (f *openFile) WriteAt(p []byte, off int64) (n int, err error) {
	defer f.h.guard("write", &err)
	if f.append {
		return f.File.Write(p)
	}
	return f.File.WriteAt(p, off)
}

// ReadAt reads at off.
func (f *openFile) ReadAt(p []byte, off int64) (n int, err error) {
	defer f.h.guard("read", &err)
	return f.File.ReadAt(p, off)
}

// Stat answers FSTAT from the open file: an upload in progress, or the
// file it opened whatever its path names now. A directory's handle asks
// its descriptor afresh (backend.Fstat), so that a mode or time set since
// shows, as sftp-server's fstat(2) of it (TestSFTPRandom seeds 2017,
// 3491). Where the backend cannot (an agent older than that), it is
// asked by its path, as its FSETSTAT then sets by path, and answers what
// its open saw where the path no longer names a directory.
func (f *openFile) Stat() (_ os.FileInfo, err error) {
	defer f.h.guard("fstat", &err)
	if backend.IsDir(f.File) {
		fi, err := backend.Fstat(f.File)
		if err == nil {
			return statInfo(fi), nil
		}
		if !errors.Is(err, errors.ErrUnsupported) {
			return nil, status(err)
		}
		if fi, err := f.h.fs.Stat(f.name); err == nil && fi.IsDir() {
			return statInfo(fi), nil
		}
	}
	fi, err := f.File.Stat()
	if err != nil {
		return nil, status(err)
	}
	return statInfo(fi), nil
}

// SetStat answers FSETSTAT on the open file: size (ftruncate),
// permissions (fchmod) and times (futimens; on an upload, applied again
// after its commit).
func (f *openFile) SetStat(r *sftp.Request) (err error) {
	defer f.h.guard("fsetstat", &err)
	set := attrSetters{
		truncate: f.File.Truncate,
		chmod:    func(m os.FileMode) error { return f.Chmod(f.h.mode(f.name, m)) },
		chtimes:  f.SetTimes,
	}
	if backend.IsDir(f.File) {
		// A directory opened with OPEN (sftp-server opens it with
		// open(2), fchmods and futimens it): set on the directory the
		// handle opened, whatever its path names since (TestSFTPRandom
		// seed 3692), the setgid bit kept as SETSTAT keeps it on a
		// directory; through its path, as SETSTAT sets them, where the
		// backend cannot (an agent older than that).
		byPath := f.h.pathSetters(r.Filepath)
		set.chmod = func(m os.FileMode) error {
			err := f.Chmod(f.h.mode(f.name, m&^os.ModeSetgid) | m&os.ModeSetgid)
			if errors.Is(err, errors.ErrUnsupported) {
				return byPath.chmod(m)
			}
			return err
		}
		set.chtimes = func(atime, mtime time.Time) error {
			err := f.SetTimes(atime, mtime)
			if errors.Is(err, errors.ErrUnsupported) {
				return byPath.chtimes(atime, mtime)
			}
			return err
		}
	}
	if !f.writable || backend.IsDir(f.File) {
		// ftruncate(2) of a descriptor open for reading (a directory's
		// too).
		set.truncate = func(int64) error { return &fs.PathError{Op: "ftruncate", Path: f.name, Err: syscall.EINVAL} }
	}
	return status(setAttrs(r, "fsetstat", set))
}

// TransferError hands the file why its session ended with it open
// (pkg/sftp calls it for every file still open then): the upload aborts
// at Close instead of committing.
func (f *openFile) TransferError(err error) {
	var panicked error
	defer f.h.guard("abort", &panicked)
	f.FileWrapper.TransferError(err)
}

func (f *openFile) Close() (err error) {
	defer f.h.guard("close", &err)
	f.closed.Do(func() {
		err = f.File.Close()
		f.h.sess.SetOp("idle")
	})
	return status(err)
}
