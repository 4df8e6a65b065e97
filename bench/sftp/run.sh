#!/usr/bin/env bash
# bench/sftp/run.sh: upgate's SFTP frontend against OpenSSH's sshd on this
# machine, loopback only, every server writing to the same filesystem. Run by
# hand as root (sshd logs in a throwaway local user, created for the run and
# removed at exit, also on a signal); CI only runs the quick mode
# (bench_test.go) so that this script cannot rot, and never times it.
#
#   bash bench/sftp/run.sh                 # 256 MiB, 500 files, 500 saves, 5,000 creates, 2 rounds
#   bash bench/sftp/run.sh --quick         # 16 MiB, 50 files, 20 saves, 200 creates, 1 round
#   BENCH_ROUNDS=3 bash bench/sftp/run.sh  # more rounds
#
# Three servers, each measured in turn within a round (rounds A B C A B C):
#   upgate         `upgate serve` built from this tree, embedded agent (one
#                  process, the default configuration's shape);
#   upgate-agent   `upgate serve` with the agent as a separate `upgate agent`
#                  process on loopback TCP with a token (how every real
#                  deployment runs);
#   openssh        Debian's sshd, started here in the foreground with its
#                  own configuration, host key and PidFile (UsePAM no,
#                  StrictModes no, 127.0.0.1 and a free port), and
#                  `Subsystem sftp /usr/lib/openssh/sftp-server -u 022`:
#                  Debian's default subsystem and the reference that
#                  interop/differential compares upgate with. (internal-sftp
#                  would save the pipe between the session process and
#                  sftp-server; BENCH_SSHD_SFTP=internal-sftp measures that.)
# Measurements:
#   0. a login and one request (`sftp -b` with `pwd`), the median of 5 (ms):
#      what every upload below pays once;
#   1. a big upload with OpenSSH's `sftp -b` (put: 32 KiB writes, 64 in
#      flight), wall clock of the whole command, login included; and the
#      servers' CPU seconds per GiB over it: upgate's gateway (plus its agent
#      process), sshd's processes for that connection (its monitor, the
#      session process, sftp-server), from /proc/PID/stat user + system time
#      before and after (see helper.py treecpu and reaper);
#   1b. the same file with OpenSSH's `scp -O` (the legacy SCP protocol: the
#      server runs `scp -t`, sshd's /usr/bin/scp or upgate's own), wall clock
#      and CPU seconds per GiB as for 1;
#   2. `lftp mirror -R` (sftp://, serial) of many small files in nested
#      directories into an empty directory (seconds);
#   3. a 4 KiB save on an open session with paramiko: OPEN (create,
#      truncate), WRITE, CLOSE, SETSTAT times, SETSTAT mode, each waiting for
#      its answer, as an IDE saves with "preserve timestamps"; p50 and p99
#      per save (ms), and each step's p50. One session per server, all at
#      once, the servers taking turns save by save (the other rows run one
#      server after the other);
#   4. creating many small files (MKDIR per directory, OPEN/WRITE/CLOSE per
#      file) with paramiko on one session (seconds), again on all servers
#      at once, by turns file by file, each server's figure the sum of its
#      own requests' times;
#   5. with sshfs (optional: skipped when sshfs, fusermount3 or /dev/fuse is
#      missing): a git repository of small files put on the server's disk,
#      then through a fresh sshfs mount the first `git status` (it rereads
#      every file, since the index's inode numbers are not sshfs's) and
#      `cp -a` of some of its files into a new directory (seconds).
# Every upload is checked on disk (size and sha256 of the big file, file
# count, sizes and sha256 of every small file) before its figure counts. The
# markdown table goes to stdout, progress to stderr. Every login is by an
# Ed25519 key made for the run (a 0600 file in the temp dir); no password
# exists for any server. Host keys are checked against a known_hosts file
# made for the run. Clients that can (OpenSSH's sftp, lftp through ssh,
# sshfs) are given `-c aes128-gcm@openssh.com`; paramiko 2.12 has no GCM and
# negotiates aes128-ctr with hmac-sha2-256 with every server.
#
# Environment (defaults in brackets, quick mode's after the slash):
#   BENCH_QUICK=1          quick mode, same as --quick
#   BENCH_ROUNDS           rounds [2 / 1]
#   BENCH_BIG_MIB          big file size in MiB [256 / 16]
#   BENCH_FILES            small files to mirror [500 / 50]
#   BENCH_SAVES            timed saves [500 / 20]
#   BENCH_CREATES          files created with paramiko [5000 / 200]
#   BENCH_TREE             files in the sshfs repository [500 / 50]
#   BENCH_CP               files of it copied with cp -a [100 / 10]
#   BENCH_ONLY             comma list of login,put,scp,mirror,saves,creates,sshfs
#                          [all; sshfs only where it can run]
#   BENCH_WARMUP=0         skip the untimed warm-up (one big upload and one
#                          mirror per server before round 1)
#   BENCH_SSHD_SFTP        sftp-server or internal-sftp [sftp-server]
#   BENCH_LOG_LEVEL        upgate's log.level and the agent's --log-level [warn]
#   BENCH_TIMEOUT          seconds any one client command may take [600]
#   BENCH_DIR              where the temp dir goes [$TMPDIR or /tmp]
#   BENCH_KEEP=1           keep the temp dir (data, configs, server logs)
#   BENCH_UPGATE           an upgate binary to measure (its `serve` and its
#                          `agent`) instead of one built from this tree: for
#                          a before/after pairing, run the script once per
#                          binary in one sitting [build from the tree]
#   BENCH_UPGATE_LABEL     what the report calls that binary [its path]
#   GO                     the go command, to build upgate [go]
set -euo pipefail
export LC_ALL=C
umask 022

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib.sh
source "$here/../lib.sh"
repo=$(cd "$here/../.." && pwd)
PY=/usr/bin/python3
helper=$here/helper.py
SSHD=/usr/sbin/sshd
SFTP_SERVER=/usr/lib/openssh/sftp-server

