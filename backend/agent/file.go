package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/upgate/upgate/backend/agent/hooks"
	"github.com/upgate/upgate/backend/agentpb"
)

// TempPrefix starts the name of every atomic-upload temp file. Listings hide
// such names.
const TempPrefix = ".upgate-upload-"

func isTempName(name string) bool { return strings.HasPrefix(name, TempPrefix) }

// handle is one open file of one Open stream.
//
// An atomic upload (an open for writing that truncates, or that creates a
// file that does not exist yet) writes tmp; commit renames it over path.
// Anything else (abort) closes and removes tmp. In-place handles (reads,
// appends, writes into an existing file without truncation, joins of an
// upload in progress, and the truncating opens that cannot be atomic:
// another user's file, or a file in a directory the agent's user may not
// write; see openIn) write path's file directly and commit nothing.
//
// The writer's session may act on its upload while it is open (see
// agentpb.UnlinkOp and MoveOp): unlink discards it at once, move gives it
// a new target. Times set on any handle apply at once (and again at the
// close, for a SetTimesOp without until_write).
type handle struct {
	s        *Server
	root     *scope // where the call may write; closed when the stream ends
	f        *os.File
	id       string // upload id of an atomic upload, "" otherwise
	append   bool
	excl     bool // O_EXCL: commit must not replace a file created meanwhile
	writable bool
	done     bool // closed or aborted; touched only by the stream goroutine
	// sess is the session that opened the handle (nil for a v1 stream):
	// its renames find the uploads it opened until their commits, closes
	// already on their way included (session.uploadAtLocked).
	sess opener
	// failErr is the first failed or short write, or the first failure
	// of a request the gateway posted (agentpb.SessionRequest.posted),
	// touched only by the stream goroutine. The gateway sends its close
	// without waiting for those replies, so a close after a failure must
	// not commit: it aborts and answers with this error.
	failErr error

	// path, tmp, unlinked and resaved are guarded by s.mu once the
	// handle is in s.uploads: a rename of a directory above them
	// (another stream's call) moves them.
	path     string // cleaned target path
	tmp      string // temp file path for an atomic upload, "" otherwise
	unlinked bool   // the upload was discarded by UnlinkOp: commit nothing
	// resaved: a truncating open of the same session replaced this
	// upload (openIn's own), so its UnlinkOp completes that open and may
	// lend its directory the write bit its owner took away, as the
	// commit may (lendOwnDir); a client's REMOVE of it may not.
	resaved bool

	// mu guards the times recorded for the close (SetTimesOp without
	// until_write).
	mu           sync.Mutex
	atime, mtime time.Time
	timesSet     bool

	// replaced holds the file a commit's rename replaced, open (an O_PATH
	// descriptor, which needs no permission on the file and follows no
	// link) from just before the rename until the stream goroutine has
	// answered the close (afterReply); nil when there is none. On ext4 a
	// rename over a file whose last link it is frees that file's blocks
	// inside the rename, while the client waits for its close
	// (bench/fsops.py: a save's rename 0.066-0.121 ms that way, 0.040-0.042
	// ms with the old file held open, and its close 0.037-0.041 ms); held
	// open, the rename only drops its name and the kernel frees the file
	// at afterReply's close. Nothing shows in the directory meanwhile, and
	// after a crash the kernel's orphan list frees it. Where the file
	// cannot be opened the rename frees it itself.
	replaced *os.File

	// info is the committed file's state, taken before its close, for the
	// change event (Server.committed); nil when not taken.
	info fs.FileInfo

	// joined is the upload a join (agentpb.OpenOp.join_upload) opened
	// into, nil for any other handle. The upload's commit announces what
	// the join wrote before it; changedAfter (touched only by the stream
	// goroutine) records that the join changed the file once that commit
	// had begun, so that the join's own close announces the change if
	// the commit was made.
	joined       *handle
	changedAfter bool
	// committing is set when an atomic upload's commit begins, before it
	// takes the file's state for its event; committedOK once it has
	// renamed or linked its data into place.
	committing, committedOK atomic.Bool
}

// Open serves one open file; see agentpb.AgentServer.
func (s *Server) Open(stream agentpb.Agent_OpenServer) error {
	req, err := stream.Recv()
	if err != nil {
		return err
	}
	op := req.GetOpen()
	if op == nil {
		return status.Error(codes.InvalidArgument, "the first message of an Open stream must be OpenOp")
	}
	if err := s.reserve(string(op.GetPath())); err != nil {
		return stream.Send(&agentpb.FileResponse{Id: req.GetId(), Error: toProtoError(err)})
	}
	var a activity // Busy counts the stream while it serves a request
	s.track(&a)
	defer s.untrack(&a)
	a.begin()
	h, info, err := s.open(stream.Context(), op)
	a.done()
	if err != nil {
		s.openHandles.Add(-1)
		err = s.fail("Open", string(op.GetPath()), err)
		return stream.Send(&agentpb.FileResponse{Id: req.GetId(), Error: toProtoError(err)})
	}
	defer func() {
		if !h.done {
			h.abort("stream ended without close")
		}
		h.root.Close()
		s.openHandles.Add(-1)
	}()
	opened := &agentpb.FileResponse{
		Id: req.GetId(), Result: &agentpb.FileResponse_Opened{Opened: info},
		Features: features,
		UploadId: h.id,
	}
	if err := stream.Send(opened); err != nil {
		return err
	}
	for {
		req, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil // the deferred abort discards the upload
			}
			return err
		}
		a.begin()
		resp := h.serve(req)
		a.done()
		resp.Id = req.GetId()
		err = stream.Send(resp)
		h.afterReply()
		if err != nil {
			return err
		}
		if h.done {
			return nil
		}
	}
}

