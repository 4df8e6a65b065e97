package backend

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/afero"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/upgate/upgate/backend/agentpb"
)

// Options configure a GRPCFs. The zero value is usable.
type Options struct {
	// Root is the directory inside the agent's root that the filesystem
	// shows as "/": a clean relative path; "" is the agent root itself.
	Root string
	// CallTimeout bounds every call to the agent and every wait for a reply
	// inside an open file's stream. Zero means one minute.
	CallTimeout time.Duration
	// InPlace turns atomic uploads off: truncating opens write the target
	// file directly.
	InPlace bool
	// Agent and User name the agent and the user in error messages
	// ("agent web for user alice unreachable"). Both may be empty.
	Agent, User string
}

// GRPCFs is an afero.Fs whose files live on an agent, reached through the
// Agent gRPC service. It also implements afero.Lstater, afero.Linker,
// afero.LinkReader, Hasher and StatFSer. It is safe for concurrent use, and
// so are its files' ReadAt and WriteAt.
//
// Every call is bound to the context given to NewGRPCFs: when it ends, open
// files' streams are cancelled and their uploads abort on the agent.
type GRPCFs struct {
	client  agentpb.AgentClient
	ctx     context.Context
	root    string
	timeout time.Duration
	opts    Options
	// buffers holds chunk-capacity write buffers, reused from one
	// coalesced message to the next.
	buffers sync.Pool
}

// getBuffer is an empty buffer of capacity chunk.
func (g *GRPCFs) getBuffer() []byte {
	if b, ok := g.buffers.Get().(*[]byte); ok {
		return (*b)[:0]
	}
	return make([]byte, 0, chunk)
}

// putBuffer returns a buffer from getBuffer to the pool; others are left
// to the garbage collector.
func (g *GRPCFs) putBuffer(b []byte) {
	if cap(b) == chunk {
		b = b[:0]
		g.buffers.Put(&b)
	}
}

var (
	_ afero.Fs         = (*GRPCFs)(nil)
	_ afero.Lstater    = (*GRPCFs)(nil)
	_ afero.Linker     = (*GRPCFs)(nil)
	_ afero.LinkReader = (*GRPCFs)(nil)
	_ Hasher           = (*GRPCFs)(nil)
	_ StatFSer         = (*GRPCFs)(nil)
	_ HardLinker       = (*GRPCFs)(nil)
	_ LinkTimesSetter  = (*GRPCFs)(nil)
)

// NewGRPCFs returns a filesystem over the agent behind cc, bound to ctx
// (typically the session's context).
func NewGRPCFs(ctx context.Context, cc grpc.ClientConnInterface, opts Options) *GRPCFs {
	timeout := opts.CallTimeout
	if timeout <= 0 {
		timeout = time.Minute
	}
	g := &GRPCFs{
		client:  agentpb.NewAgentClient(cc),
		ctx:     ctx,
		root:    strings.Trim(path.Clean("/"+opts.Root), "/"),
		timeout: timeout,
		opts:    opts,
	}
	g.ctx = g.scoped(ctx)
	return g
}

// scoped confines the calls made with ctx to the filesystem's root on the
// agent (agentpb.ScopeMetadata), so that the agent refuses symbolic links
// that lead out of it, into a sibling directory included.
func (g *GRPCFs) scoped(ctx context.Context) context.Context {
	if g.root == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, agentpb.ScopeMetadata, g.root)
}

// userPath cleans a user-visible name into an absolute path in the
// filesystem's own namespace; ".." cannot climb above "/".
func userPath(name string) string { return path.Clean("/" + name) }

// agentPath maps a user-visible name to the agent's root-relative path.
func (g *GRPCFs) agentPath(name string) string {
	return strings.TrimPrefix(path.Join("/", g.root, userPath(name)), "/")
}

