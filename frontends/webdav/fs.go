package webdav

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"mime"
	"net/http"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/afero"
	dav "golang.org/x/net/webdav"

	"github.com/upgate/upgate/backend"
)

// fileSystem is x/net/webdav's FileSystem over a login's afero.Fs.
//
// x/net/webdav opens a file for every property it reports: a PROPFIND of a
// directory of n files would open n files on the agent, each a stream and
// a descriptor there, and log n downloads. So a read-only open is lazy: it
// answers Stat from what the request already knows (a listing's entry, or
// one stat call) and opens the file on the first Read; Seek before that is
// arithmetic (HEAD never opens). A listing's entries are remembered for
// the rest of the request, so walking them stats nothing again.
//
// Symbolic links: WebDAV has none. A link to a file is shown as that file
// (GET reads the target, as FTP's RETR does). A link to a directory, or
// one that leads nowhere, is shown as an empty file, never as a
// collection: a client's recursive delete or a mirror's --delete would
// otherwise empty the directory it points to, through the link. DELETE
// and MOVE act on the link itself.
type fileSystem struct {
	fs  afero.Fs
	log *slog.Logger
}

var (
	_ dav.FileSystem      = (*fileSystem)(nil)
	_ dav.File            = (*readFile)(nil)
	_ dav.File            = (*writeFile)(nil)
	_ dav.File            = (*propFile)(nil)
	_ dav.DeadPropsHolder = (*propFile)(nil)
	_ dav.ContentTyper    = (*fileInfo)(nil)
)

// changed forgets what the request knew about paths.
func (q *request) changed() {
	if q != nil {
		q.stats = nil
	}
}

// Mkdir implements dav.FileSystem. It stops when the request is gone:
// x/net/webdav's COPY of a tree makes one call per collection and does
// not look at the request's context itself.
func (f *fileSystem) Mkdir(ctx context.Context, name string, perm os.FileMode) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	q := requestOf(ctx)
	p := cleanPath(name)
	var err error
	if q != nil && q.method == "COPY" && q.deep && p == q.dst {
		err = f.nested(q)
	}
	if err == nil {
		q.changed()
		err = f.fs.Mkdir(p, perm)
		if err == nil && q != nil && q.method == "COPY" && p == q.dst {
			q.made = true
		}
	}
	if q != nil && q.method == "COPY" && errors.Is(err, fs.ErrNotExist) {
		// A collection's COPY into a missing collection: 409, as a
		// file's (RFC 4918 9.8.5), not x/net/webdav's 404.
		return fmt.Errorf("%w: %w", errNoParent, err)
	}
	return err
}