// osFlags converts wire flags to os.OpenFile flags.
func osFlags(flags uint32) (flag int, read, write bool) {
	has := func(f agentpb.OpenFlag) bool { return flags&uint32(f) != 0 }
	read, write = has(agentpb.OpenFlag_OPEN_FLAG_READ), has(agentpb.OpenFlag_OPEN_FLAG_WRITE)
	switch {
	case read && write:
		flag = os.O_RDWR
	case write:
		flag = os.O_WRONLY
	default:
		flag, read = os.O_RDONLY, true
	}
	if has(agentpb.OpenFlag_OPEN_FLAG_APPEND) {
		flag |= os.O_APPEND
	}
	if has(agentpb.OpenFlag_OPEN_FLAG_CREATE) {
		flag |= os.O_CREATE
	}
	if has(agentpb.OpenFlag_OPEN_FLAG_EXCL) {
		flag |= os.O_EXCL
	}
	if has(agentpb.OpenFlag_OPEN_FLAG_TRUNC) {
		flag |= os.O_TRUNC
	}
	if has(agentpb.OpenFlag_OPEN_FLAG_SYNC) {
		flag |= os.O_SYNC
	}
	return flag, read, write
}

// open opens the file of op; on success the handle holds a scope that the
// caller closes once the handle is done.
func (s *Server) open(ctx context.Context, op *agentpb.OpenOp) (_ *handle, _ *agentpb.FileInfo, err error) {
	root, err := s.callScope(ctx)
	if err != nil {
		return nil, nil, err
	}
	defer func() {
		if err != nil {
			root.Close()
		}
	}()
	return s.openIn(root, op, nil)
}

// opener is what openIn asks of the session whose open it serves.
type opener interface {
	// ownUpload is the session's own upload in progress at p, or nil.
	ownUpload(p string) *handle
	// writesInPlace reports whether one of the session's files open for
	// writing in place at another path than p is the file st describes.
	writesInPlace(st *unix.Stat_t, p string) bool
}

