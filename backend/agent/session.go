package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/upgate/upgate/backend/agentpb"
)

// Protocol is the version of the agent protocol a Session speaks (see
// agentpb.SessionHello). Version 1 is a gRPC call or stream per operation.
const Protocol = 2

// features is what this agent's files do beyond protocol v1's first
// release (agentpb.FileFeature), announced in SessionHelloResult and in every
// v1 open's reply.
const features = uint32(agentpb.FileFeature_FILE_FEATURE_POSTED_OPEN | agentpb.FileFeature_FILE_FEATURE_CLOSE_AFTER_FAILED_WRITE_ABORTS |
	agentpb.FileFeature_FILE_FEATURE_SESSION_VIEW | agentpb.FileFeature_FILE_FEATURE_CLOSE_WITH_WRITE |
	agentpb.FileFeature_FILE_FEATURE_POSTED_FAILURE_ABORTS | agentpb.FileFeature_FILE_FEATURE_EPOCH_TIMES |
	agentpb.FileFeature_FILE_FEATURE_REMOVE_KIND | agentpb.FileFeature_FILE_FEATURE_LISTING_ATTRS |
	agentpb.FileFeature_FILE_FEATURE_MAY_CHANGE_IN)

const (
	// fileQueue is how many requests one open file may have waiting for
	// its worker before the session's reader waits too; the gateway keeps
	// far fewer in flight (its write window and read-ahead).
	fileQueue = 64
	// maxHashes bounds the hashes one session computes at once; another
	// waits for one of them in its own goroutine, never in the session's
	// reader (the gateway sends one per SFTP hash request or FTP HASH,
	// and sftp.exec_max_files bounds a command's).
	maxHashes = 2
)

// session is one Session stream: one gateway session's filesystem on this
// agent, in the scope its Hello named.
//
// One goroutine (run) reads the requests. Path operations and listings
// are served by it, in the order they arrive. Each open file has a worker
// goroutine that serves that file's requests in order, so that a slow
// write or fsync holds up neither the session's other files nor its path
// operations; a hash runs in a goroutine of its own. Replies go out
// through send, in the order they are ready.
type session struct {
	s      *Server
	sc     *scope
	stream agentpb.Agent_SessionServer
	// ctx ends when the stream does; workers then abort their files.
	ctx    context.Context
	cancel context.CancelFunc

	sendMu sync.Mutex // serializes stream.Send

	// files and dirs are the open files and listings by the id of the
	// request that opened them; only run touches them.
	files map[uint64]*sessionFile
	dirs  map[uint64]*listing

	hashes  chan struct{} // one token per hash running
	workers sync.WaitGroup

	// activity is what Server.Busy counts of the session (busy.go).
	activity

	// recycle is set when gRPC delivers the stream's requests: their
	// data is the agent's, and a write's goes back to the buffer pool
	// it was decoded into once written. An in-process stream's writes
	// carry data the gateway lent (backend/agents), which stays its own.
	recycle bool
}

// sessionFile is an open file and the queue of its worker.
type sessionFile struct {
	h     *handle
	queue chan *agentpb.SessionRequest
}

// Session serves protocol v2; see agentpb.AgentServer.
func (s *Server) Session(stream agentpb.Agent_SessionServer) error {
	req, err := stream.Recv()
	if err != nil {
		return err
	}
	hello := req.GetHello()
	if hello == nil {
		return status.Error(codes.InvalidArgument, "the first message of a Session must be Hello")
	}
	if hello.GetProtocol() < Protocol {
		return status.Errorf(codes.FailedPrecondition, "a Session speaks protocol %d; the gateway asked for %d", Protocol, hello.GetProtocol())
	}
	sc, err := s.openScope(string(hello.GetRoot()))
	if err != nil {
		err = s.fail("Session", string(hello.GetRoot()), err)
		return stream.Send(&agentpb.SessionResponse{Id: req.GetId(), Error: toProtoError(err)})
	}
	defer sc.Close()
	ctx, cancel := context.WithCancel(stream.Context())
	ss := &session{
		s: s, sc: sc, stream: stream, ctx: ctx, cancel: cancel,
		files:  make(map[uint64]*sessionFile),
		dirs:   make(map[uint64]*listing),
		hashes: make(chan struct{}, maxHashes),
	}
	_, ss.recycle = stream.(*grpc.GenericServerStream[agentpb.SessionRequest, agentpb.SessionResponse])
	s.track(&ss.activity)
	defer ss.end()
	if err := ss.send(&agentpb.SessionResponse{Id: req.GetId(), Result: &agentpb.SessionResponse_Hello{Hello: &agentpb.SessionHelloResult{
		Protocol: Protocol, Version: s.version, Features: features,
	}}}); err != nil {
		return err
	}
	for {
		req, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil // end aborts the files still open
			}
			return err
		}
		ss.dispatch(req)
	}
}

