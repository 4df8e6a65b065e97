package backend

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/afero"

	"github.com/upgate/upgate/backend/agentpb"
)

// dirFile is an open directory: it lists through the streamed ReadDir
// call, page by page as Readdir asks for them, so that a listing holds one
// batch of entries at a time, whatever the directory holds.
type dirFile struct {
	g    *GRPCFs
	name string
	info *fileInfo

	mu      sync.Mutex // guards the fields below
	stream  agentpb.Agent_ReadDirClient
	cancel  context.CancelFunc // ends the stream
	pending []os.FileInfo      // received, not yet returned
	done    bool               // the stream has ended
	closed  bool
}

var _ afero.File = (*dirFile)(nil)

func (d *dirFile) Name() string { return d.name }

// IsDir reports that this handle is a directory (no Stat call needed).
func (d *dirFile) IsDir() bool                { return true }
func (d *dirFile) Stat() (os.FileInfo, error) { return d.info, nil }
func (d *dirFile) Sync() error                { return nil }

func (d *dirFile) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return &fs.PathError{Op: "close", Path: d.name, Err: os.ErrClosed}
	}
	d.closed = true
	if d.cancel != nil {
		d.cancel()
	}
	return nil
}

// next receives the next batch of entries into d.pending. d.mu is held.
func (d *dirFile) next() error {
	if d.stream == nil {
		ctx, cancel := context.WithCancel(d.g.ctx)
		stream, err := d.g.client.ReadDir(ctx, &agentpb.PathRequest{Path: []byte(d.g.agentPath(d.name))})
		if err != nil {
			cancel()
			return d.g.err("readdir", d.name, err)
		}
		d.stream, d.cancel = stream, cancel
	}
	// Each batch within the call timeout: a stalled agent ends the
	// listing rather than hanging it.
	timer := time.AfterFunc(d.g.timeout, d.cancel)
	resp, err := d.stream.Recv()
	timer.Stop()
	if errors.Is(err, io.EOF) {
		d.done = true
		d.cancel()
		return nil
	}
	if err != nil {
		d.done = true
		d.cancel()
		return d.g.err("readdir", d.name, err)
	}
	for _, e := range resp.GetEntries() {
		d.pending = append(d.pending, newFileInfo(e, ""))
	}
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
