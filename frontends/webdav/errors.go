package webdav

import (
	"errors"
	"io"
	"net/http"
	"os"
	"syscall"

	dav "golang.org/x/net/webdav"

	"github.com/upgate/upgate/backend"
	"github.com/upgate/upgate/gateway"
)

// statusFor is the one translation from an error to an HTTP status.
// status is the one x/net/webdav chose (or the caller's default), kept
// unless the error says better what a client should do: retry later
// (503), free space (507), stop (403), fix the request (400, 409, 413,
// 414), or send its body faster (408). x/net/webdav's own choices stay
// where they are specific: 409 for a missing parent, 412 for Overwrite:
// F, 423 for a lock.
func statusFor(err error, status int) int {
	var tooLarge *http.MaxBytesError
	switch {
	case err == nil:
		return status
	case errors.As(err, &tooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, os.ErrDeadlineExceeded):
		return http.StatusRequestTimeout
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, errChecksum):
		return http.StatusBadRequest
	case errors.Is(err, backend.ErrUnavailable), errors.Is(err, gateway.ErrTooManyConnections),
		errors.Is(err, gateway.ErrServerClosed), errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE),
		errors.Is(err, errTooManyLocks):
		return http.StatusServiceUnavailable
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return dav.StatusInsufficientStorage
	case errors.Is(err, gateway.ErrAuthFailed):
		return http.StatusUnauthorized
	case errors.Is(err, os.ErrPermission), errors.Is(err, syscall.EROFS), errors.Is(err, gateway.ErrBanned):
		return http.StatusForbidden
	case errors.Is(err, syscall.EXDEV):
		// RFC 4918 9.9.4: the destination is on another "server":
		// another mount, another agent.
		return http.StatusBadGateway
	case errors.Is(err, syscall.EISDIR):
		return http.StatusMethodNotAllowed
	case errors.Is(err, syscall.ENOTDIR), errors.Is(err, syscall.ENOTEMPTY), errors.Is(err, errNoParent):
		return http.StatusConflict
	case errors.Is(err, syscall.ENAMETOOLONG):
		return http.StatusRequestURITooLong
	case errors.Is(err, syscall.EINVAL):
		return http.StatusBadRequest
	case errors.Is(err, os.ErrNotExist):
		if status == http.StatusConflict {
			return status // a missing parent
		}
		return http.StatusNotFound
	}
	if status < 400 {
		return http.StatusInternalServerError
	}
	return status
}
