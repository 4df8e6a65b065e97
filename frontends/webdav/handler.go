package webdav

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	dav "golang.org/x/net/webdav"

	"github.com/upgate/upgate/backend"
	"github.com/upgate/upgate/gateway"
)

// request is one request's state, shared by the handler and the
// filesystem through the request's context. It is used by the request's
// goroutine only.
type request struct {
	method string
	path   string // the request's path, cleaned
	dst    string // MOVE and COPY: the Destination's path, cleaned
	// dstSlash: the Destination's path ends in "/" once its
	// dot-segments are gone: it names a collection (namesCollection).
	dstSlash bool
	deep     bool // MOVE, or COPY of Depth infinity: a collection's members go too
	// mtime: the X-OC-Mtime to set on a PUT's file, or on a COPY's or
	// MOVE's destination when that is a file; zero if none.
	mtime  time.Time
	mtimed bool // the mtime was handed to the upload, or set: "accepted"
	// depthNotInfinite: a DELETE with a Depth header other than infinity.
	depthNotInfinite bool
	// replaced: a PUT whose path held a file, answered 204, not
	// x/net/webdav's 201 (RFC 9110 9.3.4: 201 only for a new one).
	replaced bool

	// lockErr: why requestLocks refused a change or an UNLOCK (it hands
	// x/net/webdav the bare sentinel, dav.ErrLocked or ErrNoSuchLock,
	// which x/net/webdav compares errors with).
	lockErr error

	status  int   // a failure upgate decided before x/net/webdav ran, 0 if none
	err     error // why: upgate's failure, or the error x/net/webdav reported
	bodyErr error // the request body failed (ended early, stalled, too large)
	body    *body

	// deleteFailed: a DELETE's removal failed, perhaps part way.
	deleteFailed bool
	// undeleted: what a DELETE of a collection that failed part way left
	// (the collection first, then what it still holds, in preorder),
	// answered as a 207 Multi-Status naming each (RFC 4918 9.6.1), as
	// Apache's mod_dav answers it; nil for any other failure.
	undeleted []string

	// stats holds what the request's listings told about paths, so that
	// a PROPFIND does not stat each entry again on the agent. Every
	// change through the filesystem clears it.
	stats map[string]*fileInfo
	// made: a COPY made the collection at its destination (settle
	// removes it if the copy fails).
	made bool
	// listed is a Depth 1 PROPFIND's collection's listing, read before
	// the answer begins (checkFS), for x/net/webdav's Readdir of it;
	// listedPath the collection's path.
	listed     []os.FileInfo
	listedPath string
	// locks are the user's locks, which a PROPFIND's lockdiscovery
	// reports; nil before the request reaches them.
	locks *userLocks
	// aside is where a MOVE's destination that a collection replaces (or
	// that replaces one) waits until the rename is done: then it is
	// removed, or put back if the rename failed.
	aside string
}

// requestKey is the context key of a request's *request.
type requestKey struct{}

// requestOf returns ctx's request state, or nil.
func requestOf(ctx context.Context) *request {
	r, _ := ctx.Value(requestKey{}).(*request)
	return r
}

// fail records a failure decided before x/net/webdav runs.
func (q *request) fail(status int, err error) {
	q.status, q.err = status, err
}

