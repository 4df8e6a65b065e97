package agent

import (
	"context"
	"errors"
	"io/fs"
	"strings"
	"syscall"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/upgate/upgate/backend/agentpb"
	"github.com/upgate/upgate/internal/wiretext"
)

// ErrorDomain is the ErrorInfo domain of the errno details the agent
// attaches to its errors.
const ErrorDomain = "upgate.agent"

// toStatus is the one translation from an error inside the agent to a gRPC
// status: the code tells the class, an ErrorInfo detail names the errno and
// the message names the operation and path.
func toStatus(err error) *status.Status {
	if err == nil {
		return nil
	}
	if st, ok := status.FromError(err); ok {
		return st
	}
	code, errno := classify(err)
	st := status.New(code, wiretext.Valid(err.Error()))
	if errno != "" {
		if d, derr := st.WithDetails(&errdetails.ErrorInfo{Domain: ErrorDomain, Reason: errno}); derr == nil {
			st = d
		}
	}
	return st
}

// toProtoError is toStatus for replies inside the Open stream.
func toProtoError(err error) *agentpb.Error {
	if err == nil {
		return nil
	}
	if we := (wireError{}); errors.As(err, &we) {
		return we.e
	}
	if st, ok := status.FromError(err); ok {
		e := &agentpb.Error{Code: uint32(st.Code()), Message: st.Message()}
		for _, d := range st.Details() {
			if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == ErrorDomain {
				e.Errno = info.GetReason()
			}
		}
		return e
	}
	code, errno := classify(err)
	return &agentpb.Error{Code: uint32(code), Message: wiretext.Valid(err.Error()), Errno: errno}
}

// classify maps an os error to a gRPC code and an errno name.
func classify(err error) (codes.Code, string) {
	var errno syscall.Errno
	name := ""
	if errors.As(err, &errno) {
		name = agentpb.ErrnoName(errno)
	}
	switch {
	case errors.Is(err, context.Canceled):
		return codes.Canceled, name
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded, name
	case isEscape(err):
		return codes.PermissionDenied, "EACCES"
	case errors.Is(err, fs.ErrNotExist):
		return codes.NotFound, "ENOENT"
	case errors.Is(err, fs.ErrExist) && errno != syscall.ENOTEMPTY:
		// syscall.ENOTEMPTY.Is(fs.ErrExist) is true; it is not "exists".
		return codes.AlreadyExists, "EEXIST"
	case errors.Is(err, fs.ErrPermission):
		if name == "" {
			name = "EACCES"
		}
		return codes.PermissionDenied, name
	case errno == syscall.EROFS:
		return codes.PermissionDenied, name
	case errno == syscall.ENOSPC || errno == syscall.EDQUOT || errno == syscall.EFBIG ||
		errno == syscall.EMFILE || errno == syscall.ENFILE:
		return codes.ResourceExhausted, name
	case errno == syscall.EINVAL || errno == syscall.ENAMETOOLONG:
		return codes.InvalidArgument, name
	case errno == syscall.ENOTEMPTY || errno == syscall.EXDEV || errno == syscall.EISDIR ||
		errno == syscall.ENOTDIR || errno == syscall.ELOOP || errno == syscall.EBUSY:
		return codes.FailedPrecondition, name
	case errno == syscall.ENOTSUP:
		// A FIFO, socket or device the agent will not open
		// (errNotRegular): the client's doing, not the agent's fault.
		return codes.FailedPrecondition, name
	case errors.Is(err, fs.ErrInvalid):
		return codes.InvalidArgument, "EINVAL"
	}
	return codes.Internal, name
}

// isEscape reports whether os.Root refused a path because it leads outside
// the root. os.Root does not export that error, so its text is matched; the
// test TestPathEscapesRefused pins it.
func isEscape(err error) bool {
	return err != nil && (errors.Is(err, errEscapes) || strings.Contains(err.Error(), "path escapes from parent"))
}

// wireError is an error already in its wire form: a posted request's
// failure, which the close it makes abort answers again as it was.
type wireError struct{ e *agentpb.Error }

func (w wireError) Error() string { return w.e.GetMessage() }
