"""Helpers for bench/sftp/run.sh and pair.sh: the paramiko workloads (saves,
creates, pair.sh's client), SSH readiness, and the markdown tables. Needs
Debian's /usr/bin/python3 with python3-paramiko. Ports, test data, tree
checks, the process accounting (reaper, treecpu, settle), pair.sh's saves'
bytes (save_data) and its table (pair_table) are bench/ftp/helper.py's,
shared.

    helper.py freeport                       a free loopback TCP port
    helper.py waitport PORT SECONDS [BANNER] wait until 127.0.0.1:PORT accepts (and,
                                             with BANNER, greets with it)
    helper.py gensmall DIR COUNT SEED        COUNT small files in nested dirs under DIR
    helper.py treesum DIR                    "files bytes digest" of the regular files under DIR
    helper.py reaper CMD ARGS...             run CMD under a child subreaper
    helper.py treecpu [+]PID...              CPU seconds of process trees
    helper.py settle PID N SECONDS           wait until PID has at most N descendants
    helper.py saves KEY KNOWN_HOSTS PATH FILE COUNT NAME:PORT:USER...
                                             one SSH session per server, COUNT saves
                                             of FILE to PATH on each, by turns; prints
                                             a line per server: its NAME, "p50 p99"
                                             and the phases' p50s (ms), see saves()
    helper.py creates KEY KNOWN_HOSTS SRC DEST NAME:PORT:USER...
                                             one SSH session per server: makes the
                                             directories and files of SRC under DEST
                                             on each, by turns; prints "NAME seconds"
                                             each, the time of its own requests
    helper.py cipher PORT USER KEY KNOWN_HOSTS
                                             the cipher and MAC paramiko negotiates
    helper.py pair-saves PORT_A PORT_B USER KEY KNOWN_HOSTS COUNT ROUNDS
                                             pair.sh's client: saves of one file on
                                             gateways A and B by turns; prints the
                                             markdown table (see pair_saves)
    helper.py pair-files PORT_A PORT_B USER KEY KNOWN_HOSTS COUNT ROUNDS
                                             pair.sh --files' client: new files as
                                             lftp's mirror writes them (see pair_files)
    helper.py pair-want COUNT                what pair.sh checks on disk: "sha256
                                             mtime" of pair-saves' last save (of
                                             COUNT), then of every pair-files file
    helper.py table RESULTS META             the markdown report

Every SSH login is by key (KEY, an unencrypted OpenSSH private key file) and
checks the server's host key against KNOWN_HOSTS; no password exists.
"""

import hashlib
import importlib.util
import os
import socket
import statistics
import sys
import time

HOST = "127.0.0.1"

_spec = importlib.util.spec_from_file_location(
    "ftpbench_helper", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "ftp", "helper.py"))
common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(common)


def connect(port, user, key, known_hosts):
    """An SFTP session logged in by key, the server's host key checked.
    paramiko 2.12 offers aes128-ctr first (it has no AES-GCM); both servers
    accept it, so both sessions run the same cipher and MAC."""
    import paramiko

    pkey = paramiko.Ed25519Key.from_private_key_file(key)
    hostkeys = paramiko.HostKeys(known_hosts)
    sock = socket.create_connection((HOST, port), timeout=20)
    t = paramiko.Transport(sock)
    t.banner_timeout = 20
    t.auth_timeout = 20
    t.start_client(timeout=20)
    got = t.get_remote_server_key()
    want = hostkeys.lookup("[%s]:%d" % (HOST, port))
    if want is None or want.get(got.get_name()) != got:
        t.close()
        sys.exit("host key of %s:%d is not the one in %s" % (HOST, port, known_hosts))
    t.auth_publickey(user, pkey)
    sftp = paramiko.SFTPClient.from_transport(t)
    sftp.get_channel().settimeout(60)
    return t, sftp


# The steps of one save (timed_save).
PHASES = ["open", "write", "close", "utime", "chmod"]


