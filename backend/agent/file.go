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
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/upgate/upgate/backend/agentpb"
)

// TempPrefix starts the name of every atomic-upload temp file. Listings hide
// such names.
const TempPrefix = ".upgate-upload-"

func isTempName(name string) bool { return strings.HasPrefix(name, TempPrefix) }

// handle is one open file of one Open stream.
//
// An atomic upload (an open for writing that truncates, or that creates a
// file that does not exist yet) writes tmp; commit renames it over path and
// then applies times recorded while it was open. Anything else (abort) closes
// and removes tmp. In-place handles (reads, appends, writes into an existing
// file without truncation) write path directly.
type handle struct {
	s        *Server
	root     *scope // where the call may write; closed when the stream ends
	f        *os.File
	path     string // cleaned target path
	tmp      string // temp file path for an atomic upload, "" otherwise
	append   bool
	excl     bool // O_EXCL: commit must not replace a file created meanwhile
	writable bool
	done     bool // closed or aborted; touched only by the stream goroutine
	// writeErr is the first failed or short write, touched only by the
	// stream goroutine. The gateway sends its close without waiting for
	// the writes' replies, so a close after a failed write must not
	// commit: it aborts and answers with this error.
	writeErr error

	// mu guards the attributes recorded for the close.
	mu           sync.Mutex
	atime, mtime time.Time
	timesSet     bool
}

func (h *handle) setTimes(atime, mtime time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.atime, h.mtime, h.timesSet = atime, mtime, true
}

func (h *handle) setMode(mode fs.FileMode) {
	if err := h.f.Chmod(mode); err != nil {
		h.s.log.Warn("chmod of upload in progress failed", "path", h.path, "err", err)
	}
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
	h, info, err := s.open(stream.Context(), op)
	if err != nil {
		err = s.fail("Open", op.GetPath(), err)
		return stream.Send(&agentpb.FileResponse{Id: req.GetId(), Error: toProtoError(err)})
	}
	s.openHandles.Add(1)
	defer func() {
		if !h.done {
			h.abort("stream ended without close")
		}
		h.root.Close()
		s.openHandles.Add(-1)
	}()
	opened := &agentpb.FileResponse{
		Id: req.GetId(), Result: &agentpb.FileResponse_Opened{Opened: info},
		Features: uint32(agentpb.FileFeature_FILE_FEATURE_CLOSE_AFTER_FAILED_WRITE_ABORTS),
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
		resp := h.serve(req)
		resp.Id = req.GetId()
		if err := stream.Send(resp); err != nil {
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
	p, err := clean(op.GetPath())
	if err != nil {
		return nil, nil, err
	}
	root, err := s.scope(ctx, p)
	if err != nil {
		return nil, nil, err
	}
	defer func() {
		if err != nil {
			root.Close()
		}
	}()
	flag, _, write := osFlags(op.GetFlags())
	perm := fs.FileMode(op.GetPerm()) & fs.ModePerm
	h := &handle{s: s, root: root, path: p, append: flag&os.O_APPEND != 0, excl: flag&os.O_EXCL != 0, writable: write}

	atomic := write && !h.append && !op.GetInPlace() && root.in(p) != "."
	var existing fs.FileInfo
	if atomic {
		existing, err = root.Lstat(p)
		switch {
		case err == nil && existing.Mode()&fs.ModeSymlink != 0:
			atomic = false // write through the link, as open(2) would
		case err == nil && existing.IsDir():
			return nil, nil, &fs.PathError{Op: "open", Path: p, Err: syscall.EISDIR}
		case err == nil && flag&(os.O_CREATE|os.O_EXCL) == os.O_CREATE|os.O_EXCL:
			return nil, nil, &fs.PathError{Op: "open", Path: p, Err: syscall.EEXIST}
		case err == nil:
			atomic = flag&os.O_TRUNC != 0
		case errors.Is(err, fs.ErrNotExist):
			atomic = flag&os.O_CREATE != 0
			existing = nil
		default:
			return nil, nil, err
		}
	}
	if !atomic {
		f, err := root.OpenFile(p, flag, perm)
		if err != nil {
			return nil, nil, err
		}
		h.f = f
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, nil, err
		}
		info := fileInfo(fi)
		info.Name = path.Base(p)
		return h, info, nil
	}

	s.sweepStaleTemps(root, path.Dir(p))
	h.tmp = tempPath(p)
	f, err := root.OpenFile(h.tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			pe.Path = p // name the file the client asked for
		}
		return nil, nil, err
	}
	h.f = f
	if existing != nil {
		// Keep the replaced file's mode and, where allowed, its owner.
		if err := f.Chmod(existing.Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)); err != nil {
			s.log.Warn("keep mode of replaced file", "path", p, "err", err)
		}
		if st, ok := existing.Sys().(*syscall.Stat_t); ok {
			_ = f.Chown(int(st.Uid), int(st.Gid)) // EPERM when not root: the file is ours then
		}
	}
	fi, err := f.Stat()
	if err != nil {
		h.abort("stat temp file")
		return nil, nil, err
	}
	s.mu.Lock()
	if s.uploads[p] == nil {
		s.uploads[p] = make(map[*handle]struct{})
	}
	s.uploads[p][h] = struct{}{}
	s.mu.Unlock()
	info := fileInfo(fi)
	info.Name = path.Base(p)
	return h, info, nil
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