// err translates a gRPC error and names the agent where it is unreachable.
func (g *GRPCFs) err(op, name string, err error) error {
	err = fromStatus(op, userPath(name), err)
	var ae *AgentError
	if errors.Is(err, ErrUnavailable) {
		who := "agent"
		if g.opts.Agent != "" {
			who += " " + g.opts.Agent
		}
		if g.opts.User != "" {
			who += " for user " + g.opts.User
		}
		msg := err.Error()
		if errors.As(err, &ae) {
			msg = ae.Message
		}
		return &fs.PathError{Op: op, Path: userPath(name), Err: &AgentError{Message: who + " unreachable: " + msg, err: ErrUnavailable}}
	}
	// The agent names its own path ("alice/x"); the user sees theirs
	// ("/x"), not where their tree lives inside the agent.
	if errors.As(err, &ae) && g.root != "" {
		ae.Message = strings.ReplaceAll(ae.Message, strconv.Quote(g.agentPath(name)), strconv.Quote(userPath(name)))
	}
	return err
}

func (g *GRPCFs) call() (context.Context, context.CancelFunc) {
	return context.WithTimeout(g.ctx, g.timeout)
}

// Name implements afero.Fs.
func (g *GRPCFs) Name() string { return "GRPCFs" }

// Create implements afero.Fs.
func (g *GRPCFs) Create(name string) (afero.File, error) {
	return g.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o666)
}

// Open implements afero.Fs.
func (g *GRPCFs) Open(name string) (afero.File, error) { return g.OpenFile(name, os.O_RDONLY, 0) }

// Mkdir implements afero.Fs.
func (g *GRPCFs) Mkdir(name string, perm os.FileMode) error {
	ctx, cancel := g.call()
	defer cancel()
	_, err := g.client.Mkdir(ctx, &agentpb.MkdirRequest{Path: []byte(g.agentPath(name)), Perm: uint32(perm.Perm())})
	return g.err("mkdir", name, err)
}

// MkdirAll implements afero.Fs.
func (g *GRPCFs) MkdirAll(name string, perm os.FileMode) error {
	ctx, cancel := g.call()
	defer cancel()
	_, err := g.client.Mkdir(ctx, &agentpb.MkdirRequest{Path: []byte(g.agentPath(name)), Perm: uint32(perm.Perm()), All: true})
	return g.err("mkdir", name, err)
}

func (g *GRPCFs) remove(name string, all bool) error {
	op := "remove"
	if userPath(name) == "/" {
		return &fs.PathError{Op: op, Path: "/", Err: syscall.EACCES}
	}
	ctx, cancel := g.call()
	defer cancel()
	_, err := g.client.Remove(ctx, &agentpb.RemoveRequest{Path: []byte(g.agentPath(name)), All: all})
	return g.err(op, name, err)
}

// Remove implements afero.Fs: a file or an empty directory.
func (g *GRPCFs) Remove(name string) error { return g.remove(name, false) }

// RemoveAll implements afero.Fs.
func (g *GRPCFs) RemoveAll(name string) error { return g.remove(name, true) }

// Rename implements afero.Fs. It replaces an existing target file.
func (g *GRPCFs) Rename(oldname, newname string) error {
	if userPath(oldname) == "/" || userPath(newname) == "/" {
		return &os.LinkError{Op: "rename", Old: userPath(oldname), New: userPath(newname), Err: syscall.EACCES}
	}
	ctx, cancel := g.call()
	defer cancel()
	_, err := g.client.Rename(ctx, &agentpb.RenameRequest{From: []byte(g.agentPath(oldname)), To: []byte(g.agentPath(newname))})
	if err != nil {
		var pe *fs.PathError
		if errors.As(g.err("rename", oldname, err), &pe) {
			return &os.LinkError{Op: "rename", Old: userPath(oldname), New: userPath(newname), Err: pe.Err}
		}
	}
	return nil
}

// Stat implements afero.Fs.
func (g *GRPCFs) Stat(name string) (os.FileInfo, error) {
	ctx, cancel := g.call()
	defer cancel()
	pb, err := g.client.Stat(ctx, &agentpb.PathRequest{Path: []byte(g.agentPath(name))})
	if err != nil {
		return nil, g.err("stat", name, err)
	}
	return newFileInfo(pb, path.Base(userPath(name))), nil
}