// RemoveAll implements dav.FileSystem. x/net/webdav removes the existing
// destination of a MOVE or COPY with Overwrite: T before it renames or
// copies the source there (RFC 4918 9.8.4, 9.9.3). Here that removal
// never loses the source, nor a MOVE's destination when the move then
// fails:
//   - a source that is missing (a MOVE retried after its reply was lost)
//     or that the destination is or holds, by its paths or through a
//     symbolic link (nested), is refused before anything is removed;
//   - a file that a file replaces is not removed at all: the
//     rename or the upload that follows replaces it in one step, and if
//     they fail it stays; so is a link a MOVE replaces, but not one a
//     COPY replaces, whose upload would write through it;
//   - a MOVE's or COPY's other destination (a collection, a file a
//     collection replaces, a COPY's link) is moved aside in its
//     directory and removed once the rename or the copy succeeded; a
//     rename that fails (to another mount: EXDEV) puts it back (Rename,
//     restoreAside), and so does a copy that fails, once what it made
//     there is removed (settle): a collection's COPY that meets a member
//     it cannot read, a full disk or a client gone mid-copy leaves the
//     destination as it was, where x/net/webdav (and Apache) would have
//     deleted it first;
//   - a collection to replace is first walked: one holding a directory
//     its user may not list (so not empty, so not remove) is refused
//     before anything changes, not removed in part (listable).
func (f *fileSystem) RemoveAll(ctx context.Context, name string) error {
	p := cleanPath(name)
	if p == "/" {
		return &fs.PathError{Op: "remove", Path: p, Err: fmt.Errorf("%w: the root collection cannot be removed", os.ErrPermission)}
	}
	q := requestOf(ctx)
	if q != nil && q.depthNotInfinite {
		if fi, err := backend.Lstat(f.fs, p); err == nil && fi.IsDir() {
			return &fs.PathError{Op: "remove", Path: p, Err: fmt.Errorf("%w: %w", syscall.EINVAL, errDeleteDepth)}
		}
	}
	if q == nil || (q.method != "MOVE" && q.method != "COPY") || p != q.dst {
		q.changed()
		err := f.fs.RemoveAll(p)
		if err != nil && q != nil && q.method == "DELETE" && p == q.path {
			q.deleteFailed = true
			// A member its user may not remove: name what is left. Any
			// other error (the agent unreachable, a read-only mount, a
			// mount point) answers alone, as it did.
			if errors.Is(err, fs.ErrPermission) && !errors.Is(err, syscall.EROFS) {
				q.undeleted = f.left(ctx, p)
			}
		}
		return err
	}
	src, err := backend.Lstat(f.fs, q.path)
	if err != nil {
		return err
	}
	dst, err := backend.Lstat(f.fs, p)
	if err != nil {
		return err
	}
	if !src.IsDir() && !dst.IsDir() && (q.method == "MOVE" || dst.Mode()&fs.ModeSymlink == 0) {
		return nil
	}
	if err := f.nested(q); err != nil {
		return err
	}
	if dst.IsDir() {
		if err := f.listable(p); err != nil {
			return err
		}
	}
	q.changed()
	var b [8]byte
	_, _ = rand.Read(b[:])
	aside := path.Join(path.Dir(p), asidePrefix+hex.EncodeToString(b[:]))
	if err := f.fs.Rename(p, aside); err != nil {
		return err
	}
	q.aside = aside
	return nil
}

// listableMax bounds the entries listable walks; past it, the walk stops
// and lets the removal find out.
const listableMax = 100_000

// listable walks the collection p, which a MOVE or COPY is to replace,
// and refuses it where a directory in it cannot be listed: its user may
// not read or search it (mode 0600, 0444, 0000), so could not empty it,
// and the removal after the move or copy would fail part way, having
// removed the rest (the agent removes what it can, as rm -r). Links are
// not followed. A directory whose entries its user may not unlink (0555)
// is not found here; the removal's failure is then the reply's (MOVE)
// or logged (COPY).
func (f *fileSystem) listable(p string) error {
	todo, seen := []string{p}, 0
	for len(todo) > 0 && seen < listableMax {
		dir := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		d, err := f.fs.Open(dir)
		var fis []os.FileInfo
		if err == nil {
			fis, err = d.Readdir(-1)
			d.Close()
		}
		if err != nil {
			return &fs.PathError{Op: "remove", Path: p, Err: fmt.Errorf("%s cannot be listed, so %s cannot be replaced whole: %w", dir, p, err)}
		}
		seen += len(fis)
		for _, fi := range fis {
			if fi.IsDir() {
				todo = append(todo, path.Join(dir, fi.Name()))
			}
		}
	}
	return nil
}

// asidePrefix names a MOVE's or COPY's replaced destination while the
// move or copy runs (RemoveAll).
const asidePrefix = ".upgate-replaced-"

// nested refuses a MOVE or COPY whose destination is the source itself
// or holds it (removing the destination would remove the source), or,
// for a MOVE or an infinite COPY, lies inside the source collection (the
// COPY would copy what it makes), where a symbolic link on the way makes
// it so. The handler refuses the same by the paths as sent (inside);
// only a collection's MOVE or COPY, or a file's onto a collection, gets
// here, so a file's save pays nothing. Each path's last element is not
// followed: MOVE, COPY and DELETE act on a link itself.
func (f *fileSystem) nested(q *request) error {
	entry := func(p string) (string, error) {
		dir, err := backend.RealPath(f.fs, path.Dir(p))
		if err != nil {
			return "", err
		}
		return path.Join(dir, path.Base(p)), nil
	}
	src, err := entry(q.path)
	if err != nil {
		return err
	}
	dst, err := entry(q.dst)
	if err != nil {
		return err
	}
	switch {
	case src == dst || inside(src, dst):
		return &fs.PathError{Op: "remove", Path: q.dst, Err: fmt.Errorf("%w: the destination is %s, which is or holds the source %s (%s) through a symbolic link, and removing it would remove the source", os.ErrPermission, dst, q.path, src)}
	case q.deep && inside(dst, src):
		return &fs.PathError{Op: "mkdir", Path: q.dst, Err: fmt.Errorf("%w: the destination is %s, inside the source collection %s (%s) through a symbolic link", os.ErrPermission, dst, q.path, src)}
	}
	return nil
}

