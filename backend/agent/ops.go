package agent

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/upgate/upgate/backend/agent/hooks"
	"github.com/upgate/upgate/backend/agentpb"
)

const (
	// maxChunk caps one read reply; the gateway's writes are coalesced to
	// at most this size too.
	maxChunk = 1 << 20
	// maxMessage is the largest message the agent accepts.
	maxMessage = 4 << 20
	// dirBatch is how many entries one ReadDir reply carries.
	dirBatch = 256
	// maxDeadTemps bounds the temp files an rmdir clears (removeDeadTemps).
	maxDeadTemps = 64
)

// fail converts an operation's error to a status, logging failures that
// are not the client's everyday misses (not found, already exists).
func (s *Server) fail(method, p string, err error) error {
	if err == nil {
		return nil
	}
	st := toStatus(err)
	switch st.Code() {
	case codes.NotFound, codes.AlreadyExists:
	default:
		s.log.Warn("call failed", "method", method, "path", p, "code", st.Code().String(), "err", st.Message())
	}
	return st.Err()
}

// Every operation is written once, as a method that takes the scope the
// call may use and its request, and returns its reply or an error already
// converted by fail. The v1 calls (one gRPC call per operation) wrap them
// with the scope their metadata names (inScope); a Session serves them
// with the scope its Hello named (session.go).

// inScope runs op in the scope ctx's metadata names, for a v1 call.
func inScope[T any](s *Server, ctx context.Context, method string, op func(*scope) (T, error)) (T, error) {
	sc, err := s.callScope(ctx)
	if err != nil {
		var zero T
		return zero, s.fail(method, "", err)
	}
	defer sc.Close()
	return op(sc)
}

// cleanIn cleans the wire paths ps and checks that they lie in sc.
func cleanIn(sc *scope, ps ...[]byte) ([]string, error) {
	out := make([]string, len(ps))
	for i, b := range ps {
		p, err := clean(string(b))
		if err != nil {
			return nil, err
		}
		if !sc.contains(p) {
			return nil, status.Errorf(codes.PermissionDenied, "path %q is outside the call's root %q", p, strings.TrimSuffix(sc.prefix, "/"))
		}
		out[i] = p
	}
	return out, nil
}

func (s *Server) Stat(ctx context.Context, req *agentpb.PathRequest) (*agentpb.FileInfo, error) {
	return inScope(s, ctx, "Stat", func(sc *scope) (*agentpb.FileInfo, error) { return s.stat(sc, req, false) })
}

func (s *Server) Lstat(ctx context.Context, req *agentpb.PathRequest) (*agentpb.FileInfo, error) {
	return inScope(s, ctx, "Lstat", func(sc *scope) (*agentpb.FileInfo, error) { return s.stat(sc, req, true) })
}

func (s *Server) stat(sc *scope, req *agentpb.PathRequest, nofollow bool) (*agentpb.FileInfo, error) {
	method, stat := "Stat", sc.Stat
	switch {
	case nofollow:
		method, stat = "Lstat", sc.Lstat
	case req.GetSearch():
		stat = sc.statSearch
	}
	ps, err := cleanIn(sc, req.GetPath())
	if err != nil {
		return nil, s.fail(method, string(req.GetPath()), err)
	}
	fi, err := stat(ps[0])
	if err != nil {
		return nil, s.fail(method, ps[0], err)
	}
	return fileInfo(fi), nil
}

func (s *Server) ReadDir(req *agentpb.PathRequest, stream agentpb.Agent_ReadDirServer) error {
	_, err := inScope(s, stream.Context(), "ReadDir", func(sc *scope) (struct{}, error) {
		d, err := s.openDir(sc, req)
		if err != nil {
			return struct{}{}, err
		}
		defer d.Close()
		for {
			batch, eof, err := s.readDir(d, dirBatch)
			if err != nil {
				return struct{}{}, err
			}
			if len(batch) > 0 {
				if err := stream.Send(&agentpb.ReadDirResponse{Entries: batch}); err != nil {
					return struct{}{}, err
				}
			}
			if eof {
				return struct{}{}, nil
			}
		}
	})
	return err
}