// openIn opens the file of op in root; the handle uses root but does not
// own it. sess, if not nil, is the session that opens (session).
func (s *Server) openIn(root *scope, op *agentpb.OpenOp, sess opener) (_ *handle, _ *agentpb.FileInfo, err error) {
	ps, err := cleanIn(root, op.GetPath())
	if err != nil {
		return nil, nil, err
	}
	p := ps[0]
	flag, read, write := osFlags(op.GetFlags())
	// The permissions and the sticky bit (encoded as ChmodOp's); setuid
	// and setgid are never given (see checkMode).
	perm := fs.FileMode(op.GetPerm()) & (fs.ModePerm | fs.ModeSticky)
	// O_EXCL without O_CREATE means nothing to open(2) (for a regular file),
	// so the commit of such a truncating open replaces the file.
	excl := flag&(os.O_CREATE|os.O_EXCL) == os.O_CREATE|os.O_EXCL
	h := &handle{s: s, root: root, path: p, append: flag&os.O_APPEND != 0, excl: excl, writable: write, sess: sess}
	if id := op.GetJoinUpload(); id != "" {
		return s.join(h, id, flag, op.GetHeld())
	}

	atomic := write && !h.append && !op.GetInPlace() && root.in(p) != "."
	// An atomic upload's checks and its temp file's creation share one
	// resolution of the directory (scope.parentDir).
	var existing *unix.Stat_t
	dirfd, base := -1, ""
	// own: p names, for this session, its own upload in progress (opened
	// there, or renamed there over a link or another file, which the
	// upload's commit replaces). A truncating open, an appending one
	// too, replaces that upload, as open(2) with O_TRUNC truncates the
	// file the session sees: a new upload that keeps the upload's state
	// (mode, owner, atime, attributes, which the session may have
	// changed since), and neither follows nor asks the entry on disk (a
	// write through a link there reached another file: TestSSHFSRandom
	// seed 1282).
	var own *handle
	if write && flag&os.O_TRUNC != 0 && sess != nil && !op.GetInPlace() && root.in(p) != "." {
		var st unix.Stat_t
		if own = sess.ownUpload(p); own != nil && withFd(own.f, func(fd int) error { return unix.Fstat(fd, &st) }) == nil {
			atomic, existing = true, &st
		} else {
			own = nil // none, or closed meanwhile: committed, p names it on disk
		}
	}
	if atomic {
		d, fd, b, err := root.parentDir(p)
		if err != nil {
			return nil, nil, &fs.PathError{Op: "open", Path: p, Err: unwrapPathError(err)}
		}
		defer d.Close()
		dirfd, base = fd, b
	}
	if atomic && own == nil {
		var st unix.Stat_t
		err = ignoringEINTR(func() error { return unix.Fstatat(dirfd, base, &st, unix.AT_SYMLINK_NOFOLLOW) })
		switch {
		case err == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK:
			atomic = false // write through the link, as open(2) would
		case err == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR:
			return nil, nil, &fs.PathError{Op: "open", Path: p, Err: syscall.EISDIR}
		case err == nil && flag&(os.O_CREATE|os.O_EXCL) == os.O_CREATE|os.O_EXCL:
			return nil, nil, &fs.PathError{Op: "open", Path: p, Err: syscall.EEXIST}
		case err == nil:
			atomic = flag&os.O_TRUNC != 0
			existing = &st
		case errors.Is(err, fs.ErrNotExist):
			atomic = flag&os.O_CREATE != 0
		default:
			return nil, nil, &fs.PathError{Op: "open", Path: p, Err: err}
		}
	}
	if atomic && existing != nil && own == nil {
		// The commit's rename asks only the directory's permission;
		// open(2) with O_TRUNC asks the file's. A file its user may not
		// write (mode 0444, another user's 0644), or, opened for reading
		// too, not read (mode 0200), is refused, as sftp-server and
		// vsftpd refuse it, not replaced. The check is open(2)'s (the
		// effective user and its capabilities), of the name itself, not
		// of what a link made since points to.
		mode := uint32(unix.W_OK)
		if read {
			mode |= unix.R_OK
		}
		err := ignoringEINTR(func() error {
			return unix.Faccessat(dirfd, base, mode, unix.AT_EACCESS|unix.AT_SYMLINK_NOFOLLOW)
		})
		if err != nil {
			return nil, nil, &fs.PathError{Op: "open", Path: p, Err: err}
		}
		// Another user's regular file that this one may write (mode
		// 0666, or 0664 of its group) is written in place, as open(2)
		// writes it: a replacement would be the agent user's (it may
		// not chown), and a sticky directory (/tmp's 1777) would refuse
		// the commit's rename after the whole upload. (The open looks
		// the name up again, within the root.)
		theirs := existing.Mode&unix.S_IFMT == unix.S_IFREG && existing.Uid != s.euid && s.euid != 0
		if theirs {
			s.log.Info("another user's file: upload written in place", "path", p, "uid", existing.Uid)
			atomic = false
		} else if sess != nil && sess.writesInPlace(existing, p) {
			// The session writes this file in place through another
			// handle, reached by another name (a symbolic or hard
			// link; the gateway's View sees the same name itself): the
			// truncation goes in place, so that both write the one file,
			// as sftp-server's descriptors share the inode its O_TRUNC
			// emptied. An upload would replace the file under the other
			// handle at its commit, and what that handle wrote, answered
			// OK, would be gone (TestSFTPRandom seed 3605).
			atomic = false
		}
	}
	if !atomic {
		// A read-only open that creates or truncates the file (SFTP's
		// OPEN with CREAT or TRUNC and no WRITE) changes it now; its
		// close commits nothing, so the change is announced here.
		created := false
		if !write && flag&(os.O_CREATE|os.O_TRUNC) == os.O_CREATE {
			_, lerr := root.Lstat(p)
			created = errors.Is(lerr, fs.ErrNotExist)
		}
		f, fi, err := openKeepingSticky(root, p, flag, perm)
		if err != nil {
			return nil, nil, err
		}
		h.f = f
		if !write && (created || flag&os.O_TRUNC != 0) {
			s.changedInfo(hooks.Write, p, "", fi) // hooks+events: created or truncated at the open
		}
		return h, openedInfo(fi, p), nil
	}

	s.sweepStaleTemps(root, path.Dir(p))
	h.tmp = tempPath(p)
	f, err := root.createExcl(dirfd, h.tmp, perm)
	if err != nil && own != nil && errors.Is(err, fs.ErrPermission) {
		f, err = s.createOwnRedo(root, dirfd, p, h.tmp, perm, err)
	}
	if err != nil && existing != nil && own == nil && errors.Is(err, fs.ErrPermission) {
		// A directory its user may not write (mode 0555) holding a file
		// it may: no temp file can be made there, so the file is written
		// in place, as open(2) would, rather than the save refused (what
		// sftp-server and vsftpd do). Others see it as it is written, and
		// an upload cut short leaves what arrived (README, "Files: what
		// clients see").
		s.log.Info("directory not writable: upload written in place", "path", p)
		h.tmp = ""
		f, fi, err := openKeepingSticky(root, p, flag, perm)
		if err != nil {
			return nil, nil, err
		}
		h.f = f
		return h, openedInfo(fi, p), nil
	}
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			pe.Path = p // name the file the client asked for
		}
		return nil, nil, err
	}
	h.f = f
	if h.append {
		// An appending open that replaces the session's own upload
		// (own): its writes go to the end of the new data, whatever
		// the handles joined to it wrote there, as O_APPEND's do.
		if err := setAppend(f); err != nil {
			h.abort("O_APPEND on temp file")
			return nil, nil, &fs.PathError{Op: "open", Path: p, Err: err}
		}
	}
	fi, err := f.Stat()
	if err != nil {
		h.abort("stat temp file")
		return nil, nil, err
	}
	info := openedInfo(fi, p)
	if existing != nil {
		s.keepReplaced(f, p, existing, info)
		if own != nil {
			s.keepXattrsOf(own.f, f, p)
		} else {
			s.keepXattrs(dirfd, base, f, p)
		}
	}
	h.id = newUploadID()
	s.mu.Lock()
	s.uploads[h.id] = h
	if own != nil {
		own.resaved = true
	}
	s.mu.Unlock()
	return h, info, nil
}

// createOwnRedo makes the temp file tmp of a truncating open of p, the
// session's own upload in progress, in the directory dirfd, which refused
// it (refused, createExcl's error) because its owner, the agent's user,
// has taken away its write bit since that upload began: the write bit is
// lent for the creation (lendOwnDir), as for the commit. open(2) of the
// file sftp-server's first open made truncates it without writing the
// directory (TestSSHFSRandom seed 1923). A directory that lost its search
// bit is refused, as open(2)'s lookup refuses it.
func (s *Server) createOwnRedo(root *scope, dirfd int, p, tmp string, perm fs.FileMode, refused error) (*os.File, error) {
	var st unix.Stat_t
	if unix.Fstat(dirfd, &st) != nil || st.Mode&0o100 == 0 {
		return nil, refused
	}
	// Under s.mu, as every lend (commit, abort, unlink): two lends to
	// one directory at once would take each other's bits back.
	s.mu.Lock()
	defer s.mu.Unlock()
	var f *os.File
	err := lendOwnDir(dirfd, root.in(path.Dir(p)), s.euid, s.log, func() error {
		var err error
		f, err = root.createExcl(dirfd, tmp, perm)
		return unwrapPathError(err)
	})
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: tmp, Err: err}
	}
	s.log.Info("directory not writable: the session's upload saved again with its write bit lent", "path", p)
	return f, nil
}

