// Package differential compares upgate with the reference servers it
// imitates: the same sequence of operations runs against OpenSSH's
// sftp-server and upgate's SFTP frontend, and against vsftpd and upgate's
// FTP frontend, and every answer (status or reply code, data, stat
// fields, listings, link targets) and the resulting trees on disk are
// compared. OpenSSH's scp client (scp -O, the legacy SCP protocol) copies
// to and from sshd's scp and upgate alike, its messages, exit statuses
// and trees compared. The deliberate differences are one table in the tests
// (deliberateDiffs), each with its reason; any other difference fails.
//
// The reference servers run as real processes (internal/refserver), so
// the tests need root, sshd, sftp-server and vsftpd; without them they
// skip, unless UPGATE_REQUIRE_INTEROP=1. Run them with
//
//	go test ./interop/differential
//
// and DIFF_DUMP=1 to log every step's answers from both servers.
package differential