// ServeHTTP authenticates the request through its connection's login,
// checks what x/net/webdav would let through (depth, sizes, destinations,
// partial PUTs), serves it with x/net/webdav over the user's filesystem
// and answers every failure with a status and a text that says why.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rw := &response{w: w, rc: http.NewResponseController(w), progress: s.cfg.ProgressTimeout}
	_ = rw.rc.SetWriteDeadline(time.Time{}) // the previous request's may have passed
	q := &request{method: r.Method, path: cleanPath(r.URL.Path)}
	rw.req = q
	c, _ := r.Context().Value(connKey{}).(*conn)
	log := s.log
	if c != nil && c.sess != nil {
		log = c.sess.Logger()
		c.sess.SetOp(r.Method + " " + q.path)
		defer c.sess.SetOp("idle")
	}
	defer func() {
		if p := recover(); p != nil {
			log.Error("webdav: panic serving a request", "method", r.Method, "path", q.path, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			q.fail(http.StatusInternalServerError, fmt.Errorf("webdav: internal error serving %s %s", r.Method, q.path))
			rw.closeConn = true // an upload it left open aborts with the connection
		}
		status := rw.finish()
		s.logRequest(log, r, q, rw, status, time.Since(start))
	}()
	if c == nil || c.sess == nil {
		q.fail(http.StatusServiceUnavailable, errors.New("webdav: connection not registered by the gateway's accept layer"))
		rw.closeConn = true
		return
	}
	login, err := s.authenticate(r, c)
	if err != nil {
		q.fail(loginStatus(err), err)
		rw.closeConn = !errors.Is(err, errNoCredentials)
		return
	}
	if !s.check(r, q, rw) {
		return
	}
	// An uploaded page never runs script in this origin, where a browser
	// holds the user's Basic credentials.
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Content-Security-Policy", "sandbox")
	fsys := &fileSystem{fs: login.Fs, log: log}
	if !s.checkFS(r, q, fsys, rw) || !s.checkConditions(r, q, fsys) {
		return
	}
	// A COPY's replaced destination goes just before its reply says it
	// succeeded; one that failed, or a MOVE that ended (panicked)
	// between its removal and its rename, gets its destination back.
	rw.succeeding = func() { fsys.settle(q, true) }
	defer fsys.settle(q, false)
	locks := s.locks.forRequest(login.User, q, r.Header.Get("If"), func(p string) bool {
		_, err := fsys.stat(q, p)
		return err == nil
	})
	q.locks = locks.userLocks
	locks.etag = func(p string) string {
		fi, err := fsys.stat(q, p)
		if err != nil {
			return ""
		}
		etag, _ := etagOf(r.Context(), fi)
		return etag
	}
	h := &dav.Handler{
		FileSystem: fsys,
		LockSystem: locks,
		Logger: func(_ *http.Request, err error) {
			if (errors.Is(err, dav.ErrLocked) || errors.Is(err, dav.ErrNoSuchLock)) && q.lockErr != nil {
				err = q.lockErr // says which lock
			}
			if err != nil {
				q.err = err
			}
		},
	}
	h.ServeHTTP(rw, r.WithContext(context.WithValue(r.Context(), requestKey{}, q)))
	if q.deleteFailed {
		// A DELETE that may have removed part of its collection: the
		// locks of what it removed go, those of what is left stay.
		locks.dropBelow(time.Now(), q.path, func(root string) bool {
			_, err := backend.Lstat(login.Fs, root)
			return err == nil || !errors.Is(err, fs.ErrNotExist)
		})
	}
	if (r.Method == "DELETE" || r.Method == "MOVE") && rw.status >= 200 && rw.status < 300 {
		// RFC 4918 9.6.1 and 9.9: a DELETE destroys the locks rooted on
		// what it deleted, and a MOVE does not move the source's. memLS
		// keeps them, and a lock on a name gone would stop a later
		// DELETE of its collection (a review). A replaced destination's
		// name stays, and so do its locks.
		locks.dropBelow(time.Now(), q.path, nil)
	}
}