// openDir opens a directory for listing.
func (s *Server) openDir(sc *scope, req *agentpb.PathRequest) (*listing, error) {
	ps, err := cleanIn(sc, req.GetPath())
	if err != nil {
		return nil, s.fail("ReadDir", string(req.GetPath()), err)
	}
	d, err := sc.Open(ps[0])
	if err != nil {
		return nil, s.fail("ReadDir", ps[0], err)
	}
	return &listing{File: d, path: ps[0]}, nil
}

// listing is a directory open for reading its entries.
type listing struct {
	*os.File
	path string
}

// readDir reads the next entries of d, at most n (and at most dirBatch),
// in directory order as the kernel gives them, without upload temp files:
// the memory a listing takes is one batch, whatever the directory holds.
// The batch may be empty before the end; eof says there are no more.
func (s *Server) readDir(d *listing, n int) (batch []*agentpb.FileInfo, eof bool, err error) {
	if n <= 0 || n > dirBatch {
		n = dirBatch
	}
	// Each entry is looked at with fstatat(2) on the listing's own
	// descriptor, whatever opened it (os.Root's ReadDir does the same;
	// a plain *os.File's, as root.go's second way opens one, would lstat
	// each by its host path). An entry removed meanwhile is left out; any
	// other failure fails the listing, as a directory whose entries cannot
	// be examined (mode 0600) lists as an error (README).
	names, rerr := d.Readdirnames(n)
	batch = make([]*agentpb.FileInfo, 0, len(names))
	err = withFd(d.File, func(fd int) error {
		for _, name := range names {
			if isTempName(name) {
				continue
			}
			var st unix.Stat_t
			err := ignoringEINTR(func() error { return unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW) })
			if errors.Is(err, fs.ErrNotExist) {
				continue // removed while listing
			}
			if err != nil {
				return &fs.PathError{Op: "fstatat", Path: path.Join(d.path, name), Err: err}
			}
			batch = append(batch, statInfo(name, &st))
		}
		return nil
	})
	if err != nil {
		return nil, false, s.fail("ReadDir", d.path, err)
	}
	switch {
	case errors.Is(rerr, io.EOF):
		return batch, true, nil
	case rerr != nil:
		return batch, false, s.fail("ReadDir", d.path, rerr)
	}
	return batch, false, nil
}

func (s *Server) Mkdir(ctx context.Context, req *agentpb.MkdirRequest) (*agentpb.Empty, error) {
	return inScope(s, ctx, "Mkdir", func(sc *scope) (*agentpb.Empty, error) { return s.mkdir(sc, req) })
}

func (s *Server) mkdir(sc *scope, req *agentpb.MkdirRequest) (*agentpb.Empty, error) {
	ps, err := cleanIn(sc, req.GetPath())
	if err != nil {
		return nil, s.fail("Mkdir", string(req.GetPath()), err)
	}
	p := ps[0]
	perm := fs.FileMode(req.GetPerm()) & fs.ModePerm
	// A directory made where a link was changes where paths through that
	// name lead: not while a link is checked (links.go).
	defer s.links.lock(s.root, sc)()
	existed := req.GetAll() && s.isDir(sc, p) // hooks+events: mkdir -p of a directory changes nothing
	switch {
	case req.GetAll():
		err = sc.MkdirAll(p, perm)
	case fs.FileMode(req.GetPerm())&fs.ModeSticky != 0:
		err = sc.mkdirSticky(p, perm|fs.ModeSticky)
	default:
		err = sc.Mkdir(p, perm)
	}
	s.notifyMkdir(err, existed, p) // hooks+events
	if err != nil {
		return nil, s.fail("Mkdir", p, err)
	}
	return &agentpb.Empty{}, nil
}

func (s *Server) Remove(ctx context.Context, req *agentpb.RemoveRequest) (*agentpb.Empty, error) {
	return inScope(s, ctx, "Remove", func(sc *scope) (*agentpb.Empty, error) { return s.remove(sc, req) })
}

