//go:build !plan9
// +build !plan9

package sftp

import (
	"errors"
	"os"
	"syscall"
)

const EBADF = syscall.EBADF

func wrapPathError(filepath string, err error) error {
	if errno, ok := err.(syscall.Errno); ok {
		return &os.PathError{Path: filepath, Err: errno}
	}
	return err
}

// translateErrno translates a syscall error number to a SFTP error code,
// as OpenSSH's sftp-server does (errno_to_portable; upgate fork: upstream
// mapped only ENOENT, EACCES and EPERM, and everything else to FAILURE).
func translateErrno(errno syscall.Errno) uint32 {
	switch errno {
	case 0:
		return sshFxOk
	case syscall.ENOENT, syscall.ENOTDIR, syscall.EBADF, syscall.ELOOP:
		return sshFxNoSuchFile
	case syscall.EACCES, syscall.EPERM, syscall.EFAULT:
		return sshFxPermissionDenied
	case syscall.ENAMETOOLONG, syscall.EINVAL:
		return sshFxBadMessage
	case syscall.ENOSYS:
		return sshFxOPUnsupported
	}

	return sshFxFailure
}

// translateSyscallError finds the errno inside err, however it is wrapped
// (upgate fork: upstream looked only at a bare errno and a PathError's).
func translateSyscallError(err error) (uint32, bool) {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return translateErrno(errno), true
	}
	return 0, false
}