// check refuses what x/net/webdav would serve badly, and wraps the body.
// It returns false once it recorded a failure.
func (s *Server) check(r *http.Request, q *request, rw *response) bool {
	switch r.Method {
	case "OPTIONS", "GET", "HEAD", "POST", "DELETE", "PUT", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK", "PROPFIND", "PROPPATCH":
	default:
		q.fail(http.StatusNotImplemented, fmt.Errorf("webdav: method %q is not supported", r.Method))
		return false
	}
	if r.Method == http.MethodPut {
		switch {
		case namesCollection(r.URL.Path):
			q.fail(http.StatusMethodNotAllowed, fmt.Errorf("webdav: PUT %s: the URL names a collection (it ends in /, /. or /..); PUT a file's URL", q.path))
			return false
		case r.Header.Get("Content-Range") != "":
			// x/net/webdav would store the range as the whole file.
			q.fail(http.StatusBadRequest, fmt.Errorf("webdav: PUT %s: partial PUT (Content-Range) is not supported: send the whole file", q.path))
			return false
		}
		q.body = &body{ReadCloser: r.Body, q: q, rc: rw.rc, progress: s.cfg.ProgressTimeout}
		if v := r.Header.Get("OC-Checksum"); v != "" {
			sum, err := newBodySum(v)
			if err != nil {
				q.fail(http.StatusBadRequest, fmt.Errorf("webdav: PUT %s: %w", q.path, err))
				return false
			}
			q.body.sum = sum
		}
	} else {
		// PROPFIND, PROPPATCH and LOCK parse XML bodies; nothing else
		// reads one.
		q.body = &body{ReadCloser: http.MaxBytesReader(rw, r.Body, maxXMLBody), q: q, rc: rw.rc, progress: s.cfg.ProgressTimeout}
	}
	r.Body = q.body
	if v := r.Header.Get("X-OC-Mtime"); v != "" && (r.Method == "PUT" || r.Method == "COPY" || r.Method == "MOVE") {
		// ownCloud's, Nextcloud's and rclone's clients send it with an
		// upload, and rclone's with a COPY or MOVE of a file as well
		// (rclone serve webdav keeps a copy's time).
		t, err := parseUnixTime(v)
		if err != nil {
			q.fail(http.StatusBadRequest, fmt.Errorf("webdav: %s %s: X-OC-Mtime %q: want seconds since 1970", r.Method, q.path, v))
			return false
		}
		q.mtime = t
	}
	switch r.Method {
	case "DELETE", "MOVE":
		if q.path == "/" {
			q.fail(http.StatusForbidden, fmt.Errorf("webdav: %s /: the root collection cannot be deleted or moved", r.Method))
			return false
		}
		// RFC 4918 9.6.1: a DELETE of a collection is Depth: infinity,
		// and a client must not send another; one that does may not
		// mean the whole tree, which x/net/webdav would delete.
		// RemoveAll refuses it for a collection, as mod_dav does.
		d := r.Header.Get("Depth")
		q.depthNotInfinite = r.Method == "DELETE" && d != "" && !strings.EqualFold(d, "infinity")
	case "LOCK":
		// x/net/webdav reports an infinite lock as "Second-0" and the
		// duration asked for rather than the one granted: ask for the
		// one userLocks grants.
		if d, ok := s.lockTimeout(r.Header.Get("Timeout")); ok {
			r.Header.Set("Timeout", "Second-"+strconv.FormatInt(int64(d/time.Second), 10))
		}
	}
	if r.Method == "MOVE" || r.Method == "COPY" {
		// RFC 4918 10.6: T or F, case-insensitive (RFC 5234 2.3), as
		// mod_dav reads it; x/net/webdav's COPY takes all but "F" for T.
		switch o := r.Header.Get("Overwrite"); o {
		case "", "T", "F":
		case "t", "f":
			r.Header.Set("Overwrite", strings.ToUpper(o))
		default:
			q.fail(http.StatusBadRequest, fmt.Errorf("webdav: %s %s: Overwrite %q: want T or F", r.Method, q.path, o))
			return false
		}
	}
	if d := r.Header.Get("Depth"); d != "infinity" && strings.EqualFold(d, "infinity") {
		// Case-insensitive too, as mod_dav reads it; x/net/webdav
		// knows "infinity" alone.
		r.Header.Set("Depth", "infinity")
	}
	if r.Method == "MOVE" && r.Header.Get("Overwrite") == "" {
		// RFC 4918 10.6: no Overwrite header means T (x/net/webdav takes
		// it for F on MOVE, not on COPY).
		r.Header.Set("Overwrite", "T")
	}
	if r.Method == "MOVE" || r.Method == "COPY" {
		hdr := r.Header.Get("Destination")
		u, err := url.Parse(hdr)
		if hdr != "" && err == nil {
			if u.Host != "" && u.Host != r.Host {
				q.fail(http.StatusBadGateway, fmt.Errorf("webdav: %s %s: Destination %q is on another server than %q: MOVE and COPY stay on this one", r.Method, q.path, hdr, r.Host))
				return false
			}
			q.dst = cleanPath(u.Path)
			q.dstSlash = namesCollection(u.Path) && q.dst != "/"
		}
		d := r.Header.Get("Depth")
		q.deep = r.Method == "MOVE" || d == "" || d == "infinity"
	}
	return true
}

