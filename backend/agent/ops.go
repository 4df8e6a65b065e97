package agent

import (
	"context"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"hash"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
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

func (s *Server) Stat(ctx context.Context, req *agentpb.PathRequest) (*agentpb.FileInfo, error) {
	p, err := clean(string(req.GetPath()))
	if err != nil {
		return nil, err
	}
	sc, err := s.scope(ctx, p)
	if err != nil {
		return nil, s.fail("Stat", p, err)
	}
	defer sc.Close()
	fi, err := sc.Stat(p)
	if err != nil {
		return nil, s.fail("Stat", p, err)
	}
	return fileInfo(fi), nil
}

func (s *Server) Lstat(ctx context.Context, req *agentpb.PathRequest) (*agentpb.FileInfo, error) {
	p, err := clean(string(req.GetPath()))
	if err != nil {
		return nil, err
	}
	sc, err := s.scope(ctx, p)
	if err != nil {
		return nil, s.fail("Lstat", p, err)
	}
	defer sc.Close()
	fi, err := sc.Lstat(p)
	if err != nil {
		return nil, s.fail("Lstat", p, err)
	}
	return fileInfo(fi), nil
}

func (s *Server) ReadDir(req *agentpb.PathRequest, stream agentpb.Agent_ReadDirServer) error {
	p, err := clean(string(req.GetPath()))
	if err != nil {
		return err
	}
	sc, err := s.scope(stream.Context(), p)
	if err != nil {
		return s.fail("ReadDir", p, err)
	}
	defer sc.Close()
	d, err := sc.Open(p)
	if err != nil {
		return s.fail("ReadDir", p, err)
	}
	defer d.Close()
	entries, err := d.ReadDir(-1)
	if err != nil {
		return s.fail("ReadDir", p, err)
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Name() < entries[j].Name() })
	batch := make([]*agentpb.FileInfo, 0, dirBatch)
	for _, e := range entries {
		if isTempName(e.Name()) {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue // removed while listing
		}
		batch = append(batch, fileInfo(fi))
		if len(batch) == dirBatch {
			if err := stream.Send(&agentpb.ReadDirResponse{Entries: batch}); err != nil {
				return err
			}
			batch = make([]*agentpb.FileInfo, 0, dirBatch)
		}
	}
	if len(batch) > 0 {
		return stream.Send(&agentpb.ReadDirResponse{Entries: batch})
	}
	return nil
}

func (s *Server) Mkdir(ctx context.Context, req *agentpb.MkdirRequest) (*agentpb.Empty, error) {
	p, err := clean(string(req.GetPath()))
	if err != nil {
		return nil, err
	}
	sc, err := s.scope(ctx, p)
	if err != nil {
		return nil, s.fail("Mkdir", p, err)
	}
	defer sc.Close()
	perm := fs.FileMode(req.GetPerm()) & fs.ModePerm
	existed := req.GetAll() && s.isDir(sc, p) // hooks+events: mkdir -p of a directory changes nothing
	if req.GetAll() {
		err = sc.MkdirAll(p, perm)
	} else {
		err = sc.Mkdir(p, perm)
	}
	s.notifyMkdir(err, existed, p) // hooks+events
	return &agentpb.Empty{}, s.fail("Mkdir", p, err)
}

func (s *Server) Remove(ctx context.Context, req *agentpb.RemoveRequest) (*agentpb.Empty, error) {
	p, err := clean(string(req.GetPath()))
	if err != nil {
		return nil, err
	}
	if p == "." {
		return nil, status.Error(codes.PermissionDenied, "the agent root cannot be removed")
	}
	sc, err := s.scope(ctx, p)
	if err != nil {
		return nil, s.fail("Remove", p, err)
	}
	defer sc.Close()
	if sc.in(p) == "." {
		return nil, status.Error(codes.PermissionDenied, "the call's root cannot be removed")
	}
	if req.GetAll() {
		err = sc.RemoveAll(p)
	} else if err = sc.Remove(p); errors.Is(err, syscall.ENOTEMPTY) && s.removeDeadTemps(sc, p) {
		err = sc.Remove(p) // held only temp files of uploads that no longer run
	}
	s.notify(err, hooks.Delete, p) // hooks+events
	return &agentpb.Empty{}, s.fail("Remove", p, err)
}

