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
	"syscall"
	"time"

	"github.com/spf13/afero"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/upgate/upgate/backend/agentpb"
)

// Options configure a GRPCFs. The zero value is usable.
type Options struct {
	// Root is the directory inside the agent's root that the filesystem
	// shows as "/": a clean relative path; "" is the agent root itself.
	Root string
	// CallTimeout bounds every wait for the agent's reply to one request
	// (a hash excepted: it waits as long as its context allows), and
	// every wait to hand the agent a request: a Session stream the agent
	// stopped reading is cut then, and the next operation opens another.
	// Zero means one minute.
	CallTimeout time.Duration
	// InPlace turns atomic uploads off: truncating opens write the target
	// file directly.
	InPlace bool
	// PostUploadOpens sends an upload's open (O_WRONLY|O_CREATE|O_TRUNC,
	// not O_EXCL or O_APPEND) without waiting for the agent's reply when
	// the agent serves posted opens and the filesystem's last successful
	// open was in the same directory, with that directory and those above
	// it not removed, renamed or re-permissioned through this filesystem
	// since: the upload's writes and close follow at once, saving a round
	// trip per upload. The open's failure is then returned by the writes
	// and by Close instead of OpenFile. For FTP, whose STOR answers 150
	// before the data and reports the upload's failure either way: a
	// missing directory still fails before the 150, as on vsftpd, and
	// only one taken away behind the session's back fails after it.
	PostUploadOpens bool
	// Agent and User name the agent and the user in error messages
	// ("agent web for user alice unreachable"). Both may be empty.
	Agent, User string
	// Observe, if non-nil, is called after every path operation, open and
	// commit with the operation's name ("Stat", "Open", "Close"), the gRPC
	// code of its outcome and its duration: the gateway's latency metric.
	// Reads and writes are not observed one by one.
	Observe func(method string, code codes.Code, d time.Duration)
	// Session, if non-nil, opens the agent's Session streams in place of
	// the connection's Agent.Session: for an agent in this process,
	// reached without gRPC's transport (backend/agents' embedded agents).
	// The stream must behave as a gRPC one: Send returns io.EOF once it
	// has ended, Recv then returns why, and ending the context given
	// ends the agent's side. Every other call still uses the connection.
	Session func(ctx context.Context) (agentpb.Agent_SessionClient, error)
}

// GRPCFs is an afero.Fs whose files live on an agent, reached through the
// Agent gRPC service. It also implements afero.Lstater, afero.Linker,
// afero.LinkReader, Hasher and StatFSer. It is safe for concurrent use, and
// so are its files' ReadAt and WriteAt.
//
// It speaks agent protocol v2: one Session stream carries all its
// operations and open files (mux.go); a broken stream is replaced by a new
// one at the next operation, and the files open on it fail.
//
// Every call is bound to the context given to NewGRPCFs: when it ends, the
// stream is cancelled and uploads in progress abort on the agent.
type GRPCFs struct {
	client  agentpb.AgentClient
	ctx     context.Context
	root    string
	timeout time.Duration
	opts    Options
	mux     mux
	// buffers holds chunk-capacity write buffers, reused from one
	// coalesced message to the next.
	buffers bufferPool
	// dirs is where the next upload may be posted (posted.go).
	dirs uploadDir
}

var (
	_ afero.Fs         = (*GRPCFs)(nil)
	_ afero.Lstater    = (*GRPCFs)(nil)
	_ afero.Linker     = (*GRPCFs)(nil)
	_ afero.LinkReader = (*GRPCFs)(nil)
	_ Hasher           = (*GRPCFs)(nil)
	_ StatFSer         = (*GRPCFs)(nil)
	_ DirSearcher      = (*GRPCFs)(nil)
	_ ChangeChecker    = (*GRPCFs)(nil)
	_ KindRemover      = (*GRPCFs)(nil)
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
	g.mux.g = g
	return g
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
	// The agent names its own paths ("alice/x"); the user sees theirs
	// ("/x"), not where their tree lives inside the agent.
	if errors.As(err, &ae) && g.root != "" {
		ae.Message = strings.ReplaceAll(ae.Message, strconv.Quote(g.agentPath(name)), strconv.Quote(userPath(name)))
		ae.Message = strings.ReplaceAll(ae.Message, `"`+g.root+`/`, `"/`)
		ae.Message = strings.ReplaceAll(ae.Message, strconv.Quote(g.root), `"/"`)
	}
	return err
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
	_, err := g.do(g.ctx, "Mkdir", "mkdir", name, &agentpb.SessionRequest{Op: &agentpb.SessionRequest_Mkdir{
		Mkdir: &agentpb.MkdirRequest{Path: []byte(g.agentPath(name)), Perm: openWirePerm(perm)}}})
	return err
}

