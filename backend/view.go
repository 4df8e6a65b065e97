package backend

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/afero"
)

// View is one session's view of a filesystem whose uploads are atomic:
// atomic for others, POSIX for oneself. While a file is being uploaded the
// container and every other session see the old file (or none) until the
// upload commits; the session that writes sees its own work as on any
// POSIX filesystem, which sshfs, rsync, git and editors depend on:
//
//   - Stat, Lstat and listings answer from the open upload: its current
//     size, mode and times, and its name in its directory;
//   - opening the path reads what was written so far, or writes into it in
//     place (Upload.Reopen); a truncating open for writing starts a new
//     upload that supersedes the older one, which is discarded, and whose
//     handles follow the new one (View.supersede); a read-only truncating
//     open (SFTP's OPEN with TRUNC and no WRITE) truncates the upload's
//     data through its Reopen, as open(2) O_RDONLY|O_TRUNC the file;
//   - Remove discards the upload (Upload.Unlink) and removes the old file:
//     the late Close brings nothing back;
//   - Rename gives the upload its new name (Upload.Move) and removes the
//     old file; renaming a directory carries the uploads inside it; a
//     rename onto a path being uploaded discards that upload;
//   - Chtimes and Chmod apply to the open file at once, after what the
//     session's handles wrote before (a later write moves the mtime, as
//     on a local file).
//
// Files open for writing in place (appends, writes into an existing file)
// need no such care on disk: each Write or WriteAt is in the file when it
// returns, for everyone. Only an FTP transfer's copy into one (ReadFrom)
// holds writes back to coalesce them, and those are pushed (Flusher)
// before any other path operation of the session, so that it sees them.
// A truncating open of a path that the session writes in place truncates
// that file instead of starting an upload (truncateInPlace): the older
// handles write the same file, as descriptors do.
//
// A handle reading a path sees what the session's other handles wrote
// there before the read, as a process sees its own writes through another
// descriptor: their held-back writes are pushed and the reader forgets
// what it read ahead (ReadAheadDropper) when they wrote since its last
// read or stat. A reader follows the path it was opened at, not a rename;
// with ReadersFollowSaves it also reads the session's later saves of that
// path (view_reader.go).
//
// An upload that is superseded, removed or renamed over is discarded at
// once, never committed later: an abandoned handle cannot capture the
// path operations meant for the committed file, nor bring back stale data
// when it is finally closed (rclone's FsPutError). A superseded upload's
// handles go on into the newer upload's data (viewFile.follow), or, where
// they cannot, refuse writes, which would be dropped.
//
// View needs its filesystem's files to implement Upload; files that do not
// are treated as written in place. It is safe for concurrent use.
// Gateways give every login its own View; it is the only place that
// knows a session's open files by path.
type View struct {
	afero.Fs

	// mu guards open: the files this session has open for writing, by
	// clean path, oldest first; wrote: by path, the tick of the last
	// write there through any of them; readers: how many handles read
	// each path (kept while they or writers are open). It is never held
	// during I/O.
	mu      sync.Mutex
	open    map[string][]*viewFile
	wrote   map[string]uint64
	readers map[string]int
	tick    uint64

	// following: by path, the readers that follow the session's saves
	// there (ReadersFollowSaves: followReaders). Guarded by mu.
	following     map[string][]*viewReader
	followReaders bool

	// searchCut: this session took search bits away from a directory
	// above one of its uploads (Chmod), so an upload answers for its
	// path only where the kernel's lookup of it is not refused (upload).
	searchCut atomic.Bool
}

// NewView returns a session's view of fsys.
func NewView(fsys afero.Fs, opts ...ViewOption) *View {
	v := &View{Fs: fsys, open: make(map[string][]*viewFile), wrote: make(map[string]uint64), readers: make(map[string]int),
		following: make(map[string][]*viewReader)}
	for _, o := range opts {
		o(v)
	}
	return v
}

// forgetLocked drops p's write tick once no handle is open at p. v.mu is
// held.
func (v *View) forgetLocked(p string) {
	if len(v.open[p]) == 0 && v.readers[p] == 0 {
		delete(v.wrote, p)
	}
}

// catchUp makes a read or stat through f see what the session's other
// handles wrote to its file since seen: their held-back writes are
// pushed, and f forgets its read-ahead. The writers are those at *at (f's
// path, which v.mu guards and a rename by the session moves), or,
// with of (f itself when f writes, or the upload a reader was opened
// into), of and its peers: at of's path now, which a rename by the
// session moves, or together once a remove took that path away
// (peersLocked; seeds 5856, 5174). f itself, when it is one of the
// writers, is left out: its own held-back writes go before its reads
// anyway. A writer whose push fails reports it itself, at its next write
// or its close.
func (v *View) catchUp(at *string, of *viewFile, f afero.File, seen *atomic.Uint64) {
	v.mu.Lock()
	p := *at
	if of != nil && of.dropped == nil && of.isClosed() {
		// Committed: what a reader opened into it reads is the file at
		// its own path now, which the session's renames move with it
		// (rekeyReaders), where the closed handle's path stays behind
		// (a review: writes at the reader's new name went unseen).
		of = nil
	}
	if of != nil {
		p = of.path
	}
	n := v.wrote[p]
	if n == seen.Load() {
		v.mu.Unlock()
		return
	}
	ws := slices.Clone(v.peersLocked(p, of))
	v.mu.Unlock()
	if of != nil && !slices.Contains(ws, of) {
		ws = append(ws, of)
	}
	self, _ := f.(*viewFile)
	pushExcept(ws, self)
	DropReadAhead(f)
	seen.Store(n)
}