// end stops the workers, which abort the files still open, and closes the
// listings.
func (ss *session) end() {
	ss.s.untrack(&ss.activity)
	ss.cancel()
	for id, f := range ss.files {
		close(f.queue)
		delete(ss.files, id)
	}
	ss.workers.Wait()
	for id, d := range ss.dirs {
		d.Close()
		ss.s.openHandles.Add(-1)
		delete(ss.dirs, id)
	}
}

// send sends one reply; a failure ends the stream, which ends run.
func (ss *session) send(resp *agentpb.SessionResponse) error {
	ss.sendMu.Lock()
	defer ss.sendMu.Unlock()
	if ss.ctx.Err() != nil {
		return ss.ctx.Err()
	}
	err := ss.stream.Send(resp)
	if err != nil {
		ss.cancel()
	}
	return err
}

// reply sends the answer to request id: resp, or err.
func (ss *session) reply(id uint64, resp *agentpb.SessionResponse, err error) {
	if err != nil || resp == nil {
		resp = &agentpb.SessionResponse{Error: toProtoError(err)}
	}
	resp.Id = id
	_ = ss.send(resp)
}

func doneResp() *agentpb.SessionResponse {
	return &agentpb.SessionResponse{Result: &agentpb.SessionResponse_Done{Done: &agentpb.Empty{}}}
}

func infoResp(fi *agentpb.FileInfo) *agentpb.SessionResponse {
	return &agentpb.SessionResponse{Result: &agentpb.SessionResponse_Info{Info: fi}}
}

// dispatch serves or hands on one request.
func (ss *session) dispatch(req *agentpb.SessionRequest) {
	ss.begin()
	defer ss.done()
	s, sc, id := ss.s, ss.sc, req.GetId()
	info := func(fi *agentpb.FileInfo, err error) { ss.reply(id, infoResp(fi), err) }
	empty := func(_ *agentpb.Empty, err error) { ss.reply(id, doneResp(), err) }
	switch op := req.GetOp().(type) {
	case *agentpb.SessionRequest_Stat:
		info(s.stat(sc, op.Stat, false))
	case *agentpb.SessionRequest_Lstat:
		info(s.stat(sc, op.Lstat, true))
	case *agentpb.SessionRequest_Mkdir:
		empty(s.mkdir(sc, op.Mkdir))
	case *agentpb.SessionRequest_Remove:
		empty(ss.remove(op.Remove))
	case *agentpb.SessionRequest_Rename:
		empty(ss.rename(op.Rename))
	case *agentpb.SessionRequest_Chmod:
		empty(s.chmod(sc, op.Chmod))
	case *agentpb.SessionRequest_Chown:
		empty(s.chown(sc, op.Chown))
	case *agentpb.SessionRequest_Chtimes:
		empty(s.chtimes(sc, op.Chtimes))
	case *agentpb.SessionRequest_Symlink:
		empty(s.symlink(sc, op.Symlink))
	case *agentpb.SessionRequest_Link:
		empty(s.link(sc, op.Link))
	case *agentpb.SessionRequest_MayChangeIn:
		empty(s.mayChangeIn(sc, op.MayChangeIn))
	case *agentpb.SessionRequest_Readlink:
		r, err := s.readlink(sc, op.Readlink)
		ss.reply(id, &agentpb.SessionResponse{Result: &agentpb.SessionResponse_Readlink{Readlink: r}}, err)
	case *agentpb.SessionRequest_Statfs:
		r, err := s.statFS(sc, op.Statfs)
		ss.reply(id, &agentpb.SessionResponse{Result: &agentpb.SessionResponse_Statfs{Statfs: r}}, err)
	case *agentpb.SessionRequest_Hash:
		ss.startHash(id, op.Hash)
	case *agentpb.SessionRequest_Opendir:
		ss.opendir(id, op.Opendir)
	case *agentpb.SessionRequest_Readdir:
		d := ss.dirs[req.GetFile()]
		if d == nil {
			ss.reply(id, nil, ss.noFile(req, "readdir"))
			return
		}
		batch, eof, err := s.readDir(d, int(op.Readdir.GetMax()))
		if err != nil {
			ss.reply(id, nil, err)
			return
		}
		_ = ss.send(&agentpb.SessionResponse{Id: id, Eof: eof, Result: &agentpb.SessionResponse_Entries{Entries: &agentpb.ReadDirResponse{Entries: batch}}})
	case *agentpb.SessionRequest_Open:
		ss.open(id, op.Open)
	case *agentpb.SessionRequest_Hello:
		ss.reply(id, nil, status.Error(codes.FailedPrecondition, "the session has begun: Hello comes once"))
	case nil:
		ss.reply(id, nil, status.Error(codes.InvalidArgument, "empty request"))
	default:
		ss.fileRequest(req)
	}
}