// LstatIfPossible implements afero.Lstater.
func (g *GRPCFs) LstatIfPossible(name string) (os.FileInfo, bool, error) {
	ctx, cancel := g.call()
	defer cancel()
	pb, err := g.client.Lstat(ctx, &agentpb.PathRequest{Path: []byte(g.agentPath(name))})
	if err != nil {
		return nil, true, g.err("lstat", name, err)
	}
	return newFileInfo(pb, path.Base(userPath(name))), true, nil
}

// Chmod implements afero.Fs. On a file being uploaded it changes the
// upload.
func (g *GRPCFs) Chmod(name string, mode os.FileMode) error {
	ctx, cancel := g.call()
	defer cancel()
	_, err := g.client.Chmod(ctx, &agentpb.ChmodRequest{Path: []byte(g.agentPath(name)), Perm: uint32(mode & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky))})
	return g.err("chmod", name, err)
}

// Chown implements afero.Fs.
func (g *GRPCFs) Chown(name string, uid, gid int) error {
	ctx, cancel := g.call()
	defer cancel()
	_, err := g.client.Chown(ctx, &agentpb.ChownRequest{Path: []byte(g.agentPath(name)), Uid: int32(uid), Gid: int32(gid)})
	return g.err("chown", name, err)
}

// Chtimes implements afero.Fs. On a file being uploaded the times are
// applied after the upload commits. A zero time leaves that time as is.
func (g *GRPCFs) Chtimes(name string, atime, mtime time.Time) error {
	if err := checkTimes("chtimes", userPath(name), atime, mtime); err != nil {
		return err
	}
	ctx, cancel := g.call()
	defer cancel()
	_, err := g.client.Chtimes(ctx, &agentpb.ChtimesRequest{Path: []byte(g.agentPath(name)), AtimeUnixNano: unixNano(atime), MtimeUnixNano: unixNano(mtime)})
	return g.err("chtimes", name, err)
}

// Lchtimes implements LinkTimesSetter.
func (g *GRPCFs) Lchtimes(name string, atime, mtime time.Time) error {
	if err := checkTimes("lchtimes", userPath(name), atime, mtime); err != nil {
		return err
	}
	ctx, cancel := g.call()
	defer cancel()
	_, err := g.client.Chtimes(ctx, &agentpb.ChtimesRequest{Path: []byte(g.agentPath(name)), AtimeUnixNano: unixNano(atime), MtimeUnixNano: unixNano(mtime), Nofollow: true})
	return g.err("lchtimes", name, err)
}

// SymlinkIfPossible implements afero.Linker. An absolute target is taken in
// the filesystem's own namespace and stored relative to the link, so the
// link resolves the same inside the container; a target that would leave
// the filesystem's root is refused.
func (g *GRPCFs) SymlinkIfPossible(oldname, newname string) error {
	link := userPath(newname)
	target := oldname
	if path.IsAbs(target) {
		target = relPath(path.Dir(link), path.Clean(target))
	} else if escapes(path.Dir(link), target) {
		return &os.LinkError{Op: "symlink", Old: oldname, New: link, Err: syscall.EACCES}
	}
	ctx, cancel := g.call()
	defer cancel()
	_, err := g.client.Symlink(ctx, &agentpb.SymlinkRequest{Target: []byte(target), Path: []byte(g.agentPath(newname))})
	if err != nil {
		var pe *fs.PathError
		if errors.As(g.err("symlink", newname, err), &pe) {
			return &os.LinkError{Op: "symlink", Old: oldname, New: link, Err: pe.Err}
		}
	}
	return nil
}

// Link implements HardLinker.
func (g *GRPCFs) Link(oldname, newname string) error {
	ctx, cancel := g.call()
	defer cancel()
	_, err := g.client.Link(ctx, &agentpb.LinkRequest{Target: []byte(g.agentPath(oldname)), Path: []byte(g.agentPath(newname))})
	if err != nil {
		var pe *fs.PathError
		if errors.As(g.err("link", newname, err), &pe) {
			return &os.LinkError{Op: "link", Old: userPath(oldname), New: userPath(newname), Err: pe.Err}
		}
	}
	return nil
}