// peersLocked is the session's writers at p, self among them, or, once a
// remove discarded the upload self wrote (drop), those that wrote it with
// self: no longer at p, their data is one file still, an unlinked one to
// sftp-server. v.mu is held.
func (v *View) peersLocked(p string, self *viewFile) []*viewFile {
	ws := v.open[p]
	if self != nil && self.dropped != nil && !slices.Contains(ws, self) {
		return self.dropped
	}
	return ws
}

// pushExcept pushes the held-back writes of the writers ws but self. A
// writer whose push fails reports it itself, at its next write or its
// close.
func pushExcept(ws []*viewFile, self *viewFile) {
	for _, w := range ws {
		if w != self {
			_ = w.Flush()
		}
	}
}

var (
	_ afero.Fs         = (*View)(nil)
	_ afero.Lstater    = (*View)(nil)
	_ afero.Linker     = (*View)(nil)
	_ afero.LinkReader = (*View)(nil)
	_ Hasher           = (*View)(nil)
	_ StatFSer         = (*View)(nil)
	_ DirSearcher      = (*View)(nil)
	_ KindRemover      = (*View)(nil)
	_ HardLinker       = (*View)(nil)
	_ LinkTimesSetter  = (*View)(nil)
)

// Name implements afero.Fs.
func (v *View) Name() string { return "View(" + v.Fs.Name() + ")" }

// writers returns the files open for writing at p, oldest first.
func (v *View) writers(p string) []*viewFile {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]*viewFile(nil), v.open[p]...)
}

// upload returns the upload in progress at p, if any: the newest pending
// writer (there is at most one that is not discarded), for an operation
// on the path p. Once the session has taken search bits away from a
// directory above its uploads (searchCut), the upload answers only where
// the filesystem's lookup of p is not refused: sftp-server's lstat, open
// or symlink of a file in a directory its user may no longer search is
// EACCES, though the file is there (TestSFTPRandom seeds 2324, 2541).
// Then nil: the operation goes to the filesystem, which refuses it.
func (v *View) upload(p string) *viewFile {
	if u, refused := v.reachable(p); !refused {
		return u
	}
	return nil
}

// reachable returns the upload in progress at p, if any, and whether the
// filesystem's lookup of p is refused (asked only while searchCut).
func (v *View) reachable(p string) (u *viewFile, refused bool) {
	u = v.pending(p)
	if u != nil && v.searchCut.Load() {
		_, err := Lstat(v.Fs, p)
		refused = errors.Is(err, fs.ErrPermission)
	}
	return u, refused
}

// pending returns the upload in progress at p, if any, as upload does,
// asking nothing.
func (v *View) pending(p string) *viewFile {
	ws := v.writers(p)
	for i := len(ws) - 1; i >= 0; i-- {
		if ws[i].Pending() {
			return ws[i]
		}
	}
	return nil
}

// cutSearch follows a chmod of p, a path that is no upload of the
// session, for searchCut: when p is a directory above one of the
// session's uploads, searchCut becomes whether the lookup of any of the
// session's uploads is now refused (one Lstat each: a session holds
// few), so that the chmod giving the bit back clears it again. A chmod of
// a directory reached through a symbolic link (p, or a directory above
// it, a link) is not known to be above an upload by its name: a chmod of
// a directory whose name is not above one asks its Stat, and the
// uploads' Lstats when it is a directory or the Stat is refused
// (TestSFTPRandom seeds 3431, 4265). With no upload pending there is
// nothing to answer for: it costs a look at each handle open for writing
// (Pending, which waits for its file's lock), none when none is open.
func (v *View) cutSearch(p string) {
	pending := v.pendingUploads()
	if len(pending) == 0 {
		v.searchCut.Store(false)
		return
	}
	below := slices.ContainsFunc(pending, func(u pendingUpload) bool { return p == "/" || strings.HasPrefix(u.path, p+"/") })
	if !below {
		// A Stat refused: the chmod took the search bit from the
		// directory the link leads to (a link to "." in it: seed 4265).
		fi, err := v.Fs.Stat(p)
		if err == nil && !fi.IsDir() || err != nil && !errors.Is(err, fs.ErrPermission) {
			return
		}
	}
	v.checkSearch(pending)
}

// pendingUpload is one of the session's uploads in progress, at its path.
type pendingUpload struct {
	path string
	w    *viewFile
}

