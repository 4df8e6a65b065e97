package sftp

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"runtime/debug"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pkg/sftp"
	"github.com/spf13/afero"

	"github.com/upgate/upgate/backend"
	"github.com/upgate/upgate/gateway"
)

// handler serves pkg/sftp's request server over one user's filesystem.
// It remembers which files this session holds open for writing, so that
// an FSETSTAT (which pkg/sftp hands over as a path-based Setstat) of an
// upload in progress applies to the upload: times after its commit, size
// to its temp file.
type handler struct {
	fs   afero.Fs
	sess *gateway.Session
	log  *slog.Logger
	ctx  context.Context

	// mu guards writing and openFile.renameTo.
	mu      sync.Mutex
	writing map[string]map[*openFile]struct{}
}

var (
	_ sftp.FileReader           = (*handler)(nil)
	_ sftp.OpenFileWriter       = (*handler)(nil)
	_ sftp.PosixRenameFileCmder = (*handler)(nil)
	_ sftp.StatVFSFileCmder     = (*handler)(nil)
	_ sftp.LstatFileLister      = (*handler)(nil)
	_ sftp.RealPathFileLister   = (*handler)(nil)
	_ sftp.ReadlinkFileLister   = (*handler)(nil)
)

func newHandler(ctx context.Context, fsys afero.Fs, sess *gateway.Session) *handler {
	return &handler{fs: fsys, sess: sess, log: sess.Logger(), ctx: ctx, writing: make(map[string]map[*openFile]struct{})}
}

func (h *handler) handlers() sftp.Handlers {
	return sftp.Handlers{FileGet: h, FilePut: h, FileCmd: h, FileList: h}
}

// guard turns a panic on one of pkg/sftp's worker goroutines into an
// error, logging the stack.
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
			return &fs.PathError{Op: pe.Op, Path: pe.Path, Err: syscall.ENOENT}
		}
		return sftp.ErrSSHFxNoSuchFile
	case errors.Is(err, os.ErrPermission):
		if errors.As(err, &pe) {
			return &fs.PathError{Op: pe.Op, Path: pe.Path, Err: syscall.EACCES}
		}
		return sftp.ErrSSHFxPermissionDenied
	case errors.Is(err, errors.ErrUnsupported):
		return sftp.ErrSSHFxOpUnsupported
	}
	return err
}

func openFlags(r *sftp.Request, flag int) int {
	pf := r.Pflags()
	if pf.Creat {
		flag |= os.O_CREATE
	}
	if pf.Trunc {
		flag |= os.O_TRUNC
	}
	if pf.Excl {
		flag |= os.O_EXCL
	}
	// APPEND is not passed down: clients send offsets at the end anyway,
	// and O_APPEND forbids the WriteAt that SFTP writes are.
	return flag
}

// Fileread opens a file for reading (SSH_FXP_OPEN with READ).
func (h *handler) Fileread(r *sftp.Request) (_ io.ReaderAt, err error) {
	defer h.guard("open", &err)
	h.sess.SetOp("read " + r.Filepath)
	f, err := h.fs.OpenFile(r.Filepath, os.O_RDONLY, 0)
	if err != nil {
		return nil, status(err)
	}
	if fi, err := f.Stat(); err == nil && fi.IsDir() {
		f.Close()
		return nil, &fs.PathError{Op: "open", Path: r.Filepath, Err: syscall.EISDIR}
	}
	return h.track(r.Filepath, f, false), nil
}

// Filewrite opens a file for writing (SSH_FXP_OPEN with WRITE).
func (h *handler) Filewrite(r *sftp.Request) (_ io.WriterAt, err error) {
	defer h.guard("open", &err)
	return h.openWrite(r, os.O_WRONLY)
}

// OpenFile opens a file for reading and writing.
func (h *handler) OpenFile(r *sftp.Request) (_ sftp.WriterAtReaderAt, err error) {
	defer h.guard("open", &err)
	return h.openWrite(r, os.O_RDWR)
}

func (h *handler) openWrite(r *sftp.Request, flag int) (*openFile, error) {
	h.sess.SetOp("write " + r.Filepath)
	f, err := h.fs.OpenFile(r.Filepath, openFlags(r, flag), openPerm(r))
	if err != nil {
		return nil, status(err)
	}
	of := h.track(r.Filepath, f, true)
	if r.Pflags().Append {
		// APPEND: OpenSSH's reput sends offsets from the end of the file,
		// curl -a and pkg/sftp from 0. Offsets below the size at open are
		// taken as relative to it, so both land at the end, and the
		// writes keep their order however pkg/sftp's workers run them.
		fi, err := f.Stat()
		if err != nil {
			of.Close()
			return nil, status(err)
		}
		of.appendBase = fi.Size()
	}
	return of, nil
}