// ReadlinkIfPossible implements afero.LinkReader.
func (g *GRPCFs) ReadlinkIfPossible(name string) (string, error) {
	ctx, cancel := g.call()
	defer cancel()
	resp, err := g.client.Readlink(ctx, &agentpb.PathRequest{Path: []byte(g.agentPath(name))})
	if err != nil {
		return "", g.err("readlink", name, err)
	}
	return string(resp.GetTarget()), nil
}

var hashAlgorithms = map[HashAlgorithm]agentpb.HashAlgorithm{
	SHA256: agentpb.HashAlgorithm_HASH_ALGORITHM_SHA256,
	SHA1:   agentpb.HashAlgorithm_HASH_ALGORITHM_SHA1,
	MD5:    agentpb.HashAlgorithm_HASH_ALGORITHM_MD5,
	CRC32:  agentpb.HashAlgorithm_HASH_ALGORITHM_CRC32,
	SHA512: agentpb.HashAlgorithm_HASH_ALGORITHM_SHA512,
}

// Hash implements Hasher; the agent reads the file.
func (g *GRPCFs) Hash(ctx context.Context, name string, algo HashAlgorithm, offset, length int64) ([]byte, error) {
	a, ok := hashAlgorithms[algo]
	if !ok {
		return nil, &fs.PathError{Op: "hash", Path: userPath(name), Err: fmt.Errorf("unsupported hash algorithm %q", algo)}
	}
	ctx, cancel := context.WithCancel(g.scoped(ctx))
	defer cancel()
	stop := context.AfterFunc(g.ctx, cancel)
	defer stop()
	resp, err := g.client.Hash(ctx, &agentpb.HashRequest{Path: []byte(g.agentPath(name)), Algorithm: a, Offset: offset, Length: length})
	if err != nil {
		return nil, g.err("hash", name, err)
	}
	return resp.GetSum(), nil
}

// StatFS implements StatFSer.
func (g *GRPCFs) StatFS(ctx context.Context, name string) (FSStats, error) {
	ctx, cancel := context.WithTimeout(g.scoped(ctx), g.timeout)
	defer cancel()
	stop := context.AfterFunc(g.ctx, cancel)
	defer stop()
	r, err := g.client.StatFS(ctx, &agentpb.PathRequest{Path: []byte(g.agentPath(name))})
	if err != nil {
		return FSStats{}, g.err("statfs", name, err)
	}
	return FSStats{
		BlockSize: r.GetBlockSize(), FragmentSize: r.GetFragmentSize(),
		Blocks: r.GetBlocks(), BlocksFree: r.GetBlocksFree(), BlocksAvailable: r.GetBlocksAvailable(),
		Files: r.GetFiles(), FilesFree: r.GetFilesFree(), NameMax: r.GetNameMax(),
	}, nil
}

// escapes reports whether the relative target, resolved from dir (an
// absolute path in the filesystem's namespace), climbs above "/".
func escapes(dir, target string) bool {
	depth := 0
	for _, e := range strings.Split(strings.Trim(dir, "/"), "/") {
		if e != "" {
			depth++
		}
	}
	for _, e := range strings.Split(target, "/") {
		switch e {
		case "", ".":
		case "..":
			depth--
			if depth < 0 {
				return true
			}
		default:
			depth++
		}
	}
	return false
}

// relPath returns target (absolute, clean) relative to dir (absolute,
// clean).
func relPath(dir, target string) string {
	split := func(p string) []string {
		if p == "/" {
			return nil
		}
		return strings.Split(strings.TrimPrefix(p, "/"), "/")
	}
	d, t := split(dir), split(target)
	i := 0
	for i < len(d) && i < len(t) && d[i] == t[i] {
		i++
	}
	var parts []string
	for range d[i:] {
		parts = append(parts, "..")
	}
	parts = append(parts, t[i:]...)
	if len(parts) == 0 {
		return "."
	}
	return strings.Join(parts, "/")
}