// pendingUploads lists the session's uploads in progress.
func (v *View) pendingUploads() []pendingUpload {
	var ups []pendingUpload
	v.mu.Lock()
	for q, ws := range v.open {
		for _, w := range ws {
			ups = append(ups, pendingUpload{q, w})
		}
	}
	v.mu.Unlock()
	// Pending asks the file, under its own lock: never with v.mu.
	pending := ups[:0]
	for _, u := range ups {
		if u.w.Pending() {
			pending = append(pending, u)
		}
	}
	return pending
}

// checkSearch sets searchCut to whether the lookup of any of ups, the
// session's pending uploads, is refused.
func (v *View) checkSearch(ups []pendingUpload) {
	refused := false
	for _, u := range ups {
		if _, err := Lstat(v.Fs, u.path); errors.Is(err, fs.ErrPermission) {
			refused = true
			break
		}
	}
	v.searchCut.Store(refused)
}

// withUpload runs fn on the upload in progress at p, or fallback when there
// is none. An upload that is closing (committing) when fn reaches it is
// waited for, and then fallback acts on the committed file: lftp's MFMT
// races the close of the upload it follows.
func (v *View) withUpload(p string, fn func(u *viewFile) error, fallback func() error) error {
	u := v.upload(p)
	if u == nil {
		return fallback()
	}
	err := fn(u)
	if u.waitIfClosing(err) {
		return fallback()
	}
	return err
}

// settle waits until the writes of the session's in-place writers have
// landed, so that a path operation (on their path, or on another name of
// their file: a hard or symbolic link) sees them. Writers with nothing
// held back cost nothing.
func (v *View) settle() {
	v.mu.Lock()
	var ws []*viewFile
	for _, fs := range v.open {
		ws = append(ws, fs...)
	}
	v.mu.Unlock()
	for _, w := range ws {
		if !w.Pending() {
			_ = w.Flush()
		}
	}
}

func (v *View) track(f *viewFile) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.open[f.path] = append(v.open[f.path], f)
}

// untrack forgets f. v.mu is held.
func (v *View) untrackLocked(f *viewFile) {
	ws := v.open[f.path]
	for i, w := range ws {
		if w == f {
			ws = append(ws[:i:i], ws[i+1:]...)
			break
		}
	}
	if len(ws) == 0 {
		delete(v.open, f.path)
	} else {
		v.open[f.path] = ws
	}
	v.forgetLocked(f.path)
	if len(v.open) == 0 {
		v.searchCut.Store(false) // no upload left to answer for
	}
}

func (v *View) untrack(f *viewFile) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.untrackLocked(f)
}

// discard unlinks the uploads at p and forgets every writer there: p now
// names something else (or nothing), and those files keep writing into
// what p used to be.
func (v *View) discard(p string) error { return v.drop(p, nil) }

// supersede discards the session's uploads at p for a newer truncating
// open of p, newer, and the handles that wrote them (the upload's own,
// and those opened into its data: Reopen) follow the newer one: each
// goes on through a handle joined to newer's data (viewFile.follow), as
// sftp-server's descriptors all write the one file that the second open
// truncated. A shell's `exec 3>f; echo x > f; echo y >&3` over sshfs
// writes y into f, and the upload the first open made never commits:
// newer commits at its own close, so an abandoned handle (rclone's
// FsPutError) can neither hold the save back nor bring back stale data.
// Where newer is not an upload (an append with TRUNC written in place)
// or the join fails, the older handles refuse writes (errSuperseded), so
// that none is answered OK and dropped. Writers at p in place are not
// there: a truncating open with them truncates in place instead
// (truncateInPlace).
func (v *View) supersede(p string, newer afero.File) error { return v.drop(p, newer) }

// drop discards the uploads at p and forgets the writers there; with
// newer, a truncating open's file, they follow it (supersede).
func (v *View) drop(p string, newer afero.File) error {
	return v.dropSome(p, newer, v.writers(p))
}