// openKeepingSticky is root.openStat, which (through os.Root) takes
// permissions alone, for a perm that may also hold the sticky bit: a file
// that the open creates gets it as open(2) would give it. Creation is
// told by trying O_EXCL first; a file made through a dangling link, which
// O_EXCL refuses, is created without it.
func openKeepingSticky(root *scope, p string, flag int, perm fs.FileMode) (*os.File, fs.FileInfo, error) {
	if perm&fs.ModeSticky == 0 || flag&os.O_CREATE == 0 {
		return root.openStat(p, flag, perm.Perm())
	}
	f, fi, err := root.openStat(p, flag|os.O_EXCL, perm.Perm())
	if errors.Is(err, fs.ErrExist) && flag&os.O_EXCL == 0 {
		return root.openStat(p, flag, perm.Perm())
	}
	if err != nil {
		return nil, nil, err
	}
	if err := f.Chmod(fi.Mode().Perm() | fs.ModeSticky); err != nil {
		f.Close()
		return nil, nil, &fs.PathError{Op: "open", Path: p, Err: unwrapPathError(err)}
	}
	if fi, err = f.Stat(); err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, fi, nil
}

// join opens the data of upload id for h (see agentpb.OpenOp.join_upload):
// in place, never committing.
func (s *Server) join(h *handle, id string, flag int, held bool) (*handle, *agentpb.FileInfo, error) {
	if flag&(os.O_CREATE|os.O_EXCL) == os.O_CREATE|os.O_EXCL {
		return nil, nil, &fs.PathError{Op: "open", Path: h.path, Err: syscall.EEXIST}
	}
	// Under s.mu, so that the upload cannot commit (and its temp file
	// vanish) between the look-up and the open.
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.uploads[id]
	if u == nil || u.path != h.path || u.unlinked {
		return nil, nil, &fs.PathError{Op: "open", Path: h.path, Err: syscall.ENOENT}
	}
	f, fi, err := h.root.openStat(u.tmp, flag&^(os.O_CREATE|os.O_EXCL), 0)
	if held && errors.Is(err, fs.ErrPermission) {
		f, fi, err = u.openLent(flag &^ (os.O_CREATE | os.O_EXCL))
	}
	if err != nil {
		return nil, nil, &fs.PathError{Op: "open", Path: h.path, Err: unwrapPathError(err)}
	}
	h.f, h.excl, h.joined = f, false, u
	return h, openedInfo(fi, h.path), nil
}

// openLent opens the temp file of u, an upload in progress, with flag for
// a handle of the gateway's that held the file already (OpenOp.held),
// which the file's mode refused: the owner bits the access needs are lent
// to the file for the open, through u's descriptor, and taken back at
// once. sftp-server's descriptors stay usable after a chmod: a handle
// that follows a second save of its path, whose mode the session made
// 0200 before it, went on refusing every request (TestSFTPRandom seed
// 4519). The temp file is the agent user's and under a name no one else
// uses; one of another user (a save of that user's file, chowned to
// them) cannot be lent to, and the open stays refused. s.mu is held.
func (u *handle) openLent(flag int) (*os.File, fs.FileInfo, error) {
	var st unix.Stat_t
	if err := withFd(u.f, func(fd int) error { return unix.Fstat(fd, &st) }); err != nil {
		return nil, nil, err
	}
	mode := st.Mode & 0o7777
	need := uint32(0o400)
	switch flag & (os.O_WRONLY | os.O_RDWR) {
	case os.O_WRONLY:
		need = 0o200
	case os.O_RDWR:
		need = 0o600
	}
	if err := withFd(u.f, func(fd int) error { return unix.Fchmod(fd, mode|need) }); err != nil {
		return nil, nil, &fs.PathError{Op: "open", Path: u.tmp, Err: syscall.EACCES}
	}
	restored := false
	defer func() {
		if !restored { // a panic below: the mode goes back all the same
			_ = withFd(u.f, func(fd int) error { return unix.Fchmod(fd, mode) })
		}
	}()
	f, fi, err := u.root.openStat(u.tmp, flag, 0)
	berr := withFd(u.f, func(fd int) error { return unix.Fchmod(fd, mode) })
	restored = true
	if berr != nil {
		// The upload would commit with the bits lent: the open fails
		// instead, and the lend is logged.
		u.s.log.Error("take back the mode lent to an upload's temp file", "path", u.path, "temp", u.tmp, "mode", fmt.Sprintf("%04o", mode), "err", berr)
		if f != nil {
			_ = f.Close()
		}
		return nil, nil, berr
	}
	return f, fi, err
}

// changedData notes a change of h's data (a write, a truncation): on a
// join whose upload's commit has begun, the change may be missing from
// the commit's event. Checked after the change, and the commit marks its
// beginning before it takes the file's state: a change checked before
// that mark is in that state, one checked after it is announced again
// (twice at worst, never missed).
func (h *handle) changedData() {
	if h.joined != nil && h.joined.committing.Load() {
		h.changedAfter = true
	}
}

// openedInfo is the reply to an open: the open file's state (fi, from
// its descriptor) under the name asked for.
func openedInfo(fi fs.FileInfo, p string) *agentpb.FileInfo {
	info := fileInfo(fi)
	info.Name = []byte(path.Base(p))
	return info
}