// noFile is the error for a request naming no open file or listing.
func (ss *session) noFile(req *agentpb.SessionRequest, op string) error {
	return status.Errorf(codes.FailedPrecondition, "%s: %v (request %d names file %d, which is not open)",
		op, syscall.EBADF, req.GetId(), req.GetFile())
}

// reserve counts one more open file or listing against
// Config.MaxOpenFiles, before it is opened, so that concurrent opens
// cannot overshoot the bound.
func (s *Server) reserve(p string) error {
	if n := s.openHandles.Add(1); s.maxFiles > 0 && n > s.maxFiles {
		s.openHandles.Add(-1)
		return s.fail("Open", p, &fs.PathError{Op: "open", Path: p,
			Err: fmt.Errorf("%w: the agent holds %d open files (its limit)", syscall.EMFILE, s.maxFiles)})
	}
	return nil
}

// open opens a file and starts its worker.
func (ss *session) open(id uint64, op *agentpb.OpenOp) {
	if ss.files[id] != nil || ss.dirs[id] != nil {
		ss.reply(id, nil, status.Errorf(codes.InvalidArgument, "request id %d names an open file already", id))
		return
	}
	if err := ss.s.reserve(string(op.GetPath())); err != nil {
		ss.reply(id, nil, err)
		return
	}
	h, info, err := ss.s.openIn(ss.sc, op, ss)
	if err != nil {
		ss.s.openHandles.Add(-1)
		ss.reply(id, nil, ss.s.fail("Open", string(op.GetPath()), err))
		return
	}
	if fs.FileMode(info.GetMode()).IsDir() {
		// A directory opens as a listing: readdir reads it.
		ss.dirs[id] = &listing{File: h.f, path: h.path}
		ss.reply(id, infoResp(info), nil)
		return
	}
	f := &sessionFile{h: h, queue: make(chan *agentpb.SessionRequest, fileQueue)}
	ss.files[id] = f
	ss.workers.Add(1)
	go ss.work(f)
	_ = ss.send(&agentpb.SessionResponse{Id: id, UploadId: h.id, Result: &agentpb.SessionResponse_Info{Info: info}})
}

// writesInPlace reports whether one of this session's files open for
// writing in place, opened at another path than p (a symbolic or hard
// link to the file), is the file st describes (openIn). Handles opened
// at p are the gateway's View's to judge, which knows them by path: it
// truncates in place under its writers there, but not under a follower
// (a handle it reopened for one of its saves), so that an abandoned
// handle (rclone's FsPutError) does not make every later save of the
// path in place (TestAbandonedHandleKeepsSavesAtomic,
// TestFollowerOfInPlaceSaveKeepsSavesAtomic). So are handles joined to
// an upload (agentpb.OpenOp.join_upload), which hold the committed file
// once it commits. An upload's own handle holds its temp file. Called on
// the session's goroutine, which alone changes ss.files.
func (ss *session) writesInPlace(st *unix.Stat_t, p string) bool {
	for _, f := range ss.files {
		// (An upload, id set, holds its temp file; its path may move
		// under s.mu. Nothing else here changes once the file is open.)
		if !f.h.writable || f.h.joined != nil || f.h.id != "" || f.h.path == p {
			continue
		}
		var hs unix.Stat_t
		if withFd(f.h.f, func(fd int) error { return unix.Fstat(fd, &hs) }) == nil && hs.Dev == st.Dev && hs.Ino == st.Ino {
			return true
		}
	}
	return false
}