// dropSome is drop for ws, the writers at p when the caller looked: one
// opened at p since (another channel of the session) is left alone.
func (v *View) dropSome(p string, newer afero.File, ws []*viewFile) error {
	upload := slices.ContainsFunc(ws, (*viewFile).Pending)
	// The upload is discarded first: one the filesystem refuses to
	// discard (a directory made 0555 since) stays the session's, with
	// its handles, as the file would stay on sftp-server. It used to be
	// forgotten (a stat answered NO_SUCH_FILE) and committed at its close.
	for _, w := range ws {
		if w.Pending() {
			if err := w.Unlink(); err != nil && !w.waitIfClosing(err) {
				return err
			}
		}
	}
	var follow []*viewFile
	if newer != nil {
		// The upload's handles, and those that followed an older one,
		// follow the newer: its data while it is an upload, the file at
		// p where it writes in place (O_APPEND|O_TRUNC, or a truncation
		// that cannot be atomic), which its open has just truncated:
		// the descriptors of sftp-server share that file.
		open := func(flag int) (afero.File, error) { return v.Fs.OpenFile(p, flag, 0) }
		if n, ok := newer.(Upload); ok && n.Pending() {
			// The handles held the file: its mode, changed since,
			// does not refuse them (seed 4519).
			open = func(flag int) (afero.File, error) { return ReopenHeld(n, flag) }
		}
		for _, w := range ws {
			if !upload && !w.follower() {
				continue
			}
			if w.follow(open) == nil {
				follow = append(follow, w)
			} else {
				w.superseded.Store(true)
			}
		}
		if v.followReaders {
			var src afero.File
			if n, ok := newer.(Upload); ok && n.Pending() {
				src = newer
			}
			v.readersFollow(p, open, src)
		}
	}
	v.mu.Lock()
	kept := slices.DeleteFunc(v.open[p], func(w *viewFile) bool { return slices.Contains(ws, w) })
	// Handles that follow the newer upload still write at p.
	kept = append(kept, follow...)
	if newer == nil && len(ws) > 1 {
		// They wrote one file, which p no longer names: an upload
		// discarded, or a file written in place that a remove or a
		// rename onto p took away (seed 6361).
		for _, w := range ws {
			w.dropped = ws
		}
	}
	if len(kept) == 0 {
		delete(v.open, p)
	} else {
		v.open[p] = kept
	}
	v.mu.Unlock()
	return nil
}

// errSuperseded is a write's answer on a handle whose upload a newer
// truncating open of its path in the same session superseded.
var errSuperseded = errors.New("this upload was superseded by a newer upload of the same path in this session; the write is not kept")

// discardUnder does discard for p and every path below it.
func (v *View) discardUnder(p string) error {
	var first error
	for _, q := range v.pathsUnder(p) {
		if err := v.discard(q); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// pathsUnder lists the tracked paths that are p or below it.
func (v *View) pathsUnder(p string) []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []string
	for q := range v.open {
		if q == p || strings.HasPrefix(q, p+"/") || p == "/" {
			out = append(out, q)
		}
	}
	return out
}

// moveUnder moves m's entries at or below from to the same place below
// to (a rename), calling each on every group moved with its old and new
// key first, and returns the new keys. v.mu is held by the caller for
// the View's maps.
func moveUnder[T any](m map[string][]T, from, to string, each func(q, nq string, xs []T)) (moved []string) {
	out := map[string][]T{}
	for q, xs := range m {
		var nq string
		switch {
		case q == from:
			nq = to
		case strings.HasPrefix(q, from+"/"):
			nq = path.Join(to, strings.TrimPrefix(q, from+"/"))
		default:
			continue
		}
		delete(m, q)
		each(q, nq, xs)
		out[nq] = append(out[nq], xs...)
	}
	for nq, xs := range out {
		m[nq] = append(m[nq], xs...)
		moved = append(moved, nq)
	}
	return moved
}

// rekey moves the writers tracked at or below from to the same place
// below to (a rename), and returns the uploads among them that moved
// from below from (their names must follow, see Rename).
func (v *View) rekey(from, to string) (inside []*viewFile) {
	v.mu.Lock()
	defer v.mu.Unlock()
	moved := moveUnder(v.open, from, to, func(q, nq string, ws []*viewFile) {
		if q != from {
			inside = append(inside, ws...)
		}
		for _, w := range ws {
			w.path = nq
		}
	})
	for _, q := range moved {
		// Readers at the new name see the writers' writes from now.
		v.changedLocked(q)
	}
	for q := range v.wrote {
		if q == from || strings.HasPrefix(q, from+"/") {
			v.forgetLocked(q)
		}
	}
	return inside
}

// Create implements afero.Fs.
func (v *View) Create(name string) (afero.File, error) {
	return v.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o666)
}

// Open implements afero.Fs.
func (v *View) Open(name string) (afero.File, error) { return v.OpenFile(name, os.O_RDONLY, 0) }

