package agentpb

import "syscall"

// The errors that keep their identity across the wire: the agent names
// them in an ErrorInfo detail (or Error.errno) and the gateway turns the
// name back into the errno.
var wireErrnos = [...]syscall.Errno{
	syscall.ENOENT, syscall.EEXIST, syscall.EACCES, syscall.EPERM, syscall.ENOTEMPTY,
	syscall.EXDEV, syscall.EISDIR, syscall.ENOTDIR, syscall.ENOSPC, syscall.EDQUOT,
	syscall.EROFS, syscall.ENAMETOOLONG, syscall.EINVAL, syscall.ELOOP, syscall.EBUSY,
	syscall.EFBIG, syscall.EIO, syscall.EMFILE,
}

var errnoNames = [...]string{
	"ENOENT", "EEXIST", "EACCES", "EPERM", "ENOTEMPTY",
	"EXDEV", "EISDIR", "ENOTDIR", "ENOSPC", "EDQUOT",
	"EROFS", "ENAMETOOLONG", "EINVAL", "ELOOP", "EBUSY",
	"EFBIG", "EIO", "EMFILE",
}

// ErrnoName names an errno for the wire; "" for one that does not cross it.
func ErrnoName(e syscall.Errno) string {
	for i, w := range wireErrnos {
		if w == e {
			return errnoNames[i]
		}
	}
	return ""
}

// Errno returns the errno a wire name stands for.
func Errno(name string) (syscall.Errno, bool) {
	for i, n := range errnoNames {
		if n == name {
			return wireErrnos[i], true
		}
	}
	return 0, false
}