// MkdirAll implements afero.Fs.
func (g *GRPCFs) MkdirAll(name string, perm os.FileMode) error {
	_, err := g.do(g.ctx, "Mkdir", "mkdir", name, &agentpb.SessionRequest{Op: &agentpb.SessionRequest_Mkdir{
		Mkdir: &agentpb.MkdirRequest{Path: []byte(g.agentPath(name)), Perm: uint32(perm.Perm()), All: true}}})
	return err
}

func (g *GRPCFs) remove(name string, all bool) error {
	op := "remove"
	if userPath(name) == "/" {
		return &fs.PathError{Op: op, Path: "/", Err: syscall.EACCES}
	}
	g.dirChanged(name)
	_, err := g.do(g.ctx, "Remove", op, name, &agentpb.SessionRequest{Op: &agentpb.SessionRequest_Remove{
		Remove: &agentpb.RemoveRequest{Path: []byte(g.agentPath(name)), All: all}}})
	return err
}

// Remove implements afero.Fs: a file or an empty directory.
func (g *GRPCFs) Remove(name string) error { return g.remove(name, false) }

// RemoveFile implements KindRemover: one request to an agent announcing
// FILE_FEATURE_REMOVE_KIND, an Lstat and a Remove to an older one.
func (g *GRPCFs) RemoveFile(name string) error {
	return g.removeKind(name, agentpb.RemoveKind_REMOVE_KIND_FILE)
}

// RemoveDir implements KindRemover, as RemoveFile.
func (g *GRPCFs) RemoveDir(name string) error {
	return g.removeKind(name, agentpb.RemoveKind_REMOVE_KIND_DIR)
}

func (g *GRPCFs) removeKind(name string, kind agentpb.RemoveKind) error {
	dir := kind == agentpb.RemoveKind_REMOVE_KIND_DIR
	op := "remove"
	if dir {
		op = "rmdir"
	}
	if userPath(name) == "/" {
		return &fs.PathError{Op: op, Path: "/", Err: syscall.EACCES}
	}
	g.dirChanged(name)
	_, err := g.doNeeding(g.ctx, agentpb.FileFeature_FILE_FEATURE_REMOVE_KIND, "Remove", op, name, &agentpb.SessionRequest{Op: &agentpb.SessionRequest_Remove{
		Remove: &agentpb.RemoveRequest{Path: []byte(g.agentPath(name)), Kind: kind}}})
	if errors.Is(err, errLacksFeatures) {
		// An older agent would take the request for a plain Remove.
		return removeChecked(g, name, dir)
	}
	return err
}

// RemoveAll implements afero.Fs.
func (g *GRPCFs) RemoveAll(name string) error { return g.remove(name, true) }

// Rename implements afero.Fs. It replaces an existing target file.
func (g *GRPCFs) Rename(oldname, newname string) error {
	if userPath(oldname) == "/" || userPath(newname) == "/" {
		return &os.LinkError{Op: "rename", Old: userPath(oldname), New: userPath(newname), Err: syscall.EACCES}
	}
	g.dirChanged(oldname)
	g.dirChanged(newname)
	_, err := g.do(g.ctx, "Rename", "rename", oldname, &agentpb.SessionRequest{Op: &agentpb.SessionRequest_Rename{
		Rename: &agentpb.RenameRequest{From: []byte(g.agentPath(oldname)), To: []byte(g.agentPath(newname))}}})
	return linkError("rename", oldname, newname, err)
}

// Stat implements afero.Fs.
func (g *GRPCFs) Stat(name string) (os.FileInfo, error) { return g.stat(name, false) }

// StatSearch implements DirSearcher: the agent checks the directory it
// finds in the same request (an agent before that check answers the Stat
// alone, and CWD then enters as it used to).
func (g *GRPCFs) StatSearch(name string) (os.FileInfo, error) { return g.stat(name, true) }

