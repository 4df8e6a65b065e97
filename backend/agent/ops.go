package agent

import (
	"context"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"hash"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

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
	p, err := clean(req.GetPath())
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
	p, err := clean(req.GetPath())
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
	p, err := clean(req.GetPath())
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
	p, err := clean(req.GetPath())
	if err != nil {
		return nil, err
	}
	sc, err := s.scope(ctx, p)
	if err != nil {
		return nil, s.fail("Mkdir", p, err)
	}
	defer sc.Close()
	perm := fs.FileMode(req.GetPerm()) & fs.ModePerm
	if req.GetAll() {
		err = sc.MkdirAll(p, perm)
	} else {
		err = sc.Mkdir(p, perm)
	}
	return &agentpb.Empty{}, s.fail("Mkdir", p, err)
}

func (s *Server) Remove(ctx context.Context, req *agentpb.RemoveRequest) (*agentpb.Empty, error) {
	p, err := clean(req.GetPath())
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
	} else {
		err = sc.Remove(p)
	}
	return &agentpb.Empty{}, s.fail("Remove", p, err)
}

func (s *Server) Rename(ctx context.Context, req *agentpb.RenameRequest) (*agentpb.Empty, error) {
	from, err := clean(req.GetFrom())
	if err != nil {
		return nil, err
	}
	to, err := clean(req.GetTo())
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
	return &agentpb.Empty{}, s.fail("Rename", from, sc.Rename(from, to))
}

func (s *Server) Chmod(ctx context.Context, req *agentpb.ChmodRequest) (*agentpb.Empty, error) {
	p, err := clean(req.GetPath())
	if err != nil {
		return nil, err
	}
	sc, err := s.scope(ctx, p)
	if err != nil {
		return nil, s.fail("Chmod", p, err)
	}
	defer sc.Close()
	mode := fs.FileMode(req.GetPerm()) & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
	applied := s.deferToUploads(p, func(h *handle) { h.setMode(mode) })
	err = sc.Chmod(p, mode)
	if applied && os.IsNotExist(err) {
		err = nil // the upload in progress creates it with this mode
	}
	return &agentpb.Empty{}, s.fail("Chmod", p, err)
}

func (s *Server) Chown(ctx context.Context, req *agentpb.ChownRequest) (*agentpb.Empty, error) {
	p, err := clean(req.GetPath())
	if err != nil {
		return nil, err
	}
	sc, err := s.scope(ctx, p)
	if err != nil {
		return nil, s.fail("Chown", p, err)
	}
	defer sc.Close()
	return &agentpb.Empty{}, s.fail("Chown", p, sc.Chown(p, int(req.GetUid()), int(req.GetGid())))
}

func (s *Server) Chtimes(ctx context.Context, req *agentpb.ChtimesRequest) (*agentpb.Empty, error) {
	p, err := clean(req.GetPath())
	if err != nil {
		return nil, err
	}
	sc, err := s.scope(ctx, p)
	if err != nil {
		return nil, s.fail("Chtimes", p, err)
	}
	defer sc.Close()
	atime, mtime := fromNano(req.GetAtimeUnixNano()), fromNano(req.GetMtimeUnixNano())
	applied := s.deferToUploads(p, func(h *handle) { h.setTimes(atime, mtime) })
	err = sc.Chtimes(p, atime, mtime)
	if applied && os.IsNotExist(err) {
		err = nil // applied when the upload in progress commits
	}
	return &agentpb.Empty{}, s.fail("Chtimes", p, err)
}

func (s *Server) Symlink(ctx context.Context, req *agentpb.SymlinkRequest) (*agentpb.Empty, error) {
	p, err := clean(req.GetPath())
	if err != nil {
		return nil, err
	}
	target := req.GetTarget()
	if target == "" || path.IsAbs(target) {
		return nil, status.Errorf(codes.InvalidArgument, "symlink target %q must be relative", target)
	}
	sc, err := s.scope(ctx, p)
	if err != nil {
		return nil, s.fail("Symlink", p, err)
	}
	defer sc.Close()
	// The target must stay inside the call's root when resolved from the
	// link's directory; os.Root would refuse to follow it otherwise anyway.
	if resolved := path.Join(path.Dir(sc.in(p)), target); resolved == ".." || len(resolved) > 2 && resolved[:3] == "../" {
		return nil, status.Errorf(codes.PermissionDenied, "symlink %q -> %q escapes the agent root", p, target)
	}
	return &agentpb.Empty{}, s.fail("Symlink", p, sc.Symlink(target, p))
}

func (s *Server) Readlink(ctx context.Context, req *agentpb.PathRequest) (*agentpb.ReadlinkResponse, error) {
	p, err := clean(req.GetPath())
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
	return &agentpb.ReadlinkResponse{Target: target}, nil
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
	p, err := clean(req.GetPath())
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
	p, err := clean(req.GetPath())
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
		Name:          fi.Name(),
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
