"""bench/ftp/commands.py PORT USER PASSWORD PATH [N] [mdtm]: what one FTP
command costs on an open session, timed from the client, N times each
(2000): NOOP (the server alone), SITE CHMOD 644 PATH, setting PATH's time
(MFMT, or MDTM with a time when the last argument is mdtm, as vsftpd takes
it with mdtm_write) and SIZE PATH. PATH is uploaded first (100 bytes).
Prints the p50 of each in microseconds. Run it against upgate and against a
vsftpd with a throwaway local user (configured as bench/ftp/run.sh does):
an lftp mirror sends four commands per file (PASV, STOR, the time, SITE
CHMOD), so what a command costs beyond vsftpd's is paid four times a file.
docs/benchmarks.md (issue 15, fourth sitting) cites it. The password is an
argument: use a throwaway account. Run with /usr/bin/python3."""
import ftplib, io, statistics, sys, time

port, user, password, path = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
n = int(sys.argv[5]) if len(sys.argv) > 5 else 2000
settime = "MDTM" if len(sys.argv) > 6 and sys.argv[6] == "mdtm" else "MFMT"
ftp = ftplib.FTP()
ftp.connect("127.0.0.1", port, timeout=20)
ftp.login(user, password)
ftp.storbinary("STOR " + path, io.BytesIO(b"x" * 100))
out = []
for name, cmd in (("noop", "NOOP"), ("chmod", "SITE CHMOD 644 " + path),
                  ("time", settime + " 20240101000000 " + path), ("size", "SIZE " + path)):
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        ftp.sendcmd(cmd)
        ts.append((time.perf_counter() - t0) * 1e6)
    out.append("%s %.0f" % (name, statistics.median(ts)))
ftp.quit()
print(" ".join(out))
