"""bench/fsops.py DIR N: what a 4 KiB save costs the filesystem alone, two
ways, N times each on one file in DIR: in place (open O_TRUNC, write, close:
vsftpd, sftp-server) and atomic (create a temporary with O_EXCL, write,
close, rename over: upgate's agent). Prints p50 and p99 per save in ms.
docs/benchmarks.md (issue 15) cites it; run with /usr/bin/python3."""
import os, statistics, sys, time
d = sys.argv[1]; n = int(sys.argv[2])
data = os.urandom(4096)
p = os.path.join(d, "save.bin")
def inplace():
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.write(fd, data); os.close(fd)
def atomic():
    t = os.path.join(d, ".save.bin.tmp")
    fd = os.open(t, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, data); os.close(fd); os.rename(t, p)
for name, f in (("in place (open O_TRUNC, write, close)", inplace), ("atomic (create temp, write, close, rename)", atomic)):
    f()
    ts = []
    for _ in range(n):
        t0 = time.perf_counter(); f(); ts.append((time.perf_counter() - t0) * 1000)
    ts.sort()
    print("%s: p50 %.3f ms, p99 %.3f ms" % (name, statistics.median(ts), ts[int(len(ts) * 0.99) - 1]))
    os.remove(p)
