// Package sftpbench holds the SFTP benchmark against OpenSSH (issue 15):
// run.sh measures upgate's SFTP frontend, once with its embedded agent and
// once with the agent as a separate `upgate agent` process, and Debian's
// sshd with sftp-server, on one machine: a 256 MiB upload with OpenSSH's
// sftp and the servers' CPU seconds per GiB, an lftp mirror of 500 small
// files, 4 KiB saves on an open session and 5,000 file creates with
// paramiko, and git and cp -a through sshfs. It prints a markdown table for
// docs/benchmarks.md and is run by hand:
//
//	bash bench/sftp/run.sh     # as root; sshd, lftp, python3-paramiko, sshfs
//	BENCH_UPGATE=/tmp/upgate-v1 bash bench/sftp/run.sh  # another upgate binary
//
// The test only runs its quick mode, so that the script keeps working; it
// times nothing.
package sftpbench