// checkFS refuses, once the request's filesystem is known, what depends
// on what its paths name, in the order Apache's mod_dav checks:
//
//   - A URL that ends in "/" names a collection (RFC 4918 5.2): one that
//     names a file names nothing, 404, as the kernel answers ENOTDIR for
//     "a/" and as Apache answers a GET of it. (PUT refused such a URL
//     already, and MKCOL's own answer says it exists.)
//   - A MOVE or COPY of nothing is 404 before anything about its
//     destination: x/net/webdav's MOVE looks at the destination first.
//     Then, as mod_dav: a Destination ending in "/" that names a file
//     is refused (409, as a destination below a file: the filesystem's
//     ENOTDIR); one that exists, with Overwrite: F, is 412 before any
//     refusal of where it lies.
//   - RFC 4918 9.8.3 warns that an infinite COPY of /A into /A/B could
//     recurse forever (x/net/webdav's does, to 1,000 levels, a handle
//     held open at each), and deleting a destination that holds the
//     source (Overwrite: T, 9.8.4 and 9.9.3) would delete the source with
//     it. Both are refused, as mod_dav refuses them; the same through a
//     symbolic link is found by the filesystem (fileSystem.nested). A
//     file has no inside: a destination below it is the filesystem's to
//     refuse (409).
//   - RFC 4918 9.1 lets a server refuse a PROPFIND of infinite depth
//     (absent means infinite): a listing of a whole tree is unbounded
//     work. A file's is the file alone, and is served.
//   - A Depth 1 PROPFIND of a collection lists it before the answer
//     begins, so that a listing that fails (a collection its user may
//     read but not search, mode 0444, or not read, 0000) fails the
//     request (403, or as the error says), as FTP's LIST and SFTP's
//     READDIR fail. x/net/webdav would answer 207 with the collection
//     alone, which a sync client takes for an empty collection.
//
// What it looks up stays known to the rest of the request (fileSystem.stat),
// so that the checks cost x/net/webdav no second lookup.
func (s *Server) checkFS(r *http.Request, q *request, fsys *fileSystem, rw *response) bool {
	slash := namesCollection(r.URL.Path) && q.path != "/"
	depth := r.Header.Get("Depth")
	infinite := r.Method == "PROPFIND" && (depth == "" || strings.EqualFold(depth, "infinity"))
	listing := r.Method == "PROPFIND" && depth == "1"
	copyMove := r.Method == "MOVE" || r.Method == "COPY"
	switch {
	case copyMove, infinite, listing:
	case slash && r.Method != "MKCOL" && r.Method != "OPTIONS":
	default:
		return true
	}
	fi, err := fsys.stat(q, q.path)
	switch {
	case err == nil:
	case copyMove && errors.Is(err, fs.ErrNotExist):
		q.fail(http.StatusNotFound, fmt.Errorf("webdav: %s %s: the source does not exist", r.Method, q.path))
		return false
	case slash && !errors.Is(err, fs.ErrNotExist):
		// Not known to be a collection (the agent away a moment): not
		// served as one by a later lookup that succeeds (a review).
		q.fail(statusFor(err, http.StatusServiceUnavailable), fmt.Errorf("webdav: %s %s/: cannot tell whether it is a collection: %w", r.Method, q.path, err))
		return false
	default:
		return true // x/net/webdav meets the same and answers for it
	}
	if slash && !fi.IsDir() {
		q.fail(http.StatusNotFound, fmt.Errorf("webdav: %s %s/: a URL ending in / names a collection, and %s is a file", r.Method, q.path, q.path))
		return false
	}
	if infinite && fi.IsDir() {
		q.fail(http.StatusForbidden, fmt.Errorf("webdav: PROPFIND %s: Depth %q: only Depth 0 or 1 is served; list a tree one collection at a time", q.path, depth))
		rw.xmlError = "propfind-finite-depth"
		return false
	}
	if listing && fi.IsDir() {
		list, err := fsys.list(q, q.path)
		if err != nil {
			q.fail(statusFor(err, http.StatusInternalServerError), fmt.Errorf("webdav: PROPFIND %s: the collection cannot be listed: %w", q.path, err))
			return false
		}
		q.listed, q.listedPath = list, q.path
		return true
	}
	if !copyMove || q.dst == "" {
		return true
	}
	if r.Method == "MOVE" && !fi.IsDir() && r.Header.Get("Depth") == "0" {
		// A file's MOVE has no depth (RFC 4918 9.9.2 asks infinity of a
		// collection's); x/net/webdav would refuse any but infinity.
		r.Header.Del("Depth")
	}
	overwrite := r.Header.Get("Overwrite") != "F"
	var dst *fileInfo // nil: missing, or not known
	if q.dstSlash || !overwrite {
		dfi, err := fsys.stat(q, q.dst)
		switch {
		case err == nil:
			dst = dfi
		case !errors.Is(err, fs.ErrNotExist):
			q.fail(statusFor(err, http.StatusServiceUnavailable), fmt.Errorf("webdav: %s %s: the destination %s: %w", r.Method, q.path, q.dst, err))
			return false
		}
	}
	switch {
	case q.dstSlash && dst != nil && !dst.IsDir():
		q.fail(http.StatusConflict, fmt.Errorf("webdav: %s %s: the destination %s/ names a collection, and %s is a file", r.Method, q.path, q.dst, q.dst))
		return false
	case !overwrite && dst != nil:
		q.fail(http.StatusPreconditionFailed, fmt.Errorf("webdav: %s %s: the destination %s exists, and Overwrite is F", r.Method, q.path, q.dst))
		return false
	case q.dst == q.path:
		// x/net/webdav compares the paths as sent: /a/g and /a/./g
		// or /a/g/ would copy a file onto itself, through the
		// session's own upload of it, empty.
		q.fail(http.StatusForbidden, fmt.Errorf("webdav: %s %s: destination equals source (%s)", r.Method, q.path, r.Header.Get("Destination")))
		return false
	case depth != "" && depth != "0" && depth != "infinity",
		r.Method == "MOVE" && depth == "0" && fi.IsDir():
		// RFC 4918 9.8.3 and 9.9.2, and mod_dav's order: the Depth
		// before where the destination lies.
		q.fail(http.StatusBadRequest, fmt.Errorf("webdav: %s %s: Depth %q: a COPY takes 0 or infinity, a collection's MOVE infinity", r.Method, q.path, depth))
		return false
	case (q.deep && fi.IsDir() && inside(q.dst, q.path) || overwrite && inside(q.path, q.dst)) && belowFile(fsys, q.dst):
		// mod_dav looks the destination up first.
		q.fail(http.StatusConflict, fmt.Errorf("webdav: %s %s: the destination %s lies below a file", r.Method, q.path, q.dst))
		return false
	case q.deep && fi.IsDir() && inside(q.dst, q.path):
		q.fail(http.StatusForbidden, fmt.Errorf("webdav: %s %s: the destination %s lies inside the source", r.Method, q.path, q.dst))
		return false
	case overwrite && inside(q.path, q.dst):
		q.fail(http.StatusForbidden, fmt.Errorf("webdav: %s %s: the destination %s holds the source, and replacing it (Overwrite: T) would delete the source", r.Method, q.path, q.dst))
		return false
	}
	return true
}