// keepReplaced gives an upload's temp file f the mode (setuid and setgid
// excepted: the agent never makes them), the atime and, where allowed,
// the owner of the file old it replaces, where they differ from the new
// file's (info, which it updates): a save keeps them, as a truncating
// open keeps the inode's.
func (s *Server) keepReplaced(f *os.File, p string, old *unix.Stat_t, info *agentpb.FileInfo) {
	if at := old.Atim.Nano(); info.GetAtimeUnixNano() != at {
		if err := futimes(f, time.Unix(0, at), time.Time{}); err != nil {
			s.log.Warn("keep atime of replaced file", "path", p, "err", err)
		} else {
			info.AtimeUnixNano = at
		}
	}
	mode := fs.FileMode(old.Mode & 0o777)
	if old.Mode&unix.S_ISVTX != 0 {
		mode |= fs.ModeSticky
	}
	const kept = fs.ModePerm | fs.ModeSticky
	if cur := fs.FileMode(info.GetMode()); cur&kept != mode {
		if err := f.Chmod(mode); err != nil {
			s.log.Warn("keep mode of replaced file", "path", p, "err", err)
		} else {
			info.Mode = uint32(cur&^kept | mode)
		}
	}
	if info.GetUid() != old.Uid || info.GetGid() != old.Gid {
		// EPERM when not root: the file is ours then.
		if f.Chown(int(old.Uid), int(old.Gid)) == nil {
			info.Uid, info.Gid = old.Uid, old.Gid
		}
	}
}

// keptXattr reports whether an extended attribute of a replaced file is
// carried to the upload that replaces it: its POSIX access ACL and the
// user namespace, which a save in place (sftp-server's, vsftpd's) keeps
// with the inode. Not security.capability, which a write into the file
// would have cleared, nor the other security and trusted attributes,
// which the agent's user may not set.
func keptXattr(name string) bool {
	return name == "system.posix_acl_access" || strings.HasPrefix(name, "user.")
}

// keepXattrs copies the kept extended attributes (keptXattr) of the file
// name in the directory dirfd, which the upload's temp file f replaces,
// to f, after keepReplaced's mode (an ACL's mask is the group bits). It
// reads them through /proc/self/fd, without following a link the name
// may have become, and with no permission on the file beyond what
// reading a user attribute needs. Most files have none: one system call.
// What cannot be read or set is logged and left.
func (s *Server) keepXattrs(dirfd int, name string, f *os.File, p string) {
	src := fmt.Sprintf("/proc/self/fd/%d/%s", dirfd, name)
	s.copyXattrs(func(b []byte) (int, error) { return unix.Llistxattr(src, b) },
		func(attr string) ([]byte, error) { return lgetxattr(src, attr) }, f, p)
}

// keepXattrsOf is keepXattrs from the open file src: the session's own
// upload that a new one replaces (openIn).
func (s *Server) keepXattrsOf(src, f *os.File, p string) {
	_ = withFd(src, func(fd int) error {
		s.copyXattrs(func(b []byte) (int, error) { return unix.Flistxattr(fd, b) },
			func(attr string) ([]byte, error) {
				return readSized(func(b []byte) (int, error) { return unix.Fgetxattr(fd, attr, b) })
			}, f, p)
		return nil
	})
}

// copyXattrs sets on f the kept attributes (keptXattr) that list names
// and get reads.
func (s *Server) copyXattrs(list func([]byte) (int, error), get func(attr string) ([]byte, error), f *os.File, p string) {
	names, err := readSized(list)
	if err != nil && !errors.Is(err, unix.ENOTSUP) {
		s.log.Debug("extended attributes of replaced file", "path", p, "err", err)
	}
	if len(names) == 0 {
		return
	}
	for _, attr := range strings.Split(strings.TrimRight(string(names), "\x00"), "\x00") {
		if !keptXattr(attr) {
			continue
		}
		val, err := get(attr)
		if err == nil {
			err = unix.Fsetxattr(int(f.Fd()), attr, val, 0)
		}
		if err != nil {
			s.log.Warn("keep extended attribute of replaced file", "path", p, "attr", attr, "err", err)
		}
	}
}

// lgetxattr reads the attribute attr of path, a link itself if it is one.
func lgetxattr(path, attr string) ([]byte, error) {
	return readSized(func(b []byte) (int, error) { return unix.Lgetxattr(path, attr, b) })
}

// readSized reads what call fills in, which, given nil, reports the size
// it needs (the extended attribute calls' protocol): nothing when that
// size is 0, and the call again, at most three times, when what it reads
// grew between the two (ERANGE).
func readSized(call func([]byte) (int, error)) ([]byte, error) {
	for range 3 {
		n, err := call(nil)
		if err != nil || n == 0 {
			return nil, err
		}
		buf := make([]byte, n)
		if n, err = call(buf); err == nil {
			return buf[:n], nil
		}
		if !errors.Is(err, unix.ERANGE) {
			return nil, err
		}
	}
	return nil, unix.ERANGE
}

// newUploadID names an atomic upload for OpenOp.join_upload.
func newUploadID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// tempPath names a hidden temp file next to p, short enough for NAME_MAX.
func tempPath(p string) string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	base := path.Base(p)
	if len(base) > 180 {
		base = base[:180]
	}
	return path.Join(path.Dir(p), TempPrefix+hex.EncodeToString(b[:])+"-"+base)
}

// forgetUpload drops h from the uploads in progress. s.mu is held.
func (s *Server) forgetUpload(h *handle) {
	if h.id != "" {
		delete(s.uploads, h.id)
	}
}

// target is h's current target path (a directory rename may move it).
func (h *handle) target() string {
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	return h.path
}

