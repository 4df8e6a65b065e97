#!/usr/bin/python3
"""What a client held at once, from upgate's debug log (log.level: debug, text format).

    peaks.py LOG [OFFSET [END]]

Reads LOG from byte OFFSET (stat -c %s LOG before the client ran; default
0) to END (default the end) and prints: control connections and logged-in sessions open at once
(all from one client address on loopback, so also connections per IP),
logins refused, FTP data connections at once, the largest peak_open_files
of the sessions' "connection closed" lines, and the most channels open at
once on one SSH connection ("channel opened" open=N). Control connections
are those accepted on the FTP/FTPS/SFTP listen addresses found in the
log's "serving ..." lines; the rest are FTP data connections. Reads one
file once; no network.
"""
import re, sys

kv = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)')
data = open(sys.argv[1], 'rb').read()
offset = int(sys.argv[2]) if len(sys.argv) > 2 else 0
end = int(sys.argv[3]) if len(sys.argv) > 3 else len(data)

def fields(line):
    return {k: v.strip('"') for k, v in kv.findall(line)}

ctrl = set()
for line in data.decode(errors='replace').splitlines():
    f = fields(line)
    if f.get('msg', '').startswith('serving ') and 'addr' in f:
        ctrl.add(f['addr'])

kind, logged = {}, set()
now = {'ctrl': 0, 'data': 0, 'login': 0}
top = dict(now)
peaks, chans, refused = [], {}, 0

def up(k):
    now[k] += 1
    top[k] = max(top[k], now[k])

for line in data[offset:end].decode(errors='replace').splitlines():
    f = fields(line)
    msg, sid = f.get('msg'), f.get('session')
    if msg == 'connection accepted':
        kind[sid] = 'ctrl' if f.get('local') in ctrl else 'data'
        up(kind[sid])
    elif msg == 'login' and sid in kind:
        logged.add(sid)
        up('login')
    elif msg == 'login refused':
        refused += 1
    elif msg == 'channel opened' and sid:
        chans[sid] = max(chans.get(sid, 0), int(f['open']))
    elif msg == 'connection closed' and sid in kind:
        now[kind[sid]] -= 1
        if sid in logged:
            now['login'] -= 1
            peaks.append(int(f.get('peak_open_files', 0)))

print(f"control connections at once: {top['ctrl']}; logged-in sessions at once: {top['login']}; logins refused: {refused}")
print(f"FTP data connections: {sum(1 for k in kind.values() if k == 'data')}, at once: {top['data']}")
print(f"peak_open_files, largest per session: {sorted(peaks, reverse=True)[:10]} over {len(peaks)} sessions")
print(f"channels open at once on one connection: {max(chans.values(), default=0)} (over {len(chans)} SSH connections)")
if now['login'] > 0:
    print(f"still open at the end of the log: {now['login']} sessions (their peaks are not in yet)")
