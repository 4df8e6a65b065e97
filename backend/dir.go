package backend

import (
	"io"
	"io/fs"
	"os"
	"sync"
	"syscall"

	"github.com/spf13/afero"
)

// dirFile is an open directory: it lists through the streamed ReadDir call
// on the first Readdir.
type dirFile struct {
	g    *GRPCFs
	name string
	info *fileInfo

	mu      sync.Mutex // guards the fields below
	entries []os.FileInfo
	listed  bool
	pos     int
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
	if !d.listed {
		entries, err := d.g.readDir(d.name)
		if err != nil {
			return nil, err
		}
		d.entries, d.listed = entries, true
	}
	rest := d.entries[d.pos:]
	if count <= 0 {
		d.pos = len(d.entries)
		return rest, nil
	}
	if len(rest) == 0 {
		return nil, io.EOF
	}
	n := min(count, len(rest))
	d.pos += n
	return rest[:n], nil
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