def saves(specs, key, known_hosts, path, file, count):
    """An IDE's save of a 4 KiB file on an open session, COUNT times over on
    each server of specs (name:port:user): open (OPEN with
    CREAT|TRUNC|WRITE), write (one WRITE of 4 KiB, sent by flush and
    answered), close (CLOSE), utime (SETSTAT of atime and mtime), chmod
    (SETSTAT of the mode): five requests, each waiting for its answer, as
    paramiko sends them. One session per server, all open at once; the
    servers take turns save by save, each turn starting with the next
    server, so that all meet the same moments of a noisy machine (run one
    after the other, the same server's p50 moved by a third between runs).
    Prints a line per server, in the order of specs: its name, p50 and p99
    of the whole save, then the p50 of each of the five steps (ms)."""
    with open(file, "rb") as f:
        data = f.read()
    servers = [(name, int(port), user) for name, port, user in (spec.split(":") for spec in specs)]
    sessions = [connect(port, user, key, known_hosts) for _, port, user in servers]
    times = [[] for _ in servers]
    phases = [[[] for _ in PHASES] for _ in servers]
    # One untimed save first on each, so that every timed one replaces an
    # existing file, as an IDE's save does.
    base = int(time.time()) - 86400
    for _, sftp in sessions:
        timed_save(sftp, path, data, base)
    n = len(sessions)
    for i in range(count):
        for k in range(n):
            j = (i + k) % n
            ts = timed_save(sessions[j][1], path, data, base + i + 1)
            for p in range(len(PHASES)):
                phases[j][p].append((ts[p + 1] - ts[p]) * 1000)
            times[j].append((ts[-1] - ts[0]) * 1000)
    for (name, _, _), (t, sftp) in zip(servers, sessions):
        st = sftp.stat(path)
        sftp.close()
        t.close()
        if st.st_size != len(data) or st.st_mtime != base + count or st.st_mode & 0o7777 != 0o644:
            sys.exit("saves: %s: %s is size %d mtime %d mode %o after the saves, want %d %d 644"
                     % (name, path, st.st_size, st.st_mtime, st.st_mode & 0o7777, len(data), base + count))
    for j in range(n):
        ts = sorted(times[j])
        out = [common.percentile(ts, 50), common.percentile(ts, 99)]
        out += [statistics.median(p) for p in phases[j]]
        print(servers[j][0], " ".join("%.3f" % v for v in out))


def timed_save(sftp, path, data, mtime):
    """One save of data to path on an open session, as paramiko sends it:
    open (OPEN with CREAT|TRUNC|WRITE), write (one WRITE, sent by flush and
    answered), close (CLOSE), utime (SETSTAT of atime and mtime, both
    mtime), chmod (SETSTAT of the mode, 0644), each waiting for its answer.
    Returns perf_counter() before the OPEN and after each of the five
    steps (PHASES)."""
    ts = [time.perf_counter()]
    f = sftp.open(path, "wb")
    ts.append(time.perf_counter())
    f.write(data)
    f.flush()
    ts.append(time.perf_counter())
    f.close()
    ts.append(time.perf_counter())
    sftp.utime(path, (mtime, mtime))
    ts.append(time.perf_counter())
    sftp.chmod(path, 0o644)
    ts.append(time.perf_counter())
    return ts


