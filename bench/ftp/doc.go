// Package ftpbench holds the FTP benchmark against vsftpd (issue 4): run.sh
// measures upgate's FTP frontend and vsftpd on one machine (a 1 GiB upload
// with curl and lftp, an lftp mirror of 2,000 small files, 4 KiB saves on an
// open session) and prints a markdown table for docs/benchmarks.md. It is
// run by hand:
//
//	bash bench/ftp/run.sh            # as root; vsftpd, lftp, curl, python3
//
// The test only runs its quick mode, so that the script keeps working; it
// times nothing.
package ftpbench