// maxUndeleted bounds the paths a DELETE that failed part way names in
// its 207; one that left more answers its error alone.
const maxUndeleted = 1000

// left is what a DELETE of the collection p that failed part way left of
// it, the collection first and then its members in preorder, each
// directory's sorted, for the 207 that names them; nil when p is gone,
// is no collection, is empty (its own removal failed: the error says
// why), holds more than maxUndeleted entries (each directory is read no
// further than that), or ctx ends. A directory that cannot be listed is
// named alone.
func (f *fileSystem) left(ctx context.Context, p string) []string {
	fi, err := backend.Lstat(f.fs, p)
	if err != nil || !fi.IsDir() {
		return nil
	}
	out := []string{p}
	var walk func(dir string) bool
	walk = func(dir string) bool {
		if ctx.Err() != nil {
			return false
		}
		d, err := f.fs.Open(dir)
		if err != nil {
			return true
		}
		room := maxUndeleted - len(out)
		ents, err := d.Readdir(room + 1)
		d.Close()
		if len(ents) > room {
			return false
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return true
		}
		slices.SortFunc(ents, func(a, b os.FileInfo) int { return strings.Compare(a.Name(), b.Name()) })
		for _, e := range ents {
			child := path.Join(dir, e.Name())
			out = append(out, child)
			if e.IsDir() && !walk(child) {
				return false
			}
		}
		return true
	}
	if !walk(p) || len(out) == 1 {
		return nil
	}
	return out
}

// errDeleteDepth refuses a DELETE of a collection with a Depth header
// other than infinity (400): a client that sends one may not mean the
// whole tree.
var errDeleteDepth = errors.New("a DELETE of a collection must be Depth: infinity (RFC 4918 9.6.1), and removes all it holds")

// errNoParent is a MOVE whose destination's parent collection is missing
// (409, RFC 4918 9.9.4), told apart from a missing source (404).
var errNoParent = errors.New("webdav: the destination's parent collection does not exist")

// Rename implements dav.FileSystem. A destination RemoveAll moved aside
// is removed once the rename succeeded, and put back if it failed. One
// that cannot be removed whole (a file the agent's user may not delete
// in it, a mount inside it) undoes the move: the source goes back, and
// so does what is left of the destination, as the RemoveAll of before
// left it, with its error; nothing stays under the aside name.
func (f *fileSystem) Rename(ctx context.Context, oldName, newName string) error {
	q := requestOf(ctx)
	q.changed()
	oldName, newName = cleanPath(oldName), cleanPath(newName)
	err := f.fs.Rename(oldName, newName)
	if q != nil && q.aside != "" {
		if err != nil {
			_ = f.restoreAside(q)
		} else if rerr := f.fs.RemoveAll(q.aside); rerr != nil {
			if uerr := f.fs.Rename(newName, oldName); uerr != nil {
				// The move is done and stays: say so, and leave the
				// rest of the old destination where it is.
				f.log.Error("webdav: MOVE: the replaced destination could not be removed, nor the move undone", "path", newName, "aside", q.aside, "err", rerr, "undo", uerr)
				q.aside = ""
				return nil
			}
			_ = f.restoreAside(q)
			err = fmt.Errorf("webdav: MOVE %s: the destination %s it was to replace cannot be removed whole, and stays: %w", oldName, newName, rerr)
		} else {
			q.aside = ""
		}
	}
	if errors.Is(err, os.ErrNotExist) {
		if _, serr := backend.Lstat(f.fs, oldName); serr == nil {
			return fmt.Errorf("%w: %w", errNoParent, err)
		}
	}
	if err == nil {
		f.moved(q, newName)
	}
	return err
}