def creates(specs, key, known_hosts, src, dest):
    """Every directory and file under src made under dest on each server of
    specs (name:port:user), one session per server, all at once: MKDIR
    per directory (parents first), then per file OPEN (CREAT|TRUNC|WRITE),
    one WRITE, CLOSE. The servers take turns directory by directory and
    file by file, each turn starting with the next server, so that all
    meet the same moments of a noisy machine. The files' contents are read
    before the clock starts. Prints "name seconds" per server, in the order
    of specs: the sum of the times its own requests took, from the first
    MKDIR to the last CLOSE's answer."""
    dirs, files = [], []
    for dirpath, dirnames, filenames in os.walk(src):
        rel = os.path.relpath(dirpath, src)
        if rel != ".":
            dirs.append(rel)
        for n in filenames:
            p = os.path.join(dirpath, n)
            with open(p, "rb") as f:
                files.append((os.path.normpath(os.path.join(rel, n)), f.read()))
    dirs.sort(key=lambda d: (d.count("/"), d))
    files.sort()
    servers = [(name, int(port), user) for name, port, user in (spec.split(":") for spec in specs)]
    sessions = [connect(port, user, key, known_hosts) for _, port, user in servers]
    took = [0.0] * len(sessions)

    def turns(i, op):
        n = len(sessions)
        for k in range(n):
            j = (i + k) % n
            t0 = time.perf_counter()
            op(sessions[j][1])
            took[j] += time.perf_counter() - t0

    def create(rel, data):
        def op(sftp):
            f = sftp.open(dest + "/" + rel, "wb")
            f.write(data)
            f.close()
        return op

    turns(0, lambda sftp: sftp.mkdir(dest))
    for i, d in enumerate(dirs):
        turns(i + 1, lambda sftp: sftp.mkdir(dest + "/" + d))
    for i, (rel, data) in enumerate(files):
        turns(len(dirs) + 1 + i, create(rel, data))
    for (name, _, _), (t, sftp), secs in zip(servers, sessions, took):
        sftp.close()
        t.close()
        print("%s %.4f" % (name, secs))


def cipher(port, user, key, known_hosts):
    t, sftp = connect(port, user, key, known_hosts)
    print("%s %s" % (t.local_cipher, t.local_mac))
    sftp.close()
    t.close()


# pair.sh's times: save i (0 the untimed first) of pair_saves sets its
# file's mtime to PAIR_MTIME + i; pair_files sets every file's to
# PAIR_MTIME (2024-01-01 00:00 UTC, the time bench/ftp/pair.sh's MFMT
# sets).
PAIR_MTIME = 1704067200


def pair(port_a, port_b, user, key, known_hosts, count, rounds, prepare, one):
    """pair.sh's loop: two gateways, A and B, both up at once, by turns
    operation by operation, so that both meet the same moments of a noisy
    machine. Each round opens a new session on each, A first in round 1
    and the other gateway first each round after, and runs prepare(sftp,
    round) on each, untimed; then for i in 1..count one(sftp, round, i) on
    each in the round's order, which returns timed_save's times. What
    prepare returned, if not None, is called as check(name, sftp) before
    the session closes. Returns {name: [per round, the p50 of each step
    and of the whole, in us]}, printing each round's to stderr."""
    results = {"A": [], "B": []}
    servers = [("A", port_a), ("B", port_b)]
    for r in range(rounds):
        sessions = []
        for name, port in servers[r % 2:] + servers[:r % 2]:
            t, sftp = connect(port, user, key, known_hosts)
            check = prepare(sftp, r)
            sessions.append((name, t, sftp, check, [[] for _ in range(len(PHASES) + 1)]))
        for i in range(1, count + 1):
            for _, _, sftp, _, steps in sessions:
                ts = one(sftp, r, i)
                for k in range(len(PHASES)):
                    steps[k].append((ts[k + 1] - ts[k]) * 1e6)
                steps[-1].append((ts[-1] - ts[0]) * 1e6)
        for name, t, sftp, check, steps in sessions:
            if check is not None:
                check(name, sftp)
            sftp.close()
            t.close()
            p50 = [statistics.median(v) for v in steps]
            results[name].append(p50)
            print("round %d %s: %s" % (r + 1, name, ", ".join(
                "%s %.0f" % (n, v) for n, v in zip(PHASES + ["whole"], p50))), file=sys.stderr)
    return results


