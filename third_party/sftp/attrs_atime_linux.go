//go:build linux && !android

package sftp

import "syscall"

// statAtime is the access time of a stat(2) result (upgate fork).
func statAtime(st *syscall.Stat_t) int64 { return st.Atim.Sec }