// removeDeadTemps removes the upload temp files in directory p that no
// upload in progress owns (an agent killed mid-upload left them), if they
// are all the directory holds; it reports whether it removed any. rmdir
// of a directory that lists empty then succeeds, as it would on disk.
func (s *Server) removeDeadTemps(sc *scope, p string) bool {
	d, err := sc.Open(p)
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

func (s *Server) Rename(ctx context.Context, req *agentpb.RenameRequest) (*agentpb.Empty, error) {
	from, err := clean(string(req.GetFrom()))
	if err != nil {
		return nil, err
	}
	to, err := clean(string(req.GetTo()))
	if err != nil {
		return nil, err
	}
	if from == "." || to == "." {
		return nil, status.Error(codes.PermissionDenied, "the agent root cannot be renamed")
	}
	sc, err := s.scope(ctx, from, to)
	if err != nil {
		return nil, s.fail("Rename", from, err)
	}
	defer sc.Close()
	if sc.in(from) == "." || sc.in(to) == "." {
		return nil, status.Error(codes.PermissionDenied, "the call's root cannot be renamed")
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
	return &agentpb.Empty{}, s.fail("Rename", from, err)
}

func (s *Server) Chmod(ctx context.Context, req *agentpb.ChmodRequest) (*agentpb.Empty, error) {
	p, err := clean(string(req.GetPath()))
	if err != nil {
		return nil, err
	}
	sc, err := s.scope(ctx, p)
	if err != nil {
		return nil, s.fail("Chmod", p, err)
	}
	defer sc.Close()
	mode, err := checkMode(req.GetPerm())
	if err != nil {
		return nil, s.fail("Chmod", p, err)
	}
	return &agentpb.Empty{}, s.fail("Chmod", p, sc.Chmod(p, mode))
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
	p, err := clean(string(req.GetPath()))
	if err != nil {
		return nil, err
	}
	sc, err := s.scope(ctx, p)
	if err != nil {
		return nil, s.fail("Chown", p, err)
	}
	defer sc.Close()
	if _, err := sc.Lstat(p); err != nil {
		return nil, s.fail("Chown", p, err)
	}
	// Files belong to the user the agent runs as: a gateway that could
	// chown could hand an upload to root.
	return nil, status.Errorf(codes.PermissionDenied, "chown %q: the agent does not change owners", p)
}

func (s *Server) Chtimes(ctx context.Context, req *agentpb.ChtimesRequest) (*agentpb.Empty, error) {
	p, err := clean(string(req.GetPath()))
	if err != nil {
		return nil, err
	}
	sc, err := s.scope(ctx, p)
	if err != nil {
		return nil, s.fail("Chtimes", p, err)
	}
	defer sc.Close()
	atime, mtime := fromNano(req.GetAtimeUnixNano()), fromNano(req.GetMtimeUnixNano())
	if req.GetNofollow() {
		return &agentpb.Empty{}, s.fail("Chtimes", p, sc.Lchtimes(p, atime, mtime))
	}
	return &agentpb.Empty{}, s.fail("Chtimes", p, sc.Chtimes(p, atime, mtime))
}

func (s *Server) Symlink(ctx context.Context, req *agentpb.SymlinkRequest) (*agentpb.Empty, error) {
	p, err := clean(string(req.GetPath()))
	if err != nil {
		return nil, err
	}
	target := string(req.GetTarget())
	if target == "" || path.IsAbs(target) {
		return nil, status.Errorf(codes.InvalidArgument, "symlink target %q must be relative", target)
	}
	if strings.ContainsFunc(target, isControl) {
		return nil, status.Errorf(codes.InvalidArgument, "symlink target %q contains a control character", target)
	}
	sc, err := s.scope(ctx, p)
	if err != nil {
		return nil, s.fail("Symlink", p, err)
	}
	defer sc.Close()
	// The target must stay inside the call's root when resolved from the
	// link's directory, through the links that exist there now: a link to
	// "up/../x" where up -> ".." would lead a program that follows links
	// (a web server, a backup) into a sibling's tree. os.Root refuses to
	// follow such links itself.
	if err := sc.confined(path.Dir(sc.in(p)), target); err != nil {
		return nil, status.Errorf(codes.PermissionDenied, "symlink %q -> %q: %v", p, target, err)
	}
	return &agentpb.Empty{}, s.fail("Symlink", p, sc.Symlink(target, p))
}

func (s *Server) Link(ctx context.Context, req *agentpb.LinkRequest) (*agentpb.Empty, error) {
	target, err := clean(string(req.GetTarget()))
	if err != nil {
		return nil, err
	}
	p, err := clean(string(req.GetPath()))
	if err != nil {
		return nil, err
	}
	sc, err := s.scope(ctx, target, p)
	if err != nil {
		return nil, s.fail("Link", p, err)
	}
	defer sc.Close()
	fi, err := sc.Lstat(target)
	if err != nil {
		return nil, s.fail("Link", target, err)
	}
	if fi.IsDir() {
		return nil, s.fail("Link", target, &fs.PathError{Op: "link", Path: target, Err: syscall.EPERM})
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
	p, err := clean(string(req.GetPath()))
	if err != nil {
		return nil, err
	}
	sc, err := s.scope(ctx, p)
	if err != nil {
		return nil, s.fail("Readlink", p, err)
	}
	defer sc.Close()
	target, err := sc.Readlink(p)
	if err != nil {
		return nil, s.fail("Readlink", p, err)
	}
	return &agentpb.ReadlinkResponse{Target: []byte(target)}, nil
}

func newHash(algo agentpb.HashAlgorithm) (hash.Hash, error) {
	switch algo {
	case agentpb.HashAlgorithm_HASH_ALGORITHM_SHA256:
		return sha256.New(), nil
	case agentpb.HashAlgorithm_HASH_ALGORITHM_SHA1:
		return sha1.New(), nil
	case agentpb.HashAlgorithm_HASH_ALGORITHM_MD5:
		return md5.New(), nil
	case agentpb.HashAlgorithm_HASH_ALGORITHM_CRC32:
		return crc32.NewIEEE(), nil
	case agentpb.HashAlgorithm_HASH_ALGORITHM_SHA512:
		return sha512.New(), nil
	}
	return nil, status.Errorf(codes.InvalidArgument, "unknown hash algorithm %v", algo)
}

func (s *Server) Hash(ctx context.Context, req *agentpb.HashRequest) (*agentpb.HashResponse, error) {
	p, err := clean(string(req.GetPath()))
	if err != nil {
		return nil, err
	}
	h, err := newHash(req.GetAlgorithm())
	if err != nil {
		return nil, err
	}
	if req.GetOffset() < 0 || req.GetLength() < 0 {
		return nil, status.Errorf(codes.InvalidArgument, "hash of %q: negative offset or length", p)
	}
	sc, err := s.scope(ctx, p)
	if err != nil {
		return nil, s.fail("Hash", p, err)
	}
	defer sc.Close()
	f, err := sc.Open(p)
	if err != nil {
		return nil, s.fail("Hash", p, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, s.fail("Hash", p, err)
	}
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
	p, err := clean(string(req.GetPath()))
	if err != nil {
		return nil, err
	}
	sc, err := s.scope(ctx, p)
	if err != nil {
		return nil, s.fail("StatFS", p, err)
	}
	defer sc.Close()
	f, err := sc.Open(p)
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

// fromNano converts wire time; 0 means "leave unchanged" (the zero
// time.Time, which os.Chtimes skips).
func fromNano(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}