// namesCollection reports whether the URL path p ends in "/" once its
// dot-segments are removed (RFC 3986 5.2.4): "/f/." and "/f/x/.." are
// "/f/", which cleanPath makes "/f" (a review).
func namesCollection(p string) bool {
	return strings.HasSuffix(p, "/") || strings.HasSuffix(p, "/.") || strings.HasSuffix(p, "/..") || p == "." || p == ".."
}

// belowFile reports whether a directory on the way to p is a file.
func belowFile(fsys *fileSystem, p string) bool {
	_, err := backend.Lstat(fsys.fs, p)
	return errors.Is(err, syscall.ENOTDIR)
}

// inside reports whether the cleaned path p lies strictly below the
// cleaned path dir.
func inside(p, dir string) bool {
	return p != dir && (dir == "/" || strings.HasPrefix(p, dir+"/"))
}

// lockTimeout is the lock duration granted for a Timeout header (RFC 4918
// 10.7: the first of its comma-separated choices; none is "Infinite"),
// capped at Config.MaxLockDuration. ok is false for a header x/net/webdav
// refuses.
func (s *Server) lockTimeout(h string) (d time.Duration, ok bool) {
	first, _, _ := strings.Cut(h, ",")
	first = strings.TrimSpace(first)
	switch {
	case first == "" || first == "Infinite":
		return s.cfg.MaxLockDuration, true
	case strings.HasPrefix(first, "Second-"):
		n, err := strconv.ParseUint(strings.TrimPrefix(first, "Second-"), 10, 32)
		if err != nil {
			return 0, false
		}
		return min(time.Duration(n)*time.Second, s.cfg.MaxLockDuration), true
	}
	return 0, false
}