func (s *Server) remove(sc *scope, req *agentpb.RemoveRequest) (*agentpb.Empty, error) {
	ps, err := cleanIn(sc, req.GetPath())
	if err != nil {
		return nil, s.fail("Remove", string(req.GetPath()), err)
	}
	p := ps[0]
	if p == "." {
		return nil, status.Error(codes.PermissionDenied, "the agent root cannot be removed")
	}
	if sc.in(p) == "." {
		return nil, status.Error(codes.PermissionDenied, "the call's root cannot be removed")
	}
	remove := sc.Remove
	switch req.GetKind() {
	case agentpb.RemoveKind_REMOVE_KIND_FILE:
		remove = func(p string) error { return sc.removeKind(p, false) }
	case agentpb.RemoveKind_REMOVE_KIND_DIR:
		remove = func(p string) error { return sc.removeKind(p, true) }
	}
	if req.GetAll() {
		err = sc.RemoveAll(p)
	} else if err = remove(p); errors.Is(err, syscall.ENOTEMPTY) && s.removeDeadTemps(sc, p) {
		err = remove(p) // held only temp files of uploads that no longer run
	}
	s.notify(err, hooks.Delete, p) // hooks+events
	if err != nil {
		return nil, s.fail("Remove", p, err)
	}
	return &agentpb.Empty{}, nil
}

// removeDeadTemps removes the upload temp files in directory p that no
// upload in progress owns (an agent killed mid-upload left them), if they
// are all the directory holds; it reports whether it removed any. rmdir
// of a directory that lists empty then succeeds, as it would on disk.
func (s *Server) removeDeadTemps(sc *scope, p string) bool {
	d, err := openDirUnread(sc.r, sc.in(p))
	if err != nil {
		return false
	}
	names, err := d.Readdirnames(maxDeadTemps + 1)
	d.Close()
	if err != nil || len(names) > maxDeadTemps {
		return false
	}
	for _, n := range names {
		if !isTempName(n) || s.tempOpen(path.Join(p, n)) {
			return false
		}
	}
	for _, n := range names {
		if err := sc.Remove(path.Join(p, n)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return false
		}
		s.log.Info("removed stale upload temp file", "temp", path.Join(p, n))
	}
	return len(names) > 0
}

// renameKindErr is the error rename(2) of from to to answers for their
// kinds, whatever is in them: a directory onto a directory above it
// (ENOTEMPTY), a directory onto an existing non-directory (ENOTDIR), a
// non-directory onto a directory (EISDIR); nil where both
// kinds agree, or where either cannot be looked at. A move the agent
// refuses for what the moved directory holds (checkMove: it cannot read
// it) answers this first, as the kernel would before it looked inside
// (TestSFTPRandom seed 5508). The kernel checks the write and search
// bits of both parent directories before the kinds (may_delete): where
// either refuses, nil too, and the move's refusal stands (a review).
func renameKindErr(sc *scope, from, to string) error {
	src, err := sc.Lstat(from)
	if err != nil {
		return nil
	}
	dst, err := sc.Lstat(to)
	if err != nil {
		return nil
	}
	if src.IsDir() && dst.IsDir() && strings.HasPrefix(from, to+"/") {
		// The new name is a directory above the old: rename(2) finds
		// that before any permission (ENOTEMPTY; TestSFTPRandom seed
		// 8846). (Spelled through links, the kernel may find it where
		// this does not.)
		return &os.LinkError{Op: "rename", Old: from, New: to, Err: syscall.ENOTEMPTY}
	}
	if sc.mayChangeIn(from) != nil || sc.mayChangeIn(to) != nil {
		return nil
	}
	switch {
	case src.IsDir() && !dst.IsDir():
		return &os.LinkError{Op: "rename", Old: from, New: to, Err: syscall.ENOTDIR}
	case !src.IsDir() && dst.IsDir():
		return &os.LinkError{Op: "rename", Old: from, New: to, Err: syscall.EISDIR}
	}
	return nil
}

func (s *Server) Rename(ctx context.Context, req *agentpb.RenameRequest) (*agentpb.Empty, error) {
	return inScope(s, ctx, "Rename", func(sc *scope) (*agentpb.Empty, error) { return s.rename(sc, req) })
}