// remove is Server.remove for this session. An rmdir of its own upload
// in progress, a file to it that is not on disk yet, answers as rmdir(2)
// of that file would: EACCES where the directory refuses its user write
// or search (an unlink's checks come before the kind's), ENOTDIR
// otherwise; the kernel would answer ENOENT (TestSFTPRandom seed 2449).
func (ss *session) remove(op *agentpb.RemoveRequest) (*agentpb.Empty, error) {
	s, sc := ss.s, ss.sc
	if op.GetKind() != agentpb.RemoveKind_REMOVE_KIND_DIR || op.GetAll() {
		return s.remove(sc, op)
	}
	ps, err := cleanIn(sc, op.GetPath())
	if err != nil || sc.in(ps[0]) == "." || ss.ownUpload(ps[0]) == nil {
		return s.remove(sc, op)
	}
	p := ps[0]
	if _, err := sc.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
		return s.remove(sc, op) // what is on disk answers (a file the upload replaces)
	}
	answer := error(syscall.ENOTDIR)
	if err := sc.mayChangeIn(p); err != nil {
		answer = err
	}
	return nil, s.fail("Remove", p, &fs.PathError{Op: "rmdir", Path: p, Err: answer})
}

// rename is Server.rename, but for a new name that is this session's
// upload in progress. To the session that name is the upload, another
// file than whatever the disk holds there until the commit; where the
// disk holds a hard link of the old name's file there (the same inode),
// rename(2) would do nothing and leave the old name (TestSFTPRandom seed
// 20849: link c to a, an upload renamed onto a, then c renamed onto it).
// The old name is removed instead, as the rename of another file onto
// the upload takes it away, after the checks rename(2) makes of both
// directories; the gateway's View then drops the upload it replaced.
func (ss *session) rename(op *agentpb.RenameRequest) (*agentpb.Empty, error) {
	s, sc := ss.s, ss.sc
	ps, err := cleanIn(sc, op.GetFrom(), op.GetTo())
	if err != nil || ps[0] == ps[1] {
		// (Server.rename answers for the root too: no upload is there,
		// and a directory is never sameFile.)
		return s.rename(sc, op)
	}
	from, to := ps[0], ps[1]
	// Under s.mu, as Server.rename's rename(2): the upload's commit
	// (which takes it) comes wholly before or after, never between the
	// check and the unlink, which would then take the last name of the
	// file the commit replaced (a review).
	s.mu.Lock()
	up := ss.uploadAtLocked(to)
	if up == nil || !sc.sameFile(from, to) {
		s.mu.Unlock()
		return s.rename(sc, op)
	}
	err = sc.mayChangeIn(to)
	if err == nil {
		err = sc.removeKind(from, false)
	}
	if err == nil {
		// The upload lost its name to the file renamed there: its
		// close, which may be on its way already (another channel),
		// commits nothing, as the View's drop of it will say again.
		_ = up.unlinkLocked()
	}
	s.mu.Unlock()
	s.notifyRename(err, from, to) // hooks+events: what the session did
	if err != nil {
		return nil, s.fail("Rename", from, err)
	}
	return &agentpb.Empty{}, nil
}

// ownUpload is this session's atomic upload in progress at p, or nil:
// until its commit, p names that upload to this session, whatever the
// entry on disk is (openIn).
func (ss *session) ownUpload(p string) *handle {
	ss.s.mu.Lock()
	defer ss.s.mu.Unlock()
	return ss.ownUploadLocked(p)
}

// ownUploadLocked is ownUpload with s.mu held.
func (ss *session) ownUploadLocked(p string) *handle {
	for _, f := range ss.files {
		if f.h.path == p && f.h.tmp != "" && !f.h.unlinked {
			return f.h
		}
	}
	return nil
}