// parseUnixTime parses seconds since 1970, with an optional fraction.
func parseUnixTime(v string) (time.Time, error) {
	sec, frac, _ := strings.Cut(strings.TrimSpace(v), ".")
	n, err := strconv.ParseInt(sec, 10, 64)
	if err != nil || n < 0 || n > 1<<40 {
		return time.Time{}, errors.New("not seconds since 1970")
	}
	var ns int64
	if frac != "" {
		f, err := strconv.ParseUint((frac + "000000000")[:9], 10, 64)
		if err != nil {
			return time.Time{}, errors.New("not seconds since 1970")
		}
		ns = int64(f)
	}
	return time.Unix(n, ns), nil
}

// cleanPath is the user's path a URL path names: absolute and clean, so
// that no ".." climbs above the user's root.
func cleanPath(p string) string { return path.Clean("/" + p) }

// loginStatus answers a failed login.
func loginStatus(err error) int {
	switch {
	case errors.Is(err, errNoCredentials), errors.Is(err, gateway.ErrAuthFailed):
		return http.StatusUnauthorized
	case errors.Is(err, gateway.ErrBanned):
		return http.StatusForbidden
	}
	return statusFor(err, http.StatusServiceUnavailable)
}

// logRequest logs one request: failures at Info (server errors at Warn),
// the rest at Debug.
func (s *Server) logRequest(log *slog.Logger, r *http.Request, q *request, rw *response, status int, d time.Duration) {
	var in int64
	if q.body != nil {
		in = q.body.n
	}
	args := []any{"method", r.Method, "path", q.path, "status", status, "bytes_in", in, "bytes_out", rw.n,
		"duration", d.Round(time.Millisecond)}
	if q.dst != "" {
		args = append(args, "destination", q.dst)
	}
	if err := q.failure(); err != nil {
		args = append(args, "err", err.Error())
	}
	level := slog.LevelDebug
	switch {
	case status >= 500:
		level = slog.LevelWarn
	case status >= 400 && status != http.StatusNotFound && !errors.Is(q.err, errNoCredentials),
		q.undeleted != nil: // a DELETE that failed part way (207)
		level = slog.LevelInfo
	}
	log.Log(context.Background(), level, "webdav request", args...)
}

// reason explains an error status x/net/webdav gave without an error.
func (q *request) reason(status int, text string) error {
	switch {
	case status == http.StatusMethodNotAllowed && (q.method == "GET" || q.method == "HEAD" || q.method == "POST"):
		return fmt.Errorf("webdav: %s %s: a collection has no content; list it with PROPFIND", q.method, q.path)
	case status == http.StatusUnsupportedMediaType && q.method == "MKCOL":
		return fmt.Errorf("webdav: MKCOL %s: MKCOL with a body is not supported (RFC 4918 9.3)", q.path)
	}
	return errors.New(strings.TrimSpace(text))
}