func (s *Server) rename(sc *scope, req *agentpb.RenameRequest) (*agentpb.Empty, error) {
	ps, err := cleanIn(sc, req.GetFrom(), req.GetTo())
	if err != nil {
		return nil, s.fail("Rename", string(req.GetFrom()), err)
	}
	from, to := ps[0], ps[1]
	if from == "." || to == "." {
		return nil, status.Error(codes.PermissionDenied, "the agent root cannot be renamed")
	}
	if sc.in(from) == "." || sc.in(to) == "." {
		return nil, status.Error(codes.PermissionDenied, "the call's root cannot be renamed")
	}
	// No link may come to lead out of the root by the move (links.go).
	defer s.links.lock(s.root, sc)()
	if err := sc.checkMove(sc.in(from), sc.in(to)); err != nil {
		if kerr := renameKindErr(sc, from, to); kerr != nil {
			return nil, s.fail("Rename", from, kerr)
		}
		return nil, status.Errorf(codes.PermissionDenied, "rename %q to %q: %v", from, to, err)
	}
	// Under s.mu: uploads in progress below a renamed directory move with
	// it, and their commits must see the new paths.
	s.mu.Lock()
	err = sc.Rename(from, to)
	if err == nil {
		s.movedUploads(from, to)
	}
	s.mu.Unlock()
	s.notifyRename(err, from, to) // hooks+events
	if err != nil {
		return nil, s.fail("Rename", from, err)
	}
	return &agentpb.Empty{}, nil
}

func (s *Server) Chmod(ctx context.Context, req *agentpb.ChmodRequest) (*agentpb.Empty, error) {
	return inScope(s, ctx, "Chmod", func(sc *scope) (*agentpb.Empty, error) { return s.chmod(sc, req) })
}

func (s *Server) chmod(sc *scope, req *agentpb.ChmodRequest) (*agentpb.Empty, error) {
	ps, err := cleanIn(sc, req.GetPath())
	if err != nil {
		return nil, s.fail("Chmod", string(req.GetPath()), err)
	}
	mode, err := checkDirMode(req.GetPerm())
	switch {
	case err != nil:
	case mode&fs.ModeSetgid != 0:
		err = sc.chmodDir(ps[0], mode)
	default:
		err = sc.Chmod(ps[0], mode)
	}
	if err != nil {
		return nil, s.fail("Chmod", ps[0], err)
	}
	return &agentpb.Empty{}, nil
}

// checkDirMode reads a path chmod's mode from the wire: as checkMode, but
// the setgid bit passes, for chmodDir to set on a directory alone. On a
// directory it only gives new entries the directory's group (and new
// subdirectories the bit), as `chmod g+s` of a shared directory asks;
// nothing runs with it.
func checkDirMode(perm uint32) (fs.FileMode, error) {
	mode, err := checkMode(perm &^ uint32(fs.ModeSetgid))
	if err != nil {
		return 0, err
	}
	return mode | fs.FileMode(perm)&fs.ModeSetgid, nil
}

// checkMode reads a mode from the wire: permissions and the sticky bit.
// Setuid and setgid are refused, whatever the gateway asks: an upload
// must never become a program that runs as someone else.
func checkMode(perm uint32) (fs.FileMode, error) {
	mode := fs.FileMode(perm)
	if mode&(fs.ModeSetuid|fs.ModeSetgid) != 0 {
		return 0, status.Errorf(codes.PermissionDenied, "mode %s: setuid and setgid bits are refused", mode)
	}
	return mode & (fs.ModePerm | fs.ModeSticky), nil
}

func (s *Server) Chown(ctx context.Context, req *agentpb.ChownRequest) (*agentpb.Empty, error) {
	return inScope(s, ctx, "Chown", func(sc *scope) (*agentpb.Empty, error) { return s.chown(sc, req) })
}

func (s *Server) chown(sc *scope, req *agentpb.ChownRequest) (*agentpb.Empty, error) {
	ps, err := cleanIn(sc, req.GetPath())
	if err != nil {
		return nil, s.fail("Chown", string(req.GetPath()), err)
	}
	if _, err := sc.Lstat(ps[0]); err != nil {
		return nil, s.fail("Chown", ps[0], err)
	}
	// Files belong to the user the agent runs as: a gateway that could
	// chown could hand an upload to root.
	return nil, status.Errorf(codes.PermissionDenied, "chown %q: the agent does not change owners", ps[0])
}

func (s *Server) Chtimes(ctx context.Context, req *agentpb.ChtimesRequest) (*agentpb.Empty, error) {
	return inScope(s, ctx, "Chtimes", func(sc *scope) (*agentpb.Empty, error) { return s.chtimes(sc, req) })
}

func (s *Server) chtimes(sc *scope, req *agentpb.ChtimesRequest) (*agentpb.Empty, error) {
	ps, err := cleanIn(sc, req.GetPath())
	if err != nil {
		return nil, s.fail("Chtimes", string(req.GetPath()), err)
	}
	var atime, mtime time.Time
	if req != nil {
		atime, mtime = fromNano(req.AtimeUnixNano), fromNano(req.MtimeUnixNano)
	}
	if req.GetNofollow() {
		err = sc.Lchtimes(ps[0], atime, mtime)
	} else {
		err = sc.Chtimes(ps[0], atime, mtime)
	}
	if err != nil {
		return nil, s.fail("Chtimes", ps[0], err)
	}
	return &agentpb.Empty{}, nil
}