// uploadAtLocked is ownUploadLocked, but also finds an upload whose close
// the session has handed to its worker and whose commit has not yet run:
// to the session, whose close may be on its way on another channel while
// this request comes on one, that name is still the upload, as it was
// when the rename was sent. The commit takes s.mu and drops the upload
// from s.uploads, so with s.mu held an upload found there has not
// committed and will commit nothing once discarded (TestRenameLinkOntoUpload:
// the close taken but not yet committed once left c beside the committed
// upload). s.mu is held.
func (ss *session) uploadAtLocked(p string) *handle {
	for _, h := range ss.s.uploads {
		if h.sess == opener(ss) && h.path == p && h.tmp != "" && !h.unlinked {
			return h
		}
	}
	return nil
}

// fileRequest hands a request on an open file to its worker, or closes a
// listing.
func (ss *session) fileRequest(req *agentpb.SessionRequest) {
	fid := req.GetFile()
	if d := ss.dirs[fid]; d != nil {
		if req.GetClose() == nil {
			resp, err := ss.s.listingAttrs(d, req)
			ss.reply(req.GetId(), resp, err)
			return
		}
		d.Close()
		ss.s.openHandles.Add(-1)
		delete(ss.dirs, fid)
		ss.reply(req.GetId(), doneResp(), nil)
		return
	}
	f := ss.files[fid]
	if f == nil {
		ss.reply(req.GetId(), nil, ss.noFile(req, "file request"))
		return
	}
	select {
	case f.queue <- req:
	case <-ss.ctx.Done():
		return
	}
	if req.GetClose() != nil {
		// The worker serves the close and ends; later requests naming
		// the file find it closed.
		close(f.queue)
		delete(ss.files, fid)
	}
}

// work serves one file's requests in order. When the queue closes without
// a close having been served (the session ended), it aborts the file.
func (ss *session) work(f *sessionFile) {
	defer ss.workers.Done()
	defer func() {
		if !f.h.done {
			f.h.abort("session ended without close")
		}
		ss.s.openHandles.Add(-1)
	}()
	for req := range f.queue {
		if ss.ctx.Err() != nil || f.h.done {
			continue // drain; the deferred abort discards an upload
		}
		fr, ok := asFileRequest(req)
		if !ok {
			ss.reply(req.GetId(), nil, status.Error(codes.InvalidArgument, "not a file request"))
			continue
		}
		ss.begin()
		resp := f.h.serve(fr)
		ss.done()
		if req.GetPosted() {
			f.h.postedFailed(resp.GetError())
		}
		if ss.recycle {
			agentpb.RecycleWrite(ss.s.buffers, req) // written: no one holds it
		}
		out := &agentpb.SessionResponse{Id: req.GetId(), Error: resp.GetError()}
		switch r := resp.GetResult().(type) {
		case *agentpb.FileResponse_Read:
			out.Result = &agentpb.SessionResponse_Read{Read: r.Read}
		case *agentpb.FileResponse_Write:
			out.Result = &agentpb.SessionResponse_Write{Write: r.Write}
		case *agentpb.FileResponse_Stat:
			out.Result = &agentpb.SessionResponse_Info{Info: r.Stat}
		case *agentpb.FileResponse_Done:
			out.Result = &agentpb.SessionResponse_Done{Done: r.Done}
		}
		_ = ss.send(out)
		f.h.afterReply()
	}
}

// asFileRequest is req as the v1 Open stream's request that handle.serve
// takes; the operation's message is shared, not copied.
func asFileRequest(req *agentpb.SessionRequest) (*agentpb.FileRequest, bool) {
	fr := &agentpb.FileRequest{Id: req.GetId()}
	switch op := req.GetOp().(type) {
	case *agentpb.SessionRequest_Read:
		fr.Op = &agentpb.FileRequest_Read{Read: op.Read}
	case *agentpb.SessionRequest_Write:
		fr.Op = &agentpb.FileRequest_Write{Write: op.Write}
	case *agentpb.SessionRequest_Truncate:
		fr.Op = &agentpb.FileRequest_Truncate{Truncate: op.Truncate}
	case *agentpb.SessionRequest_Sync:
		fr.Op = &agentpb.FileRequest_Sync{Sync: op.Sync}
	case *agentpb.SessionRequest_Fstat:
		fr.Op = &agentpb.FileRequest_Stat{Stat: op.Fstat}
	case *agentpb.SessionRequest_SetTimes:
		fr.Op = &agentpb.FileRequest_SetTimes{SetTimes: op.SetTimes}
	case *agentpb.SessionRequest_Fchmod:
		fr.Op = &agentpb.FileRequest_Chmod{Chmod: op.Fchmod}
	case *agentpb.SessionRequest_Unlink:
		fr.Op = &agentpb.FileRequest_Unlink{Unlink: op.Unlink}
	case *agentpb.SessionRequest_Move:
		fr.Op = &agentpb.FileRequest_Move{Move: op.Move}
	case *agentpb.SessionRequest_Close:
		fr.Op = &agentpb.FileRequest_Close{Close: op.Close}
	default:
		return nil, false
	}
	return fr, true
}