quick=${BENCH_QUICK:-0}
while (($#)); do
  case $1 in
    --quick) quick=1 ;;
    -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
if [[ $quick == 1 ]]; then
  d_rounds=1 d_big=16 d_files=50 d_saves=20 d_creates=200 d_tree=50 d_cp=10
else
  d_rounds=2 d_big=256 d_files=500 d_saves=500 d_creates=5000 d_tree=500 d_cp=100
fi
rounds=${BENCH_ROUNDS:-$d_rounds}
big_mib=${BENCH_BIG_MIB:-$d_big}
nfiles=${BENCH_FILES:-$d_files}
nsaves=${BENCH_SAVES:-$d_saves}
ncreates=${BENCH_CREATES:-$d_creates}
ntree=${BENCH_TREE:-$d_tree}
ncp=${BENCH_CP:-$d_cp}
only=${BENCH_ONLY:-login,put,scp,mirror,saves,creates,sshfs}
only_explicit=${BENCH_ONLY:+1}
loglevel=${BENCH_LOG_LEVEL:-warn}
cmd_timeout=${BENCH_TIMEOUT:-600}
sshd_sftp=${BENCH_SSHD_SFTP:-sftp-server}
GO=${GO:-go}
ug_bin=${BENCH_UPGATE:-}
ug_label=${BENCH_UPGATE_LABEL:-$ug_bin}
if [[ -n $ug_bin ]]; then
  [[ -f $ug_bin && -x $ug_bin ]] || { echo "run.sh: BENCH_UPGATE: $ug_bin is not an executable file" >&2; exit 2; }
  ug_bin=$(realpath "$ug_bin")
fi
for v in rounds big_mib nfiles nsaves ncreates ntree ncp cmd_timeout; do
  if ! [[ ${!v} =~ ^[1-9][0-9]{0,5}$ ]]; then
    echo "run.sh: $v must be a positive integer, got '${!v}'" >&2
    exit 2
  fi
done
((rounds <= 50)) || { echo "run.sh: at most 50 rounds" >&2; exit 2; }
((ncp <= ntree)) || { echo "run.sh: BENCH_CP ($ncp) must not exceed BENCH_TREE ($ntree)" >&2; exit 2; }
for w in ${only//,/ }; do
  [[ $w =~ ^(login|put|scp|mirror|saves|creates|sshfs)$ ]] || { echo "run.sh: BENCH_ONLY: unknown '$w'" >&2; exit 2; }
done
case $sshd_sftp in
  sftp-server) subsystem="$SFTP_SERVER -u 022" ;;
  internal-sftp) subsystem="internal-sftp -u 022" ;;
  *) echo "run.sh: BENCH_SSHD_SFTP must be sftp-server or internal-sftp, got '$sshd_sftp'" >&2; exit 2 ;;
esac

# --- prerequisites: checked, never installed ------------------------------
missing=() pkgs=()
[[ -x $SSHD ]] || { missing+=("$SSHD"); pkgs+=(openssh-server); }
[[ $sshd_sftp != sftp-server || -x $SFTP_SERVER ]] || { missing+=("$SFTP_SERVER"); pkgs+=(openssh-server); }
for t in ssh sftp ssh-keygen; do
  command -v $t >/dev/null || { missing+=($t); pkgs+=(openssh-client); }
done
command -v lftp >/dev/null || { missing+=(lftp); pkgs+=(lftp); }
if [[ ! -x $PY ]]; then
  missing+=("$PY"); pkgs+=(python3 python3-paramiko)
elif ! "$PY" -c 'import paramiko' 2>/dev/null; then
  missing+=("paramiko for $PY"); pkgs+=(python3-paramiko)
fi
for t in useradd userdel chpasswd; do
  command -v $t >/dev/null || [[ -x /usr/sbin/$t ]] || { missing+=($t); pkgs+=(passwd); }
done
for t in timeout sha256sum stat sync cmp; do
  command -v $t >/dev/null || missing+=($t)