func (s *Server) Symlink(ctx context.Context, req *agentpb.SymlinkRequest) (*agentpb.Empty, error) {
	return inScope(s, ctx, "Symlink", func(sc *scope) (*agentpb.Empty, error) { return s.symlink(sc, req) })
}

func (s *Server) symlink(sc *scope, req *agentpb.SymlinkRequest) (*agentpb.Empty, error) {
	ps, err := cleanIn(sc, req.GetPath())
	if err != nil {
		return nil, s.fail("Symlink", string(req.GetPath()), err)
	}
	p, target := ps[0], string(req.GetTarget())
	if target == "" || path.IsAbs(target) {
		return nil, status.Errorf(codes.InvalidArgument, "symlink target %q must be relative", target)
	}
	if strings.ContainsFunc(target, isControl) {
		return nil, status.Errorf(codes.InvalidArgument, "symlink target %q contains a control character", target)
	}
	// The target must stay inside the call's root when resolved from the
	// link's directory, through the links that exist there now: a link to
	// "up/../x" where up -> ".." would lead a program that follows links
	// (a web server, a backup) into a sibling's tree. os.Root refuses to
	// follow such links itself.
	// It must also keep a shape that stays inside whatever changes
	// around it later (links.go).
	defer s.links.lock(s.root, sc)()
	if err := sc.confined(path.Dir(sc.in(p)), target); err != nil {
		return nil, status.Errorf(codes.PermissionDenied, "symlink %q -> %q: %v", p, target, err)
	}
	if err := sc.Symlink(target, p); err != nil {
		return nil, s.fail("Symlink", p, err)
	}
	return &agentpb.Empty{}, nil
}

func (s *Server) Link(ctx context.Context, req *agentpb.LinkRequest) (*agentpb.Empty, error) {
	return inScope(s, ctx, "Link", func(sc *scope) (*agentpb.Empty, error) { return s.link(sc, req) })
}

func (s *Server) link(sc *scope, req *agentpb.LinkRequest) (*agentpb.Empty, error) {
	ps, err := cleanIn(sc, req.GetTarget(), req.GetPath())
	if err != nil {
		return nil, s.fail("Link", string(req.GetPath()), err)
	}
	target, p := ps[0], ps[1]
	// Looked at and linked under s.links: a link renamed over target
	// after the look would be linked unchecked (links.go).
	defer s.links.lock(s.root, sc)()
	fi, err := sc.Lstat(target)
	if err != nil {
		return nil, s.fail("Link", target, err)
	}
	// A directory is left to link(2), which refuses it (EPERM) only
	// after it looked at the new name: a name that exists answers EEXIST
	// and a missing directory above it ENOENT first (TestSFTPRandom seeds
	// 8204, 8311).
	if fi.Mode()&fs.ModeSymlink != 0 {
		// A hard link of a link is that link in another directory
		// (links.go).
		if err := sc.checkLinkAt(sc.in(target), path.Dir(sc.in(p))); err != nil {
			return nil, status.Errorf(codes.PermissionDenied, "hard link %q of a symbolic link: %v", p, err)
		}
	}
	if err := sc.Link(target, p); err != nil {
		return nil, s.fail("Link", p, unwrapLink(err, p))
	}
	return &agentpb.Empty{}, nil
}

// unwrapLink makes an *os.LinkError a PathError naming p, so that its
// errno classifies as every other call's.
func unwrapLink(err error, p string) error {
	if le, ok := errors.AsType[*os.LinkError](err); ok {
		return &fs.PathError{Op: le.Op, Path: p, Err: le.Err}
	}
	return err
}

func (s *Server) Readlink(ctx context.Context, req *agentpb.PathRequest) (*agentpb.ReadlinkResponse, error) {
	return inScope(s, ctx, "Readlink", func(sc *scope) (*agentpb.ReadlinkResponse, error) { return s.readlink(sc, req) })
}