// listingAttrs serves fstat, fchmod and set_times on a listing
// (FILE_FEATURE_LISTING_ATTRS): on its descriptor, so on the directory it
// opened, whatever its path names since, as sftp-server's fstat(2),
// fchmod(2) and futimens(2) of a directory it opened with OPEN
// (TestSFTPRandom seeds 3491, 3692). Each is one system call on an open
// descriptor, served here rather than by a worker.
func (s *Server) listingAttrs(d *listing, req *agentpb.SessionRequest) (*agentpb.SessionResponse, error) {
	switch op := req.GetOp().(type) {
	case *agentpb.SessionRequest_Fstat:
		fi, err := d.Stat()
		if err != nil {
			return nil, s.fail("Fstat", d.path, err)
		}
		info := fileInfo(fi)
		info.Name = []byte(path.Base(d.path))
		return infoResp(info), nil
	case *agentpb.SessionRequest_Fchmod:
		mode, err := checkDirMode(op.Fchmod.GetPerm())
		if err == nil {
			err = d.Chmod(mode)
		}
		if err != nil {
			return nil, s.fail("Fchmod", d.path, err)
		}
		return doneResp(), nil
	case *agentpb.SessionRequest_SetTimes:
		atime, mtime := fromNano(op.SetTimes.AtimeUnixNano), fromNano(op.SetTimes.MtimeUnixNano)
		if err := futimes(d.File, atime, mtime); err != nil {
			return nil, s.fail("SetTimes", d.path, &fs.PathError{Op: "chtimes", Path: d.path, Err: err})
		}
		return doneResp(), nil
	}
	return nil, status.Errorf(codes.InvalidArgument, "request %d: a listing can only be read, stat-ed, have its mode or times set, or be closed", req.GetId())
}

// opendir opens a listing.
func (ss *session) opendir(id uint64, req *agentpb.PathRequest) {
	if ss.files[id] != nil || ss.dirs[id] != nil {
		ss.reply(id, nil, status.Errorf(codes.InvalidArgument, "request id %d names an open file already", id))
		return
	}
	if err := ss.s.reserve(string(req.GetPath())); err != nil {
		ss.reply(id, nil, err)
		return
	}
	d, err := ss.s.openDir(ss.sc, req)
	if err == nil {
		var fi fs.FileInfo
		if fi, err = d.Stat(); err == nil && !fi.IsDir() {
			err = ss.s.fail("ReadDir", d.path, &fs.PathError{Op: "readdir", Path: d.path, Err: syscall.ENOTDIR})
		} else if err != nil {
			err = ss.s.fail("ReadDir", d.path, err)
		}
		if err != nil {
			d.Close()
		} else {
			ss.dirs[id] = d
			ss.reply(id, infoResp(fileInfo(fi)), nil)
			return
		}
	}
	ss.s.openHandles.Add(-1)
	ss.reply(id, nil, err)
}

// startHash hashes in a goroutine of its own: a large file must not hold
// up the session's other requests.
func (ss *session) startHash(id uint64, req *agentpb.HashRequest) {
	ss.workers.Add(1)
	ss.begin()
	go func() {
		defer ss.workers.Done()
		defer ss.done()
		// The token is waited for here, not by the reader: a third
		// hash must not stop the session's writes from being read.
		select {
		case ss.hashes <- struct{}{}:
		case <-ss.ctx.Done():
			return
		}
		defer func() { <-ss.hashes }()
		r, err := ss.s.hash(ss.ctx, ss.sc, req)
		ss.reply(id, &agentpb.SessionResponse{Result: &agentpb.SessionResponse_Hash{Hash: r}}, err)
	}()
}
