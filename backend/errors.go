package backend

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"syscall"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/upgate/upgate/backend/agentpb"
)

// AgentError is an error an agent answered with. It unwraps to the errno
// (so errors.Is(err, os.ErrNotExist) and errors.Is(err, syscall.ENOTEMPTY)
// work) or, for an unreachable agent, to ErrUnavailable.
type AgentError struct {
	Code codes.Code
	// Message is what a client may be shown: the errno's text ("file
	// exists") when the agent named one, else the agent's text.
	Message string
	// Detail is the agent's own text, for logs; it names agent paths.
	Detail string
	err    error // what it unwraps to
}

func (e *AgentError) Error() string { return e.Message }
func (e *AgentError) Unwrap() error { return e.err }

// fromStatus is the one translation from a gRPC error to an os error. The
// result is an *fs.PathError naming op and the user-visible path, wrapping
// an *AgentError.
func fromStatus(op, name string, err error) error {
	if err == nil {
		return nil
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return err // already translated
	}
	st, ok := status.FromError(err)
	if !ok {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			return &fs.PathError{Op: op, Path: name, Err: fmt.Errorf("%w: %w", ErrUnavailable, err)}
		}
		return &fs.PathError{Op: op, Path: name, Err: err}
	}
	errno := ""
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			errno = info.GetReason()
		}
	}
	return &fs.PathError{Op: op, Path: name, Err: agentErr(st.Code(), st.Message(), errno)}
}

// agentErr is the error a PathError wraps: the bare errno when the agent
// named one (so os.IsNotExist and its kin, which look only one level deep,
// work for the libraries that use them), else an *AgentError.
func agentErr(code codes.Code, msg, errno string) error {
	e := agentError(code, msg, errno)
	if n, ok := e.err.(syscall.Errno); ok && errno != "" && agentpb.ErrnoName(n) == errno {
		return n
	}
	return e
}

// fromProto translates an error carried inside the Open stream.
func fromProto(op, name string, e *agentpb.Error) error {
	if e == nil {
		return nil
	}
	return &fs.PathError{Op: op, Path: name, Err: agentErr(codes.Code(e.GetCode()), e.GetMessage(), e.GetErrno())}
}

func agentError(code codes.Code, msg, errno string) *AgentError {
	e := &AgentError{Code: code, Message: msg, Detail: msg}
	if n, ok := agentpb.Errno(errno); ok {
		e.err = n
		e.Message = n.Error()
		return e
	}
	switch code {
	case codes.NotFound:
		e.err = syscall.ENOENT
	case codes.AlreadyExists:
		e.err = syscall.EEXIST
	case codes.PermissionDenied, codes.Unauthenticated:
		e.err = syscall.EACCES
	case codes.InvalidArgument:
		e.err = syscall.EINVAL
	case codes.ResourceExhausted:
		e.err = syscall.ENOSPC
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
		e.err = ErrUnavailable
	default:
		e.err = syscall.EIO
	}
	if code == codes.Unauthenticated {
		e.Message = "agent refused the gateway's token: " + msg
	}
	return e
}