func (s *Server) readlink(sc *scope, req *agentpb.PathRequest) (*agentpb.ReadlinkResponse, error) {
	ps, err := cleanIn(sc, req.GetPath())
	if err != nil {
		return nil, s.fail("Readlink", string(req.GetPath()), err)
	}
	target, err := sc.Readlink(ps[0])
	if err != nil {
		return nil, s.fail("Readlink", ps[0], err)
	}
	return &agentpb.ReadlinkResponse{Target: []byte(target)}, nil
}

// mayChangeIn answers whether the scope's user may change the path's
// entry in the directory that holds it (SessionRequest.may_change_in,
// scope.mayChangeIn).
func (s *Server) mayChangeIn(sc *scope, req *agentpb.PathRequest) (*agentpb.Empty, error) {
	ps, err := cleanIn(sc, req.GetPath())
	if err != nil {
		return nil, s.fail("MayChangeIn", string(req.GetPath()), err)
	}
	p := ps[0]
	if sc.in(p) == "." {
		// The scope's own directory is not the session's to change:
		// its parent lies outside it.
		return nil, s.fail("MayChangeIn", p, &fs.PathError{Op: "access", Path: p, Err: syscall.EACCES})
	}
	if err := sc.mayChangeIn(p); err != nil {
		return nil, s.fail("MayChangeIn", p, &fs.PathError{Op: "access", Path: p, Err: err})
	}
	return &agentpb.Empty{}, nil
}

func (s *Server) Hash(ctx context.Context, req *agentpb.HashRequest) (*agentpb.HashResponse, error) {
	return inScope(s, ctx, "Hash", func(sc *scope) (*agentpb.HashResponse, error) { return s.hash(ctx, sc, req) })
}

// hash reads the file; it stops when ctx ends.
func (s *Server) hash(ctx context.Context, sc *scope, req *agentpb.HashRequest) (*agentpb.HashResponse, error) {
	ps, err := cleanIn(sc, req.GetPath())
	if err != nil {
		return nil, s.fail("Hash", string(req.GetPath()), err)
	}
	p := ps[0]
	h, ok := req.GetAlgorithm().NewHash()
	if !ok {
		return nil, status.Errorf(codes.InvalidArgument, "unknown hash algorithm %v", req.GetAlgorithm())
	}
	if req.GetOffset() < 0 || req.GetLength() < 0 {
		return nil, status.Errorf(codes.InvalidArgument, "hash of %q: negative offset or length", p)
	}
	f, fi, err := sc.openStat(p, os.O_RDONLY, 0)
	if err != nil {
		return nil, s.fail("Hash", p, err)
	}
	defer f.Close()
	if fi.IsDir() {
		return nil, s.fail("Hash", p, &fs.PathError{Op: "hash", Path: p, Err: syscall.EISDIR})
	}
	length := req.GetLength()
	if length == 0 {
		length = max(fi.Size()-req.GetOffset(), 0)
	}
	r := io.NewSectionReader(f, req.GetOffset(), length)
	if _, err := io.Copy(h, ctxReader{ctx, r}); err != nil {
		return nil, s.fail("Hash", p, err)
	}
	return &agentpb.HashResponse{Sum: h.Sum(nil)}, nil
}

// ctxReader stops a long hash when the caller gives up.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

func (s *Server) StatFS(ctx context.Context, req *agentpb.PathRequest) (*agentpb.StatFSResponse, error) {
	return inScope(s, ctx, "StatFS", func(sc *scope) (*agentpb.StatFSResponse, error) { return s.statFS(sc, req) })
}

func (s *Server) statFS(sc *scope, req *agentpb.PathRequest) (*agentpb.StatFSResponse, error) {
	ps, err := cleanIn(sc, req.GetPath())
	if err != nil {
		return nil, s.fail("StatFS", string(req.GetPath()), err)
	}
	p := ps[0]
	f, err := statFSOpen(sc, p)
	if err != nil {
		return nil, s.fail("StatFS", p, err)
	}
	defer f.Close()
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &st); err != nil {
		return nil, s.fail("StatFS", p, &fs.PathError{Op: "statfs", Path: p, Err: err})
	}
	return &agentpb.StatFSResponse{
		BlockSize:       uint64(st.Bsize),
		FragmentSize:    uint64(st.Frsize),
		Blocks:          st.Blocks,
		BlocksFree:      st.Bfree,
		BlocksAvailable: st.Bavail,
		Files:           st.Files,
		FilesFree:       st.Ffree,
		NameMax:         uint64(st.Namelen),
	}, nil
}

