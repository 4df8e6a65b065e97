package webdav

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"syscall"
	"time"

	dav "golang.org/x/net/webdav"
)

// checkConditions answers a write's HTTP preconditions (RFC 9110 13.1,
// evaluated in the order of 13.2.2) against the resource the Request-URI
// names, a MOVE's or COPY's source: If-Match (strong comparison; "*" is
// any current representation), then, without it, If-Unmodified-Since,
// then If-None-Match (weak comparison; "*" is any). A failed one is 412
// and changes nothing. x/net/webdav reads them only for GET and HEAD
// (http.ServeContent), so a client that guards a save against a lost
// update (If-Match with the ETag it read, If-None-Match: * to create
// only) replaced whatever another client had written meanwhile; Apache's
// mod_dav answers 412, as here. GET, HEAD, POST, OPTIONS and PROPFIND
// change nothing and are left to x/net/webdav. The resource's ETag is the
// one x/net/webdav serves (etagOf); a collection has none. It returns
// false once it recorded a failure; a request with none of the three
// headers costs nothing, and the lookup of one that has them is kept for
// the rest of the request (fileSystem.stat). Preconditions are ignored
// where the request fails anyway (failsAnyway), as RFC 9110 13.2.1 asks.
// Two differences from Apache's mod_dav, both RFC 9110's way: only the
// Request-URI's state is asked (Apache asks a MOVE's or COPY's
// destination too, so that an If-Match: * is 412 where the destination
// does not exist yet), and If-Unmodified-Since is ignored for a resource
// that does not exist (13.1.4; Apache answers 412).
func (s *Server) checkConditions(r *http.Request, q *request, fsys *fileSystem) bool {
	switch r.Method {
	case "GET", "HEAD", "POST", "OPTIONS", "PROPFIND":
		return true
	}
	match, since, noneMatch := r.Header.Values("If-Match"), r.Header.Get("If-Unmodified-Since"), r.Header.Values("If-None-Match")
	if len(match) == 0 && since == "" && len(noneMatch) == 0 {
		return true
	}
	fi, err := fsys.stat(q, q.path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		q.fail(statusFor(err, http.StatusServiceUnavailable), fmt.Errorf("webdav: %s %s: cannot evaluate its preconditions: %w", r.Method, q.path, err))
		return false
	}
	exists := err == nil
	if status, why := failsAnyway(r, q, fsys, fi, exists); status != 0 {
		// RFC 9110 13.2.1: preconditions are ignored where the request
		// would fail without them (Apache's mod_dav answers the same).
		// The failure is answered here, not left to x/net/webdav, which
		// would act unconditioned on a name made meanwhile (a review).
		q.fail(status, fmt.Errorf("webdav: %s %s: %w", r.Method, q.path, why))
		return false
	}
	etag := ""
	if exists {
		if etag, err = etagOf(r.Context(), fi); err != nil {
			q.fail(http.StatusInternalServerError, fmt.Errorf("webdav: %s %s: its ETag: %w", r.Method, q.path, err))
			return false
		}
	}
	failed := func(format string, args ...any) bool {
		q.fail(http.StatusPreconditionFailed, fmt.Errorf("webdav: %s %s: precondition failed: "+format, append([]any{r.Method, q.path}, args...)...))
		return false
	}
	if len(match) > 0 {
		if !exists {
			return failed("If-Match: %s, and it does not exist", strings.Join(match, ", "))
		}
		if !anyETag(match, etag, true) {
			return failed("If-Match: %s, and its ETag is %s", strings.Join(match, ", "), etagText(etag))
		}
	} else if since != "" && exists {
		// An unparsable date is ignored (RFC 9110 13.1.4), and so is
		// one on a resource that does not exist.
		if t, err := http.ParseTime(since); err == nil && fi.ModTime().Truncate(time.Second).After(t) {
			return failed("If-Unmodified-Since %s, and it was modified at %s", since, fi.ModTime().UTC().Format(http.TimeFormat))
		}
	}
	if len(noneMatch) > 0 && exists && anyETag(noneMatch, etag, false) {
		return failed("If-None-Match: %s, and it exists with ETag %s", strings.Join(noneMatch, ", "), etagText(etag))
	}
	return true
}

