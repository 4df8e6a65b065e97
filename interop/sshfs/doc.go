// Package sshfs runs a developer's workload through sshfs mounts of
// OpenSSH's sftp-server (internal/refserver) and of upgate's SFTP
// frontend: git init and commits, git clone, rsync -a twice, tar x,
// cp -a, an editor's save, sed -i and >> appends. It checks the results
// on each server's disk and logs each step's time for both. It needs
// root, sshfs with /dev/fuse, sshd, git and rsync; without them it skips,
// unless UPGATE_REQUIRE_INTEROP=1.
//
//	go test -v -run TestSSHFSWorkload ./interop/sshfs
package sshfs
