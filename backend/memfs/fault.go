package memfs

import (
	"io/fs"
	"os"
	"path"
	"sync"
)

// Op names an operation a Fault can make fail. Path operations are named
// after the afero.Fs method (and optional capability) they stand for,
// file operations after the file method; the name is also the Op of the
// *fs.PathError the failing call returns.
type Op string

// Path operations.
const (
	OpOpen     Op = "open"     // Open, Create, OpenFile
	OpMkdir    Op = "mkdir"    // Mkdir, MkdirAll
	OpRemove   Op = "remove"   // Remove, RemoveAll
	OpRename   Op = "rename"   // Rename (matched on either path)
	OpStat     Op = "stat"     // Stat
	OpLstat    Op = "lstat"    // LstatIfPossible
	OpChmod    Op = "chmod"    // Chmod
	OpChown    Op = "chown"    // Chown
	OpChtimes  Op = "chtimes"  // Chtimes
	OpLchtimes Op = "lchtimes" // Lchtimes (backend.LinkTimesSetter)
	OpSymlink  Op = "symlink"  // SymlinkIfPossible (matched on the link's path)
	OpReadlink Op = "readlink" // ReadlinkIfPossible
	OpLink     Op = "link"     // Link (backend.HardLinker; matched on either path)
	OpHash     Op = "hash"     // Hash (backend.Hasher)
	OpStatFS   Op = "statfs"   // StatFS (backend.StatFSer)
)

// File operations, matched on the file's current path.
const (
	OpRead     Op = "read"     // Read, ReadAt
	OpWrite    Op = "write"    // Write, WriteAt, WriteString
	OpClose    Op = "close"    // Close: an upload's failing Close commits nothing
	OpReaddir  Op = "readdir"  // Readdir, Readdirnames
	OpTruncate Op = "truncate" // Truncate
	OpSync     Op = "sync"     // Sync
	OpFstat    Op = "fstat"    // Stat of an open file
	OpFchmod   Op = "fchmod"   // Chmod of an open file (backend.ModeSetter)
	OpFutimes  Op = "futimes"  // SetTimes (backend.TimesSetter)
)

// Fault makes calls of the filesystem fail: the Nth call of operation Op
// on a path matching Path fails with Err (or whatever Func decides), as if
// the disk below had answered so.
type Fault struct {
	// Op is the operation that fails. Empty means every operation.
	Op Op
	// Path is a path.Match pattern ("/site/*.php") that the call's clean,
	// absolute path must match. An operation on two paths (Rename, Link)
	// matches on either. Empty matches every path.
	Path string
	// Nth, if positive, makes only the Nth matching call fail, counting
	// from 1 since Inject; zero makes every matching call fail.
	Nth int
	// Err is the error the call fails with, wrapped in the *fs.PathError
	// (or, for Rename and Link, the *os.LinkError) that names the
	// operation and path, so that errors.Is(err, syscall.ENOSPC) holds for
	// an injected syscall.ENOSPC.
	Err error
	// Func, if non-nil, decides instead of Err: it is called for each call
	// that would fail and returns the error to fail with, or nil to let
	// the call go on. It runs without the filesystem's lock, so it may use
	// the filesystem (another session's change in the middle of a call)
	// and block (to hold a call while a test acts).
	Func func(op Op, path string) error
}

// Injection is a Fault in force; Remove ends it.
type Injection struct {
	m     *FS
	fault Fault

	// mu guards matched and hits.
	mu      sync.Mutex
	matched int // calls that matched Op and Path
	hits    int // calls that failed
}

// Inject puts f in force until the returned Injection is removed. Faults
// are checked in the order they were injected; the first that fails a
// call decides its error. A Path that is not a valid pattern never
// matches.
func (m *FS) Inject(f Fault) *Injection {
	in := &Injection{m: m, fault: f}
	m.faultMu.Lock()
	defer m.faultMu.Unlock()
	m.faults = append(m.faults, in)
	return in
}

// Remove takes the fault out of force; calls already failed stay failed.
func (in *Injection) Remove() {
	in.m.faultMu.Lock()
	defer in.m.faultMu.Unlock()
	for i, f := range in.m.faults {
		if f == in {
			in.m.faults = append(in.m.faults[:i:i], in.m.faults[i+1:]...)
			return
		}
	}
}

// Hits is how many calls the fault made fail.
func (in *Injection) Hits() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.hits
}

// check returns the error the fault gives a call of op on paths, or nil.
func (in *Injection) check(op Op, paths ...string) error {
	f := in.fault
	if f.Op != "" && f.Op != op {
		return nil
	}
	p, ok := paths[0], f.Path == ""
	for _, q := range paths {
		if !ok {
			if match, _ := path.Match(f.Path, q); match {
				ok, p = true, q
			}
		}
	}
	if !ok {
		return nil
	}
	in.mu.Lock()
	in.matched++
	fire := f.Nth <= 0 || in.matched == f.Nth
	in.mu.Unlock()
	if !fire {
		return nil
	}
	err := f.Err
	if f.Func != nil {
		err = f.Func(op, p)
	}
	if err == nil {
		return nil
	}
	in.mu.Lock()
	in.hits++
	in.mu.Unlock()
	return err
}

// fault returns the injected error for a call of op on paths (the first is
// the one an error names), wrapped as the operation's errors are, or nil.
// FS.mu must not be held: a Func may use the filesystem.
func (m *FS) fault(op Op, paths ...string) error {
	m.faultMu.Lock()
	faults := append([]*Injection(nil), m.faults...)
	m.faultMu.Unlock()
	for _, in := range faults {
		if err := in.check(op, paths...); err != nil {
			if len(paths) == 2 {
				return &os.LinkError{Op: string(op), Old: paths[0], New: paths[1], Err: err}
			}
			return &fs.PathError{Op: string(op), Path: paths[0], Err: err}
		}
	}
	return nil
}