// OpenFile implements afero.Fs. A path with an upload in progress opens
// that upload's data, unless the open truncates: then it starts a new
// upload that supersedes the old one.
func (v *View) OpenFile(name string, flag int, perm os.FileMode) (afero.File, error) {
	p := userPath(name)
	write := flag&(os.O_WRONLY|os.O_RDWR) != 0
	if u := v.upload(p); u != nil {
		switch {
		case flag&(os.O_CREATE|os.O_EXCL) == os.O_CREATE|os.O_EXCL:
			return nil, &fs.PathError{Op: "open", Path: p, Err: syscall.EEXIST}
		case write && flag&os.O_TRUNC != 0:
			// A new upload; the older one is discarded once the new one
			// is open (so that a failed open leaves it). The file exists
			// for this session even where only the older upload made it
			// (a new file not yet committed): the open creates it then,
			// with the mode the session sees, as open(2) of an existing
			// file keeps its mode.
			if fi, err := u.info(); err == nil {
				if err := u.mayOpen(fi.Mode(), flag); err != nil {
					return nil, err
				}
				flag |= os.O_CREATE
				perm = fi.Mode() & (fs.ModePerm | fs.ModeSticky)
			}
		default:
			f, err := u.Reopen(flag)
			if err == nil {
				if flag&os.O_TRUNC != 0 {
					v.changedAt(p) // a read-only open truncated the upload's data
				}
				return v.wrap(p, f, flag, u), nil
			}
			if !u.waitIfClosing(err) {
				return nil, err
			}
			// Committed meanwhile: open the committed file.
		}
	} else {
		v.settle()
		// Followers of a committed upload (follow) do not count: one is
		// usually an abandoned handle, and each save of the path would
		// go in place as long as it stays open; a new upload takes it
		// along instead (supersede).
		if write && flag&os.O_TRUNC != 0 && slices.ContainsFunc(v.writers(p), func(w *viewFile) bool { return !w.follower() }) {
			return v.truncateInPlace(name, p, flag, perm)
		}
	}
	f, err := v.Fs.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	if !write && flag&os.O_TRUNC != 0 {
		// A read-only open truncated the file in place (SFTP's OPEN
		// with TRUNC and no WRITE): the session's readers there forget
		// what they read ahead, as after a write.
		v.changedAt(p)
	}
	if IsDir(f) {
		return &viewDir{FileWrapper: FileWrapper{f}, v: v, dir: p}, nil
	}
	if u, ok := f.(Upload); write && (ok && u.Pending() || flag&os.O_TRUNC != 0) {
		// A new upload supersedes the session's older ones at p, and so
		// does a truncating open that writes in place (O_APPEND|O_TRUNC):
		// an older upload committed after it would put back what it
		// truncated.
		if err := v.supersede(p, f); err != nil {
			// The new upload is aborted, not committed: the older one
			// stays the session's.
			if ta, ok := f.(TransferAborter); ok {
				ta.TransferError(err)
			}
			f.Close()
			return nil, err
		}
	}
	return v.wrap(p, f, flag, nil), nil
}

// truncateInPlace opens p, which the session's other handles write in
// place (an append, a write into an existing file), for a truncating
// write: it opens the file as it is and truncates it through the new
// handle, so that all of them write one file, as the descriptors of
// open(2) with O_TRUNC and of the earlier opens share it on sftp-server.
// An atomic upload would replace the file under the older handles at its
// close, and what they wrote after the open, answered OK, would be gone
// (TestSFTPRandom). The price is this save's atomicity: others see the
// file emptied and then written, as sftp-server writes every save, and
// one cut short leaves what arrived. (If another session replaced the
// file since the older handles opened it, they write the replaced file
// and this save goes in place all the same: the View cannot tell one
// file from another at a path.)
func (v *View) truncateInPlace(name, p string, flag int, perm os.FileMode) (afero.File, error) {
	f, err := v.Fs.OpenFile(name, flag&^os.O_TRUNC, perm)
	if err != nil {
		return nil, err
	}
	vf := v.wrap(p, f, flag&^os.O_TRUNC, nil)
	if err := vf.Truncate(0); err != nil {
		vf.Close()
		return nil, err
	}
	return vf, nil
}

// wrap tracks a file open for writing (flag, the open's flags, says),
// and counts a file open for reading at p; into is the session's upload
// whose data f was opened into (Upload.Reopen), or nil.
func (v *View) wrap(p string, f afero.File, flag int, into *viewFile) afero.File {
	if flag&(os.O_WRONLY|os.O_RDWR) == 0 {
		v.mu.Lock()
		v.readers[p]++
		v.mu.Unlock()
		r := &viewReader{FileWrapper: FileWrapper{f}, v: v, path: p}
		r.into.Store(into)
		v.listReader(r)
		return r
	}
	vf := &viewFile{FileWrapper: FileWrapper{f}, v: v, path: p, flag: flag, closed: make(chan struct{})}
	v.track(vf)
	if u, ok := f.(Upload); ok && v.followReaders && u.Pending() {
		v.intoSave(p, f, vf)
	}
	return vf
}

// Stat implements afero.Fs: an upload in progress answers for its path.
func (v *View) Stat(name string) (os.FileInfo, error) { return v.stat(name, v.Fs.Stat) }

// StatSearch implements DirSearcher; an upload in progress is a file.
func (v *View) StatSearch(name string) (os.FileInfo, error) {
	return v.stat(name, func(name string) (os.FileInfo, error) { return StatSearch(v.Fs, name) })
}

func (v *View) stat(name string, stat func(string) (os.FileInfo, error)) (fi os.FileInfo, err error) {
	p := userPath(name)
	err = v.withUpload(p, func(u *viewFile) error {
		fi, err = u.infoNow()
		return err
	}, func() error {
		v.settle()
		fi, err = stat(name)
		return err
	})
	return fi, err
}

// LstatIfPossible implements afero.Lstater.
func (v *View) LstatIfPossible(name string) (fi os.FileInfo, ok bool, err error) {
	p := userPath(name)
	_, ok = v.Fs.(afero.Lstater)
	err = v.withUpload(p, func(u *viewFile) error {
		fi, err = u.infoNow()
		return err
	}, func() error {
		v.settle()
		fi, err = Lstat(v.Fs, name)
		return err
	})
	return fi, ok, err
}

