package backend

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/afero"
)

// viewFile is a file this session has open for writing.
type viewFile struct {
	FileWrapper
	v    *View
	path string // guarded by v.mu
	// dropped: the handles that wrote p with f when a remove (or a
	// rename over p) discarded their upload or took away the file they
	// wrote in place, f among them (peersLocked). Guarded by v.mu.
	dropped []*viewFile
	once    sync.Once
	closed  chan struct{} // closed once Close has returned
	seen    atomic.Uint64 // the write tick its reads last caught up with
	// superseded: a newer truncating open of the path discarded this
	// upload (View.supersede) and f could not follow the newer one;
	// writes fail.
	superseded atomic.Bool
	// flag is the open's flags, for follow.
	flag int
	// joined, once set by follow, is the file f's calls go to: a handle
	// joined to the data of the upload that superseded f's own, or the
	// file a truncating open in place left at f's path. fmu
	// orders its changes (follow, Close: write-locked) after the calls
	// using it (read-locked), so that none is closed under a call;
	// closing, under fmu, stops follow once Close has begun.
	joined  atomic.Pointer[joinedFile]
	fmu     sync.RWMutex
	closing bool
}

// joinedFile holds the handle a superseded viewFile follows.
type joinedFile struct{ f afero.File }

// cur is the file f's calls go to: its own, or the one it follows.
func (f *viewFile) cur() afero.File {
	if j := f.joined.Load(); j != nil {
		return j.f
	}
	return f.File
}

// follow makes f go on through a handle that open opens with f's flags,
// less those that create or truncate: one joined to the data of the
// upload that superseded f's (Upload.Reopen), or the file a truncating
// open in place left at f's path. It goes on at f's offset (a sequential
// writer goes on where it was, as a descriptor does). What f held back
// stays in its discarded upload, as a write before the truncating open is
// gone on sftp-server. A handle f already followed is closed, once no
// call uses it; a handle closing or closed follows nothing (os.ErrClosed).
func (f *viewFile) follow(open func(flag int) (afero.File, error)) error {
	nf, err := open(f.flag &^ (os.O_CREATE | os.O_EXCL | os.O_TRUNC))
	if err != nil {
		return err
	}
	f.fmu.Lock()
	defer f.fmu.Unlock()
	if f.closing {
		_ = nf.Close()
		return os.ErrClosed
	}
	if f.flag&os.O_APPEND == 0 {
		if off, err := f.cur().Seek(0, io.SeekCurrent); err == nil && off > 0 {
			_, _ = nf.Seek(off, io.SeekStart)
		}
	}
	if old := f.joined.Swap(&joinedFile{nf}); old != nil {
		_ = old.f.Close()
	}
	return nil
}

// mayOpen answers whether the file of f, an upload in progress whose mode
// is mode, may be opened again with flag's access, as open(2) of the
// file that sftp-server's open made would answer: a truncating open of a
// new file the session made mode 0555 is refused (EACCES), not a new
// upload. The upload's file is the agent user's own, so its owner bits
// grant the access unless they lack it; only then is the filesystem
// asked, by opening the upload's data with that access (Upload.Reopen),
// so that the agent's credentials answer (root may). An upload whose close
// began meanwhile is no longer the session's to ask: once it committed,
// the open meets the committed file, whose permissions the filesystem
// checks (nil).
func (f *viewFile) mayOpen(mode fs.FileMode, flag int) error {
	access := flag & (os.O_WRONLY | os.O_RDWR)
	need := fs.FileMode(0o400)
	switch access {
	case os.O_WRONLY:
		need = 0o200
	case os.O_RDWR:
		need = 0o600
	}
	if mode&need == need {
		return nil
	}
	probe, err := f.Reopen(access)
	if err != nil {
		if f.waitClosed() {
			return nil
		}
		return err
	}
	return probe.Close()
}

// waitClosed reports whether f's Close has begun, and waits for it to end.
func (f *viewFile) waitClosed() bool {
	f.fmu.RLock()
	closing := f.closing
	f.fmu.RUnlock()
	if closing {
		<-f.closed
	}
	return closing
}

// follower reports whether f follows a newer upload (follow).
func (f *viewFile) follower() bool { return f.joined.Load() != nil }

// beginWrite is nil, or the error a write on f answers once it is
// superseded; before a write it pushes what the session's other handles
// at f's path hold back, so that the write lands after what they wrote
// before it. An append through one handle after a write answered on
// another went to the end of the file as it was without that write, and
// the write then landed over it (TestSFTPRandom, seed 192). With f the
// only writer at its path, as almost always, the push costs a look at the
// map.
func (f *viewFile) beginWrite(op string) error {
	if f.superseded.Load() {
		return &fs.PathError{Op: op, Path: f.pathNow(), Err: errSuperseded}
	}
	f.v.pushOthers(f)
	return nil
}