// serve executes one request on the open file.
func (h *handle) serve(req *agentpb.FileRequest) *agentpb.FileResponse {
	fail := func(op string, err error) *agentpb.FileResponse {
		name := h.target()
		var pe *fs.PathError
		if errors.As(err, &pe) {
			pe.Path = name
		} else if _, ok := status.FromError(err); !ok {
			err = &fs.PathError{Op: op, Path: name, Err: err}
		}
		return &agentpb.FileResponse{Error: toProtoError(err)}
	}
	done := &agentpb.FileResponse{Result: &agentpb.FileResponse_Done{Done: &agentpb.Empty{}}}
	switch op := req.GetOp().(type) {
	case *agentpb.FileRequest_Read:
		n := int(op.Read.GetLength())
		if n < 0 || op.Read.GetOffset() < 0 {
			return fail("read", status.Error(codes.InvalidArgument, "negative read offset or length"))
		}
		off := op.Read.GetOffset()
		n = min(n, maxChunk)
		size := int64(-1)
		if fi, err := h.f.Stat(); err == nil && fi.Mode().IsRegular() {
			size = fi.Size()
			n = int(max(min(int64(n), size-off), 0)) // no 1 MiB buffer for a small file
		}
		buf := make([]byte, n)
		atEnd := n == 0 && op.Read.GetLength() > 0
		if atEnd {
			// At the end: read(2) still, for its atime (relatime), as
			// sftp-server's read at the end does; a read of 0 bytes
			// makes no system call.
			buf = make([]byte, 1)
		}
		got, err := h.f.ReadAt(buf, off)
		eof := errors.Is(err, io.EOF) || size >= 0 && off+int64(got) >= size
		if atEnd && got > 0 {
			eof = false // it grew since the fstat (or its size says nothing: procfs)
		}
		if err != nil && !eof {
			return fail("read", err)
		}
		return &agentpb.FileResponse{Result: &agentpb.FileResponse_Read{Read: &agentpb.ReadResult{Data: buf[:got], Eof: eof}}}
	case *agentpb.FileRequest_Write:
		n, err := h.write(op.Write)
		if err != nil {
			return fail("write", err)
		}
		return &agentpb.FileResponse{Result: &agentpb.FileResponse_Write{Write: &agentpb.WriteResult{Written: int64(n)}}}
	case *agentpb.FileRequest_Truncate:
		if err := h.f.Truncate(op.Truncate.GetSize()); err != nil {
			return fail("truncate", err)
		}
		h.changedData()
		return done
	case *agentpb.FileRequest_Sync:
		if err := h.f.Sync(); err != nil {
			return fail("sync", err)
		}
		return done
	case *agentpb.FileRequest_Stat:
		fi, err := h.f.Stat()
		if err != nil {
			return fail("stat", err)
		}
		info := fileInfo(fi)
		info.Name = []byte(path.Base(h.target()))
		return &agentpb.FileResponse{Result: &agentpb.FileResponse_Stat{Stat: info}}
	case *agentpb.FileRequest_SetTimes:
		var atime, mtime time.Time
		if op.SetTimes != nil {
			atime, mtime = fromNano(op.SetTimes.AtimeUnixNano), fromNano(op.SetTimes.MtimeUnixNano)
		}
		if err := futimes(h.f, atime, mtime); err != nil {
			return fail("chtimes", err)
		}
		h.mu.Lock()
		switch {
		case op.SetTimes.GetUntilWrite():
			// As futimens(2): a later write moves the mtime, and the
			// commit sets nothing again.
			h.timesSet = false
		case !h.timesSet:
			h.atime, h.mtime = atime, mtime
			h.timesSet = true
		default:
			// A zero time leaves the one recorded before.
			if !atime.IsZero() {
				h.atime = atime
			}
			if !mtime.IsZero() {
				h.mtime = mtime
			}
		}
		h.mu.Unlock()
		return done
	case *agentpb.FileRequest_Chmod:
		mode, err := checkMode(op.Chmod.GetPerm())
		if err != nil {
			return fail("chmod", err)
		}
		if err := h.f.Chmod(mode); err != nil {
			return fail("chmod", err)
		}
		return done
	case *agentpb.FileRequest_Unlink:
		if err := h.unlink(); err != nil {
			return fail("unlink", err)
		}
		return done
	case *agentpb.FileRequest_Move:
		if err := h.move(string(op.Move.GetPath())); err != nil {
			return fail("move", err)
		}
		return done
	case *agentpb.FileRequest_Close:
		if op.Close.GetAbort() {
			h.abort("client aborted")
			return done
		}
		if w := op.Close.GetWrite(); w != nil && h.failErr == nil {
			_, _ = h.write(w) // a failure is failErr: the close aborts below
		}
		if h.failErr != nil {
			h.abort("an earlier write or posted request failed")
			return fail("close", h.failErr)
		}
		if err := h.commit(); err != nil {
			return fail("close", err)
		}
		h.s.committed(h) // hooks+events: a committed write (events.go)
		return done
	case *agentpb.FileRequest_Open:
		return fail("open", status.Error(codes.FailedPrecondition, "file is already open"))
	}
	return fail("request", status.Error(codes.InvalidArgument, "empty file request"))
}

// write applies one write (a WriteOp, or the last write a CloseOp
// carries), noting it for a join's event (changedData). A failed or short
// write is also kept as failErr: the close after it aborts.
func (h *handle) write(op *agentpb.WriteOp) (int, error) {
	var n int
	var err error
	if h.append {
		n, err = h.f.Write(op.GetData())
	} else {
		n, err = h.f.WriteAt(op.GetData(), op.GetOffset())
	}
	if n > 0 {
		h.changedData()
	}
	if err == nil && n != len(op.GetData()) {
		err = io.ErrShortWrite
	}
	if err != nil && h.failErr == nil {
		h.failErr = &fs.PathError{Op: "write", Path: h.target(), Err: unwrapPathError(err)}
	}
	return n, err
}

// postedFailed keeps the failure of a request the gateway posted
// (agentpb.SessionRequest.posted), as a failed write is kept: the close
// after it aborts and answers with it.
func (h *handle) postedFailed(e *agentpb.Error) {
	if e != nil && h.failErr == nil {
		h.failErr = wireError{e}
	}
}