// failure is the error that explains the request's outcome: the body's
// if it failed, else upgate's or x/net/webdav's.
func (q *request) failure() error {
	if q.bodyErr != nil {
		return q.bodyErr
	}
	return q.err
}

// body is a request body that records how much arrived and why it
// failed, and bounds each read by the progress timeout.
type body struct {
	io.ReadCloser
	q        *request
	rc       *http.ResponseController
	progress time.Duration
	n        int64
	sum      *bodySum // a PUT's OC-Checksum, checked at the body's end; nil if none
}

func (b *body) Read(p []byte) (int, error) {
	if b.progress > 0 {
		_ = b.rc.SetReadDeadline(time.Now().Add(b.progress))
	}
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	if err == io.EOF {
		// Done: the server's wait for the client's next bytes while the
		// handler finishes must not time out.
		_ = b.rc.SetReadDeadline(time.Time{})
	}
	if b.sum != nil {
		b.sum.hash(p[:n])
		if err == io.EOF {
			if serr := b.sum.check(); serr != nil {
				// Not the body's end but its failure: the upload is
				// aborted (writeFile.Close), not committed.
				err = serr
			}
		}
	}
	switch {
	case err == io.EOF:
	case errors.Is(err, errChecksum) && b.q.bodyErr == nil:
		b.q.bodyErr = fmt.Errorf("webdav: %s %s: %d bytes: %w", b.q.method, b.q.path, b.n, err)
	case err != nil && b.q.bodyErr == nil:
		b.q.bodyErr = fmt.Errorf("webdav: %s %s: request body after %d bytes: %w", b.q.method, b.q.path, b.n, err)
	}
	return n, err
}

// response passes x/net/webdav's successes through and holds its error
// replies back (a status and a bare status text) until the error behind
// them is known, so that the client is told why. Each write is bounded by
// the progress timeout.
type response struct {
	w        http.ResponseWriter
	rc       *http.ResponseController
	req      *request
	progress time.Duration

	status    int          // the status sent, 0 before the header
	held      int          // an error status held back, 0 if none
	heldBody  bytes.Buffer // what came with it (at most 4 KiB)
	n         int64        // body bytes sent
	closeConn bool         // end the connection after this request
	xmlError  string       // an RFC 4918 precondition element for the error body
	// succeeding, if set, runs once before a success status is sent
	// (a COPY's replaced destination is removed then).
	succeeding func()
}

func (rw *response) Header() http.Header { return rw.w.Header() }

// Unwrap lets http.ResponseController reach the connection.
func (rw *response) Unwrap() http.ResponseWriter { return rw.w }

func (rw *response) WriteHeader(code int) {
	if rw.status != 0 || rw.held != 0 {
		return // x/net/webdav writes a status after a PROPFIND stream failed
	}
	if code >= 400 {
		rw.held = code
		return
	}
	if rw.succeeding != nil && code < 300 {
		settle := rw.succeeding
		rw.succeeding = nil
		settle()
	}
	if rw.req.mtimed && code < 300 {
		rw.w.Header().Set("X-OC-Mtime", "accepted")
	}
	if code == http.StatusCreated && rw.req.replaced {
		code = http.StatusNoContent
	}
	rw.status = code
	rw.w.WriteHeader(code)
}

func (rw *response) Write(p []byte) (int, error) {
	if rw.held != 0 {
		if rw.heldBody.Len() < 4<<10 {
			rw.heldBody.Write(p)
		}
		return len(p), nil
	}
	if rw.status == 0 {
		rw.WriteHeader(http.StatusOK)
	}
	if rw.status == http.StatusNoContent {
		return len(p), nil // the "Created" x/net/webdav writes after its 201
	}
	if rw.progress > 0 {
		_ = rw.rc.SetWriteDeadline(time.Now().Add(rw.progress))
	}
	n, err := rw.w.Write(p)
	rw.n += int64(n)
	return n, err
}