// moved sets a MOVE's X-OC-Mtime on its destination, once it is there,
// when that is a file (not a collection, not a link). The move is done
// whatever happens here: a failure is logged, and the reply does not say
// "X-OC-Mtime: accepted", so that a client that needs the time sets it
// another way (rclone then sends a PROPPATCH).
func (f *fileSystem) moved(q *request, p string) {
	if q == nil || q.method != "MOVE" || p != q.dst || q.mtime.IsZero() {
		return
	}
	fi, err := backend.Lstat(f.fs, p)
	if err != nil || !fi.Mode().IsRegular() {
		return
	}
	// Not through a link another session put there since the Lstat.
	if err := backend.Lchtimes(f.fs, p, q.mtime, q.mtime); err != nil {
		f.log.Warn("webdav: MOVE: X-OC-Mtime not set on the destination", "path", p, "err", err)
		return
	}
	q.mtimed = true
}

// settle ends a COPY, or a replaced destination that RemoveAll moved
// aside and nothing settled yet. A COPY that succeeded (ok, just before
// its reply) removes the replaced destination. A COPY that failed
// removes the collection it made at the destination, if it made it (so
// that a copy cut short leaves no part of a tree), and puts the replaced
// destination back; a MOVE's is put back (its rename did not happen:
// Rename settles one that did). What cannot be undone is logged; an
// aside that cannot be put back stays under its name.
func (f *fileSystem) settle(q *request, ok bool) {
	if q == nil || q.aside == "" && !q.made {
		return
	}
	if q.method == "COPY" {
		q.changed()
		made := q.made
		q.made = false
		if ok {
			aside := q.aside
			q.aside = ""
			if aside == "" {
				return
			}
			if err := f.fs.RemoveAll(aside); err != nil {
				// What listable could not foresee (a directory whose
				// entries its user may not unlink): the copy is done
				// and stays; what is left of the old destination stays
				// aside, which its user could not have removed either.
				f.log.Error("webdav: COPY: the destination it replaced could not be removed whole; what is left of it stays aside", "path", q.dst, "aside", aside, "err", err)
			}
			return
		}
		// Only what this COPY made: a name another session took
		// meanwhile keeps what it put there (restoreAside then leaves
		// the old destination aside, and says so). A file's failed
		// upload never committed.
		if made {
			if err := f.fs.RemoveAll(q.dst); err != nil && !errors.Is(err, fs.ErrNotExist) {
				f.log.Error("webdav: COPY failed, and what it made could not be removed", "path", q.dst, "aside", q.aside, "err", err)
				q.aside = ""
				return
			}
		}
	}
	_ = f.restoreAside(q)
}

// restoreAside puts a MOVE's destination that RemoveAll moved aside back
// in its place, where the move did not happen, unless something else
// took that place meanwhile (another session's upload): then the aside
// stays, and is logged. ServeHTTP calls it too, for a request that ended
// between the two.
func (f *fileSystem) restoreAside(q *request) error {
	if q == nil || q.aside == "" {
		return nil
	}
	aside := q.aside
	q.aside = ""
	var err error
	if _, serr := backend.Lstat(f.fs, q.dst); !errors.Is(serr, fs.ErrNotExist) {
		err = fmt.Errorf("webdav: %s is taken again (%v)", q.dst, serr)
	} else {
		err = f.fs.Rename(aside, q.dst)
	}
	if err != nil {
		f.log.Error("webdav: MOVE failed, and its destination could not be put back", "path", q.dst, "aside", aside, "err", err)
	}
	return err
}

// Stat implements dav.FileSystem.
func (f *fileSystem) Stat(ctx context.Context, name string) (os.FileInfo, error) {
	fi, err := f.stat(requestOf(ctx), cleanPath(name))
	if err != nil {
		return nil, err
	}
	return fi, nil
}

