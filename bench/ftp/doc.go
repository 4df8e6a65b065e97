// Package ftpbench holds the FTP benchmark against vsftpd (issues 4 and 15):
// run.sh measures upgate's FTP frontend, once with its embedded agent and
// once with the agent as a separate `upgate agent` process, and vsftpd on
// one machine (a 256 MiB upload with curl and lftp and the servers' CPU
// seconds per GiB, an lftp mirror of 500 small files, serial and four at a
// time, 4 KiB saves on an open session) and prints a markdown table for
// docs/benchmarks.md. It is run by hand:
//
//	bash bench/ftp/run.sh            # as root; vsftpd, lftp, curl, python3
//	BENCH_UPGATE=/tmp/upgate-v1 bash bench/ftp/run.sh   # another upgate binary
//
// pair.sh compares two upgate builds on what an lftp mirror sends per file
// (PASV, STOR, MFMT, SITE CHMOD), both gateways up at once and one client
// alternating between them file by file, so that both meet the same moments
// of a noisy machine:
//
//	bash bench/ftp/pair.sh /tmp/upgate-before /tmp/upgate-after
//	bash bench/ftp/pair.sh --agent /tmp/upgate-before /tmp/upgate-after
//
// The tests only run the scripts' quick modes, so that they keep working;
// they time nothing.
package ftpbench