// pushOthers pushes what the session's other writers with f hold back
// (peersLocked).
func (v *View) pushOthers(f *viewFile) {
	v.mu.Lock()
	ws := v.peersLocked(f.path, f)
	if len(ws) < 2 {
		v.mu.Unlock()
		return
	}
	ws = slices.Clone(ws)
	v.mu.Unlock()
	pushExcept(ws, f)
}

// info is the open upload's state under its current name; if it is
// committing, the committed file's, once the commit is done.
func (f *viewFile) info() (os.FileInfo, error) {
	f.v.mu.Lock()
	p := f.path
	f.v.mu.Unlock()
	fi, err := f.cur().Stat()
	if f.waitIfClosing(err) {
		return Lstat(f.v.Fs, p)
	}
	if err != nil {
		return nil, err
	}
	return renamedInfo{fi, path.Base(p)}, nil
}

// infoNow is info after the held-back writes of the session's other
// handles into the upload (an append through a Reopen handle): a stat
// of the path counts them, as sftp-server's fstat of the shared file
// does (TestSFTPRandom seed 941: the size left an append out).
func (f *viewFile) infoNow() (os.FileInfo, error) {
	f.v.pushOthers(f)
	return f.info()
}

// ReadFrom passes an io.Copy into the file on (see backend.ReadFrom).
func (f *viewFile) ReadFrom(r io.Reader) (int64, error) {
	if err := f.beginWrite("write"); err != nil {
		return 0, err
	}
	defer f.wrote()
	f.fmu.RLock()
	defer f.fmu.RUnlock()
	return ReadFrom(f.cur(), r)
}

// changedAt records a change at p that no writing handle of the session
// made, for the session's readers there; with none open there, nothing
// is kept (a handle opened later has read nothing ahead).
func (v *View) changedAt(p string) {
	v.mu.Lock()
	if len(v.open[p]) > 0 || v.readers[p] > 0 {
		v.changedLocked(p)
	}
	v.mu.Unlock()
}

// changedAnywhere records a change by path for every path the session
// has open: the path changed may be another name of one of them (a
// symbolic link to it), and a session holds few.
func (v *View) changedAnywhere() {
	v.mu.Lock()
	for p := range v.open {
		v.changedLocked(p)
	}
	for p := range v.readers {
		v.changedLocked(p)
	}
	v.mu.Unlock()
}

// changedLocked is changedAt with v.mu held.
func (v *View) changedLocked(p string) {
	v.tick++
	v.wrote[p] = v.tick
}

// wrote records a write at f's path, for the session's readers there.
func (f *viewFile) wrote() {
	f.v.mu.Lock()
	f.v.changedLocked(f.path)
	f.v.mu.Unlock()
}

// Write implements afero.File.
func (f *viewFile) Write(p []byte) (int, error) {
	if err := f.beginWrite("write"); err != nil {
		return 0, err
	}
	defer f.wrote()
	f.fmu.RLock()
	defer f.fmu.RUnlock()
	return f.cur().Write(p)
}

// WriteAt implements afero.File.
func (f *viewFile) WriteAt(p []byte, off int64) (int, error) {
	if err := f.beginWrite("write"); err != nil {
		return 0, err
	}
	defer f.wrote()
	f.fmu.RLock()
	defer f.fmu.RUnlock()
	return f.cur().WriteAt(p, off)
}

// WriteString implements afero.File.
func (f *viewFile) WriteString(s string) (int, error) {
	if err := f.beginWrite("write"); err != nil {
		return 0, err
	}
	defer f.wrote()
	f.fmu.RLock()
	defer f.fmu.RUnlock()
	return f.cur().WriteString(s)
}

// Truncate implements afero.File.
func (f *viewFile) Truncate(size int64) error {
	if err := f.beginWrite("truncate"); err != nil {
		return err
	}
	defer f.wrote()
	f.fmu.RLock()
	defer f.fmu.RUnlock()
	return f.cur().Truncate(size)
}

// SetTimes implements TimesSetter, refused as a write once f is
// superseded: the times would go to the discarded upload (FSETSTAT
// answered OK, TestSFTPRandom seed 995). What the session's other
// handles at f's path hold back is pushed first: a write answered before
// the times must not move the mtime after them.
func (f *viewFile) SetTimes(atime, mtime time.Time) error {
	if err := f.beginWrite("chtimes"); err != nil {
		return err
	}
	defer f.v.changedAnywhere() // the session's readers read again (file.SetTimes), at any name of the file
	f.fmu.RLock()
	defer f.fmu.RUnlock()
	return FileWrapper{f.cur()}.SetTimes(atime, mtime)
}