// stat describes p as this filesystem shows it (see the type's doc on
// links), from the request's listings when they have it. A path below a
// file names nothing: ENOTDIR is ENOENT here, so that a GET, PROPFIND,
// DELETE or the source of a COPY answers 404, as for any missing path,
// and a destination there is one to create, which fails as a creation
// below a file does (409).
func (f *fileSystem) stat(q *request, p string) (*fileInfo, error) {
	if q != nil {
		if fi, ok := q.stats[p]; ok {
			return fi, nil
		}
	}
	fi, err := backend.Lstat(f.fs, p)
	if errors.Is(err, syscall.ENOTDIR) {
		// (os.IsNotExist, which x/net/webdav asks, knows only the
		// errno itself in a PathError.)
		return nil, &fs.PathError{Op: "stat", Path: p, Err: syscall.ENOENT}
	}
	if err != nil {
		return nil, err
	}
	info := f.info(p, fi)
	if q != nil {
		// x/net/webdav asks again for what it asked (a PROPFIND's Stat,
		// then an open to walk, then one for each resource's
		// properties): each ask is an agent round trip. Kept until the
		// request changes something (request.changed).
		q.known(p, info)
	}
	return info, nil
}

// known remembers fi, what p is now, for the rest of the request.
func (q *request) known(p string, fi *fileInfo) {
	if q.stats == nil {
		q.stats = map[string]*fileInfo{}
	}
	q.stats[p] = fi
}

// info shows fi, which describes p without following a link.
func (f *fileSystem) info(p string, fi os.FileInfo) *fileInfo {
	if fi.Mode()&os.ModeSymlink == 0 {
		return &fileInfo{FileInfo: fi}
	}
	if t, err := f.fs.Stat(p); err == nil && t.Mode().IsRegular() {
		return &fileInfo{FileInfo: t, name: fi.Name()}
	}
	return &fileInfo{FileInfo: fi, link: true}
}

// OpenFile implements dav.FileSystem. x/net/webdav opens read-only to
// read and to report properties, read-write without other flags only to
// patch properties (PROPPATCH), and with O_CREATE|O_TRUNC to upload (PUT,
// COPY, and LOCK of a missing resource).
func (f *fileSystem) OpenFile(ctx context.Context, name string, flag int, perm os.FileMode) (dav.File, error) {
	if err := ctx.Err(); err != nil {
		return nil, err // a COPY's next file, after its client left
	}
	q := requestOf(ctx)
	p := cleanPath(name)
	switch flag {
	case os.O_RDONLY:
		fi, err := f.stat(q, p)
		if err != nil {
			return nil, err
		}
		if q != nil && q.method == "PROPFIND" {
			return &propFile{readFile: readFile{fsys: f, q: q, name: p, info: fi}}, nil
		}
		return &readFile{fsys: f, q: q, name: p, info: fi}, nil
	case os.O_RDWR:
		fi, err := f.stat(q, p)
		if err != nil {
			return nil, err
		}
		return &propFile{readFile: readFile{fsys: f, q: q, name: p, info: fi}}, nil
	}
	q.changed()
	if fi, err := backend.Lstat(f.fs, p); err == nil && fi.IsDir() {
		return nil, &fs.PathError{Op: "open", Path: p, Err: fmt.Errorf("%w: a collection cannot be written as a file", syscall.EISDIR)}
	} else if err == nil && q != nil && q.method == http.MethodPut && p == q.path {
		q.replaced = true
	}
	file, err := f.fs.OpenFile(p, flag, perm)
	if errors.Is(err, fs.ErrNotExist) && flag&os.O_CREATE != 0 {
		// A missing collection on the way: 409 (RFC 4918 9.7.1), also
		// for a LOCK of a new name, which x/net/webdav would answer 500.
		return nil, fmt.Errorf("%w: %w", errNoParent, err)
	}
	if err != nil {
		return nil, err
	}
	w := &writeFile{File: file, q: q}
	if q != nil && !q.mtime.IsZero() && (q.method == http.MethodPut && p == q.path || q.method == "COPY" && p == q.dst) {
		// Set after the body (or the copy's data), before the commit
		// (Close): a write after it would move the mtime, as on a
		// local file. A COPY's collection gets none: its files are
		// opened below it.
		if _, ok := file.(backend.TimesSetter); !ok {
			err := &fs.PathError{Op: "chtimes", Path: p, Err: errors.ErrUnsupported}
			w.abort(err)
			_ = file.Close()
			return nil, err
		}
		w.mtime = q.mtime
		q.mtimed = true
	}
	return w, nil
}