// MayChangeIn implements ChangeChecker: the agent checks the directory
// itself (faccessat(2), and a sticky directory's owners), and answers
// EACCES for the root, whose directory is not the user's to change; an
// agent before that check cannot tell (errors.ErrUnsupported).
func (g *GRPCFs) MayChangeIn(name string) error {
	_, err := g.doNeeding(g.ctx, agentpb.FileFeature_FILE_FEATURE_MAY_CHANGE_IN, "MayChangeIn", "access", name, &agentpb.SessionRequest{Op: &agentpb.SessionRequest_MayChangeIn{
		MayChangeIn: &agentpb.PathRequest{Path: []byte(g.agentPath(name))}}})
	if errors.Is(err, errLacksFeatures) {
		return &fs.PathError{Op: "access", Path: userPath(name), Err: errors.ErrUnsupported}
	}
	return err
}

func (g *GRPCFs) stat(name string, search bool) (os.FileInfo, error) {
	resp, err := g.do(g.ctx, "Stat", "stat", name, &agentpb.SessionRequest{Op: &agentpb.SessionRequest_Stat{
		Stat: &agentpb.PathRequest{Path: []byte(g.agentPath(name)), Search: search}}})
	if err != nil {
		return nil, err
	}
	return newFileInfo(resp.GetInfo(), path.Base(userPath(name))), nil
}

// LstatIfPossible implements afero.Lstater.
func (g *GRPCFs) LstatIfPossible(name string) (os.FileInfo, bool, error) {
	resp, err := g.do(g.ctx, "Lstat", "lstat", name, &agentpb.SessionRequest{Op: &agentpb.SessionRequest_Lstat{
		Lstat: &agentpb.PathRequest{Path: []byte(g.agentPath(name))}}})
	if err != nil {
		return nil, true, err
	}
	return newFileInfo(resp.GetInfo(), path.Base(userPath(name))), true, nil
}

// Chmod implements afero.Fs. On a file being uploaded it changes the
// upload.
func (g *GRPCFs) Chmod(name string, mode os.FileMode) error {
	g.dirChanged(name)
	_, err := g.do(g.ctx, "Chmod", "chmod", name, &agentpb.SessionRequest{Op: &agentpb.SessionRequest_Chmod{
		Chmod: &agentpb.ChmodRequest{Path: []byte(g.agentPath(name)), Perm: wireMode(mode)}}})
	return err
}

// Chown implements afero.Fs.
func (g *GRPCFs) Chown(name string, uid, gid int) error {
	g.dirChanged(name)
	_, err := g.do(g.ctx, "Chown", "chown", name, &agentpb.SessionRequest{Op: &agentpb.SessionRequest_Chown{
		Chown: &agentpb.ChownRequest{Path: []byte(g.agentPath(name)), Uid: int32(uid), Gid: int32(gid)}}})
	return err
}

// Chtimes implements afero.Fs, by path: the file on disk (View gives a
// session's own upload its times). A zero time leaves that time as is;
// the Unix epoch is set as any other time (refused, saying so, by an
// agent too old to set it).
func (g *GRPCFs) Chtimes(name string, atime, mtime time.Time) error {
	if err := checkTimes("chtimes", userPath(name), atime, mtime); err != nil {
		return err
	}
	return g.chtimes("chtimes", name, atime, mtime, false)
}

// Lchtimes implements LinkTimesSetter.
func (g *GRPCFs) Lchtimes(name string, atime, mtime time.Time) error {
	if err := checkTimes("lchtimes", userPath(name), atime, mtime); err != nil {
		return err
	}
	return g.chtimes("lchtimes", name, atime, mtime, true)
}

