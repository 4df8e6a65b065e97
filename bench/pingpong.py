"""bench/pingpong.py N PAUSE_US [CLIENT_CPU SERVER_CPU]: what a request and
its reply cost between two single-threaded processes on loopback TCP, the
floor under any gateway-to-agent round trip. The script forks an echo
server and sends it N 40-byte messages on one connection, each after a
pause of PAUSE_US microseconds (0: back to back), with blocking sockets
(once connected) and TCP_NODELAY, as a C server would. With CLIENT_CPU and SERVER_CPU both
processes are pinned (os.sched_setaffinity): the same CPU twice, or two,
to see what waking a process on another, idle, CPU costs. Prints the p50
and p90 of the round trips in microseconds.

Compare with BenchmarkRoundTrip's tcp rows (backend/agents), the same
exchange between two Go processes. docs/benchmarks.md (issue 15, eleventh
sitting) cites it; run with /usr/bin/python3."""
import os
import socket
import statistics
import sys
import time

def recv_exactly(sock, size):
    """size bytes from sock, or fewer if the peer closed the connection."""
    got = b""
    while len(got) < size:
        part = sock.recv(size - len(got))
        if not part:
            break
        got += part
    return got


if len(sys.argv) not in (3, 5):
    sys.exit("usage: pingpong.py N PAUSE_US [CLIENT_CPU SERVER_CPU]")
n, pause = int(sys.argv[1]), int(sys.argv[2]) / 1e6
cpus = [int(c) for c in sys.argv[3:5]]
ls = socket.socket()
ls.bind(("127.0.0.1", 0))
ls.listen(1)
child = os.fork()
if child == 0:
    status = 1
    try:
        if cpus:
            os.sched_setaffinity(0, {cpus[1]})
        ls.settimeout(10)
        c, _ = ls.accept()
        c.settimeout(None)
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while True:
            b = recv_exactly(c, 40)
            if len(b) < 40:
                status = 0 if not b else 1  # the client's close, or a short message
                break
            c.sendall(b)
    except Exception as e:
        print("echo server: %s" % e, file=sys.stderr)
    finally:
        os._exit(status)
if cpus:
    os.sched_setaffinity(0, {cpus[0]})
s = socket.create_connection(ls.getsockname(), timeout=10)
s.settimeout(None)  # blocking from here on, as a C client's socket
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
msg, took = b"x" * 40, []
for i in range(n + 100):  # the first 100 warm up
    if pause:
        time.sleep(pause)
    t0 = time.perf_counter()
    s.sendall(msg)
    if recv_exactly(s, 40) != msg:
        sys.exit("the echo server closed the connection or sent other bytes")
    if i >= 100:
        took.append((time.perf_counter() - t0) * 1e6)
s.close()
_, status = os.waitpid(child, 0)
if status != 0:
    sys.exit("the echo server failed (wait status %d)" % status)
took.sort()
print("pause %d us%s: p50 %.0f us, p90 %.0f us" % (
    pause * 1e6, " (CPUs %d, %d)" % tuple(cpus) if cpus else "",
    statistics.median(took), took[len(took) * 9 // 10]))