def pair_saves(port_a, port_b, user, key, known_hosts, count, rounds):
    """pair.sh's client (its default, --saves): an IDE's save on an open
    session, timed_save's five steps, count times per gateway and round,
    always to the same file (/up/save<round>.bin) after one untimed save,
    so that every timed save replaces the file. Save i's bytes are bench/ftp
    helper.py's save_data(i) and its mtime PAIR_MTIME + i; each round's
    file must have the last save's size, mtime and mode at the round's end
    (pair.sh checks its bytes on disk). Prints the markdown table."""
    def prepare(sftp, r):
        path = "/up/save%d.bin" % r
        timed_save(sftp, path, common.save_data(0), PAIR_MTIME)

        def check(name, sftp):
            st = sftp.stat(path)
            want = (len(common.save_data(count)), PAIR_MTIME + count, 0o644)
            got = (st.st_size, st.st_mtime, st.st_mode & 0o7777)
            if got != want:
                sys.exit("pair-saves: %s: %s is size %d mtime %d mode %o after the saves, want %d %d %o"
                         % ((name, path) + got + want))
        return check

    def one(sftp, r, i):
        return timed_save(sftp, "/up/save%d.bin" % r, common.save_data(i), PAIR_MTIME + i)

    results = pair(port_a, port_b, user, key, known_hosts, count, rounds, prepare, one)
    common.pair_table(results, PHASES + ["save"])


def pair_files(port_a, port_b, user, key, known_hosts, count, rounds):
    """pair.sh --files' client: new files as lftp's SFTP mirror writes
    them, timed_save's five steps per file (common.PAIR_FILE_DATA, mtime
    PAIR_MTIME) into /up/pair<round>/f<i>.php, the directory made once per
    session, untimed. pair.sh checks the files on disk. Prints the
    markdown table."""
    def prepare(sftp, r):
        sftp.mkdir("/up/pair%d" % r)

    def one(sftp, r, i):
        return timed_save(sftp, "/up/pair%d/f%d.php" % (r, i), common.PAIR_FILE_DATA, PAIR_MTIME)

    results = pair(port_a, port_b, user, key, known_hosts, count, rounds, prepare, one)
    common.pair_table(results, PHASES + ["file"])


def pair_want(count):
    """What pair.sh checks on disk: the sha256 and mtime of pair_saves'
    last save, and the sha256 and mtime of every file of pair_files."""
    print(hashlib.sha256(common.save_data(count)).hexdigest(), PAIR_MTIME + count,
          hashlib.sha256(common.PAIR_FILE_DATA).hexdigest(), PAIR_MTIME)


# Rows of the table: key, label, unit, goal (issue 15's, as a time ratio
# upgate/OpenSSH, or "").
ROWS = [
    ("login_ms", "login and one `pwd`, OpenSSH `sftp -b` (median of 5)", "ms", ""),
    ("put_s", "{big} upload, OpenSSH `sftp -b` put", "s", "<= 0.9"),
    ("put_cpu", "CPU s per GiB on the server side during that upload", "s/GiB", ""),
    ("put_cpu_agent", "... of which the agent process", "s/GiB", ""),
    ("scp_s", "{big} upload, OpenSSH `scp -O` (legacy SCP protocol)", "s", ""),
    ("scp_cpu", "CPU s per GiB on the server side during that upload", "s/GiB", ""),
    ("mirror_s", "{files} small files, `lftp mirror -R` (sftp://, serial)", "s", "<= 1.1"),
    ("save_p50_ms", "4 KiB save on an open session (paramiko), p50", "ms", "<= 1.1"),
    ("save_p99_ms", "4 KiB save on an open session (paramiko), p99", "ms", ""),
    ("creates_s", "creating {creates} small files on one session (paramiko)", "s", "<= 1.5"),
    ("git_s", "sshfs: first `git status` in a {tree}-file repository", "s", ""),
    ("cp_s", "sshfs: `cp -a` of {cp} files of it into a new directory", "s", ""),
]


