package backend

import (
	"os"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/upgate/upgate/backend/agentpb"
)

// Posted opens (Options.PostUploadOpens): an upload's open sent without
// waiting for its reply, its writes and close right behind it. The agent
// serves the open before it reads the next request and gives the file the
// open's request id (agentpb.FileFeature_FILE_FEATURE_POSTED_OPEN); if the
// open failed, it answers the file's later requests EBADF, and the file
// reports the open's own error in their place (file.replyErr).

// postedOpen is the reply to a posted open, filled in by its callback on
// the receive loop, which must not take file.mu: upload and err are set
// before done closes and read only after.
type postedOpen struct {
	done   chan struct{}
	upload string // the agent's upload id; "" for an in-place write
	err    error  // why the open failed; nil when it did not
}

// answered reports whether the open's reply came: upload and err are
// then set for good.
func (po *postedOpen) answered() bool {
	select {
	case <-po.done:
		return true
	default:
		return false
	}
}

// postedFlags are the flags of an open that may be posted: a new upload
// of the whole file.
const postedFlags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC

// nameMax is the longest name an open is posted for: NAME_MAX of the
// filesystems agents write to (ext4, xfs, btrfs, overlayfs), beyond which
// the open fails with ENAMETOOLONG.
const nameMax = 255

// postable reports whether an open of name with flag on c may be posted:
// Options.PostUploadOpens, an agent that serves posted opens, an upload of
// the whole file (not O_EXCL or O_APPEND, whose errors belong to the
// open), not a join, a name no longer than nameMax, and the filesystem's
// last successful upload open was in the same directory, with nothing
// removed, renamed or re-permissioned at that directory or above it
// through this filesystem since (see dirChanged). That keeps the error of
// a missing or forbidden directory, or a name too long, at the open; an
// error of the file's own (its name is a directory, a file its user may
// not write, the agent's open-file limit) comes from the writes and Close.
// A posted open that the agent serves in place (another user's file, a
// directory its user may not write) is not marked inPlace: its copy
// coalesces as an upload's does, which FTP's transfer, the only poster,
// does anyway.
func (g *GRPCFs) postable(c *muxConn, name string, flag int, join string) bool {
	if !g.opts.PostUploadOpens || join != "" || c.features&uint32(agentpb.FileFeature_FILE_FEATURE_POSTED_OPEN) == 0 {
		return false
	}
	if flag&(os.O_RDONLY|os.O_WRONLY|os.O_RDWR|os.O_CREATE|os.O_TRUNC|os.O_EXCL|os.O_APPEND) != postedFlags {
		return false
	}
	p := userPath(name)
	if base := path.Base(p); len(base) > nameMax || strings.ContainsFunc(p, isControl) {
		// ENAMETOOLONG, or a name the agent refuses (a control
		// character or DEL): from the open.
		return false
	}
	g.dirs.mu.Lock()
	defer g.dirs.mu.Unlock()
	return g.dirs.ok && g.dirs.dir == path.Dir(p)
}

// isControl reports a control character or DEL, which the agent refuses
// in names (agent's clean).
func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// uploadDir is where the filesystem's next upload may be posted: the
// directory of its last successful upload open (one that created the
// upload's temp file there, so the directory exists and takes new
// files), unless something changed it since. mu is a leaf lock, taken on
// the receive loop too.
type uploadDir struct {
	mu  sync.Mutex
	dir string
	ok  bool
	// gen counts dirChanged calls: an open's reply records its directory
	// only if none came since it was sent, so that a reply late behind a
	// rename or removal cannot bring the old directory back.
	gen uint64
}

// dirGen is the generation an open notes before it is sent (openedIn).
func (g *GRPCFs) dirGen() uint64 {
	g.dirs.mu.Lock()
	defer g.dirs.mu.Unlock()
	return g.dirs.gen
}

// openedIn records the successful upload open of name, sent at generation
// gen: the next upload into its directory may be posted.
func (g *GRPCFs) openedIn(name string, gen uint64) {
	g.dirs.mu.Lock()
	defer g.dirs.mu.Unlock()
	if g.dirs.gen == gen {
		g.dirs.dir, g.dirs.ok = path.Dir(userPath(name)), true
	}
}

// openFailedIn forgets the last upload's directory if name is in it.
func (g *GRPCFs) openFailedIn(name string) {
	g.dirs.mu.Lock()
	defer g.dirs.mu.Unlock()
	if g.dirs.dir == path.Dir(userPath(name)) {
		g.dirs.ok = false
	}
}

// dirChanged forgets the last upload's directory if name is that
// directory or one above it: removing, renaming or changing the
// permissions or owner of name can make the next open there fail, and
// that failure must come from the open.
func (g *GRPCFs) dirChanged(name string) {
	g.dirs.mu.Lock()
	defer g.dirs.mu.Unlock()
	g.dirs.gen++
	if p := userPath(name); p == "/" || g.dirs.dir == p || strings.HasPrefix(g.dirs.dir, p+"/") {
		g.dirs.ok = false
	}
}

// openPosted opens name for an upload without waiting for the agent's
// reply (postable said it may); gen is dirGen's before the open was
// decided on.
func (g *GRPCFs) openPosted(c *muxConn, name string, flag int, perm os.FileMode, gen uint64) (*file, error) {
	start := time.Now()
	po := &postedOpen{done: make(chan struct{})}
	f := g.newFile(c, name, flag)
	f.posted = po
	p := f.path()
	id, err := c.send(&agentpb.SessionRequest{Op: &agentpb.SessionRequest_Open{Open: &agentpb.OpenOp{
		Path: []byte(g.agentPath(name)), Flags: openFlags(flag), Perm: openWirePerm(perm), InPlace: g.opts.InPlace,
	}}}, func(resp *agentpb.SessionResponse, err error) {
		g.observe("Open", resp, err, start)
		switch {
		case err != nil:
			po.err = g.err("open", name, err)
		case resp.GetError() != nil:
			po.err = g.err("open", name, fromProto("open", p, resp.GetError()))
		default:
			if po.upload = resp.GetUploadId(); po.upload != "" {
				g.openedIn(name, gen)
			}
		}
		if po.err != nil {
			g.openFailedIn(name)
		}
		close(po.done)
	})
	if err != nil {
		return nil, g.err("open", name, err)
	}
	f.id = id
	return f, nil
}

// openErr is the failure of the file's posted open, once its reply came;
// nil for an open that was waited for, or did not fail.
func (f *file) openErr() error {
	if f.posted == nil || !f.posted.answered() {
		return nil
	}
	return f.posted.err
}

// awaitOpen waits for a posted open's reply, at most the call timeout, and
// returns its failure. Called without f.mu, before what needs the upload's
// id (Reopen, Unlink, Move).
func (f *file) awaitOpen(op string) error {
	if f.posted == nil {
		return nil
	}
	t := time.NewTimer(f.g.timeout)
	defer t.Stop()
	select {
	case <-f.posted.done:
		return f.posted.err
	case <-f.c.done:
		return f.streamErr(op, errStreamEnded)
	case <-t.C:
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.timedOut(op)
	}
}