// openPerm is the mode an OPEN asks a new file to get, 0644 when it names
// none. For OPEN, pkg/sftp puts the open flags in r.Flags and the attributes
// without their flags word in r.Attrs, so r.AttrFlags and r.Attributes
// would read the open flags as attribute flags (SSH_FXF_APPEND is the
// permissions bit: Attributes then returns nil). Exactly 4 bytes of
// attributes can only be permissions alone, which is what OpenSSH's sftp
// and libssh2 send.
func openPerm(r *sftp.Request) os.FileMode {
	if len(r.Attrs) == 4 {
		if perm := os.FileMode(binary.BigEndian.Uint32(r.Attrs)).Perm(); perm != 0 {
			return perm
		}
	}
	return 0o644
}

func (h *handler) track(name string, f afero.File, write bool) *openFile {
	of := &openFile{FileWrapper: backend.FileWrapper{File: f}, h: h, name: name, write: write}
	if write {
		h.mu.Lock()
		if h.writing[name] == nil {
			h.writing[name] = make(map[*openFile]struct{})
		}
		h.writing[name][of] = struct{}{}
		h.mu.Unlock()
	}
	return of
}

// openWriters returns this session's files open for writing at name.
func (h *handler) openWriters(name string) []*openFile {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]*openFile, 0, len(h.writing[name]))
	for f := range h.writing[name] {
		out = append(out, f)
	}
	return out
}

// Filecmd handles Setstat, Rename, Rmdir, Mkdir, Link, Symlink, Remove.
func (h *handler) Filecmd(r *sftp.Request) (err error) {
	defer h.guard(r.Method, &err)
	h.sess.SetOp(r.Method + " " + r.Filepath)
	defer h.sess.SetOp("idle")
	switch r.Method {
	case "Setstat":
		return status(h.setstat(r))
	case "Rename":
		// Replaces an existing target, as WinSCP's .filepart and
		// PhpStorm's "temporary file" uploads need.
		return status(h.rename(r.Filepath, r.Target))
	case "Rmdir":
		fi, err := backend.Lstat(h.fs, r.Filepath)
		if err != nil {
			return status(err)
		}
		if !fi.IsDir() {
			return &fs.PathError{Op: "rmdir", Path: r.Filepath, Err: syscall.ENOTDIR}
		}
		return status(h.fs.Remove(r.Filepath))
	case "Remove":
		fi, err := backend.Lstat(h.fs, r.Filepath)
		if err != nil {
			return status(err)
		}
		if fi.IsDir() {
			return &fs.PathError{Op: "remove", Path: r.Filepath, Err: syscall.EISDIR}
		}
		return status(h.fs.Remove(r.Filepath))
	case "Mkdir":
		perm := os.FileMode(0o755)
		if r.AttrFlags().Permissions {
			perm = r.Attributes().FileMode().Perm()
		}
		return status(h.fs.Mkdir(r.Filepath, perm))
	case "Symlink":
		// pkg/sftp: Filepath is the link's target, Target the link.
		return status(backend.Symlink(h.fs, r.Filepath, r.Target))
	case "Link":
		return sftp.ErrSSHFxOpUnsupported // hard links: not offered by agents
	}
	return sftp.ErrSSHFxOpUnsupported
}

// PosixRename is posix-rename@openssh.com: an atomic replace.
func (h *handler) PosixRename(r *sftp.Request) (err error) {
	defer h.guard("rename", &err)
	return status(h.rename(r.Filepath, r.Target))
}

// rename renames from to to. A file this session still has open for
// writing is renamed when it is closed: an upload only gets its name at
// its commit, and the VS Code SFTP extension (useTempFile) renames
// target.new onto target before it closes the handle.
func (h *handler) rename(from, to string) error {
	h.mu.Lock()
	if open := h.writing[from]; len(open) > 0 {
		for f := range open {
			f.renameTo = to
		}
		h.mu.Unlock()
		return nil
	}
	h.mu.Unlock()
	return h.fs.Rename(from, to)
}