// Remove implements afero.Fs. Removing a path with an upload in progress
// discards the upload and removes the old file, if there is one.
func (v *View) Remove(name string) error { return v.remove(name, v.Fs.Remove) }

// RemoveFile implements KindRemover: as Remove, the session's upload at
// name is discarded.
func (v *View) RemoveFile(name string) error {
	return v.remove(name, func(name string) error { return RemoveFile(v.Fs, name) })
}

// RemoveDir implements KindRemover: the session's upload at name is a
// file (ENOTDIR), and stays. The filesystem is asked first all the same,
// for the kernel's answers before that one (a directory its user may not
// search or write: EACCES, seed 1606); it holds no directory there, only
// the upload's temp file beside it, so it answers ENOENT, which is the
// upload's ENOTDIR. (An agent session knows its upload, and answers
// ENOTDIR, or EACCES where the directory refuses write, itself.)
func (v *View) RemoveDir(name string) error {
	p := userPath(name)
	if v.upload(p) == nil {
		return RemoveDir(v.Fs, name)
	}
	if err := RemoveDir(v.Fs, name); err == nil || !errors.Is(err, fs.ErrNotExist) {
		return err // nil: a directory the container made there meanwhile
	}
	return &fs.PathError{Op: "rmdir", Path: p, Err: syscall.ENOTDIR}
}

// remove is Remove with remove as the filesystem's.
func (v *View) remove(name string, remove func(string) error) error {
	p := userPath(name)
	u, refused := v.reachable(p)
	if refused {
		// The lookup of p is refused: so is the removal, and the
		// upload stays.
		return remove(name)
	}
	had := u != nil
	ws := v.writers(p)
	if had {
		if err := v.dropSome(p, nil, ws); err != nil {
			return err
		}
	}
	err := remove(name)
	if had && errors.Is(err, fs.ErrNotExist) {
		err = nil
	}
	if err == nil || errors.Is(err, fs.ErrNotExist) {
		// p names nothing of theirs now (removed here, or already by
		// the container): its writers are forgotten, once it is gone.
		// A removal refused leaves them the path's: their held-back
		// writes are still pushed before a listing or a stat of it
		// (TestSFTPRandom seed 4372: a REMOVE refused in a 0555
		// directory made the next listing miss a write answered OK).
		// Only those there before the removal: an upload another
		// channel of the session opened at p since is not discarded (a
		// review). (With none of them an upload, this only forgets.)
		if !had {
			_ = v.dropSome(p, nil, ws)
		}
		v.unlistReaders(p)
	}
	return err
}

// RemoveAll implements afero.Fs.
func (v *View) RemoveAll(name string) error {
	if err := v.discardUnder(userPath(name)); err != nil {
		return err
	}
	if err := v.Fs.RemoveAll(name); err != nil {
		return err
	}
	v.unlistReaders(userPath(name))
	return nil
}

// Rename implements afero.Fs. A file with an upload in progress takes its
// new name now and commits under it; the old file at its old name, which
// this session no longer sees, is removed.
func (v *View) Rename(oldname, newname string) error {
	op, np := userPath(oldname), userPath(newname)
	if op == np {
		if v.upload(op) != nil {
			return nil // a rename onto itself, of a file that exists for this session
		}
		return v.Fs.Rename(oldname, newname)
	}
	u := v.upload(op)
	replaced := v.writers(np)
	if u == nil && v.upload(np) != nil && !strings.HasPrefix(np, op+"/") {
		// (A directory into itself is EINVAL, the filesystem's answer.)
		// The session's upload at newname is a file to it: a directory
		// cannot replace it, as rename(2) answers ENOTDIR (it used to
		// take its place and discard the upload), after the write bits
		// of both directories (TestSFTPRandom seeds 9869, 12415).
		if fi, err := Lstat(v.Fs, oldname); err == nil && fi.IsDir() {
			return &os.LinkError{Op: "rename", Old: op, New: np, Err: v.refusedBefore(syscall.ENOTDIR, oldname, newname)}
		}
	}
	if u != nil {
		if err := u.Move(np); u.waitIfClosing(err) {
			u = nil // committed meanwhile: rename the committed file
		} else if err != nil {
			return err
		}
	}
	if u != nil {
		// What stood at the old name was replaced by the upload in this
		// session's view; the rename takes it away.
		if err := v.Fs.Remove(oldname); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	} else {
		v.settle()
		if err := v.Fs.Rename(oldname, newname); err != nil {
			return err
		}
	}
	// The readers that followed saves at newname keep the files they
	// read, which the rename replaced; those at oldname move with their
	// files (before anything that can fail: the rename is made).
	v.unlistReaders(np)
	v.rekeyReaders(op, np)
	// What the rename replaced: the writers at newname before it, not an
	// upload another channel of the session opened there meanwhile.
	if err := v.dropSome(np, nil, replaced); err != nil {
		return err
	}
	// Uploads below a renamed directory moved with it on disk; their
	// files learn their new names (a Move to where they already are).
	for _, w := range v.rekey(op, np) {
		if w.Pending() {
			if err := w.Move(w.path); err != nil {
				return err
			}
		}
	}
	return nil
}