// finish writes the reply of a failed request, held back or decided
// before x/net/webdav ran, and returns the status sent.
func (rw *response) finish() int {
	q := rw.req
	if rw.progress > 0 {
		_ = rw.rc.SetWriteDeadline(time.Now().Add(rw.progress)) // the final flush
	}
	if rw.closeConn {
		rw.w.Header().Set("Connection", "close")
	}
	switch {
	case q.status != 0 && rw.status == 0:
		rw.writeError(q.status, q.err)
	case rw.held != 0 && q.undeleted != nil:
		rw.writeMultiStatus(q.undeleted, statusFor(q.failure(), http.StatusForbidden), q.failure())
	case rw.held != 0:
		if err := q.failure(); err != nil {
			rw.writeError(statusFor(err, rw.held), err)
		} else {
			rw.writeError(rw.held, q.reason(rw.held, rw.heldBody.String()))
		}
	case rw.status == 0:
		rw.WriteHeader(http.StatusOK)
	}
	return rw.status
}

// writeError answers status with a text that says why.
func (rw *response) writeError(status int, err error) {
	h := rw.w.Header()
	for _, k := range []string{"Etag", "Last-Modified", "Content-Encoding", "Content-Range", "Lock-Token", "X-Oc-Mtime"} {
		h.Del(k)
	}
	msg := http.StatusText(status)
	if err != nil && err.Error() != "" {
		msg = err.Error()
	}
	body := "upgate: " + strings.TrimPrefix(msg, "upgate: ") + "\n"
	h.Set("Content-Type", "text/plain; charset=utf-8")
	if rw.xmlError != "" {
		h.Set("Content-Type", "application/xml; charset=utf-8")
		body = `<?xml version="1.0" encoding="utf-8"?>` + "\n" + `<D:error xmlns:D="DAV:"><D:` + rw.xmlError +
			`/><D:responsedescription>` + xmlText(body) + `</D:responsedescription></D:error>` + "\n"
	}
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	switch status {
	case http.StatusUnauthorized:
		h.Set("WWW-Authenticate", `Basic realm="upgate", charset="UTF-8"`)
	case http.StatusServiceUnavailable:
		h.Set("Retry-After", retryAfter)
	}
	rw.held = 0
	rw.status = status
	rw.w.WriteHeader(status)
	n, _ := io.WriteString(rw.w, body)
	rw.n += int64(n)
}

// writeMultiStatus answers a DELETE that removed part of a collection:
// 207 Multi-Status with a response of status for each path it left, the
// collection's own first, as mod_dav answers one (RFC 4918 9.6.1, 13),
// and err's text as its responsedescription.
func (rw *response) writeMultiStatus(paths []string, status int, err error) {
	var b bytes.Buffer
	b.WriteString(`<?xml version="1.0" encoding="utf-8"?>` + "\n" + `<D:multistatus xmlns:D="DAV:">` + "\n")
	line := fmt.Sprintf("HTTP/1.1 %d %s", status, http.StatusText(status))
	for _, p := range paths {
		b.WriteString("<D:response>\n<D:href>" + hrefText(p) + "</D:href>\n<D:status>" + line + "</D:status>\n</D:response>\n")
	}
	if err != nil {
		b.WriteString("<D:responsedescription>" + xmlText("upgate: "+strings.TrimPrefix(err.Error(), "upgate: ")) + "</D:responsedescription>\n")
	}
	b.WriteString("</D:multistatus>\n")
	h := rw.w.Header()
	h.Set("Content-Type", "text/xml; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(b.Len()))
	rw.held = 0
	rw.status = http.StatusMultiStatus
	rw.w.WriteHeader(http.StatusMultiStatus)
	n, _ := rw.w.Write(b.Bytes())
	rw.n += int64(n)
}

// xmlText escapes s, less its leading and trailing space, for XML
// character data.
func xmlText(s string) string { return escapeXML(strings.TrimSpace(s)) }

// escapeXML escapes s for XML character data, whole.
func escapeXML(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// hrefText is the path p as an href's text: URL-escaped, as x/net/webdav
// writes its hrefs, then XML-escaped.
func hrefText(p string) string { return escapeXML((&url.URL{Path: p}).EscapedPath()) }