// deferToUploads runs fn on every atomic upload in progress for p and
// reports whether there was one.
func (s *Server) deferToUploads(p string, fn func(*handle)) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for h := range s.uploads[p] {
		fn(h)
	}
	return len(s.uploads[p]) > 0
}

func (s *Server) forgetUpload(h *handle) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.uploads[h.path], h)
	if len(s.uploads[h.path]) == 0 {
		delete(s.uploads, h.path)
	}
}

// serve executes one request on the open file.
func (h *handle) serve(req *agentpb.FileRequest) *agentpb.FileResponse {
	fail := func(op string, err error) *agentpb.FileResponse {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			pe.Path = h.path
		} else if _, ok := status.FromError(err); !ok {
			err = &fs.PathError{Op: op, Path: h.path, Err: err}
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
		got, err := h.f.ReadAt(buf, off)
		eof := errors.Is(err, io.EOF) || size >= 0 && off+int64(got) >= size
		if err != nil && !eof {
			return fail("read", err)
		}
		return &agentpb.FileResponse{Result: &agentpb.FileResponse_Read{Read: &agentpb.ReadResult{Data: buf[:got], Eof: eof}}}
	case *agentpb.FileRequest_Write:
		var n int
		var err error
		if h.append {
			n, err = h.f.Write(op.Write.GetData())
		} else {
			n, err = h.f.WriteAt(op.Write.GetData(), op.Write.GetOffset())
		}
		if err == nil && n != len(op.Write.GetData()) {
			err = io.ErrShortWrite
		}
		if err != nil {
			if h.writeErr == nil {
				h.writeErr = &fs.PathError{Op: "write", Path: h.path, Err: unwrapPathError(err)}
			}
			return fail("write", err)
		}
		return &agentpb.FileResponse{Result: &agentpb.FileResponse_Write{Write: &agentpb.WriteResult{Written: int64(n)}}}
	case *agentpb.FileRequest_Truncate:
		if err := h.f.Truncate(op.Truncate.GetSize()); err != nil {
			return fail("truncate", err)
		}
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
		info.Name = path.Base(h.path)
		return &agentpb.FileResponse{Result: &agentpb.FileResponse_Stat{Stat: info}}
	case *agentpb.FileRequest_SetTimes:
		h.setTimes(fromNano(op.SetTimes.GetAtimeUnixNano()), fromNano(op.SetTimes.GetMtimeUnixNano()))
		return done
	case *agentpb.FileRequest_Chmod:
		if err := h.f.Chmod(fs.FileMode(op.Chmod.GetPerm()) & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)); err != nil {
			return fail("chmod", err)
		}
		return done
	case *agentpb.FileRequest_Close:
		if op.Close.GetAbort() {
			h.abort("client aborted")
			return done
		}
		if h.writeErr != nil {
			h.abort("a write failed")
			return fail("close", h.writeErr)
		}
		if err := h.commit(); err != nil {
			return fail("close", err)
		}
		return done
	case *agentpb.FileRequest_Open:
		return fail("open", status.Error(codes.FailedPrecondition, "file is already open"))
	}
	return fail("request", status.Error(codes.InvalidArgument, "empty file request"))
}

// commit closes the file and, for an atomic upload, renames it into place;
// then it applies the recorded times. On any error the temp file is removed
// and the old file stays.
func (h *handle) commit() error {
	h.done = true
	cerr := h.f.Close()
	if h.tmp != "" {
		if cerr != nil {
			h.removeTemp()
			return cerr
		}
		if h.excl {
			// Link fails if the name appeared since the open, where
			// rename would silently replace it.
			if err := h.root.Link(h.tmp, h.path); err != nil {
				h.removeTemp()
				return err
			}
			h.removeTemp()
		} else if err := h.root.Rename(h.tmp, h.path); err != nil {
			h.removeTemp()
			return err
		} else {
			h.s.forgetUpload(h)
		}
	} else if cerr != nil {
		return cerr
	}
	h.mu.Lock()
	atime, mtime, set := h.atime, h.mtime, h.timesSet
	h.mu.Unlock()
	if set {
		if err := h.root.Chtimes(h.path, atime, mtime); err != nil {
			return fmt.Errorf("set times after commit: %w", err)
		}
	}
	return nil
}

// unwrapPathError is the error inside a *fs.PathError, or err.
func unwrapPathError(err error) error {
	if pe, ok := errors.AsType[*fs.PathError](err); ok {
		return pe.Err
	}
	return err
}

// abort closes the file and discards an atomic upload.
func (h *handle) abort(reason string) {
	h.done = true
	_ = h.f.Close()
	if h.tmp != "" {
		h.removeTemp()
		h.s.log.Info("upload aborted", "path", h.path, "reason", reason)
	}
}

func (h *handle) removeTemp() {
	if err := h.root.Remove(h.tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		h.s.log.Error("remove temp file of aborted upload", "path", h.path, "temp", h.tmp, "err", err)
	}
	h.s.forgetUpload(h)
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

	d, err := root.Open(dir)
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
	for _, hs := range s.uploads {
		for h := range hs {
			if h.tmp == p {
				return true
			}
		}
	}
	return false
}
