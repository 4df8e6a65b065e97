"""bench/ftp/steps.py PORT USER PASSWORD PATH [N]: where one 4 KiB FTP save's
time goes, timed from the client, step by step, N times (1000): PASV and its
227, the data connection's connect, STOR up to its 150, then the data sent,
the data connection closed and the 226 read. Prints the p50 of each step in
microseconds. Run it against upgate and against a vsftpd with a throwaway
local user (configured as bench/ftp/run.sh does) to see which step
differs; docs/benchmarks.md (issue 15, second sitting) cites it.
The password is an argument: use a throwaway account. Run with
/usr/bin/python3."""
import ftplib, io, socket, statistics, sys, time

port, user, password, path = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
n = int(sys.argv[5]) if len(sys.argv) > 5 else 1000
ftp = ftplib.FTP()
ftp.connect("127.0.0.1", port, timeout=20)
ftp.login(user, password)
ftp.voidcmd("TYPE I")
data = b"z" * 4096
ftp.storbinary("STOR " + path, io.BytesIO(data))  # every timed save replaces a file
steps = {"pasv": [], "connect": [], "stor_150": [], "data_to_226": [], "total": []}
for _ in range(n):
    t0 = time.perf_counter()
    host, dport = ftplib.parse227(ftp.sendcmd("PASV"))
    t1 = time.perf_counter()
    conn = socket.create_connection((host, dport), timeout=20)
    t2 = time.perf_counter()
    ftp.sendcmd("STOR " + path)
    t3 = time.perf_counter()
    conn.sendall(data)
    conn.close()
    ftp.voidresp()
    t4 = time.perf_counter()
    for k, a, b in (("pasv", t0, t1), ("connect", t1, t2), ("stor_150", t2, t3),
                    ("data_to_226", t3, t4), ("total", t0, t4)):
        steps[k].append((b - a) * 1e6)
ftp.quit()
print(" ".join("%s %.0f" % (k, statistics.median(v)) for k, v in steps.items()))