done
command -v setsid >/dev/null || { missing+=(setsid); pkgs+=(util-linux); }
command -v ps >/dev/null || { missing+=(ps); pkgs+=(procps); }
[[ -n $ug_bin ]] || command -v "$GO" >/dev/null || missing+=("$GO (the Go toolchain)")
if want sshfs; then
  sshfs_missing=()
  command -v sshfs >/dev/null || sshfs_missing+=(sshfs)
  command -v fusermount3 >/dev/null || sshfs_missing+=(fusermount3)
  command -v git >/dev/null || sshfs_missing+=(git)
  [[ -c /dev/fuse ]] || sshfs_missing+=(/dev/fuse)
  if ((${#sshfs_missing[@]})); then
    if [[ -n $only_explicit ]]; then
      missing+=("${sshfs_missing[@]}"); pkgs+=(sshfs fuse3 git)
    else
      echo "run.sh: no sshfs measurements: missing ${sshfs_missing[*]}" >&2
      only=${only//sshfs/}
    fi
  fi
fi
if ((${#missing[@]})); then
  echo "run.sh: missing: ${missing[*]}" >&2
  ((${#pkgs[@]})) && echo "run.sh: install with: apt-get install -y $(printf '%s\n' "${pkgs[@]}" | sort -u | tr '\n' ' ')" >&2
  exit 3
fi
if ((EUID != 0)); then
  echo "run.sh: must run as root (it adds a throwaway user for sshd)" >&2
  exit 3
fi
export PATH=$PATH:/usr/sbin:/sbin

# --- cleanup, temp dir ------------------------------------------------------
# The traps come first, so that no signal falls between mktemp and them.
tmp=
servers=()   # process groups of the servers we started (each a group leader)
mounts=()   # sshfs mount points
sshfs_pid=
ssh_user=
cur=
is_mounted() { # dir
  awk -v d="$1" '$5 == d { f = 1 } END { exit !f }' /proc/self/mountinfo
}
unmount() { # dir: fusermount3 -u, then a lazy unmount; bounded
  is_mounted "$1" || return 0
  timeout -k 2 10 fusermount3 -u "$1" 2>/dev/null ||
    timeout -k 2 10 umount -l "$1" ||
    log "could not unmount $1"
}
own_user() { # name: the throwaway user exists and is this run's (its home)
  [[ $(getent passwd "$1" | cut -d: -f6) == "$tmp/sshd-home" ]]
}
user_pids() { # name: pids of the user's processes
  ps -u "$1" -o pid= 2>/dev/null | tr -d ' ' || true
}
cleanup() {
  local rc=$? pg m p i
  set +e
  trap - EXIT ERR
  # A second signal does not cut the cleanup short: it is bounded (a few
  # seconds per step).
  trap 'log "cleaning up; signal ignored"' INT TERM HUP
  # cur is timeout(1), which runs the client in timeout's own process group.
  [[ -z $cur ]] || stop_group "$cur" 5
  for m in "${mounts[@]}"; do unmount "$m"; done
  [[ -z $sshfs_pid ]] || stop_group "$sshfs_pid" 5
  # Servers: upgate's gateways, the agent, and sshd under the reaper, which
  # passes the TERM on to the per-connection processes sshd left behind.
  for pg in "${servers[@]}"; do stop_group "$pg" 5; done
  if [[ -n $ssh_user ]] && own_user "$ssh_user"; then
    for i in 1 2 3; do
      p=$(user_pids "$ssh_user")
      [[ -n $p ]] || break
      # shellcheck disable=SC2086
      kill -KILL $p 2>/dev/null
      sleep 0.3
    done
    userdel -f "$ssh_user" || log "could not remove user $ssh_user: userdel -f $ssh_user"
  fi
  if [[ -z $tmp ]]; then
    :
  elif [[ ${BENCH_KEEP:-0} == 1 ]]; then
    log "kept $tmp"
  else
    for m in "${mounts[@]}"; do
      is_mounted "$m" && { log "$m still mounted; not removing $tmp"; exit "$rc"; }
    done
    rm -rf "$tmp"
  fi
  exit "$rc"
}
trap cleanup EXIT
# A command that ends the run under set -e says which (die says why; this
# catches what has no die of its own). errtrace: in functions too.
set -o errtrace
trap 'log "FAIL: line $LINENO: $BASH_COMMAND exited $?"' ERR
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP
tmp=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/upgate-sftpbench.XXXXXX")
chmod 755 "$tmp"


# --- keys ---------------------------------------------------------------------
mkdir -p "$tmp/keys" "$tmp/data"
(umask 077 && ssh-keygen -q -t ed25519 -N '' -C upgate-bench-client -f "$tmp/keys/client") >/dev/null ||
  die "ssh-keygen (client key)"
ssh-keygen -q -t ed25519 -N '' -C upgate-bench-sshd -f "$tmp/keys/sshd_host" >/dev/null || die "ssh-keygen (sshd host key)"
ssh-keygen -q -t ed25519 -N '' -C upgate-bench-upgate -f "$tmp/keys/upgate_host" >/dev/null || die "ssh-keygen (upgate host key)"
key=$tmp/keys/client
client_pub=$(cat "$key.pub")

# --- upgate -------------------------------------------------------------------
prepare_upgate
# From here on the clients read no personal configuration (~/.ssh, ~/.lftprc,
# ~/.gitconfig); set after the build, which needs the real module cache.
export HOME=$tmp/home
mkdir -p "$HOME"
unset SSH_AUTH_SOCK SSH_AGENT_PID
export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=$HOME/.gitconfig

ug_config() { # port agent-yaml-lines: a gateway config serving SFTP only
  sftp_gateway_config "$1" "$tmp/keys/upgate_host" "$2"
}
declare -A port user updir pid
sides=(upgate upgate-agent openssh)

# upgate with the embedded agent.
port[upgate]=$("$PY" "$helper" freeport)
mkdir -p "$tmp/upgate-root/up"
ug_config "${port[upgate]}" "    embedded: true
    root: $tmp/upgate-root" >"$tmp/upgate.yaml"
start_server "$tmp/upgate.log" "$tmp/upgate" serve --config "$tmp/upgate.yaml"
pid[upgate]=$srv_pid

# upgate with the agent as its own process, on loopback with a token.
ag_port=$("$PY" "$helper" freeport)
mkdir -p "$tmp/agent-root/up"
(umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$tmp/agent-token") || die "writing the agent token"
start_server "$tmp/agent.log" "$tmp/upgate" agent --listen "127.0.0.1:$ag_port" --root "$tmp/agent-root" \
  --token-file "$tmp/agent-token" --log-level "$loglevel"
ag_pid=$srv_pid
"$PY" "$helper" waitport "$ag_port" 20 || { cat "$tmp/agent.log" >&2; die "upgate agent did not listen on $ag_port"; }
port[upgate-agent]=$("$PY" "$helper" freeport)
ug_config "${port[upgate-agent]}" "    address: 127.0.0.1:$ag_port
    token_file: $tmp/agent-token" >"$tmp/upgate-agent.yaml"
start_server "$tmp/upgate-agent.log" "$tmp/upgate" serve --config "$tmp/upgate-agent.yaml"
pid[upgate-agent]=$srv_pid
user[upgate]=bench user[upgate-agent]=bench
updir[upgate]=$tmp/upgate-root/up updir[upgate-agent]=$tmp/agent-root/up

# --- OpenSSH --------------------------------------------------------------------
# A throwaway local user, its home in the temp dir, where sftp-server starts:
# relative paths (up/...) name the same place on every server. Its password
# is random and never used (sshd takes keys only): it only keeps the account
# from being locked, which sshd refuses even for a key. ssh_user is set
# before useradd, so that a signal right after it still removes the user; the
# cleanup checks the home directory before it removes one.
ssh_user=upgsftp$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
useradd --system --no-create-home --home-dir "$tmp/sshd-home" --shell /bin/sh --user-group "$ssh_user" ||
  die "useradd $ssh_user"
printf '%s:%s\n' "$ssh_user" "$(head -c 18 /dev/urandom | base64)" | chpasswd || die "chpasswd $ssh_user"
mkdir -p "$tmp/sshd-home/up"
chown -R "$ssh_user:$ssh_user" "$tmp/sshd-home"
printf '%s\n' "$client_pub" >"$tmp/keys/authorized_keys"
# Privilege separation needs /run/sshd (the package's init script makes it;
# nothing runs that here). Left in place: harmless, and others may use it.
mkdir -p /run/sshd
port[openssh]=$("$PY" "$helper" freeport)
cat >"$tmp/sshd_config" <<EOF
# bench/sftp/run.sh: a throwaway sshd for one benchmark run
ListenAddress 127.0.0.1:${port[openssh]}
AddressFamily inet
HostKey $tmp/keys/sshd_host
PidFile $tmp/sshd.pid
UsePAM no
StrictModes no
PermitRootLogin no
AllowUsers $ssh_user
AuthenticationMethods publickey
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
AuthorizedKeysFile $tmp/keys/authorized_keys
AuthorizedPrincipalsFile none
HostbasedAuthentication no
IgnoreRhosts yes
AllowAgentForwarding no
AllowTcpForwarding no
X11Forwarding no
PermitTTY no
PrintMotd no
PrintLastLog no
UseDNS no
Compression no
Ciphers aes128-gcm@openssh.com,aes128-ctr
MaxStartups 100
MaxSessions 10
LoginGraceTime 30
ClientAliveInterval 0
LogLevel ERROR
Subsystem sftp $subsystem
EOF
"$SSHD" -t -f "$tmp/sshd_config" || die "sshd -t rejects $tmp/sshd_config"
# Under helper.py's reaper (a child subreaper): sshd's per-connection
# processes are not all reaped by sshd itself, and their CPU time is part of
# the figure. The reaper is the group leader; sshd (-D: no daemon, -e: log
# to stderr) is its child.
start_server "$tmp/sshd.log" "$PY" "$helper" reaper "$SSHD" -D -e -f "$tmp/sshd_config"
pid[openssh]=$srv_pid
user[openssh]=$ssh_user updir[openssh]=$tmp/sshd-home/up

for s in "${sides[@]}"; do
  "$PY" "$helper" waitport "${port[$s]}" 20 SSH-2.0- || {
    cat "$tmp/$s.log" >&2
    die "$s did not answer on 127.0.0.1:${port[$s]}"
  }
done
sshd_master=$(ps --ppid "${pid[openssh]}" -o pid= | tr -d ' ')
[[ $sshd_master =~ ^[0-9]+$ ]] || die "sshd is not running under the reaper (pid ${pid[openssh]})"
log "upgate on 127.0.0.1:${port[upgate]} (pid ${pid[upgate]}), upgate with agent process on" \
  "127.0.0.1:${port[upgate-agent]} (pid ${pid[upgate-agent]}, agent pid $ag_pid on 127.0.0.1:$ag_port)," \
  "sshd on 127.0.0.1:${port[openssh]} (pid $sshd_master, user $ssh_user, $sshd_sftp)"
same_fs=$(stat -c %d "${updir[@]}" | sort -u | wc -l)
[[ $same_fs == 1 ]] || die "upload directories are on different filesystems"

known=$tmp/keys/known_hosts
{
  printf '[127.0.0.1]:%s %s\n' "${port[upgate]}" "$(cut -d' ' -f1,2 "$tmp/keys/upgate_host.pub")"
  printf '[127.0.0.1]:%s %s\n' "${port[upgate-agent]}" "$(cut -d' ' -f1,2 "$tmp/keys/upgate_host.pub")"
  printf '[127.0.0.1]:%s %s\n' "${port[openssh]}" "$(cut -d' ' -f1,2 "$tmp/keys/sshd_host.pub")"
} >"$known"
# Every OpenSSH client (sftp, ssh under lftp and sshfs): no config files, the
# run's key only, the run's known_hosts strictly, never a prompt.
cipher=aes128-gcm@openssh.com
ssh_o=(IdentitiesOnly=yes "IdentityFile=$key" "UserKnownHostsFile=$known" GlobalKnownHostsFile=/dev/null
  StrictHostKeyChecking=yes BatchMode=yes ControlMaster=no ControlPath=none "Ciphers=$cipher" ConnectTimeout=20)
ssh_opts=(-F /dev/null)
for o in "${ssh_o[@]}"; do ssh_opts+=(-o "$o"); done
printf '[safe]\n\tdirectory = *\n[user]\n\tname = bench\n\temail = bench@localhost\n[init]\n\tdefaultBranch = main\n' >"$GIT_CONFIG_GLOBAL"

# Each server's cipher, checked once: what `ssh -v` says was negotiated.
for s in "${sides[@]}"; do
  got=$(timeout 30 ssh -v "${ssh_opts[@]}" -p "${port[$s]}" -s "${user[$s]}@127.0.0.1" sftp </dev/null 2>&1 |
    sed -n 's/.*kex: client->server cipher: \([^ ]*\) .*/\1/p' | head -n1 || true)
  [[ $got == "$cipher" ]] || die "$s: ssh negotiated cipher '$got', want $cipher"
  got=$(timeout 30 "$PY" "$helper" cipher "${port[$s]}" "${user[$s]}" "$key" "$known") || die "paramiko login to $s"
  if [[ -z ${paramiko_cipher:-} ]]; then
    paramiko_cipher=$got
  elif [[ $got != "$paramiko_cipher" ]]; then
    die "paramiko negotiated '$got' with $s but '$paramiko_cipher' with ${sides[0]}"
  fi
done

# --- data -----------------------------------------------------------------------
big=$tmp/data/big.bin
big_bytes=$((big_mib * 1024 * 1024))
log "generating ${big_mib} MiB, $nfiles, $ncreates and $ntree small files"
gen_big "$big" "$big_bytes"
big_sha=$(sha256sum "$big" | cut -d' ' -f1)
read -r _ small_bytes small_dirs < <("$PY" "$helper" gensmall "$tmp/data/small" "$nfiles" 8)
small_sum=$("$PY" "$helper" treesum "$tmp/data/small")
read -r _ creates_bytes creates_dirs < <("$PY" "$helper" gensmall "$tmp/data/creates" "$ncreates" 9)
creates_sum=$("$PY" "$helper" treesum "$tmp/data/creates")
head -c 4096 /dev/urandom >"$tmp/data/save.bin"
if want sshfs; then
  # The repository put on each server's disk before each sshfs round, and
  # the list of files cp -a copies (every ntree/ncp-th), with the tree it
  # must leave.
  "$PY" "$helper" gensmall "$tmp/data/repo" "$ntree" 10 >/dev/null
  (cd "$tmp/data/repo" && git init -q && git add -A && git commit -q -m tree) || die "git init of the sshfs repository"
  (cd "$tmp/data/repo" && find . -path ./.git -prune -o -type f -print | sort |
    awk -v n="$ntree" -v k="$ncp" 'NR % int(n / k) == 0 && c < k { print; c++ }') >"$tmp/data/cp.list"
  [[ $(wc -l <"$tmp/data/cp.list") == "$ncp" ]] || die "cp list has $(wc -l <"$tmp/data/cp.list") files, want $ncp"
  mkdir -p "$tmp/data/cp-ref"
  (cd "$tmp/data/repo" && xargs -d '\n' -a "$tmp/data/cp.list" cp -a --parents -t "$tmp/data/cp-ref") || die "cp -a reference"
  cp_sum=$("$PY" "$helper" treesum "$tmp/data/cp-ref")
fi
big_label="$big_mib MiB"
((big_mib % 1024 == 0)) && big_label="$((big_mib / 1024)) GiB"

# --- measurements -------------------------------------------------------------
results=$tmp/results.tsv
: >"$results"
last() { tail -n1 "$results" | cut -d' ' -f4; }
empty_targets() { # empties every upload dir and flushes dirty pages (untimed)
  # All, so that each run writes into page cache freed just before: on a VM
  # whose memory is backed lazily, pages the guest never touched cost more.
  local s
  for s in "${sides[@]}"; do find "${updir[$s]}" -mindepth 1 -delete; done
  sync
}
# The server processes whose CPU a side's figure counts: the gateway (and
# the agent process); sshd's reaper's children (sshd and every connection's
# processes), not the reaper's own polling.
cpu_pids() { # side
  case $1 in
    upgate) echo "${pid[upgate]}" ;;
    upgate-agent) echo "${pid[upgate-agent]} $ag_pid" ;;
    openssh) echo "+${pid[openssh]}" ;;
  esac
}
settle() { # side: the connection's processes are gone (sshd); bounded
  if [[ $1 == openssh ]]; then
    "$PY" "$helper" settle "${pid[openssh]}" 1 10 || die "sshd's session processes did not exit"
  fi
}
# lftp over sftp://: ssh with the options above (lftp asks no password: the
# empty one after the comma, and BatchMode keeps ssh from asking).
lftp_set="set net:max-retries 1; set net:timeout 20; set cmd:fail-exit yes; set xfer:clobber on; set xfer:log no"
lftp_set+="; set sftp:connect-program 'ssh -a -x ${ssh_opts[*]}'"
lftp_run() { # side script
  bounded lftp -c "$lftp_set; open -u ${user[$1]}, sftp://127.0.0.1:${port[$1]}; $2"
}
sftp_batch() { # side batch-file
  bounded sftp -q "${ssh_opts[@]}" -P "${port[$1]}" -b "$2" "${user[$1]}@127.0.0.1"
}

bench_login() { # side round
  local s=$1 i t0 t1 times=()
  printf 'pwd\n' >"$tmp/login.batch"
  for i in 1 2 3 4 5; do
    t0=$EPOCHREALTIME
    sftp_batch "$s" "$tmp/login.batch" >/dev/null || die "sftp login to $s"
    t1=$EPOCHREALTIME
    times+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) * 1000 }')")
    settle "$s"
  done
  record login_ms "$s" "$2" "$(printf '%s\n' "${times[@]}" | sort -n | sed -n 3p)"
}
bench_put() { # side round: the big file with sftp -b put
  bench_upload "$1" "$2" put
}
bench_scp() { # side round: the same with scp -O
  bench_upload "$1" "$2" scp
}
bench_upload() { # side round put|scp: uploads the big file to up/big.bin, checks it, records time and CPU
  local s=$1 how=$3 t0 t1 c0 c1 f size
  empty_targets
  settle "$s"
  printf 'put %s up/big.bin\n' "$big" >"$tmp/put.batch"
  # shellcheck disable=SC2046
  c0=$("$PY" "$helper" treecpu $(cpu_pids "$s"))
  [[ $s == upgate-agent ]] && ca0=$("$PY" "$helper" treecpu "$ag_pid")
  t0=$EPOCHREALTIME
  case $how in
    put) sftp_batch "$s" "$tmp/put.batch" >/dev/null || die "sftp put to $s" ;;
    scp) bounded scp -O -q "${ssh_opts[@]}" -P "${port[$s]}" "$big" "${user[$s]}@127.0.0.1:up/big.bin" || die "scp -O to $s" ;;
  esac
  t1=$EPOCHREALTIME
  settle "$s"
  # shellcheck disable=SC2046
  c1=$("$PY" "$helper" treecpu $(cpu_pids "$s"))
  f=${updir[$s]}/big.bin
  size=$(stat -c %s "$f" 2>/dev/null || echo missing)
  [[ $size == "$big_bytes" ]] || die "$how to $s: big.bin is $size bytes on disk, want $big_bytes"
  # The full hash in round 1 (and the warm-up, and always in quick mode),
  # the size after.
  if [[ $2 -le 1 || $quick == 1 ]]; then
    [[ $(sha256sum "$f" | cut -d' ' -f1) == "$big_sha" ]] || die "$how to $s: big.bin content differs"
  fi
  record "${how}_s" "$s" "$2" "$(elapsed "$t0" "$t1")"
  record "${how}_cpu" "$s" "$2" "$(awk -v a="$c0" -v b="$c1" -v n="$big_bytes" 'BEGIN { printf "%.3f", (b - a) / (n / 1073741824) }')"
  if [[ $s == upgate-agent && $how == put ]]; then
    ca1=$("$PY" "$helper" treecpu "$ag_pid")
    record put_cpu_agent "$s" "$2" "$(awk -v a="$ca0" -v b="$ca1" -v n="$big_bytes" 'BEGIN { printf "%.3f", (b - a) / (n / 1073741824) }')"
  fi
}
bench_mirror() { # side round
  local s=$1 t0 t1 got
  empty_targets
  t0=$EPOCHREALTIME
  lftp_run "$s" "mirror -R $tmp/data/small up/m" >/dev/null || die "lftp mirror -R to $s"
  t1=$EPOCHREALTIME
  got=$("$PY" "$helper" treesum "${updir[$s]}/m")
  [[ $got == "$small_sum" ]] || die "mirror -R to $s: target has '$got' (files bytes digest), want '$small_sum'"
  record mirror_s "$s" "$2" "$(elapsed "$t0" "$t1")"
}
bench_saves() { # round: every side at once, by turns save by save
  local s specs=() name out i
  empty_targets
  for s in "${sides[@]}"; do specs+=("$s:${port[$s]}:${user[$s]}"); done
  bounded "$PY" "$helper" saves "$key" "$known" up/save.bin "$tmp/data/save.bin" "$nsaves" "${specs[@]}" \
    >"$tmp/saves.out" || die "paramiko saves"
  sides_printed "$tmp/saves.out"
  for s in "${sides[@]}"; do
    cmp -s "$tmp/data/save.bin" "${updir[$s]}/save.bin" || die "paramiko saves to $s: save.bin differs on disk"
  done
  while read -r name out; do
    read -r -a out <<<"$out"
    ((${#out[@]} == 7)) || die "paramiko saves to $name printed '${out[*]}'"
    record save_p50_ms "$name" "$1" "${out[0]}"
    record save_p99_ms "$name" "$1" "${out[1]}"
    for i in 0 1 2 3 4; do record "save_phase$i" "$name" "$1" "${out[i + 2]}"; done
    log "round $1/$rounds $nsaves saves  $name: p50/p99 ${out[0]}/${out[1]} ms;" \
      "steps open/write/close/utime/chmod $(IFS=/; echo "${out[*]:2}") ms"
  done <"$tmp/saves.out"
}
bench_creates() { # round: every side at once, by turns file by file
  local s specs=() name secs got
  empty_targets
  for s in "${sides[@]}"; do specs+=("$s:${port[$s]}:${user[$s]}"); done
  bounded "$PY" "$helper" creates "$key" "$known" "$tmp/data/creates" up/c "${specs[@]}" \
    >"$tmp/creates.out" || die "paramiko creates"
  sides_printed "$tmp/creates.out"
  for s in "${sides[@]}"; do
    got=$("$PY" "$helper" treesum "${updir[$s]}/c")
    [[ $got == "$creates_sum" ]] || die "paramiko creates to $s: target has '$got' (files bytes digest), want '$creates_sum'"
  done
  while read -r name secs; do
    record creates_s "$name" "$1" "$secs"
    log "round $1/$rounds $ncreates creates  $name: $secs s"
  done <"$tmp/creates.out"
}
sshfs_mount() { # side dir: sshfs in the foreground, its own process group
  local s=$1 mnt=$2 i
  mkdir -p "$mnt"
  mounts+=("$mnt")
  # timeout(1) runs sshfs (and its ssh) in timeout's own process group;
  # sshfs -f stays in the foreground, so that we own its process.
  timeout -k 5 "$cmd_timeout" sshfs -f -F /dev/null -p "${port[$s]}" -o "$(IFS=,; echo "${ssh_o[*]}")" \
    "${user[$s]}@127.0.0.1:up" "$mnt" >"$tmp/sshfs.log" 2>&1 </dev/null &
  sshfs_pid=$!
  for ((i = 0; i < 200; i++)); do
    is_mounted "$mnt" && return 0
    alive "$sshfs_pid" || { cat "$tmp/sshfs.log" >&2; die "sshfs to $s exited before mounting"; }
    sleep 0.1
  done
  cat "$tmp/sshfs.log" >&2
  die "sshfs to $s did not mount $mnt within 20 s"
}
sshfs_umount() { # dir
  unmount "$1"
  is_mounted "$1" && die "could not unmount $1"
  stop_group "$sshfs_pid" 10
  sshfs_pid=
  mounts=()
}
bench_sshfs() { # side round
  local s=$1 mnt=$tmp/mnt t0 t1 st got
  empty_targets
  # The repository on the server's disk, as its own user would have it.
  cp -a "$tmp/data/repo" "${updir[$s]}/repo"
  [[ $s == openssh ]] && chown -R "$ssh_user:$ssh_user" "${updir[$s]}/repo"
  sync
  sshfs_mount "$s" "$mnt"
  t0=$EPOCHREALTIME
  st=$(bounded git -C "$mnt/repo" status --porcelain) || die "git status through sshfs on $s"
  t1=$EPOCHREALTIME
  [[ -z $st ]] || die "git status through sshfs on $s: the tree is not clean: $st"
  record git_s "$s" "$2" "$(elapsed "$t0" "$t1")"
  bounded mkdir "$mnt/copy" || die "mkdir through sshfs on $s"
  t0=$EPOCHREALTIME
  bounded sh -c 'cd "$1" && xargs -d "\n" -a "$2" cp -a --parents -t "$3"' sh \
    "$mnt/repo" "$tmp/data/cp.list" "$mnt/copy" || die "cp -a through sshfs on $s"
  t1=$EPOCHREALTIME
  sshfs_umount "$mnt"
  got=$("$PY" "$helper" treesum "${updir[$s]}/copy")
  [[ $got == "$cp_sum" ]] || die "cp -a through sshfs on $s: copy has '$got' (files bytes digest), want '$cp_sum'"
  record cp_s "$s" "$2" "$(elapsed "$t0" "$t1")"
}

if [[ ${BENCH_WARMUP:-1} == 1 ]]; then
  # One untimed big upload and mirror per server: first-touch costs (page
  # cache, dentries, the servers' own warm-up) out of round 1.
  log "warm-up (untimed)"
  for s in "${sides[@]}"; do
    if want put; then bench_put "$s" 0; fi
    if want scp; then bench_scp "$s" 0; fi
    if want mirror; then bench_mirror "$s" 0; fi
  done
  : >"$results"
fi
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
start=$EPOCHREALTIME
for ((r = 1; r <= rounds; r++)); do
  for s in "${sides[@]}"; do
    alive "${pid[$s]}" || { cat "$tmp/$s.log" >&2; die "$s exited"; }
  done
  alive "$ag_pid" || { cat "$tmp/agent.log" >&2; die "the upgate agent exited"; }
  if want login; then for s in "${sides[@]}"; do
    bench_login "$s" "$r"; log "round $r/$rounds login + pwd  $s: $(last) ms"
  done; fi
  if want put; then for s in "${sides[@]}"; do
    bench_put "$s" "$r"
    log "round $r/$rounds sftp put $big_label  $s: $(grep "^put_s $s $r " "$results" | cut -d' ' -f4) s," \
      "$(grep "^put_cpu $s $r " "$results" | cut -d' ' -f4) CPU s/GiB"
  done; fi
  if want scp; then for s in "${sides[@]}"; do
    bench_scp "$s" "$r"
    log "round $r/$rounds scp -O $big_label  $s: $(grep "^scp_s $s $r " "$results" | cut -d' ' -f4) s," \
      "$(grep "^scp_cpu $s $r " "$results" | cut -d' ' -f4) CPU s/GiB"
  done; fi
  if want mirror; then for s in "${sides[@]}"; do
    bench_mirror "$s" "$r"; log "round $r/$rounds mirror -R $nfiles files  $s: $(last) s"
  done; fi
  if want saves; then bench_saves "$r"; fi
  if want creates; then bench_creates "$r"; fi
  if want sshfs; then for s in "${sides[@]}"; do
    bench_sshfs "$s" "$r"
    log "round $r/$rounds sshfs  $s: git status $(grep "^git_s $s $r " "$results" | cut -d' ' -f4) s," \
      "cp -a $ncp files $(last) s"
  done; fi
done
log "measured in $(elapsed "$start" "$EPOCHREALTIME") s; upgate logs: $(cat "$tmp/upgate.log" "$tmp/upgate-agent.log" "$tmp/agent.log" | wc -l) lines at level $loglevel"

# --- report -------------------------------------------------------------------
cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
fs=$(df -T "$tmp" | awk 'NR == 2 { print $2 " on " $1 }')
cat >"$tmp/meta" <<EOF
date=$(date -u '+%Y-%m-%d %H:%M UTC')
machine=$(nproc) CPUs ($cpu), $(free -g | awk '/^Mem:/ { print $2 }') GiB, Linux $(uname -r)
fs=$fs
upgate=$ug_version
loglevel=$loglevel
openssh=$(dpkg-query -W -f '${Version}' openssh-server 2>/dev/null || "$SSHD" -V 2>&1 | head -n1)
subsystem=$subsystem
cipher=$cipher
paramiko_cipher=$paramiko_cipher
lftp=$(lftp --version | sed -n '1s/.*Version \([^ ]*\).*/\1/p')
paramiko=$("$PY" -c 'import paramiko; print(paramiko.__version__)')
python=$("$PY" -c 'import platform; print(platform.python_version())')
sshfs=$(if want sshfs; then sshfs --version 2>&1 | sed -n 's/^SSHFS version //p' | head -n1; fi)
git=$(git --version | awk '{ print $3 }')
load_before=$load_before
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
big=$big_label
files=$nfiles
files_bytes=$small_bytes
dirs=$small_dirs
saves=$nsaves
creates=$ncreates
creates_bytes=$creates_bytes
creates_dirs=$creates_dirs
tree=$ntree
cp=$ncp
rounds=$rounds
EOF
"$PY" "$helper" table "$results" "$tmp/meta"
