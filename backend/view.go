package backend

import (
	"errors"
	"io/fs"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

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
//
// This file holds the View and its bookkeeping of open files by path;
// view_fs.go its afero.Fs methods (opens and path operations),
// view_file.go the files it hands out for writing, view_dir.go its
// listings, view_reader.go its readers.
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
// (peersLocked; seeds 5856, 5174); and with gone (a reader's, which v.mu
// guards), the writers that wrote its file at *at until a remove or a
// rename onto it took that path away. f itself, when it is one of the
// writers, is left out: its own held-back writes go before its reads
// anyway. A writer whose push fails reports it itself, at its next write
// or its close.
func (v *View) catchUp(at *string, gone *[]*viewFile, of *viewFile, f afero.File, seen *atomic.Uint64) {
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
	if gone != nil {
		ws = append(ws, *gone...)
	}
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

// dropAll does dropSome for each path of ws and the writers there (as
// writersUnder found them), and returns the first error.
func (v *View) dropAll(ws map[string][]*viewFile) error {
	var first error
	for q, w := range ws {
		if err := v.dropSome(q, nil, w); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// writersUnder returns, by path, the writers at p and below it.
func (v *View) writersUnder(p string) map[string][]*viewFile {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := map[string][]*viewFile{}
	for q, ws := range v.open {
		if q == p || strings.HasPrefix(q, p+"/") || p == "/" {
			out[q] = slices.Clone(ws)
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