// Chtimes implements afero.Fs. On a file open for writing the times apply
// to it at once (TimesSetter).
func (v *View) Chtimes(name string, atime, mtime time.Time) error {
	p := userPath(name)
	return v.withUpload(p, func(u *viewFile) error {
		return u.SetTimes(atime, mtime)
	}, func() error {
		// A file the session writes in place is set by its path, after
		// what the session holds back, as SETSTAT's utimes(2): through
		// the kernel's lookup (a directory that lost its search bit
		// refuses it, where a handle would not: TestSFTPRandom seed
		// 2346), and on whatever the path names now.
		v.settle()
		if err := v.Fs.Chtimes(name, atime, mtime); err != nil {
			return err
		}
		// The session's readers read again (file.SetTimes), at p or at
		// another name of the file.
		v.changedAnywhere()
		return nil
	})
}

// Lchtimes implements LinkTimesSetter: an upload in progress is no link,
// so it is Chtimes there.
func (v *View) Lchtimes(name string, atime, mtime time.Time) error {
	p := userPath(name)
	return v.withUpload(p, func(u *viewFile) error {
		return u.SetTimes(atime, mtime)
	}, func() error {
		v.settle()
		if err := Lchtimes(v.Fs, name, atime, mtime); err != nil {
			return err
		}
		v.changedAt(p)
		return nil
	})
}

// Chmod implements afero.Fs. An upload in progress takes the mode itself;
// the old file keeps its own until the upload replaces it.
func (v *View) Chmod(name string, mode os.FileMode) error {
	p := userPath(name)
	return v.withUpload(p, func(u *viewFile) error {
		return u.Chmod(mode)
	}, func() error {
		if err := v.Fs.Chmod(name, mode); err != nil {
			return err
		}
		v.cutSearch(p)
		return nil
	})
}

// Mkdir implements afero.Fs.
func (v *View) Mkdir(name string, perm os.FileMode) error {
	if p := userPath(name); v.upload(p) != nil {
		return &fs.PathError{Op: "mkdir", Path: p, Err: syscall.EEXIST}
	}
	return v.Fs.Mkdir(name, perm)
}

// SymlinkIfPossible implements afero.Linker.
func (v *View) SymlinkIfPossible(oldname, newname string) error {
	if p := userPath(newname); v.upload(p) != nil {
		return &os.LinkError{Op: "symlink", Old: oldname, New: p, Err: syscall.EEXIST}
	}
	return Symlink(v.Fs, oldname, newname)
}

// Link implements HardLinker. An upload in progress has no name on disk
// yet to link to: linking it is refused as busy (git, which links its
// object files into place, falls back to a rename), unless the new name
// exists (EEXIST) or its directory is missing or cannot be searched, as
// link(2) answers first (a directory that refuses its user write still
// answers EBUSY, where link(2) answers EACCES). Linking onto one is EEXIST,
// once the old name is found: link(2) looks that up first, so a missing
// or unreachable one answers its own error (TestSFTPRandom seeds 8281,
// 8261).
func (v *View) Link(oldname, newname string) error {
	op, np := userPath(oldname), userPath(newname)
	exists := &os.LinkError{Op: "link", Old: op, New: np, Err: syscall.EEXIST}
	switch {
	case v.upload(op) != nil:
		if v.upload(np) != nil {
			return exists
		}
		_, err := Lstat(v.Fs, newname)
		switch {
		case err == nil:
			return exists
		case !errors.Is(err, fs.ErrNotExist):
			return err
		}
		// A missing name, or a missing directory above it: link(2)
		// answers the latter (TestSFTPRandom seed 8730), and then a
		// directory its user may not write.
		if _, err := v.Fs.Stat(path.Dir(np)); err != nil {
			return err
		}
		return &os.LinkError{Op: "link", Old: op, New: np, Err: v.refusedBefore(syscall.EBUSY, newname)}
	case v.upload(np) != nil:
		v.settle()
		if _, err := Lstat(v.Fs, oldname); err != nil {
			return err
		}
		return exists
	}
	v.settle()
	return Link(v.Fs, oldname, newname)
}

// refusedBefore is own, the View's answer for a rename or a link that
// meets its upload in progress (not on disk yet, so the filesystem cannot
// answer for it), unless the directory that holds one of names refuses
// its user changes (ChangeChecker): the kernel checks those write bits
// first. Without the capability it is own.
func (v *View) refusedBefore(own syscall.Errno, names ...string) error {
	for _, name := range names {
		err := MayChangeIn(v.Fs, name)
		if err == nil {
			continue
		}
		if errors.Is(err, errors.ErrUnsupported) {
			break
		}
		if pe, ok := errors.AsType[*fs.PathError](err); ok {
			return pe.Err
		}
		return err
	}
	return own
}

