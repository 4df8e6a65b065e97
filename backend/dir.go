package backend

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"sync"
	"syscall"

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
func (d *dirFile) IsDir() bool                { return true }
func (d *dirFile) Stat() (os.FileInfo, error) { return d.info, nil }
func (d *dirFile) Sync() error                { return nil }

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
	resp, err := d.c.call(context.Background(), d.g.timeout, &agentpb.SessionRequest{File: d.id, Op: &agentpb.SessionRequest_Readdir{Readdir: &agentpb.ReadDirOp{}}})
	if err == nil && resp.GetError() != nil {
		err = fromProto("readdir", d.name, resp.GetError())
	}
	if err != nil {
		d.done = true
		if errors.Is(err, errStreamEnded) {
			return d.c.errClosed("readdir", d.name)
		}
		return d.g.err("readdir", d.name, err)
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