// errNotUpload answers UnlinkOp and MoveOp on a handle that is not an
// atomic upload in progress.
var errNotUpload = status.Error(codes.FailedPrecondition, "not an upload in progress")

// unlink discards an atomic upload now (agentpb.UnlinkOp).
func (h *handle) unlink() error {
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	return h.unlinkLocked()
}

// unlinkLocked is unlink with s.mu held. An upload discarded already (a
// file renamed onto it took its name: session.rename) answers nil.
func (h *handle) unlinkLocked() error {
	if h.unlinked {
		return nil
	}
	if h.tmp == "" {
		return errNotUpload
	}
	remove := h.root.Remove
	if h.resaved {
		remove = func(tmp string) error { return h.root.removeTemp(tmp, h.s.euid, h.s.log) }
	}
	if err := remove(h.tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	h.unlinked = true
	h.s.forgetUpload(h)
	return nil
}

// move gives an atomic upload a new target (agentpb.MoveOp): its temp file
// moves next to it now.
func (h *handle) move(to string) error {
	to, err := clean(to)
	if err != nil {
		return err
	}
	if !h.root.contains(to) || h.root.in(to) == "." {
		return status.Errorf(codes.PermissionDenied, "path %q is outside the call's root", to)
	}
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	if h.tmp == "" || h.unlinked {
		return errNotUpload
	}
	if to == h.path {
		// Already there: a directory above it was renamed (movedUploads),
		// and the gateway tells the upload its new name. Nothing is
		// looked up: the directory may have lost its search bit, which
		// a descriptor open in it does not need (TestSFTPRandom seed
		// 2305: the rename answered EACCES after it was made).
		return nil
	}
	fi, err := h.root.Lstat(to)
	isDir := err == nil && fi.IsDir()
	if isDir {
		if strings.HasPrefix(h.path, to+"/") {
			// A directory above the upload: rename(2) finds that
			// (ENOTEMPTY, lock_rename's trap) once it has looked both
			// parents up (their search bits), before their write bits.
			err := h.root.inParent(h.path, func(dfd int, _ string) error {
				return ignoringEINTR(func() error { return unix.Faccessat(dfd, ".", unix.X_OK, 0) })
			})
			if err != nil {
				return err
			}
			return &fs.PathError{Op: "rename", Path: to, Err: syscall.ENOTEMPTY}
		}
	}
	// rename(2) asks both directories then (EACCES, and EPERM for
	// another's file in a sticky one), before the kinds (TestSFTPRandom
	// seed 22009: the upload's directory 0555, a directory at the new
	// name: EACCES, not EISDIR). The temp file's own rename below would
	// not meet the sticky rule: the temp file is the agent's, and another
	// user's file at the new name would stop only the commit (a review).
	for _, p := range []string{h.path, to} {
		if err := h.root.mayChangeIn(p); err != nil {
			return err
		}
	}
	if isDir {
		return &fs.PathError{Op: "rename", Path: to, Err: syscall.EISDIR}
	}
	tmp := tempPath(to)
	if err := h.root.Rename(h.tmp, tmp); err != nil {
		return unwrapPathError(err)
	}
	h.tmp, h.path = tmp, to
	h.excl = false // a rename replaces what it lands on
	return nil
}

// commit closes the file and, for an atomic upload, renames it into place.
// Times recorded for the close (SetTimesOp without until_write) are
// applied again first, through the file: a rename keeps them. On any
// error the temp file is removed and the old file stays.
func (h *handle) commit() error {
	h.done = true
	if h.id != "" {
		h.committing.Store(true) // before h.info: see changedData
	}
	h.mu.Lock()
	atime, mtime, set := h.atime, h.mtime, h.timesSet
	h.mu.Unlock()
	var terr error
	if set {
		terr = futimes(h.f, atime, mtime)
	}
	if h.id != "" {
		// An atomic upload's change event: its state now is the
		// committed file's (a rename keeps it), one fstat where a
		// lookup of the path after the rename costs three calls. (An
		// upload discarded meanwhile, unlinked under s.mu by its
		// session's rename, announces nothing, and its fstat is wasted.)
		h.info, _ = h.f.Stat()
	}
	cerr := h.f.Close()
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	switch {
	case h.tmp == "" || h.unlinked:
		h.s.forgetUpload(h)
		if cerr != nil {
			return cerr
		}
	case cerr != nil:
		h.removeTempLocked()
		return cerr
	case h.excl:
		// Link fails if the name appeared since the open, where
		// rename would silently replace it.
		err := h.root.linkTemp(h.tmp, h.path, h.s.euid, h.s.log)
		h.removeTempLocked()
		if err != nil {
			return err
		}
		h.committedOK.Store(true)
	default:
		replaced, err := h.root.replace(h.tmp, h.path, h.s.euid, h.s.log)
		if err != nil {
			h.removeTempLocked()
			return err
		}
		h.replaced = replaced
		h.committedOK.Store(true)
		h.s.forgetUpload(h)
	}
	if terr != nil {
		return fmt.Errorf("set times: %w", terr)
	}
	return nil
}

// replyYields is how often afterReply yields before it releases a
// replaced file. gRPC's transport writer, readied by a small reply, yields
// once itself before it writes, to gather more (grpc-go's
// internal/transport/controlbuf.go, loopyWriter.run and minBatchSize), and
// other goroutines readied meanwhile go before it. In TestReplyBeforeRelease
// (one P, 40 saves a run, 100 runs) the reply was written first in 0-1
// saves of 40 with one yield, 37-40 with two and all 40 with four. A yield
// with nothing else to run costs well under a microsecond; one that runs
// others runs what would have run anyway.
const replyYields = 4

// afterReply finishes what the reply to the last request did not wait
// for: it lets go of the file an upload replaced (handle.replaced).
// Called by the stream goroutine after each reply, and on the error path.
func (h *handle) afterReply() {
	if h.replaced == nil {
		return
	}
	// The reply readied whoever waits for it (in process, the gateway's
	// request goroutine; over gRPC, the transport's writer), which runs
	// once this goroutine blocks or yields. At one P (internal/procs) the
	// close below, the kernel freeing the old file's blocks, would come
	// first: a system call holds the P until the runtime's monitor takes
	// it back, and the client would wait for the close after all.
	for range replyYields {
		runtime.Gosched()
	}
	if h.s.testReleaseHook != nil {
		h.s.testReleaseHook()
	}
	_ = h.replaced.Close()
	h.replaced = nil
}

// unwrapPathError is the error inside a *fs.PathError or *os.LinkError, or
// err.
func unwrapPathError(err error) error {
	if pe, ok := errors.AsType[*fs.PathError](err); ok {
		return pe.Err
	}
	if le, ok := errors.AsType[*os.LinkError](err); ok {
		return le.Err
	}
	return err
}

// abort closes the file and discards an atomic upload.
func (h *handle) abort(reason string) {
	h.done = true
	_ = h.f.Close()
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	if h.tmp != "" && !h.unlinked {
		h.removeTempLocked()
		h.s.log.Info("upload aborted", "path", h.path, "reason", reason)
	}
	h.s.forgetUpload(h)
}

// removeTempLocked removes an upload's temp file and forgets the upload.
// s.mu is held.
func (h *handle) removeTempLocked() {
	if err := h.root.removeTemp(h.tmp, h.s.euid, h.s.log); err != nil && !errors.Is(err, fs.ErrNotExist) {
		h.s.log.Error("remove temp file of aborted upload", "path", h.path, "temp", h.tmp, "err", err)
	}
	h.s.forgetUpload(h)
}

// movedUploads follows a rename of from to to (agent paths) in every
// upload below from: their temp files moved with the directory. s.mu is
// held.
func (s *Server) movedUploads(from, to string) {
	for _, h := range s.uploads {
		if rest, ok := strings.CutPrefix(h.path, from+"/"); ok {
			h.path = path.Join(to, rest)
		}
		if rest, ok := strings.CutPrefix(h.tmp, from+"/"); ok {
			h.tmp = path.Join(to, rest)
		}
	}
}

// futimes sets f's times through its descriptor (utimensat with a NULL
// path); a zero time is left as it is.
func futimes(f *os.File, atime, mtime time.Time) error {
	ts := [2]unix.Timespec{{Nsec: unix.UTIME_OMIT}, {Nsec: unix.UTIME_OMIT}}
	if !atime.IsZero() {
		ts[0] = unix.NsecToTimespec(atime.UnixNano())
	}
	if !mtime.IsZero() {
		ts[1] = unix.NsecToTimespec(mtime.UnixNano())
	}
	return withFd(f, func(fd int) error {
		if _, _, errno := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(&ts[0])), 0, 0, 0); errno != 0 {
			return errno
		}
		return nil
	})
}