// Chmod implements ModeSetter, refused once f is superseded, as SetTimes.
func (f *viewFile) Chmod(mode os.FileMode) error {
	if f.superseded.Load() {
		return &fs.PathError{Op: "chmod", Path: f.pathNow(), Err: errSuperseded}
	}
	f.fmu.RLock()
	defer f.fmu.RUnlock()
	return FileWrapper{f.cur()}.Chmod(mode)
}

// Flush implements Flusher, for the file f's calls go to.
func (f *viewFile) Flush() error {
	f.fmu.RLock()
	defer f.fmu.RUnlock()
	return FileWrapper{f.cur()}.Flush()
}

// Sync implements afero.File, for the file f's calls go to.
func (f *viewFile) Sync() error {
	f.fmu.RLock()
	defer f.fmu.RUnlock()
	return f.cur().Sync()
}

// DropReadAhead implements ReadAheadDropper, for the file f's calls go
// to. (catchUp calls it before a read takes fmu: a read holding fmu while
// it pushes the other handles, which take theirs, could wait in a ring
// with follows waiting for those.)
func (f *viewFile) DropReadAhead() {
	f.fmu.RLock()
	defer f.fmu.RUnlock()
	FileWrapper{f.cur()}.DropReadAhead()
}

// Seek implements afero.File, for the file f's calls go to.
func (f *viewFile) Seek(offset int64, whence int) (int64, error) {
	f.fmu.RLock()
	defer f.fmu.RUnlock()
	return f.cur().Seek(offset, whence)
}

// TransferError implements TransferAborter, for the file f's calls go
// to: a follower's held-back writes are dropped (its upload, the newer
// one, commits at its own close).
func (f *viewFile) TransferError(err error) {
	f.fmu.RLock()
	defer f.fmu.RUnlock()
	FileWrapper{f.cur()}.TransferError(err)
}

// path is f's path now, for catchUp.
func (f *viewFile) pathNow() string {
	f.v.mu.Lock()
	defer f.v.mu.Unlock()
	return f.path
}

// Read implements afero.File, after the session's other writers at f's
// path (catchUp).
func (f *viewFile) Read(p []byte) (int, error) {
	f.v.catchUp(&f.path, nil, f, f, &f.seen)
	f.fmu.RLock()
	defer f.fmu.RUnlock()
	return f.cur().Read(p)
}

// ReadAt implements afero.File, as Read.
func (f *viewFile) ReadAt(p []byte, off int64) (int, error) {
	f.v.catchUp(&f.path, nil, f, f, &f.seen)
	f.fmu.RLock()
	defer f.fmu.RUnlock()
	return f.cur().ReadAt(p, off)
}

// Stat implements afero.File, as Read.
func (f *viewFile) Stat() (os.FileInfo, error) {
	f.v.catchUp(&f.path, nil, f, f, &f.seen)
	f.fmu.RLock()
	defer f.fmu.RUnlock()
	return f.cur().Stat()
}

// FreshStat implements FreshStater: a file's Stat is fresh already.
func (f *viewFile) FreshStat() (os.FileInfo, error) { return f.Stat() }

// Close closes (commits) the file, then forgets it. Until the commit is
// done the file stays this session's at its path: operations that reach
// it closing (ErrClosed) wait for the commit, then act on the path
// (withUpload), so that no read, stat or remove slips in between and sees
// the old file (FUSE sends sshfs's CLOSE asynchronously, after git has
// already read the file back).
func (f *viewFile) Close() error {
	first := false
	f.once.Do(func() { first = true })
	f.fmu.Lock()
	f.closing = true
	j := f.joined.Load()
	f.fmu.Unlock()
	var jerr error
	if j != nil {
		// What f wrote since it followed is the joined handle's; its
		// own upload was discarded, and its close commits nothing.
		jerr = j.f.Close()
	}
	upload := j == nil && f.v.followReaders && f.Pending()
	err := f.File.Close()
	if j != nil {
		err = jerr
	}
	if upload && err != nil {
		// The save's commit failed: the readers that followed it read
		// what the path holds instead, as the session's opens do.
		p := f.pathNow()
		f.v.readersFollow(p, func(flag int) (afero.File, error) { return f.v.Fs.OpenFile(p, flag, 0) }, nil)
	}
	if first {
		f.v.untrack(f)
		close(f.closed)
	}
	return err
}

// isClosed reports whether f's Close has finished.
func (f *viewFile) isClosed() bool {
	select {
	case <-f.closed:
		return true
	default:
		return false
	}
}

// waitIfClosing waits for a closing file's commit when err says the file
// was closed under the caller, and reports whether it did.
func (f *viewFile) waitIfClosing(err error) bool {
	if !errors.Is(err, os.ErrClosed) {
		return false
	}
	<-f.closed
	return true
}