// fileInfo is what the filesystem tells x/net/webdav about a path.
type fileInfo struct {
	os.FileInfo
	name string // a link's own name, when FileInfo describes its target
	link bool   // a link that leads to no file: shown as an empty file
}

func (fi *fileInfo) Name() string {
	if fi.name != "" {
		return fi.name
	}
	return fi.FileInfo.Name()
}

func (fi *fileInfo) Size() int64 {
	if fi.link {
		return 0
	}
	return fi.FileInfo.Size()
}

func (fi *fileInfo) Mode() os.FileMode {
	if fi.link {
		return fi.FileInfo.Mode() & os.ModePerm
	}
	return fi.FileInfo.Mode()
}

func (fi *fileInfo) IsDir() bool { return !fi.link && fi.FileInfo.IsDir() }

// ContentType implements dav.ContentTyper from the name alone, so that a
// PROPFIND opens no file to sniff it.
func (fi *fileInfo) ContentType(context.Context) (string, error) {
	if t := mime.TypeByExtension(path.Ext(fi.Name())); t != "" {
		return t, nil
	}
	return "application/octet-stream", nil
}

// readFile is a lazily opened read-only file (see fileSystem).
type readFile struct {
	fsys *fileSystem
	q    *request
	name string
	info *fileInfo
	f    afero.File // opened by the first Read or Readdir
	off  int64      // the offset Seek set before the open
}

func (r *readFile) Stat() (os.FileInfo, error) { return r.info, nil }

func (r *readFile) Close() error {
	if r.f == nil {
		return nil
	}
	return r.f.Close()
}

func (r *readFile) open() error {
	if r.f != nil {
		return nil
	}
	f, err := r.fsys.fs.OpenFile(r.name, os.O_RDONLY, 0)
	if err != nil {
		return err
	}
	if r.off != 0 {
		if _, err := f.Seek(r.off, io.SeekStart); err != nil {
			_ = f.Close()
			return err
		}
	}
	r.f = f
	return nil
}

func (r *readFile) Read(p []byte) (int, error) {
	if r.info.link {
		return 0, io.EOF
	}
	if r.info.IsDir() {
		return 0, &fs.PathError{Op: "read", Path: r.name, Err: syscall.EISDIR}
	}
	if err := r.open(); err != nil {
		return 0, err
	}
	return r.f.Read(p)
}

func (r *readFile) Seek(offset int64, whence int) (int64, error) {
	if r.f != nil {
		return r.f.Seek(offset, whence)
	}
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += r.off
	case io.SeekEnd:
		offset += r.info.Size()
	default:
		return 0, &fs.PathError{Op: "seek", Path: r.name, Err: syscall.EINVAL}
	}
	if offset < 0 {
		return 0, &fs.PathError{Op: "seek", Path: r.name, Err: syscall.EINVAL}
	}
	r.off = offset
	return offset, nil
}

// Readdir lists the directory and remembers its entries for the request.
func (r *readFile) Readdir(count int) ([]os.FileInfo, error) {
	if !r.info.IsDir() {
		return nil, &fs.PathError{Op: "readdir", Path: r.name, Err: syscall.ENOTDIR}
	}
	if r.q != nil && r.q.listedPath == r.name && r.q.listed != nil && count <= 0 {
		out := r.q.listed
		r.q.listed, r.q.listedPath = nil, ""
		return out, nil
	}
	if err := r.open(); err != nil {
		return nil, err
	}
	return r.fsys.entries(r.q, r.name, r.f, count)
}

// entries reads count entries of the directory d, which is dir, as
// afero.File's Readdir does, shows them as this filesystem shows them,
// and remembers them for the request.
func (f *fileSystem) entries(q *request, dir string, d afero.File, count int) ([]os.FileInfo, error) {
	entries, err := d.Readdir(count)
	out := make([]os.FileInfo, len(entries))
	for i, e := range entries {
		p := path.Join(dir, e.Name())
		fi := f.info(p, e)
		if q != nil {
			q.known(p, fi)
		}
		out[i] = fi
	}
	return out, err
}