// ReadlinkIfPossible implements afero.LinkReader.
func (v *View) ReadlinkIfPossible(name string) (string, error) {
	if p := userPath(name); v.upload(p) != nil {
		return "", &fs.PathError{Op: "readlink", Path: p, Err: syscall.EINVAL}
	}
	return Readlink(v.Fs, name)
}

// Hash implements Hasher. The agent hashes what a path names on disk, so
// a path with an upload in progress (the old file there is not what this
// session sees) is refused as busy.
func (v *View) Hash(ctx context.Context, name string, algo HashAlgorithm, offset, length int64) ([]byte, error) {
	p := userPath(name)
	if v.upload(p) != nil {
		return nil, &fs.PathError{Op: "hash", Path: p, Err: syscall.EBUSY}
	}
	v.settle()
	return Hash(ctx, v.Fs, name, algo, offset, length)
}

// StatFS implements StatFSer. A path with an upload in progress is not on
// disk yet: its directory's filesystem is asked.
func (v *View) StatFS(ctx context.Context, name string) (FSStats, error) {
	if p := userPath(name); v.upload(p) != nil {
		name = path.Dir(p)
	}
	return StatFS(ctx, v.Fs, name)
}

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
	f.v.catchUp(&f.path, f, f, &f.seen)
	f.fmu.RLock()
	defer f.fmu.RUnlock()
	return f.cur().Read(p)
}

// ReadAt implements afero.File, as Read.
func (f *viewFile) ReadAt(p []byte, off int64) (int, error) {
	f.v.catchUp(&f.path, f, f, &f.seen)
	f.fmu.RLock()
	defer f.fmu.RUnlock()
	return f.cur().ReadAt(p, off)
}

// Stat implements afero.File, as Read.
func (f *viewFile) Stat() (os.FileInfo, error) {
	f.v.catchUp(&f.path, f, f, &f.seen)
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

// viewDir is an open directory whose listing shows this session's uploads
// in progress in it.
type viewDir struct {
	FileWrapper
	v     *View
	dir   string
	seen  map[string]bool // uploads' names already listed
	extra []os.FileInfo   // uploads not yet listed, once the inner listing ended
	done  bool            // the inner listing has ended
}

// Readdir implements afero.File: the inner listing, page by page, with
// each upload in progress in this directory in place of the entry of its
// name, or after the last entry.
func (d *viewDir) Readdir(count int) ([]os.FileInfo, error) {
	if d.seen == nil {
		d.seen = map[string]bool{}
		d.v.settle()
	}
	var fis []os.FileInfo
	if !d.done {
		var err error
		fis, err = d.FileWrapper.Readdir(count)
		ups := d.uploads()
		for i, fi := range fis {
			if u, ok := ups[fi.Name()]; ok {
				if ufi, err := u.infoNow(); err == nil {
					fis[i] = ufi
					d.seen[fi.Name()] = true
				}
			}
		}
		switch {
		case err != nil && !errors.Is(err, io.EOF):
			return fis, err
		case count > 0 && err == nil && len(fis) == count:
			return fis, nil // more may follow
		}
		d.done = true
		for name, u := range ups {
			if d.seen[name] {
				continue
			}
			if ufi, err := u.infoNow(); err == nil {
				d.extra = append(d.extra, ufi)
			}
		}
	}
	if count <= 0 {
		fis = append(fis, d.extra...)
		d.extra = nil
		return fis, nil
	}
	n := min(count-len(fis), len(d.extra))
	fis = append(fis, d.extra[:n]...)
	d.extra = d.extra[n:]
	if len(fis) == 0 {
		return nil, io.EOF
	}
	return fis, nil
}

// uploads maps the names of this session's uploads in progress directly
// inside the directory to their files.
func (d *viewDir) uploads() map[string]*viewFile {
	d.v.mu.Lock()
	paths := make([]string, 0)
	for p := range d.v.open {
		if path.Dir(p) == d.dir && p != d.dir {
			paths = append(paths, p)
		}
	}
	d.v.mu.Unlock()
	out := map[string]*viewFile{}
	for _, p := range paths {
		if u := d.v.upload(p); u != nil {
			out[path.Base(p)] = u
		}
	}
	return out
}

// Chmod implements ModeSetter, on the directory the handle opened: a
// mode that takes a search bit away from a directory above the
// session's uploads makes them unreachable by name, as a chmod by path
// does (View.cutSearch).
func (d *viewDir) Chmod(mode os.FileMode) error {
	if err := d.FileWrapper.Chmod(mode); err != nil {
		return err
	}
	d.v.checkSearch(d.v.pendingUploads())
	return nil
}

// Readdirnames implements afero.File.
func (d *viewDir) Readdirnames(n int) ([]string, error) {
	fis, err := d.Readdir(n)
	names := make([]string, len(fis))
	for i, fi := range fis {
		names[i] = fi.Name()
	}
	return names, err
}
