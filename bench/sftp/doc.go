// Package sftpbench holds the SFTP benchmark against OpenSSH (issue 15):
// run.sh measures upgate's SFTP frontend, once with its embedded agent and
// once with the agent as a separate `upgate agent` process, and Debian's
// sshd with sftp-server, on one machine: a 256 MiB upload with OpenSSH's
// sftp and the same with scp -O (the legacy SCP protocol), the servers'
// CPU seconds per GiB over each, an lftp mirror of 500 small
// files, 4 KiB saves on an open session and 5,000 file creates with
// paramiko, and git and cp -a through sshfs. It prints a markdown table for
// docs/benchmarks.md and is run by hand:
//
//	bash bench/sftp/run.sh     # as root; sshd, lftp, python3-paramiko, sshfs
//	BENCH_UPGATE=/tmp/upgate-v1 bash bench/sftp/run.sh  # another upgate binary
//
// pair.sh, bench/ftp/pair.sh's twin, compares two upgate builds on an IDE's
// save (paramiko's open, write, close, utime, chmod on an open session) or,
// with --files, on the new files of an lftp mirror: both gateways up at
// once and one client alternating between them operation by operation, so
// that both meet the same moments of a noisy machine. It needs no root and
// no sshd:
//
//	bash bench/sftp/pair.sh /tmp/upgate-before /tmp/upgate-after
//	bash bench/sftp/pair.sh --agent --files /tmp/upgate-before /tmp/upgate-after
//
// The tests only run the scripts' quick modes, so that they keep working;
// they time nothing.
package sftpbench