// list reads the whole directory p: a Depth 1 PROPFIND's, before its
// answer begins (checkFS).
func (f *fileSystem) list(q *request, p string) ([]os.FileInfo, error) {
	d, err := f.fs.Open(p)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return f.entries(q, p, d, 0)
}

func (r *readFile) Write([]byte) (int, error) {
	return 0, &fs.PathError{Op: "write", Path: r.name, Err: os.ErrPermission}
}

// writeFile is an upload: it aborts, never commits, when the request's
// body failed or a write did.
type writeFile struct {
	afero.File
	q     *request
	err   error     // the first write error, or setting mtime's
	mtime time.Time // X-OC-Mtime's, set after the body (setMtime); zero: none
	set   bool      // mtime was set
}

// setMtime sets the PUT's X-OC-Mtime once the body is in, unless the body
// or a write failed (Close then aborts); a failure to set it fails the
// upload.
func (w *writeFile) setMtime() error {
	if w.mtime.IsZero() || w.set || w.err != nil || w.q != nil && w.q.bodyErr != nil {
		return nil
	}
	w.set = true
	if err := (backend.FileWrapper{File: w.File}).SetTimes(w.mtime, w.mtime); err != nil {
		w.err = err
		return err
	}
	return nil
}

// Stat implements afero.File. x/net/webdav's PUT answers the ETag of the
// Stat after the body, before Close: the X-OC-Mtime is set first, so that
// it is the file's ETag from then on.
func (w *writeFile) Stat() (os.FileInfo, error) {
	if err := w.setMtime(); err != nil {
		return nil, err
	}
	return w.File.Stat()
}

func (w *writeFile) Write(p []byte) (int, error) {
	n, err := w.File.Write(p)
	if err != nil && w.err == nil {
		w.err = err
	}
	return n, err
}

// ReadFrom passes the PUT's io.Copy on to the file (backend.ReadFrom),
// which reads the body straight into its message buffers: a copy less
// than through Write, and one acknowledgement wait per message rather
// than per 32 KiB for a file written in place. A failure is the upload's,
// as Write's.
func (w *writeFile) ReadFrom(r io.Reader) (int64, error) {
	n, err := backend.ReadFrom(w.File, r)
	if err != nil && w.err == nil {
		w.err = err
	}
	return n, err
}

func (w *writeFile) Readdir(int) ([]os.FileInfo, error) {
	return nil, &fs.PathError{Op: "readdir", Path: w.Name(), Err: syscall.ENOTDIR}
}

// abort tells the upload it failed, so that Close discards it.
func (w *writeFile) abort(err error) {
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	if ta, ok := w.File.(backend.TransferAborter); ok {
		ta.TransferError(err)
	}
}

// Close commits the upload, or aborts it if the body or a write failed.
func (w *writeFile) Close() error {
	if err := w.setMtime(); err != nil {
		w.abort(err)
		_ = w.File.Close()
		return err
	}
	cause := w.err
	if w.q != nil && w.q.bodyErr != nil {
		cause = w.q.bodyErr
	}
	if cause != nil {
		w.abort(cause)
	}
	return w.File.Close()
}

// propFile is what PROPFIND and PROPPATCH open: nothing on the agent,
// just the path, whose locks it reports (lockdiscovery) and whose mtime
// it sets from the few properties clients use for that.
type propFile struct {
	readFile
}

// msNamespace is Windows Explorer's property namespace.
const msNamespace = "urn:schemas-microsoft-com:"

// propKind says what PROPPATCH does with a property: set the mtime from
// it ({DAV:}lastmodified in seconds, as ownCloud spells it, and Windows'
// Win32LastModifiedTime), accept and drop it (Windows Explorer sets its
// creation time, access time and DOS attributes with every upload and
// reports an error when refused; upgate keeps none of them), or refuse it.
func propKind(n xml.Name) (mtime, ignored bool) {
	switch {
	case n == xml.Name{Space: "DAV:", Local: "lastmodified"}, n == xml.Name{Space: msNamespace, Local: "Win32LastModifiedTime"}:
		return true, false
	case n.Space == msNamespace && (n.Local == "Win32CreationTime" || n.Local == "Win32LastAccessTime" || n.Local == "Win32FileAttributes"):
		return false, true
	}
	return false, false
}

