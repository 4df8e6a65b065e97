package backend

import (
	"errors"
	"io/fs"
	"os"
	"time"

	"github.com/spf13/afero"
)

// FileWrapper is embedded by a file type that wraps another (a session's
// accounting, a mount's renaming, a frontend's bookkeeping): it passes
// the optional file capabilities (TransferAborter, TimesSetter,
// ModeSetter, IsDir) through to the wrapped file, so that every layer of
// wrapping keeps them. A capability the wrapped file lacks answers
// errors.ErrUnsupported.
type FileWrapper struct {
	afero.File
}

var (
	_ TransferAborter  = FileWrapper{}
	_ TimesSetter      = FileWrapper{}
	_ ModeSetter       = FileWrapper{}
	_ Upload           = FileWrapper{}
	_ Flusher          = FileWrapper{}
	_ ReadAheadDropper = FileWrapper{}
	_ FreshStater      = FileWrapper{}
	_ HeldReopener     = FileWrapper{}
)

// Flush pushes the wrapped file's held-back writes; a file that holds none
// back has nothing to do.
func (w FileWrapper) Flush() error {
	if f, ok := w.File.(Flusher); ok {
		return f.Flush()
	}
	return nil
}

// DropReadAhead passes the call on (ReadAheadDropper); a file that reads
// nothing ahead has nothing to forget.
func (w FileWrapper) DropReadAhead() {
	if d, ok := w.File.(ReadAheadDropper); ok {
		d.DropReadAhead()
	}
}

// TransferError passes the failure on, so Close aborts an upload.
func (w FileWrapper) TransferError(err error) {
	if t, ok := w.File.(TransferAborter); ok {
		t.TransferError(err)
	}
}

// SetTimes sets the open file's times (TimesSetter).
func (w FileWrapper) SetTimes(atime, mtime time.Time) error {
	if t, ok := w.File.(TimesSetter); ok {
		return t.SetTimes(atime, mtime)
	}
	return &fs.PathError{Op: "chtimes", Path: w.File.Name(), Err: errors.ErrUnsupported}
}

// Chmod changes the open file's mode.
func (w FileWrapper) Chmod(mode os.FileMode) error {
	if m, ok := w.File.(ModeSetter); ok {
		return m.Chmod(mode)
	}
	return &fs.PathError{Op: "chmod", Path: w.File.Name(), Err: errors.ErrUnsupported}
}

// ReopenHeld opens the wrapped upload's data again for a handle that held
// the file open already (HeldReopener). A wrapper whose files carry a
// name of their own implements it itself, as Reopen.
func (w FileWrapper) ReopenHeld(flag int) (afero.File, error) {
	if u, ok := w.File.(Upload); ok {
		return ReopenHeld(u, flag)
	}
	return nil, &fs.PathError{Op: "open", Path: w.File.Name(), Err: errors.ErrUnsupported}
}

// FreshStat describes the wrapped file as it is now (Fstat). A wrapper
// that answers Stat itself answers FreshStat too.
func (w FileWrapper) FreshStat() (os.FileInfo, error) { return Fstat(w.File) }

// IsDir reports whether the wrapped handle is a directory, without a Stat
// call when the wrapped file can say.
func (w FileWrapper) IsDir() bool { return IsDir(w.File) }

// Pending reports whether the wrapped file is an upload in progress.
func (w FileWrapper) Pending() bool {
	u, ok := w.File.(Upload)
	return ok && u.Pending()
}

// Unlink discards the wrapped upload.
func (w FileWrapper) Unlink() error {
	if u, ok := w.File.(Upload); ok {
		return u.Unlink()
	}
	return &fs.PathError{Op: "unlink", Path: w.File.Name(), Err: errors.ErrUnsupported}
}

// Move makes the wrapped upload commit as newname.
func (w FileWrapper) Move(newname string) error {
	if u, ok := w.File.(Upload); ok {
		return u.Move(newname)
	}
	return &os.LinkError{Op: "rename", Old: w.File.Name(), New: newname, Err: errors.ErrUnsupported}
}

// Reopen opens the wrapped upload's data again. A wrapper whose files
// carry more than the wrapped file (a name, accounting) overrides it.
func (w FileWrapper) Reopen(flag int) (afero.File, error) {
	if u, ok := w.File.(Upload); ok {
		return u.Reopen(flag)
	}
	return nil, &fs.PathError{Op: "open", Path: w.File.Name(), Err: errors.ErrUnsupported}
}