// failsAnyway returns the status (and why) of a request that fails,
// whatever its preconditions say, for a reason x/net/webdav would answer
// next (a MOVE's or COPY's missing source checkFS answered before): a
// DELETE or PROPPATCH of nothing (404; an UNLOCK of nothing may end a
// lock whose root is gone), a DELETE of a collection with a Depth other
// than infinity (400), a MKCOL of something (405), a PUT of a collection
// (405), a PUT, MKCOL or LOCK of a new name whose parent is no
// collection (not a LOCK's refresh, which makes nothing), or a COPY or
// MOVE whose destination's parent is none (409); 0 for any other. fi and
// exists are the Request-URI's lookup; the parent's is one more lookup,
// made only for a request with preconditions.
func failsAnyway(r *http.Request, q *request, fsys *fileSystem, fi *fileInfo, exists bool) (int, error) {
	switch r.Method {
	case "DELETE", "PROPPATCH":
		switch {
		case !exists:
			return http.StatusNotFound, errors.New("it does not exist")
		case r.Method == "DELETE" && fi.IsDir() && q.depthNotInfinite:
			return http.StatusBadRequest, errDeleteDepth
		}
		return 0, nil
	case "MKCOL":
		if exists {
			return http.StatusMethodNotAllowed, errors.New("it exists already")
		}
	case "PUT":
		if exists && fi.IsDir() {
			return http.StatusMethodNotAllowed, errors.New("it is a collection; PUT a file's URL")
		}
	case "COPY", "MOVE":
		// (Its source exists: checkFS answered 404 before.) The
		// destination's parent must be a collection.
		if q.dst == "" || q.dst == "/" {
			return 0, nil
		}
		return noParent(q, fsys, q.dst)
	case "LOCK":
		if r.ContentLength == 0 && r.Header.Get("If") != "" {
			return 0, nil // a refresh, which makes nothing
		}
	default:
		return 0, nil
	}
	if exists || q.path == "/" {
		return 0, nil
	}
	return noParent(q, fsys, q.path)
}

// noParent returns 409 (and why) where p's parent is no collection, 0
// where it is one, a symbolic link to one too (the write follows it:
// fileSystem.stat shows the link itself; a review).
func noParent(q *request, fsys *fileSystem, p string) (int, error) {
	parent, err := fsys.stat(q, path.Dir(p))
	if err == nil && !parent.IsDir() {
		var fi fs.FileInfo
		if fi, err = fsys.fs.Stat(path.Dir(p)); err == nil && fi.IsDir() {
			return 0, nil
		}
		if err == nil || errors.Is(err, syscall.ENOTDIR) || errors.Is(err, fs.ErrNotExist) {
			err = nil // a file, or a link to none: no collection
		}
	}
	switch {
	case err == nil && parent.IsDir():
		return 0, nil
	case err == nil:
		return http.StatusConflict, fmt.Errorf("%s is a file, not a collection", path.Dir(p))
	case errors.Is(err, fs.ErrNotExist):
		return http.StatusConflict, fmt.Errorf("%w: %s", errNoParent, path.Dir(p))
	}
	return statusFor(err, http.StatusServiceUnavailable), fmt.Errorf("its parent collection: %w", err)
}

// etagOf is the ETag x/net/webdav serves for fi (its findETag): fi's own
// (dav.ETager), or else Apache's heuristic from the modification time
// and the size; "" for a collection, which has none.
func etagOf(ctx context.Context, fi fs.FileInfo) (string, error) {
	if fi.IsDir() {
		return "", nil
	}
	if e, ok := fi.(dav.ETager); ok {
		etag, err := e.ETag(ctx)
		if !errors.Is(err, dav.ErrNotImplemented) {
			return etag, err
		}
	}
	return fmt.Sprintf(`"%x%x"`, fi.ModTime().UnixNano(), fi.Size()), nil
}

// anyETag reports whether one of the entity tags the header values list
// ("*" alone, or entity tags separated by commas: RFC 9110 8.8.3, whose opaque
// tags may hold commas themselves) matches etag, the resource's ("" for
// an existing resource with none, which only "*" matches): by strong
// comparison (both strong and equal) or weak (equal once W/ is dropped).
// What does not parse as an entity tag matches nothing.
func anyETag(values []string, etag string, strong bool) bool {
	for _, v := range values {
		if strings.TrimSpace(v) == "*" {
			return true // (a "*" in a list is no entity tag)
		}
		for rest := v; ; {
			rest = strings.TrimLeft(rest, " \t,")
			if rest == "" {
				break
			}
			weak := strings.HasPrefix(rest, "W/")
			tag := strings.TrimPrefix(rest, "W/")
			if tag == "" || tag[0] != '"' {
				break
			}
			end := strings.IndexByte(tag[1:], '"')
			if end < 0 {
				break
			}
			tag, rest = tag[:end+2], tag[end+2:]
			switch {
			case etag == "":
			case strong && !weak && !strings.HasPrefix(etag, "W/") && tag == etag:
				return true
			case !strong && tag == strings.TrimPrefix(etag, "W/"):
				return true
			}
		}
	}
	return false
}

// etagText shows an ETag in a reply, "none" for a collection's.
func etagText(etag string) string {
	if etag == "" {
		return "none (a collection)"
	}
	return etag
}
