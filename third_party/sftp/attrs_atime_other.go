//go:build darwin || dragonfly || freebsd || netbsd || openbsd || solaris || aix || js || zos

package sftp

import "syscall"

// statAtime is the access time of a stat(2) result: not read on this
// platform, so the mtime stands for it (upgate fork).
func statAtime(*syscall.Stat_t) int64 { return 0 }