// chtimes sends Chtimes and Lchtimes (nofollow). A time at the Unix epoch
// needs FILE_FEATURE_EPOCH_TIMES (doNeeding): an older agent would take
// it for "leave unchanged", and is refused (refuseEpoch) instead.
func (g *GRPCFs) chtimes(op, name string, atime, mtime time.Time, nofollow bool) error {
	var need agentpb.FileFeature
	if hasEpoch([]time.Time{atime, mtime}) {
		need = agentpb.FileFeature_FILE_FEATURE_EPOCH_TIMES
	}
	_, err := g.doNeeding(g.ctx, need, "Chtimes", op, name, &agentpb.SessionRequest{Op: &agentpb.SessionRequest_Chtimes{
		Chtimes: &agentpb.ChtimesRequest{Path: []byte(g.agentPath(name)), AtimeUnixNano: unixNano(atime), MtimeUnixNano: unixNano(mtime), Nofollow: nofollow}}})
	if errors.Is(err, errLacksFeatures) {
		return refuseEpoch(0, op, userPath(name), atime, mtime)
	}
	return err
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
	_, err := g.do(g.ctx, "Symlink", "symlink", newname, &agentpb.SessionRequest{Op: &agentpb.SessionRequest_Symlink{
		Symlink: &agentpb.SymlinkRequest{Target: []byte(target), Path: []byte(g.agentPath(newname))}}})
	if pe, ok := errors.AsType[*fs.PathError](err); ok {
		return &os.LinkError{Op: "symlink", Old: oldname, New: link, Err: pe.Err}
	}
	return err
}

// Link implements HardLinker.
func (g *GRPCFs) Link(oldname, newname string) error {
	_, err := g.do(g.ctx, "Link", "link", newname, &agentpb.SessionRequest{Op: &agentpb.SessionRequest_Link{
		Link: &agentpb.LinkRequest{Target: []byte(g.agentPath(oldname)), Path: []byte(g.agentPath(newname))}}})
	return linkError("link", oldname, newname, err)
}

// ReadlinkIfPossible implements afero.LinkReader.
func (g *GRPCFs) ReadlinkIfPossible(name string) (string, error) {
	resp, err := g.do(g.ctx, "Readlink", "readlink", name, &agentpb.SessionRequest{Op: &agentpb.SessionRequest_Readlink{
		Readlink: &agentpb.PathRequest{Path: []byte(g.agentPath(name))}}})
	if err != nil {
		return "", err
	}
	return string(resp.GetReadlink().GetTarget()), nil
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
	// No timeout but ctx's: hashing a large file takes its time.
	resp, err := g.doWithin(ctx, 0, "Hash", "hash", name, &agentpb.SessionRequest{Op: &agentpb.SessionRequest_Hash{
		Hash: &agentpb.HashRequest{Path: []byte(g.agentPath(name)), Algorithm: a, Offset: offset, Length: length}}})
	if err != nil {
		return nil, err
	}
	return resp.GetHash().GetSum(), nil
}

// StatFS implements StatFSer.
func (g *GRPCFs) StatFS(ctx context.Context, name string) (FSStats, error) {
	resp, err := g.do(ctx, "StatFS", "statfs", name, &agentpb.SessionRequest{Op: &agentpb.SessionRequest_Statfs{
		Statfs: &agentpb.PathRequest{Path: []byte(g.agentPath(name))}}})
	if err != nil {
		return FSStats{}, err
	}
	r := resp.GetStatfs()
	return FSStats{
		BlockSize: r.GetBlockSize(), FragmentSize: r.GetFragmentSize(),
		Blocks: r.GetBlocks(), BlocksFree: r.GetBlocksFree(), BlocksAvailable: r.GetBlocksAvailable(),
		Files: r.GetFiles(), FilesFree: r.GetFilesFree(), NameMax: r.GetNameMax(),
	}, nil
}

// linkError is err, a *fs.PathError from a two-path operation, as the
// *os.LinkError os.Rename and os.Link return.
func linkError(op, oldname, newname string, err error) error {
	if pe, ok := errors.AsType[*fs.PathError](err); ok {
		return &os.LinkError{Op: op, Old: userPath(oldname), New: userPath(newname), Err: pe.Err}
	}
	return err
}

// wireMode is the mode bits a chmod sends; the agent refuses setuid, and
// setgid on anything but a directory.
func wireMode(mode os.FileMode) uint32 {
	return uint32(mode & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky))
}

// openWirePerm is the mode an open sends for a file it may create, and a
// Mkdir for its directory: the permissions and the sticky bit, encoded as
// wireMode; setuid and setgid are never asked for. An agent older than
// the sticky bit's passing ignores it.
func openWirePerm(perm os.FileMode) uint32 {
	return wireMode(perm & (fs.ModePerm | fs.ModeSticky))
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