// Temp files of an agent that was killed or crashed mid-upload stay behind
// (hidden from listings). An atomic upload removes those of its directory:
// the temp files there not open in this process and unmodified for
// staleTempAge. One directory is listed at most once per sweepEvery.
const (
	staleTempAge = 10 * time.Minute
	sweepEvery   = 10 * time.Minute
	// maxSwept is the size of the swept-directories map past which entries
	// older than sweepEvery are dropped.
	maxSwept = 4096
)

// sweepStaleTemps removes the stale upload temp files of dir. Failures are
// logged: the sweep never fails the upload that runs it.
func (s *Server) sweepStaleTemps(root *scope, dir string) {
	now := time.Now()
	s.mu.Lock()
	if last, ok := s.swept[dir]; ok && now.Sub(last) < sweepEvery {
		s.mu.Unlock()
		return
	}
	if s.swept == nil {
		s.swept = make(map[string]time.Time)
	}
	if len(s.swept) >= maxSwept {
		for d, last := range s.swept {
			if now.Sub(last) >= sweepEvery {
				delete(s.swept, d)
			}
		}
	}
	s.swept[dir] = now
	s.mu.Unlock()

	d, err := openDirUnread(root.r, root.in(dir))
	if err != nil {
		return
	}
	defer d.Close()
	for {
		names, err := d.Readdirnames(1024)
		for _, n := range names {
			p := path.Join(dir, n)
			if !isTempName(n) || s.tempOpen(p) {
				continue
			}
			fi, err := root.Lstat(p)
			if err != nil || !fi.Mode().IsRegular() || now.Sub(fi.ModTime()) < staleTempAge {
				continue
			}
			if err := root.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				s.log.Warn("remove stale upload temp file", "temp", p, "err", err)
			} else if err == nil {
				s.log.Info("removed stale upload temp file", "temp", p, "modified", fi.ModTime())
			}
		}
		if err != nil {
			return // io.EOF at the end
		}
	}
}

// tempOpen reports whether p is the temp file of an upload open here.
func (s *Server) tempOpen(p string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, h := range s.uploads {
		if h.tmp == p {
			return true
		}
	}
	return false
}

// setAppend sets O_APPEND on f's open file description, which f's Write
// then honours (f is never written with WriteAt: see handle.write).
func setAppend(f *os.File) error {
	return withFd(f, func(fd int) error {
		flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
		if err == nil {
			_, err = unix.FcntlInt(uintptr(fd), unix.F_SETFL, flags|unix.O_APPEND)
		}
		return err
	})
}
