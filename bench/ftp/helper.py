"""Helpers for bench/ftp/run.sh: ports, test data, tree checks, the ftplib
save loop and the markdown table. Standard library only; run with Debian's
/usr/bin/python3.

    helper.py freeport                       a free loopback TCP port
    helper.py portrange N                    "A B": N consecutive free ports below 32768
    helper.py waitftp PORT SECONDS           wait for an FTP 220 greeting on 127.0.0.1:PORT
    helper.py waitport PORT SECONDS [BANNER] wait until 127.0.0.1:PORT accepts (and,
                                             with BANNER, greets with it)
    helper.py gensmall DIR COUNT SEED        COUNT small files in nested dirs under DIR
    helper.py treesum DIR                    "files bytes digest" of the regular files under DIR
    helper.py saves NETRC PATH FILE COUNT NAME:PORT:USER...
                                             one login per server (USER's password for
                                             127.0.0.1 from the netrc file NETRC),
                                             COUNT STORs of FILE to PATH on each, by
                                             turns; prints "NAME p50_ms p99_ms" each
    helper.py reaper CMD ARGS...             run CMD as a child, as a child subreaper
                                             (see reaper below)
    helper.py treecpu [+]PID...              CPU seconds (user + system) of each PID and
                                             its live descendants, plus the children they
                                             reaped; "+PID" leaves PID's own time out
    helper.py settle PID N SECONDS           wait until PID has at most N descendants
    helper.py table RESULTS META             the markdown report

reaper, treecpu and settle are shared with bench/sftp/helper.py.
"""

import ctypes
import ftplib
import hashlib
import io
import math
import os
import random
import signal
import socket
import statistics
import sys
import time

HOST = "127.0.0.1"


def freeport():
    with socket.socket() as s:
        s.bind((HOST, 0))
        print(s.getsockname()[1])


def portrange(n):
    # Below the kernel's ephemeral range (32768-60999 by default), so that no
    # client connection is using one of them as its local port.
    rnd = random.Random()
    for _ in range(200):
        base = rnd.randrange(20000, 32000 - n)
        socks = []
        try:
            for p in range(base, base + n):
                s = socket.socket()
                socks.append(s)
                s.bind((HOST, p))
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
        print(base, base + n - 1)
        return
    sys.exit("no free port range of %d found" % n)


def waitftp(port, seconds):
    deadline = time.monotonic() + seconds
    last = None
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((HOST, port), timeout=2) as s:
                s.settimeout(2)
                line = s.recv(512)
                if line.startswith(b"220"):
                    s.sendall(b"QUIT\r\n")
                    return
                last = line
        except OSError as e:
            last = e
        time.sleep(0.1)
    sys.exit("no FTP greeting on %s:%d within %ss: %r" % (HOST, port, seconds, last))


def waitport(port, seconds, banner=None):
    deadline = time.monotonic() + seconds
    last = None
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((HOST, port), timeout=2) as s:
                if banner is None:
                    return
                s.settimeout(2)
                line = s.recv(256)
                if line.startswith(banner.encode()):
                    return
                last = line
        except OSError as e:
            last = e
        time.sleep(0.1)
    sys.exit("nothing answered on %s:%d within %ss: %r" % (HOST, port, seconds, last))


