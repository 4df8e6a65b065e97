"""bench/fsops.py DIR N: what a 4 KiB save costs the filesystem alone, four
ways, N times each on one file in DIR: in place (open O_TRUNC, write, close:
vsftpd, sftp-server); atomic (create a temporary with O_EXCL, write, close,
rename over the old file: upgate's agent before issue 15's second sitting);
atomic with the old file linked aside first (link it to a second temporary,
then the same rename; the unlink afterwards is timed on its own: tried in
that sitting); and atomic with the old file held open across the rename (an
O_PATH descriptor, closed afterwards and timed on its own: what the agent
does now, answering the client before the close, which is when the kernel
frees the old file's blocks); and atomic by exchange (renameat2 with
RENAME_EXCHANGE, then the temporary, which now holds the old file, unlinked
and timed on its own: measured in issue 15's fourth sitting, not used: an
exchange skips ext4's auto_da_alloc, the write-out a rename over a file
starts so that a crash right after a save does not leave it empty).
Prints p50 and p99 per save in ms.
docs/benchmarks.md (issue 15) cites it; run with /usr/bin/python3."""
import ctypes, os, statistics, sys, time
d = sys.argv[1]; n = int(sys.argv[2])
data = os.urandom(4096)
p = os.path.join(d, "save.bin")
t = os.path.join(d, ".save.bin.tmp")
old = os.path.join(d, ".save.bin.old")
later = []
def write_temp():
    fd = os.open(t, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, data); os.close(fd)
def inplace():
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.write(fd, data); os.close(fd)
def atomic():
    write_temp(); os.rename(t, p)
def aside():
    write_temp()
    if os.path.exists(p):
        os.link(p, old)
    os.rename(t, p)
held = []
def pinned():
    write_temp()
    if os.path.exists(p):
        held.append(os.open(p, os.O_PATH | os.O_NOFOLLOW))
    os.rename(t, p)
def pinned_after():
    # the close after the reply, outside the timed save
    while held:
        fd = held.pop()
        t0 = time.perf_counter(); os.close(fd); later.append((time.perf_counter() - t0) * 1000)
def aside_after():
    # the unlink after the reply, outside the timed save
    if os.path.exists(old):
        t0 = time.perf_counter(); os.remove(old); later.append((time.perf_counter() - t0) * 1000)
libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD, RENAME_EXCHANGE = -100, 2
def exchange():
    write_temp()
    if libc.renameat2(AT_FDCWD, t.encode(), AT_FDCWD, p.encode(), RENAME_EXCHANGE) != 0:
        e = ctypes.get_errno()
        if e != 2:  # ENOENT: no old file yet
            raise OSError(e, os.strerror(e))
        os.rename(t, p)
def exchange_after():
    # the unlink of the old file (now at the temp name) after the reply
    if os.path.exists(t):
        t0 = time.perf_counter(); os.remove(t); later.append((time.perf_counter() - t0) * 1000)
def pct(ts):
    ts.sort()
    return statistics.median(ts), ts[int(len(ts) * 0.99) - 1]
for name, f, after in (("in place (open O_TRUNC, write, close)", inplace, None),
                       ("atomic (create temp, write, close, rename)", atomic, None),
                       ("atomic, old file linked aside (link, rename)", aside, aside_after),
                       ("atomic, old file held open (open O_PATH, rename)", pinned, pinned_after),
                       ("atomic by exchange (renameat2 RENAME_EXCHANGE)", exchange, exchange_after)):
    f()
    if after:
        after()
    ts = []; later.clear()
    for _ in range(n):
        t0 = time.perf_counter(); f(); ts.append((time.perf_counter() - t0) * 1000)
        if after:
            after()
    print("%s: p50 %.3f ms, p99 %.3f ms" % ((name,) + pct(ts)))
    if later:
        print("  then the unlink or close of the old file: p50 %.3f ms, p99 %.3f ms" % pct(later))
    os.remove(p)
