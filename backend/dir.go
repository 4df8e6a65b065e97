package backend

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/afero"

	"github.com/upgate/upgate/backend/agentpb"
)

// dirFile is an open directory: a listing on the agent (an id on the
// Session stream), read page by page as Readdir asks for them, so that a
// listing holds one batch of entries at a time, whatever the directory
// holds.
type dirFile struct {
	g    *GRPCFs
	c    *muxConn
	id   uint64
	name string
	info *fileInfo

	mu      sync.Mutex    // guards the fields below
	pending []os.FileInfo // received, not yet returned
	done    bool          // the listing has ended
	closed  bool
}

var _ afero.File = (*dirFile)(nil)

func (d *dirFile) Name() string { return d.name }

// IsDir reports that this handle is a directory (no Stat call needed).
func (d *dirFile) IsDir() bool { return true }

// Stat answers what the open found, asking nothing: a listing needs no
// more (WebDAV's PROPFIND stats every handle it opens). FreshStat asks.
func (d *dirFile) Stat() (os.FileInfo, error) { return d.info, nil }
func (d *dirFile) Sync() error                { return nil }

var (
	_ FreshStater = (*dirFile)(nil)
	_ ModeSetter  = (*dirFile)(nil)
	_ TimesSetter = (*dirFile)(nil)
)

// FreshStat implements FreshStater: the directory the listing opened, as
// fstat(2) of its descriptor describes it now, whatever its path names
// since. An agent without FILE_FEATURE_LISTING_ATTRS cannot:
// errors.ErrUnsupported.
func (d *dirFile) FreshStat() (os.FileInfo, error) {
	resp, err := d.attr("stat", &agentpb.SessionRequest{Op: &agentpb.SessionRequest_Fstat{Fstat: &agentpb.StatOp{}}})
	if err != nil {
		return nil, err
	}
	return newFileInfo(resp.GetInfo(), path.Base(d.name)), nil
}

// Chmod implements ModeSetter, as fchmod(2) of the listing's descriptor:
// the directory it opened, whatever its path names since (the setgid bit
// included: on a directory it only hands its group on). An agent without
// FILE_FEATURE_LISTING_ATTRS cannot: errors.ErrUnsupported.
func (d *dirFile) Chmod(mode os.FileMode) error {
	_, err := d.attr("chmod", &agentpb.SessionRequest{Op: &agentpb.SessionRequest_Fchmod{Fchmod: &agentpb.ChmodOp{Perm: wireMode(mode)}}})
	return err
}

// SetTimes implements TimesSetter, as futimens(2) of the listing's
// descriptor; a zero time leaves that time as it is. An agent without
// FILE_FEATURE_LISTING_ATTRS cannot: errors.ErrUnsupported.
func (d *dirFile) SetTimes(atime, mtime time.Time) error {
	if err := checkTimes("chtimes", d.name, atime, mtime); err != nil {
		return err
	}
	_, err := d.attr("chtimes", &agentpb.SessionRequest{Op: &agentpb.SessionRequest_SetTimes{SetTimes: &agentpb.SetTimesOp{
		AtimeUnixNano: unixNano(atime), MtimeUnixNano: unixNano(mtime)}}})
	return err
}

// attr sends a request on the listing's descriptor (call), once the
// agent can serve it.
func (d *dirFile) attr(op string, req *agentpb.SessionRequest) (*agentpb.SessionResponse, error) {
	d.mu.Lock()
	closed := d.closed
	d.mu.Unlock()
	if closed {
		return nil, &fs.PathError{Op: op, Path: d.name, Err: os.ErrClosed}
	}
	if d.c.features&uint32(agentpb.FileFeature_FILE_FEATURE_LISTING_ATTRS) == 0 {
		return nil, &fs.PathError{Op: op, Path: d.name, Err: errors.ErrUnsupported}
	}
	return d.call(op, req)
}

// call sends req on the listing and waits for its reply, within the call
// timeout; an error reply, a stalled agent or an ended stream is op's
// error.
func (d *dirFile) call(op string, req *agentpb.SessionRequest) (*agentpb.SessionResponse, error) {
	req.File = d.id
	resp, err := d.c.call(context.Background(), d.g.timeout, req)
	if err == nil && resp.GetError() != nil {
		err = fromProto(op, d.name, resp.GetError())
	}
	if err != nil {
		if errors.Is(err, errStreamEnded) {
			return nil, d.c.errClosed(op, d.name)
		}
		return nil, d.g.err(op, d.name, err)
	}
	return resp, nil
}

// Close closes the listing on the agent without waiting.
func (d *dirFile) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return &fs.PathError{Op: "close", Path: d.name, Err: os.ErrClosed}
	}
	d.closed = true
	d.c.post(&agentpb.SessionRequest{File: d.id, Op: &agentpb.SessionRequest_Close{Close: &agentpb.CloseOp{}}})
	return nil
}

// next receives the next batch of entries into d.pending, each batch
// within the call timeout: a stalled agent ends the listing rather than
// hanging it. d.mu is held.
func (d *dirFile) next() error {
	resp, err := d.call("readdir", &agentpb.SessionRequest{Op: &agentpb.SessionRequest_Readdir{Readdir: &agentpb.ReadDirOp{}}})
	if err != nil {
		d.done = true
		return err
	}
	for _, e := range resp.GetEntries().GetEntries() {
		d.pending = append(d.pending, newFileInfo(e, ""))
	}
	d.done = resp.GetEof()
	return nil
}

// Readdir implements afero.File with os.File's semantics: count <= 0
// returns all remaining entries; count > 0 at most count, and io.EOF at the
// end.
func (d *dirFile) Readdir(count int) ([]os.FileInfo, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, &fs.PathError{Op: "readdir", Path: d.name, Err: os.ErrClosed}
	}
	for !d.done && (count <= 0 || len(d.pending) < count) {
		if err := d.next(); err != nil {
			return nil, err
		}
	}
	n := len(d.pending)
	if count > 0 {
		if n == 0 {
			return nil, io.EOF
		}
		n = min(n, count)
	}
	out := d.pending[:n:n]
	d.pending = d.pending[n:]
	return out, nil
}

func (d *dirFile) Readdirnames(n int) ([]string, error) {
	fis, err := d.Readdir(n)
	names := make([]string, len(fis))
	for i, fi := range fis {
		names[i] = fi.Name()
	}
	return names, err
}

func (d *dirFile) isDir(op string) error {
	return &fs.PathError{Op: op, Path: d.name, Err: syscall.EISDIR}
}

func (d *dirFile) Read([]byte) (int, error)           { return 0, d.isDir("read") }
func (d *dirFile) ReadAt([]byte, int64) (int, error)  { return 0, d.isDir("read") }
func (d *dirFile) Seek(int64, int) (int64, error)     { return 0, d.isDir("seek") }
func (d *dirFile) Write([]byte) (int, error)          { return 0, d.isDir("write") }
func (d *dirFile) WriteAt([]byte, int64) (int, error) { return 0, d.isDir("write") }
func (d *dirFile) WriteString(string) (int, error)    { return 0, d.isDir("write") }
func (d *dirFile) Truncate(int64) error               { return d.isDir("truncate") }