def gensmall(root, count, seed):
    """COUNT files of 200 B to 6 KiB (log-uniform, so most are around 1 KiB),
    in a tree of about COUNT/32 directories up to 4 deep, like a small web
    project. Deterministic for a given seed."""
    rnd = random.Random(seed)
    ndirs = max(4, count // 32)
    dirs = [""]
    for i in range(ndirs):
        parent = rnd.choice([d for d in dirs if d.count("/") < 3])
        dirs.append(os.path.join(parent, "d%02d" % i))
    for d in dirs:
        os.makedirs(os.path.join(root, d), exist_ok=True)
    total = 0
    lo, hi = math.log(200), math.log(6 * 1024)
    for i in range(count):
        d = dirs[i % len(dirs)] if i < len(dirs) else rnd.choice(dirs)
        size = int(math.exp(rnd.uniform(lo, hi)))
        with open(os.path.join(root, d, "f%04d.php" % i), "wb") as f:
            f.write(rnd.randbytes(size))
        total += size
    print(count, total, len(dirs) - 1)


def treesum(root):
    files, total, h = 0, 0, hashlib.sha256()
    entries = []
    for dirpath, _, names in os.walk(root):
        for n in names:
            p = os.path.join(dirpath, n)
            rel = os.path.relpath(p, root)
            if not os.path.isfile(p) or os.path.islink(p):
                entries.append((rel, -1, "not a regular file"))
                continue
            with open(p, "rb") as f:
                data = f.read()
            entries.append((rel, len(data), hashlib.sha256(data).hexdigest()))
    for rel, size, digest in sorted(entries):
        files += 1
        total += max(size, 0)
        h.update(("%s\0%d\0%s\n" % (rel, size, digest)).encode())
    print(files, total, h.hexdigest())


def proc_stat(pid):
    """(ppid, state, utime, stime, cutime, cstime) of a process, in clock
    ticks, from /proc/PID/stat; None if it is gone. A zombie still has its
    times there until its parent reaps it; then they move to the parent's
    cutime/cstime."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            s = f.read()
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces or parentheses.
    rest = s[s.rfind(")") + 2:].split()
    return (int(rest[1]), rest[0], int(rest[11]), int(rest[12]), int(rest[13]), int(rest[14]))


def all_stats():
    out = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = proc_stat(int(name))
            if st is not None:
                out[int(name)] = st
    return out


def descendants(root, stats):
    kids = {}
    for pid, st in stats.items():
        kids.setdefault(st[0], []).append(pid)
    out, todo = [], [root]
    while todo:
        for c in kids.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def treecpu(args):
    """Prints the CPU seconds of each argument: a PID's user and system time,
    the times of the children it has reaped (cutime, cstime) and those of
    every live or not yet reaped descendant, each counted once. "+PID" leaves
    PID's own utime and stime out (the reaper below polls a little). Read
    when the tree is quiet (settle), the figure is exact: whatever a process
    of the tree used is either still on it or on the one that reaped it."""
    stats = all_stats()
    hz = os.sysconf("SC_CLK_TCK")
    total = 0
    for a in args:
        own = not a.startswith("+")
        pid = int(a.lstrip("+"))
        st = stats.get(pid)
        if st is None:
            sys.exit("treecpu: no process %d" % pid)
        total += st[4] + st[5] + (st[2] + st[3] if own else 0)
        for d in descendants(pid, stats):
            _, _, ut, stime, cut, cst = stats[d]
            total += ut + stime + cut + cst
    print("%.2f" % (total / hz))


def settle(pid, n, seconds):
    """Waits until pid has at most n descendants (zombies count until
    reaped): the per-connection processes of a session that ended are gone
    and their times are on their reaper. Exits 1 after seconds."""
    deadline = time.monotonic() + seconds
    while True:
        left = descendants(pid, all_stats())
        if len(left) <= n:
            return
        if time.monotonic() > deadline:
            sys.exit("settle: pid %d still has %d descendants after %ss: %s"
                     % (pid, len(left), seconds, left))
        time.sleep(0.02)


PR_SET_CHILD_SUBREAPER = 36


def reaper(argv):
    """Runs argv as a child and stays the parent of it and, as a child
    subreaper (prctl PR_SET_CHILD_SUBREAPER), of every orphan below it, and
    reaps them all. sshd and vsftpd fork a process (and a session) per
    connection, and those processes need not be reaped by the server: sshd's
    per-connection monitor, for one, exits without waiting for the session
    process and its sftp-server, which would then be reparented to init and
    their CPU time lost. Here they come back to this process, whose
    cutime/cstime (treecpu +PID) then hold every reaped descendant's time.
    SIGTERM, SIGINT and SIGHUP go to every child (the server and the orphans
    it left), SIGKILL 3 s later to those still there. Exits with the
    command's status once it and every other child are gone."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        sys.exit("reaper: prctl(PR_SET_CHILD_SUBREAPER): errno %d" % ctypes.get_errno())
    me = os.getpid()
    stopping = []

    def children():
        return [p for p, st in all_stats().items() if st[0] == me]

    def signal_children(sig):
        for p in children():
            try:
                os.kill(p, sig)
            except OSError:
                pass

    def on_signal(sig, frame):
        if not stopping:
            stopping.append(time.monotonic())
        signal_children(signal.SIGTERM)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    main = os.fork()
    if main == 0:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        try:
            os.execvp(argv[0], argv)
        finally:
            os._exit(127)
    status, killed = 1, False
    while True:
        try:
            pid, st = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            if stopping and not killed and time.monotonic() - stopping[0] > 3:
                signal_children(signal.SIGKILL)
                killed = True
            time.sleep(0.05)
            continue
        if pid == main:
            status = os.waitstatus_to_exitcode(st)
            if status < 0:
                status = 128 - status
            if not stopping:
                # The server is gone: end what it left.
                stopping.append(time.monotonic())
                signal_children(signal.SIGTERM)
    sys.exit(status)


def percentile(sorted_vals, p):
    # Nearest rank: the smallest value with at least p% of the samples at or
    # below it.
    k = max(1, math.ceil(p / 100 * len(sorted_vals)))
    return sorted_vals[k - 1]


def netrc_password(netrc, host, user):
    """The password of the entry for host and user in a netrc file. Not the
    netrc module: it keeps one entry per host, and this file has one per
    server, both for 127.0.0.1. Only machine/login/password entries, as
    run.sh writes them."""
    with open(netrc) as f:
        tokens = f.read().split()
    entries, cur = [], None
    for key, value in zip(tokens[::2], tokens[1::2]):
        if key == "machine":
            cur = {"machine": value}
            entries.append(cur)
        elif cur is not None and key in ("login", "password"):
            cur[key] = value
    for e in entries:
        if e.get("machine") == host and e.get("login") == user and "password" in e:
            return e["password"]
    sys.exit("%s: no password for %s@%s" % (netrc, user, host))


def saves(netrc, path, file, count, specs):
    """An IDE's save on an open session: count STORs of file's bytes to
    path on each server of specs (name:port:user, the password from the
    netrc file), after one untimed STOR each, so that every timed one
    overwrites an existing file. One login per server, all at once; the
    servers take turns save by save, each turn starting with the next
    server, so that all meet the same moments of a noisy machine (run one
    after the other, the same server's p50 moved by a third between runs).
    Prints "name p50_ms p99_ms" per server, in the order of specs."""
    with open(file, "rb") as f:
        data = f.read()
    servers = []
    for spec in specs:
        name, port, user = spec.split(":")
        ftp = ftplib.FTP()
        ftp.connect(HOST, int(port), timeout=20)
        # The password comes from a file, not from argv, where ps shows it.
        ftp.login(user, netrc_password(netrc, HOST, user))
        ftp.voidcmd("TYPE I")
        ftp.storbinary("STOR " + path, io.BytesIO(data))
        servers.append((name, ftp, []))
    n = len(servers)
    for i in range(count):
        for k in range(n):
            _, ftp, times = servers[(i + k) % n]
            t0 = time.perf_counter()
            ftp.storbinary("STOR " + path, io.BytesIO(data))
            times.append((time.perf_counter() - t0) * 1000)
    for name, ftp, times in servers:
        ftp.quit()
        times.sort()
        print("%s %.3f %.3f" % (name, percentile(times, 50), percentile(times, 99)))


def commands(port, user, netrc, path, count, settime):
    """What one command costs on an open session: p50 in microseconds of
    count NOOPs (the server alone) and of count SITE CHMOD 644 and count
    time settings (settime: MFMT, or MDTM with a time as vsftpd takes it)
    of path, uploaded first (100 bytes). An lftp mirror sends four commands
    per file, so what a command costs beyond the reference's is paid four
    times a file."""
    password = netrc_password(netrc, HOST, user)
    ftp = ftplib.FTP()
    ftp.connect(HOST, port, timeout=20)
    ftp.login(user, password)
    ftp.storbinary("STOR " + path, io.BytesIO(b"x" * 100))
    out = []
    for cmd in ("NOOP", "SITE CHMOD 644 " + path, settime + " 20240101000000 " + path):
        times = []
        for _ in range(count):
            t0 = time.perf_counter()
            ftp.sendcmd(cmd)
            times.append((time.perf_counter() - t0) * 1e6)
        times.sort()
        out.append("%.1f" % percentile(times, 50))
    ftp.quit()
    print(" ".join(out))


PAIR_PHASES = ["PASV", "connect", "STOR to 150", "data to 226", "MFMT", "SITE CHMOD", "cycle"]


def alternate(servers, netrc, data, count, rounds, label):
    """count cycles of what lftp's mirror sends per file (PASV, connect the data
    connection, STOR a file of data, send it and close, 226, set its time,
    SITE CHMOD 644), one session per server, alternating between the
    servers file by file, so that all meet the same moments of a noisy
    machine. servers is a list of (name, port, user, time verb): MFMT, or
    MDTM with a time for vsftpd. Each round opens new sessions into a new
    directory, /up/<label><round>, and starts with the next server. Returns
    {name: [per round, the p50 of each of PAIR_PHASES in microseconds]} and
    prints each round's to stderr."""
    results = {name: [] for name, _, _, _ in servers}
    for r in range(rounds):
        order = servers[r % len(servers):] + servers[:r % len(servers)]
        sessions = []
        for name, port, user, verb in order:
            ftp = ftplib.FTP()
            ftp.connect(HOST, port, timeout=20)
            ftp.login(user, netrc_password(netrc, HOST, user))
            ftp.voidcmd("TYPE I")
            d = "/up/%s%d" % (label, r)
            ftp.mkd(d)
            ftp.cwd(d)
            sessions.append((name, ftp, verb, [[] for _ in PAIR_PHASES]))
        for i in range(count):
            for name, ftp, verb, steps in sessions:
                f = "f%d.php" % i
                t0, t1, t2, t3, t4 = timed_stor(name, ftp, f, data)
                ftp.sendcmd(verb + " 20240101000000 " + f)
                t5 = time.perf_counter()
                ftp.sendcmd("SITE CHMOD 644 " + f)
                t6 = time.perf_counter()
                for k, (a, b) in enumerate([(t0, t1), (t1, t2), (t2, t3), (t3, t4), (t4, t5), (t5, t6), (t0, t6)]):
                    steps[k].append((b - a) * 1e6)
        end_round(r, sessions, results, PAIR_PHASES)
    return results


def timed_stor(name, ftp, path, data):
    """One upload on ftp, step by step: PASV, connect the data connection,
    STOR path up to its 150, send data and close, read the 226. Returns
    perf_counter() before PASV and after each step."""
    t = [time.perf_counter()]
    host, port = ftplib.parse227(ftp.sendcmd("PASV"))
    t.append(time.perf_counter())
    conn = socket.create_connection((host, port), timeout=20)
    t.append(time.perf_counter())
    resp = ftp.sendcmd("STOR " + path)
    t.append(time.perf_counter())
    if not resp.startswith("150"):
        sys.exit("%s: STOR %s: %s" % (name, path, resp))
    conn.sendall(data)
    conn.close()
    ftp.voidresp()
    t.append(time.perf_counter())
    return t


def end_round(r, sessions, results, phases):
    """Ends round r (from 0) of alternate or pair_saves: quits each
    session (name, ftp, _, steps) and adds the p50 of each of its steps to
    results[name], printing them to stderr."""
    for name, ftp, _, steps in sessions:
        ftp.quit()
        p50 = [statistics.median(v) for v in steps]
        results[name].append(p50)
        print("round %d %s: %s" % (r + 1, name, ", ".join("%s %.0f" % (n, v) for n, v in zip(phases, p50))),
              file=sys.stderr)


# The 2,000 bytes of every file of the pair scripts' per-file runs (this
# pair, and bench/sftp's pair-files).
PAIR_FILE_DATA = bytes(range(256)) * 7 + bytes(208)


def pair(port_a, port_b, user, netrc, count, rounds):
    """pair.sh's client: alternate() over two upgate gateways, A and B,
    both up at once, with PAIR_FILE_DATA files into /up/pair<round>. Prints
    a markdown table of each step's medians over the rounds and B/A."""
    results = alternate([("A", port_a, user, "MFMT"), ("B", port_b, user, "MFMT")],
                        netrc, PAIR_FILE_DATA, count, rounds, "pair")
    pair_table(results, PAIR_PHASES)


SAVE_PHASES = ["TYPE I", "PASV", "connect", "STOR to 150", "data to 226", "save"]


def pair_saves(port_a, port_b, user, netrc, count, rounds):
    """pair.sh --saves' client: an IDE's save on an open session as
    ftplib's storbinary sends it (TYPE I, PASV, connect, STOR, 4 KiB of
    data, 226), count times per gateway and round, always to the same file
    (/up/save<round>.bin), so that every save replaces the one before
    (each save's bytes are save_data of its number);
    alternating between gateways A and B save by save, with new sessions
    and the other gateway first each round. Prints the table pair prints."""
    results = {"A": [], "B": []}
    servers = [("A", port_a), ("B", port_b)]
    for r in range(rounds):
        order = servers[r % 2:] + servers[:r % 2]
        sessions = []
        for name, port in order:
            ftp = ftplib.FTP()
            ftp.connect(HOST, port, timeout=20)
            ftp.login(user, netrc_password(netrc, HOST, user))
            path = "/up/save%d.bin" % r
            ftp.storbinary("STOR " + path, io.BytesIO(save_data(0)))  # untimed: the timed ones replace it
            sessions.append((name, ftp, path, [[] for _ in SAVE_PHASES]))
        for i in range(1, count + 1):
            data = save_data(i)
            for name, ftp, path, steps in sessions:
                t0 = time.perf_counter()
                ftp.voidcmd("TYPE I")
                t1, t2, t3, t4, t5 = timed_stor(name, ftp, path, data)
                for k, (a, b) in enumerate([(t0, t1), (t1, t2), (t2, t3), (t3, t4), (t4, t5), (t0, t5)]):
                    steps[k].append((b - a) * 1e6)
        end_round(r, sessions, results, SAVE_PHASES)
    pair_table(results, SAVE_PHASES)


def save_data(i):
    """The 4 KiB of pair_saves' save number i (0 the untimed first): i in
    its first 8 bytes, so that a save that left the one before in place
    shows on disk."""
    return i.to_bytes(8, "big") + (bytes(range(256)) * 16)[8:]


def pair_table(results, phases):
    """The markdown table of pair and pair_saves (and of bench/sftp's
    pair.sh clients): each step's median over the rounds for A and B (the
    rounds in brackets), and B/A."""
    print("| step, p50 in us | A | B | B/A |")
    print("|---|---|---|---|")
    for k, step in enumerate(phases):
        a = [v[k] for v in results["A"]]
        b = [v[k] for v in results["B"]]
        ma, mb = statistics.median(a), statistics.median(b)
        print("| %s | %.0f (%s) | %.0f (%s) | **%.2f** |" % (
            step, ma, ", ".join("%.0f" % v for v in a), mb, ", ".join("%.0f" % v for v in b), mb / ma))


def cycles(netrc, data_file, count, rnd, specs):
    """run.sh's cycle measurement: one round of alternate() over the servers
    of specs (name:port:user:verb), count files of data_file's bytes each
    into /up/cycle<rnd>-0; round rnd (from 1) starts with the rnd-th server
    of specs. Prints "name p50" per server: the p50 of a whole cycle in
    microseconds."""
    servers = []
    for spec in specs:
        name, port, user, verb = spec.split(":")
        servers.append((name, int(port), user, verb))
    k = (rnd - 1) % len(servers)
    servers = servers[k:] + servers[:k]
    with open(data_file, "rb") as f:
        data = f.read()
    results = alternate(servers, netrc, data, count, 1, "cycle%d-" % rnd)
    for name, _, _, _ in servers:
        print("%s %.1f" % (name, results[name][0][-1]))


# Rows of the table: key, label, unit, goal (issue 15's, as a ratio of
# upgate's figure to vsftpd's, or "").
ROWS = [
    ("curl_mbps", "{big} upload, `curl -T`", "MB/s", ">= 1.0 (throughput)"),
    ("curl_cpu", "CPU s per GiB on the server side during that upload", "s/GiB", ""),
    ("curl_cpu_agent", "... of which the agent process", "s/GiB", ""),
    ("lftp_mbps", "{big} upload, lftp `put`", "MB/s", ">= 1.0 (throughput)"),
    ("mirror_s", "{files} small files, `lftp mirror -R`", "s", "<= 1.2"),
    ("mirror4_s", "{files} small files, `lftp mirror -R --parallel=4`", "s", ""),
    ("cycle_us", "{files} files, lftp mirror's commands for each (PASV, connect, STOR 2,000 bytes, 226, "
     "time, SITE CHMOD), the servers alternating file by file: a file's p50", "us", ""),
    ("save_p50_ms", "4 KiB save on an open session (ftplib), p50", "ms", "<= 1.3"),
    ("save_p99_ms", "4 KiB save on an open session (ftplib), p99", "ms", ""),
    ("noop_us", "NOOP on an open session, p50", "us", ""),
    ("chmod_us", "SITE CHMOD on an open session, p50", "us", ""),
    ("settime_us", "setting a file's time on an open session (MFMT; MDTM on vsftpd), p50", "us", ""),
]
# The servers, in the table's order; the last one is the reference.
UPGATE_SIDES = [("upgate", "upgate, embedded agent", "embedded"),
                ("upgate-agent", "upgate, agent process", "agent")]


def fmt(v):
    if v >= 100:
        return "{:,.0f}".format(v)
    if v >= 10:
        return "%.1f" % v
    return "%.2f" % v


def read_results(results, meta):
    m = {}
    with open(meta) as f:
        for line in f:
            k, _, v = line.rstrip("\n").partition("=")
            m[k] = v
    vals = {}
    with open(results) as f:
        for line in f:
            key, side, rnd, v = line.split()
            vals.setdefault((key, side), []).append((int(rnd), float(v)))
    return m, vals


def series(vals, key, side):
    return [v for _, v in sorted(vals.get((key, side), []))]


def print_rows(vals, rows, ref, ref_name, labels):
    """The table: one row per measurement that has figures, each server's
    median with the rounds in brackets, upgate's medians over the
    reference's, and the goal."""
    sides = UPGATE_SIDES + [(ref, ref_name, ref_name)]
    print("| measurement | %s | %s | %s |" % (
        " | ".join(h for _, h, _ in sides),
        " | ".join("%s/%s" % (short, ref_name) for _, _, short in UPGATE_SIDES),
        "goal"))
    print("|---" * (len(sides) + len(UPGATE_SIDES) + 2) + "|")
    for key, label, unit, goal in rows:
        cols = [series(vals, key, side) for side, _, _ in sides]
        if not any(cols):
            continue
        cells, meds = [], []
        for c in cols:
            meds.append(statistics.median(c) if c else None)
            cells.append("%s %s (%s)" % (fmt(meds[-1]), unit, ", ".join(fmt(x) for x in c)) if c else "-")
        ratios = ["**%.2f**" % (med / meds[-1]) if med is not None and meds[-1] else "-"
                  for med in meds[:-1]]
        print("| %s | %s | %s | %s |" % (label.format(**labels), " | ".join(cells), " | ".join(ratios), goal))


def table(results, meta):
    m, vals = read_results(results, meta)
    print("### FTP: upgate vs vsftpd (bench/ftp/run.sh)")
    print()
    print("%s. %s. Loopback, all servers writing to the same filesystem (%s). "
          "upgate %s, log level %s, twice: with its embedded agent (one process) "
          "and with the agent as a separate `upgate agent` process reached over "
          "loopback TCP with a token (two processes). vsftpd %s (a local user, "
          "chrooted). Clients lftp %s, curl %s, Python %s ftplib, all in "
          "plaintext. Load average before/after: %s / %s."
          % (m["date"], m["machine"], m["fs"], m["upgate"], m["loglevel"],
             m["vsftpd"], m["lftp"], m["curl"], m["python"], m["load_before"],
             m["load_after"]))
    print()
    print("Data: %s of random bytes; %s files, %s bytes in %s nested "
          "directories, mirrored into an empty directory each time; %s saves "
          "of a 4 KiB file after one login, on all three servers at once, by "
          "turns save by save; %s of each command after one login. "
          "Rounds: %s, each running upgate "
          "(embedded), upgate (agent process), vsftpd in turn; each figure is "
          "the median of the rounds, the rounds follow in brackets. Uploads "
          "include connecting and logging in (about 1 ms on all: bcrypt cost "
          "%s for upgate, SHA-512 with 1,000 rounds for vsftpd). lftp sets "
          "every file's time (MFMT on upgate, MDTM with a time on vsftpd) and "
          "mode (SITE CHMOD) on all. CPU: the server's processes' user + "
          "system time over the upload (upgate's gateway, plus the agent "
          "process where there is one; vsftpd's listener and the "
          "connection's processes). Ratios are upgate's figure over "
          "vsftpd's: for MB/s above 1 is faster, for times and CPU above 1 "
          "is slower. The goals are issue 15's."
          % (m["big"], "{:,}".format(int(m["files"])), "{:,}".format(int(m["files_bytes"])),
             m["dirs"], m["saves"], m["commands"], m["rounds"], m["bcrypt_cost"]))
    print()
    print_rows(vals, ROWS, "vsftpd", "vsftpd",
               dict(big=m["big"], files="{:,}".format(int(m["files"]))))


def main(argv):
    cmd, args = argv[1], argv[2:]
    if cmd == "freeport":
        freeport()
    elif cmd == "portrange":
        portrange(int(args[0]))
    elif cmd == "waitftp":
        waitftp(int(args[0]), float(args[1]))
    elif cmd == "waitport":
        waitport(int(args[0]), float(args[1]), args[2] if len(args) > 2 else None)
    elif cmd == "gensmall":
        gensmall(args[0], int(args[1]), int(args[2]))
    elif cmd == "treesum":
        treesum(args[0])
    elif cmd == "saves":
        saves(args[0], args[1], args[2], int(args[3]), args[4:])
    elif cmd == "commands":
        commands(int(args[0]), args[1], args[2], args[3], int(args[4]), args[5])
    elif cmd == "reaper":
        reaper(args)
    elif cmd == "treecpu":
        treecpu(args)
    elif cmd == "settle":
        settle(int(args[0]), int(args[1]), float(args[2]))
    elif cmd == "pair":
        pair(int(args[0]), int(args[1]), args[2], args[3], int(args[4]), int(args[5]))
    elif cmd == "pair-saves":
        pair_saves(int(args[0]), int(args[1]), args[2], args[3], int(args[4]), int(args[5]))
    elif cmd == "cycles":
        cycles(args[0], args[1], int(args[2]), int(args[3]), args[4:])
    elif cmd == "table":
        table(args[0], args[1])
    else:
        sys.exit("unknown command " + cmd)


if __name__ == "__main__":
    main(sys.argv)
