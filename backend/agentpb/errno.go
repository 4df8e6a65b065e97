package agentpb

import "syscall"

// wireErrnos are the errors that keep their identity across the wire: the
// agent names them in an ErrorInfo detail (or Error.errno) and the gateway
// turns the name back into the errno. One row per errno: its name on the
// wire is its C name.
var wireErrnos = [...]struct {
	errno syscall.Errno
	name  string
}{
	{syscall.ENOENT, "ENOENT"},
	{syscall.EEXIST, "EEXIST"},
	{syscall.EACCES, "EACCES"},
	{syscall.EPERM, "EPERM"},
	{syscall.ENOTEMPTY, "ENOTEMPTY"},
	{syscall.EXDEV, "EXDEV"},
	{syscall.EISDIR, "EISDIR"},
	{syscall.ENOTDIR, "ENOTDIR"},
	{syscall.ENOSPC, "ENOSPC"},
	{syscall.EDQUOT, "EDQUOT"},
	{syscall.EROFS, "EROFS"},
	{syscall.ENAMETOOLONG, "ENAMETOOLONG"},
	{syscall.EINVAL, "EINVAL"},
	{syscall.ELOOP, "ELOOP"},
	{syscall.EBUSY, "EBUSY"},
	{syscall.EFBIG, "EFBIG"},
	{syscall.EIO, "EIO"},
	{syscall.EMFILE, "EMFILE"},
	{syscall.ENOTSUP, "ENOTSUP"},
}

// ErrnoName names an errno for the wire; "" for one that does not cross it.
func ErrnoName(e syscall.Errno) string {
	for _, w := range wireErrnos {
		if w.errno == e {
			return w.name
		}
	}
	return ""
}

// Errno returns the errno a wire name stands for.
func Errno(name string) (syscall.Errno, bool) {
	for _, w := range wireErrnos {
		if w.name == name {
			return w.errno, true
		}
	}
	return 0, false
}