// lockDiscovery is the property that lists a resource's locks (RFC
// 4918 15.8), which x/net/webdav leaves out of PROPFIND (404).
var lockDiscovery = xml.Name{Space: "DAV:", Local: "lockdiscovery"}

// noLocks is the lockdiscovery of a resource no lock covers. Never
// written to.
var noLocks = map[xml.Name]dav.Property{lockDiscovery: {XMLName: lockDiscovery}}

// DeadProps implements dav.DeadPropsHolder. No property is stored: what
// it reports is lockdiscovery, the user's locks that cover the resource
// (locks are each user's own: no one else's shows), so that a PROPFIND
// (allprop and propname too, as on Apache) names them, each with what
// x/net/webdav's LOCK answer gives: type, scope, depth, owner, the
// seconds left, token and root.
func (p *propFile) DeadProps() (map[xml.Name]dav.Property, error) {
	if p.q == nil || p.q.locks == nil {
		return nil, nil
	}
	now := time.Now()
	locks := p.q.locks.active(now, p.name)
	if len(locks) == 0 {
		// Most resources of a listing: one map for all of them, which
		// x/net/webdav only reads.
		return noLocks, nil
	}
	var b strings.Builder
	for _, l := range locks {
		l.active.write(&b, int64((l.end.Sub(now)+time.Second-1)/time.Second))
	}
	return map[xml.Name]dav.Property{lockDiscovery: {XMLName: lockDiscovery, InnerXML: []byte(b.String())}}, nil
}

// Patch implements dav.DeadPropsHolder, all or nothing as RFC 4918 asks:
// the mtime properties set the mtime, Windows' other file properties are
// accepted and dropped, and anything else is refused (403) along with the
// rest (424).
func (p *propFile) Patch(patches []dav.Proppatch) ([]dav.Propstat, error) {
	var mtime time.Time
	ok := dav.Propstat{Status: http.StatusOK}
	forbidden := dav.Propstat{Status: http.StatusForbidden}
	conflict := dav.Propstat{Status: http.StatusConflict}
	for _, patch := range patches {
		for _, prop := range patch.Props {
			name := dav.Property{XMLName: prop.XMLName}
			isMtime, ignored := propKind(prop.XMLName)
			switch {
			case patch.Remove:
				forbidden.Props = append(forbidden.Props, name)
			case isMtime:
				t, err := parsePropTime(string(prop.InnerXML))
				if err != nil {
					conflict.Props = append(conflict.Props, name)
					conflict.ResponseDescription = fmt.Sprintf("%s: %q is neither seconds since 1970 nor an HTTP date", prop.XMLName.Local, prop.InnerXML)
					continue
				}
				mtime = t
				ok.Props = append(ok.Props, name)
			case ignored:
				ok.Props = append(ok.Props, name)
			default:
				forbidden.Props = append(forbidden.Props, name)
			}
		}
	}
	if len(forbidden.Props) > 0 || len(conflict.Props) > 0 {
		failed := dav.Propstat{Status: dav.StatusFailedDependency, Props: ok.Props}
		var out []dav.Propstat
		for _, ps := range []dav.Propstat{forbidden, conflict, failed} {
			if len(ps.Props) > 0 {
				out = append(out, ps)
			}
		}
		return out, nil
	}
	if !mtime.IsZero() {
		p.q.changed()
		if err := p.fsys.fs.Chtimes(p.name, mtime, mtime); err != nil {
			return nil, err
		}
	}
	return []dav.Propstat{ok}, nil
}

// parsePropTime parses seconds since 1970 or an HTTP date (RFC 1123, as
// Windows sends it).
func parsePropTime(v string) (time.Time, error) {
	if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
		return time.Unix(n, 0), nil
	}
	return http.ParseTime(v)
}