// setstat applies SETSTAT/FSETSTAT: size, permissions, times. uid/gid are
// ignored: the agent writes as the container's user.
func (h *handler) setstat(r *sftp.Request) error {
	flags, attrs := r.AttrFlags(), r.Attributes()
	open := h.openWriters(r.Filepath)
	if flags.Size {
		if len(open) > 0 {
			for _, f := range open {
				if err := f.Truncate(int64(attrs.Size)); err != nil {
					return err
				}
			}
		} else if err := h.truncate(r.Filepath, int64(attrs.Size)); err != nil {
			return err
		}
	}
	if flags.Permissions {
		if err := h.fs.Chmod(r.Filepath, attrs.FileMode().Perm()); err != nil {
			return err
		}
	}
	if flags.Acmodtime {
		atime, mtime := time.Unix(int64(attrs.Atime), 0), time.Unix(int64(attrs.Mtime), 0)
		if len(open) > 0 {
			// Applied when the upload is closed, after its commit.
			for _, f := range open {
				ts, ok := f.File.(backend.TimesSetter)
				if !ok {
					return h.fs.Chtimes(r.Filepath, atime, mtime)
				}
				if err := ts.SetTimes(atime, mtime); err != nil {
					return err
				}
			}
		} else if err := h.fs.Chtimes(r.Filepath, atime, mtime); err != nil {
			return err
		}
	}
	return nil
}

// truncate changes a closed file's size in place.
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

// StatVFS answers statvfs@openssh.com from the agent's filesystem.
func (h *handler) StatVFS(r *sftp.Request) (_ *sftp.StatVFS, err error) {
	defer h.guard("statvfs", &err)
	ctx, cancel := context.WithTimeout(h.ctx, time.Minute)
	defer cancel()
	st, err := backend.StatFS(ctx, h.fs, r.Filepath)
	if err != nil {
		return nil, status(err)
	}
	return &sftp.StatVFS{
		Bsize: st.BlockSize, Frsize: st.FragmentSize, Blocks: st.Blocks, Bfree: st.BlocksFree, Bavail: st.BlocksAvailable,
		Files: st.Files, Ffree: st.FilesFree, Favail: st.FilesFree, Namemax: st.NameMax,
	}, nil
}

// Filelist handles List, Stat and Readlink.
func (h *handler) Filelist(r *sftp.Request) (_ sftp.ListerAt, err error) {
	defer h.guard(r.Method, &err)
	switch r.Method {
	case "List":
		d, err := h.fs.Open(r.Filepath)
		if err != nil {
			return nil, status(err)
		}
		defer d.Close()
		fis, err := d.Readdir(-1)
		if err != nil {
			return nil, status(err)
		}
		sort.Slice(fis, func(i, j int) bool { return fis[i].Name() < fis[j].Name() })
		return listerAt(fis), nil
	case "Stat":
		fi, err := h.fs.Stat(r.Filepath)
		if err != nil {
			return nil, status(err)
		}
		return listerAt{fi}, nil
	}
	return nil, sftp.ErrSSHFxOpUnsupported
}

// Lstat handles LSTAT: a link itself, not its target.
func (h *handler) Lstat(r *sftp.Request) (_ sftp.ListerAt, err error) {
	defer h.guard("lstat", &err)
	fi, err := backend.Lstat(h.fs, r.Filepath)
	if err != nil {
		return nil, status(err)
	}
	return listerAt{fi}, nil
}

// RealPath resolves a path against "/" without following links: every
// user's tree starts at "/".
func (h *handler) RealPath(p string) (string, error) { return path.Clean("/" + p), nil }

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

// openFile is a file pkg/sftp reads or writes with ReadAt/WriteAt from up
// to eight workers at once (the backend file is safe for that). Close
// commits; TransferError (the connection dropped) makes Close abort.
type openFile struct {
	backend.FileWrapper
	h          *handler
	name       string
	write      bool
	appendBase int64  // size at open for APPEND opens, else 0
	renameTo   string // a rename of the file while open, done after Close
	aborted    atomic.Bool
	closed     sync.Once
}

// WriteAt places an APPEND open's writes after the file's end.
func (f *openFile) WriteAt(p []byte, off int64) (int, error) {
	if off < f.appendBase {
		off += f.appendBase
	}
	return f.File.WriteAt(p, off)
}

func (f *openFile) TransferError(err error) {
	f.aborted.Store(true)
	f.FileWrapper.TransferError(err)
}

func (f *openFile) Close() error {
	var err error
	f.closed.Do(func() {
		var renameTo string
		if f.write {
			f.h.mu.Lock()
			delete(f.h.writing[f.name], f)
			if len(f.h.writing[f.name]) == 0 {
				delete(f.h.writing, f.name)
			}
			renameTo = f.renameTo
			f.h.mu.Unlock()
		}
		err = f.File.Close()
		if err == nil && renameTo != "" && !f.aborted.Load() {
			err = f.h.fs.Rename(f.name, renameTo)
		}
		f.h.sess.SetOp("idle")
	})
	return status(err)
}