def table(results, meta):
    m, vals = common.read_results(results, meta)
    fmt = common.fmt
    print("### SFTP: upgate vs OpenSSH (bench/sftp/run.sh)")
    print()
    print("%s. %s. Loopback, all servers writing to the same filesystem (%s). "
          "upgate %s, log level %s, twice: with its embedded agent (one process) "
          "and with the agent as a separate `upgate agent` process reached over "
          "loopback TCP with a token (two processes). OpenSSH %s: Debian's sshd "
          "with its own configuration, `Subsystem sftp %s`, a throwaway local "
          "user. Clients: OpenSSH's sftp, lftp %s, paramiko %s (Python %s)%s; "
          "every login by an Ed25519 key. Ciphers: OpenSSH's sftp, lftp and "
          "sshfs (through ssh) %s, forced with `-c`; paramiko %s. Load average "
          "before/after: %s / %s."
          % (m["date"], m["machine"], m["fs"], m["upgate"], m["loglevel"],
             m["openssh"], m["subsystem"], m["lftp"], m["paramiko"], m["python"],
             (", sshfs %s, git %s" % (m["sshfs"], m["git"])) if m.get("sshfs") else "",
             m["cipher"], m["paramiko_cipher"], m["load_before"], m["load_after"]))
    print()
    print("Data: %s of random bytes; %s files, %s bytes in %s nested directories, "
          "mirrored into an empty directory each time; %s saves after one login, "
          "on all three servers at once, by turns save by save; "
          "%s files (%s bytes, %s directories) created into an empty directory, "
          "also on all three at once, by turns file by file (the sum of each "
          "server's own requests' times). "
          "Rounds: %s, each running upgate (embedded), upgate (agent process), "
          "OpenSSH in turn; each figure is the median of the rounds, the rounds "
          "follow in brackets. Uploads include connecting and logging in. "
          "CPU: the server's processes' user + system time over the upload "
          "(upgate's gateway, plus the agent process where there is one; sshd's "
          "listener and the connection's processes: its monitor, the session "
          "process, sftp-server). Ratios are upgate's figure over OpenSSH's: "
          "above 1 is slower (or more CPU). The goals are issue 15's."
          % (m["big"], "{:,}".format(int(m["files"])), "{:,}".format(int(m["files_bytes"])),
             m["dirs"], m["saves"], "{:,}".format(int(m["creates"])),
             "{:,}".format(int(m["creates_bytes"])), m["creates_dirs"], m["rounds"]))
    print()
    common.print_rows(vals, ROWS, "openssh", "OpenSSH", dict(
        big=m["big"], files="{:,}".format(int(m["files"])), creates="{:,}".format(int(m["creates"])),
        tree=m.get("tree", "?"), cp=m.get("cp", "?")))
    # The steps of one save: where its time goes.
    sides = [("upgate", "upgate embedded"), ("upgate-agent", "upgate with agent process"),
             ("openssh", "OpenSSH")]
    if all(common.series(vals, "save_phase0", s) for s, _ in sides):
        parts = []
        for s, name in sides:
            steps = ", ".join("%s %s" % (PHASES[i], fmt(statistics.median(common.series(vals, "save_phase%d" % i, s))))
                              for i in range(len(PHASES)))
            parts.append("%s: %s" % (name, steps))
        print()
        print("One save's five steps, p50 in ms (median of the rounds). " + "; ".join(parts) + ".")


def main(argv):
    cmd, args = argv[1], argv[2:]
    if cmd == "freeport":
        common.freeport()
    elif cmd == "waitport":
        common.waitport(int(args[0]), float(args[1]), args[2] if len(args) > 2 else None)
    elif cmd == "gensmall":
        common.gensmall(args[0], int(args[1]), int(args[2]))
    elif cmd == "treesum":
        common.treesum(args[0])
    elif cmd == "reaper":
        common.reaper(args)
    elif cmd == "treecpu":
        common.treecpu(args)
    elif cmd == "settle":
        common.settle(int(args[0]), int(args[1]), float(args[2]))
    elif cmd == "saves":
        saves(args[5:], args[0], args[1], args[2], args[3], int(args[4]))
    elif cmd == "creates":
        creates(args[4:], args[0], args[1], args[2], args[3])
    elif cmd == "cipher":
        cipher(int(args[0]), args[1], args[2], args[3])
    elif cmd in ("pair-saves", "pair-files"):
        client = pair_saves if cmd == "pair-saves" else pair_files
        client(int(args[0]), int(args[1]), args[2], args[3], args[4], int(args[5]), int(args[6]))
    elif cmd == "pair-want":
        pair_want(int(args[0]))
    elif cmd == "table":
        table(args[0], args[1])
    else:
        sys.exit("unknown command " + cmd)


if __name__ == "__main__":
    main(sys.argv)