// statFSOpen opens what p names for fstatfs(2): with O_PATH, which, as
// statfs(2), asks no permission of p itself (a mode 0000 file or
// directory is measured, as sftp-server measures it), only search on the
// way; a link is followed within the root, opened for reading as before,
// and anything but a regular file or a directory is refused, as there.
func statFSOpen(sc *scope, p string) (*os.File, error) {
	d, dfd, base, err := sc.parentDir(p)
	if err != nil {
		return nil, &fs.PathError{Op: "statfs", Path: p, Err: unwrapPathError(err)}
	}
	defer d.Close()
	var fd int
	err = ignoringEINTR(func() (err error) {
		fd, err = unix.Openat(dfd, base, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		return err
	})
	if err != nil {
		return nil, &fs.PathError{Op: "statfs", Path: p, Err: err}
	}
	var st unix.Stat_t
	err = unix.Fstat(fd, &st)
	switch typ := st.Mode & unix.S_IFMT; {
	case err == nil && (typ == unix.S_IFREG || typ == unix.S_IFDIR):
		return os.NewFile(uintptr(fd), sc.name(p)), nil
	case err == nil && typ != unix.S_IFLNK:
		// A FIFO, socket or device, refused as scope.OpenFile refuses it.
		unix.Close(fd)
		return nil, &fs.PathError{Op: "statfs", Path: p, Err: errNotRegular}
	}
	unix.Close(fd)
	return sc.Open(p)
}

func (s *Server) Status(ctx context.Context, req *agentpb.StatusRequest) (*agentpb.StatusResponse, error) {
	return &agentpb.StatusResponse{
		Version:           s.version,
		OpenHandles:       s.OpenHandles(),
		UploadsInProgress: s.UploadsInProgress(),
	}, nil
}

// fileInfo converts an os.FileInfo for the wire.
func fileInfo(fi fs.FileInfo) *agentpb.FileInfo {
	out := &agentpb.FileInfo{
		Name:          []byte(fi.Name()),
		Size:          fi.Size(),
		Mode:          uint32(fi.Mode()),
		MtimeUnixNano: fi.ModTime().UnixNano(),
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		out.Uid, out.Gid, out.Nlink = st.Uid, st.Gid, uint64(st.Nlink)
		out.AtimeUnixNano = time.Unix(st.Atim.Unix()).UnixNano()
	}
	return out
}

// statInfo is fileInfo of what fstatat(2) said of name, its mode as os
// gives it (fs.FileMode's type and special bits).
func statInfo(name string, st *unix.Stat_t) *agentpb.FileInfo {
	mode := fs.FileMode(st.Mode & 0o777)
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFBLK:
		mode |= fs.ModeDevice
	case unix.S_IFCHR:
		mode |= fs.ModeDevice | fs.ModeCharDevice
	case unix.S_IFDIR:
		mode |= fs.ModeDir
	case unix.S_IFIFO:
		mode |= fs.ModeNamedPipe
	case unix.S_IFLNK:
		mode |= fs.ModeSymlink
	case unix.S_IFSOCK:
		mode |= fs.ModeSocket
	}
	if st.Mode&unix.S_ISUID != 0 {
		mode |= fs.ModeSetuid
	}
	if st.Mode&unix.S_ISGID != 0 {
		mode |= fs.ModeSetgid
	}
	if st.Mode&unix.S_ISVTX != 0 {
		mode |= fs.ModeSticky
	}
	return &agentpb.FileInfo{
		Name:          []byte(name),
		Size:          st.Size,
		Mode:          uint32(mode),
		MtimeUnixNano: st.Mtim.Nano(),
		AtimeUnixNano: st.Atim.Nano(),
		Uid:           st.Uid,
		Gid:           st.Gid,
		Nlink:         uint64(st.Nlink),
	}
}

// fromNano converts a time of ChtimesRequest or SetTimesOp: one left out
// (nil) means "leave unchanged", the zero time.Time, which os.Chtimes and
// UTIME_OMIT skip; one present is that time, 0 (the Unix epoch) included
// (agentpb.FileFeature_FILE_FEATURE_EPOCH_TIMES).
func fromNano(ns *int64) time.Time {
	if ns == nil {
		return time.Time{}
	}
	return time.Unix(0, *ns)
}
