package backend

import (
	"errors"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/afero"
)

// This file holds a View's files open for reading only, and how they
// follow the session's later saves of their path (ReadersFollowSaves).

// ViewOption configures a View (NewView).
type ViewOption func(*View)

// ReadersFollowSaves makes a handle the session opened only for reading
// follow the session's later truncating opens of its path (a save, a
// supersede): it goes on reading the newer upload's data, at its offset,
// as a descriptor of sftp-server reads the file that a later open with
// O_TRUNC emptied and the save wrote again (`tail -f` of a log a program
// on the same sshfs mount rewrites with `>`; TestSSHFSRandom seed 1955).
// Without it a reader keeps the file it opened, as it would after a
// rename: right where a reader must see one version, as a WebDAV GET
// served beside a PUT of its path on one HTTP/2 connection. A reader
// whose file the session renames (or a directory above it) follows the
// saves of the new name, as a descriptor stays with its file (TestSSHFSRandom
// seed 3623); one stops following once its path names another file for
// the session (a remove of it, a rename onto it), and none follows what
// another session or the container does.
func ReadersFollowSaves() ViewOption { return func(v *View) { v.followReaders = true } }

// viewReader is a file this session has open for reading only.
type viewReader struct {
	FileWrapper
	v    *View
	path string // v.mu guards it: a rename by the session moves a follower (rekeyReaders)
	// into is the session's upload whose data r reads, or nil: the one
	// it was opened into (Upload.Reopen), or the newer save it follows
	// (saveOf, then View.intoSave). Reads catch up with that upload's
	// writers wherever they are (View.catchUp).
	into atomic.Pointer[viewFile]
	// saveOf is the file of the session's save whose data r follows
	// (follow's src), until the View sets into to its handle. fmu
	// guards it.
	saveOf afero.File
	seen   atomic.Uint64 // the write tick its reads last caught up with
	// gone: the session's writers at r's path when a remove of it, or a
	// rename onto it, made the path name another file (markGone):
	// they write r's file still, which no name reaches for the session,
	// and r's reads catch up with them as with the writers at its path
	// (TestSFTPRandom seed 22647: an appending handle's write, held back,
	// missed by a truncating reader's FSTAT after such a rename).
	// Guarded by v.mu.
	gone []*viewFile
	once sync.Once
	// joined, once set by follow, is the file r's calls go to: one open
	// for reading on the data of the session's newer save of r's path.
	// fmu orders its changes (follow, Close: write-locked) after the
	// calls using it (read-locked); closing stops follow once Close has
	// begun.
	joined  atomic.Pointer[joinedFile]
	fmu     sync.RWMutex
	closing bool
}

// cur is the file r's calls go to: its own, or the one it follows.
func (r *viewReader) cur() afero.File {
	if j := r.joined.Load(); j != nil {
		return j.f
	}
	return r.File
}

// follow makes r go on through a file that open opens for reading, at
// r's offset; a file r followed before is closed, once no call uses it.
// src is the save's file when open opens an upload's data (the View
// tracks its handle at r.into then, intoSave), nil when it opens the
// file at the path.
func (r *viewReader) follow(open func(flag int) (afero.File, error), src afero.File) {
	nf, err := open(os.O_RDONLY)
	if err != nil {
		return // r keeps the file it reads, as without ReadersFollowSaves
	}
	r.fmu.Lock()
	defer r.fmu.Unlock()
	if r.closing {
		_ = nf.Close()
		return
	}
	r.saveOf = src
	r.into.Store(nil)
	if off, err := r.cur().Seek(0, io.SeekCurrent); err == nil && off > 0 {
		_, _ = nf.Seek(off, io.SeekStart)
	}
	if old := r.joined.Swap(&joinedFile{nf}); old != nil {
		_ = old.f.Close()
	}
}

// Read implements afero.File, after the session's writers at the
// reader's path (catchUp, before fmu is taken, as viewFile's: a read
// holding fmu while it pushes the writers, which take theirs, could wait
// in a ring with follows waiting for those).
func (r *viewReader) Read(p []byte) (int, error) {
	r.catchUp()
	r.fmu.RLock()
	defer r.fmu.RUnlock()
	return r.cur().Read(p)
}

// ReadAt implements afero.File, as Read.
func (r *viewReader) ReadAt(p []byte, off int64) (int, error) {
	r.catchUp()
	r.fmu.RLock()
	defer r.fmu.RUnlock()
	return r.cur().ReadAt(p, off)
}

// Stat implements afero.File, as Read.
func (r *viewReader) Stat() (os.FileInfo, error) {
	r.catchUp()
	r.fmu.RLock()
	defer r.fmu.RUnlock()
	return r.cur().Stat()
}

// FreshStat implements FreshStater: a file's Stat is fresh already.
func (r *viewReader) FreshStat() (os.FileInfo, error) { return r.Stat() }

// Seek implements afero.File, for the file r's calls go to.
func (r *viewReader) Seek(offset int64, whence int) (int64, error) {
	r.fmu.RLock()
	defer r.fmu.RUnlock()
	return r.cur().Seek(offset, whence)
}

// Truncate implements afero.File, for the file r's calls go to (which
// refuses it: r is open for reading).
func (r *viewReader) Truncate(size int64) error {
	r.fmu.RLock()
	defer r.fmu.RUnlock()
	return r.cur().Truncate(size)
}

// Sync implements afero.File, for the file r's calls go to.
func (r *viewReader) Sync() error {
	r.fmu.RLock()
	defer r.fmu.RUnlock()
	return r.cur().Sync()
}

// DropReadAhead implements ReadAheadDropper, for the file r's calls go
// to (catchUp's).
func (r *viewReader) DropReadAhead() {
	r.fmu.RLock()
	defer r.fmu.RUnlock()
	FileWrapper{r.cur()}.DropReadAhead()
}

// Chmod implements ModeSetter, for the file r's calls go to.
func (r *viewReader) Chmod(mode os.FileMode) error {
	r.fmu.RLock()
	defer r.fmu.RUnlock()
	return FileWrapper{r.cur()}.Chmod(mode)
}

// SetTimes implements TimesSetter, for the file r's calls go to, after
// the session's writes to it (catchUp: a held-back write pushed later
// would move the mtime, where sftp-server's futimens comes after the
// WRITEs answered before it; TestSFTPRandom seed 10397); the session's
// other readers read again (file.SetTimes), at any name of the file
// (changedAnywhere).
func (r *viewReader) SetTimes(atime, mtime time.Time) error {
	r.catchUp()
	r.fmu.RLock()
	err := FileWrapper{r.cur()}.SetTimes(atime, mtime)
	r.fmu.RUnlock()
	if err != nil {
		return err
	}
	r.v.changedAnywhere()
	return nil
}

// Close implements afero.File, and stops counting the reader at its path.
func (r *viewReader) Close() error {
	r.once.Do(func() {
		r.v.mu.Lock()
		if r.v.readers[r.path]--; r.v.readers[r.path] <= 0 {
			delete(r.v.readers, r.path)
		}
		r.v.unlistReaderLocked(r)
		r.v.forgetLocked(r.path)
		r.v.mu.Unlock()
	})
	r.fmu.Lock()
	r.closing = true
	j := r.joined.Swap(nil)
	r.fmu.Unlock()
	var jerr error
	if j != nil {
		jerr = j.f.Close()
	}
	return errors.Join(jerr, r.File.Close())
}

// listReader notes r, a reader opened at its path, as one that follows
// the session's saves there (ReadersFollowSaves).
func (v *View) listReader(r *viewReader) {
	if !v.followReaders {
		return
	}
	v.mu.Lock()
	v.following[r.path] = append(v.following[r.path], r)
	v.mu.Unlock()
}

// unlistReaderLocked forgets r as a follower. v.mu is held.
func (v *View) unlistReaderLocked(r *viewReader) {
	rs := slices.DeleteFunc(v.following[r.path], func(x *viewReader) bool { return x == r })
	if len(rs) == 0 {
		delete(v.following, r.path)
	} else {
		v.following[r.path] = rs
	}
}

// catchUp is View.catchUp for r: after the writers at r's path, or
// those of the upload it reads (into).
func (r *viewReader) catchUp() { r.v.catchUp(&r.path, &r.gone, r.into.Load(), r, &r.seen) }

// rekeyReaders moves the followers at or below from to the same place
// below to: the session renamed their files there (Rename), and they
// follow the saves of their new names.
func (v *View) rekeyReaders(from, to string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	moved := moveUnder(v.following, from, to, func(q, nq string, rs []*viewReader) {
		for _, r := range rs {
			r.path = nq
			if v.readers[q]--; v.readers[q] <= 0 {
				delete(v.readers, q)
			}
			v.readers[nq]++
		}
	})
	for _, q := range moved {
		v.changedLocked(q) // they see the writers there from now
	}
}

// unlistReaders forgets the followers at p and below it: p names
// another file now (a remove, a rename onto it), and they keep the file
// they read.
func (v *View) unlistReaders(p string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for q := range v.following {
		if q == p || strings.HasPrefix(q, p+"/") || p == "/" {
			delete(v.following, q)
		}
	}
}

// markGone gives the followers at each path of gone the session's
// writers there (viewReader.gone), before a remove of the path or a
// rename onto it drops them (so that no read in between misses them: a
// review); a removal refused afterwards leaves them marked, which costs
// a reader only pushes of writers it shares its path with anyway. Only
// followers are known by name: a View without ReadersFollowSaves (FTP's,
// whose session never reads while it writes, and WebDAV's, whose every
// write is an upload a reader reads into) keeps none.
func (v *View) markGone(gone map[string][]*viewFile) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for q, ws := range gone {
		if len(ws) == 0 {
			continue
		}
		for _, r := range v.following[q] {
			for _, w := range ws {
				if !slices.Contains(r.gone, w) {
					r.gone = append(r.gone, w)
				}
			}
		}
	}
}

// readersFollow makes the followers at p follow a save of p whose data
// open opens (drop); src is as follow's.
func (v *View) readersFollow(p string, open func(flag int) (afero.File, error), src afero.File) {
	v.mu.Lock()
	rs := slices.Clone(v.following[p])
	v.mu.Unlock()
	for _, r := range rs {
		r.follow(open, src)
	}
	if len(rs) > 0 {
		v.changedAt(p) // they read what the save holds, not what they read ahead
	}
}

// intoSave gives the followers at p that follow the save whose file is
// src its handle f, once the View tracks it: their reads catch up with
// it and its peers, wherever a rename takes them and after a remove or a
// rename onto p took the save away, as a descriptor reads the file the
// save wrote (TestSFTPRandom seed 7339: a held-back write of the save
// was never pushed once the rename made p another file).
func (v *View) intoSave(p string, src afero.File, f *viewFile) {
	v.mu.Lock()
	rs := slices.Clone(v.following[p])
	v.mu.Unlock()
	for _, r := range rs {
		r.fmu.Lock()
		if r.saveOf == src {
			r.saveOf = nil
			r.into.Store(f)
		}
		r.fmu.Unlock()
	}
}
