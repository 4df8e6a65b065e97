#!/usr/bin/env bash
# bench/ftp/run.sh: upgate's FTP frontend against vsftpd on this machine,
# loopback only, every server writing to the same filesystem. Run by hand
# (as root: vsftpd logs in a throwaway local user, created for the run and
# removed at exit); CI only runs the quick mode (bench_test.go) so that this
# script cannot rot, and never times it.
#
#   bash bench/ftp/run.sh                 # 256 MiB, 500 files, 500 saves, 2 rounds
#                                         # (issue 15's sizes, as bench/sftp)
#   bash bench/ftp/run.sh --quick         # 16 MiB, 50 files, 20 saves, 1 round
#   BENCH_ROUNDS=4 bash bench/ftp/run.sh  # more rounds
#   BENCH_BIG_MIB=1024 BENCH_FILES=2000 bash bench/ftp/run.sh
#                                         # issue 4's sizes (docs/benchmarks.md)
#
# Three servers, each measured in turn within a round (rounds A B C A B C):
#   upgate         `upgate serve` built from this tree, embedded agent (one
#                  process, the default configuration's shape);
#   upgate-agent   `upgate serve` with the agent as a separate `upgate agent`
#                  process on loopback TCP with a token (how every real
#                  deployment runs);
#   vsftpd         Debian's vsftpd, a throwaway local user, chrooted.
# Measurements:
#   1. a big upload with `curl -T` and with lftp `put` (MB/s = 10^6 bytes/s,
#      wall clock of the whole client command, login included); and the
#      servers' CPU seconds per GiB over the curl upload: upgate's gateway
#      (plus its agent process), vsftpd's processes (the listener and the
#      connection's), from /proc/PID/stat user + system time before and
#      after (helper.py treecpu; vsftpd runs under helper.py reaper, so that
#      the time of connection processes it does not reap itself counts);
#   2. `lftp mirror -R` of many small files in nested directories, serial and
#      with --parallel=4, into an empty directory each time (seconds); and
#      the same number of files through one session per server, all three
#      up at once, with what lftp's mirror sends per file (PASV, connect,
#      STOR 2,000 bytes, 226, MFMT or MDTM, SITE CHMOD), the servers
#      alternating file by file (helper.py cycles): a file's p50 (us). The
#      servers meet the same moments of the machine, which pair.sh found
#      steadier than runs one after the other (the mirror's ratio moves by
#      a third between runs);
#   3. a 4 KiB "save" on an open session: Python ftplib, one login, then
#      STOR after STOR of the same file; p50 and p99 per save (ms). One
#      session per server, all at once, the servers taking turns save by
#      save (helper.py saves), as the cycles do;
#   4. one command on an open session (ftplib): NOOP, SITE CHMOD and
#      setting a file's time (MFMT; MDTM with a time on vsftpd), p50 of
#      BENCH_COMMANDS each (us): what each of a mirror's per-file commands
#      costs, steadier from round to round than the saves.
# Every upload is checked on disk (sizes, file count, contents) before its
# figure counts. The markdown table goes to stdout, progress to stderr.
# The clients get the (random, per-run) passwords from a netrc file in the
# temp dir (mode 0600), never on a command line, where `ps` would show them
# to other local users.
#
# Environment (defaults in brackets, quick mode's after the slash):
#   BENCH_QUICK=1          quick mode, same as --quick
#   BENCH_ROUNDS           rounds [2 / 1]
#   BENCH_BIG_MIB          big file size in MiB [256 / 16]
#   BENCH_FILES            small files [500 / 50]
#   BENCH_SAVES            timed saves [500 / 20]
#   BENCH_COMMANDS         timed commands of each kind [2000 / 50]
#   BENCH_ONLY             comma list of curl,lftp,mirror,mirror4,cycle,saves,commands [all]
#   BENCH_WARMUP=0         skip the untimed warm-up (one big upload and one
#                          mirror per side before round 1)
#   BENCH_LOG_LEVEL        upgate's log.level and the agent's --log-level [warn]
#   BENCH_BCRYPT_COST      cost of the upgate user's hash [4]
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

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib.sh
source "$here/../lib.sh"
repo=$(cd "$here/../.." && pwd)
PY=/usr/bin/python3
helper=$here/helper.py

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
  d_rounds=1 d_big=16 d_files=50 d_saves=20 d_commands=50
else
  d_rounds=2 d_big=256 d_files=500 d_saves=500 d_commands=2000
fi
rounds=${BENCH_ROUNDS:-$d_rounds}
big_mib=${BENCH_BIG_MIB:-$d_big}
nfiles=${BENCH_FILES:-$d_files}
nsaves=${BENCH_SAVES:-$d_saves}
ncommands=${BENCH_COMMANDS:-$d_commands}
only=${BENCH_ONLY:-curl,lftp,mirror,mirror4,cycle,saves,commands}
loglevel=${BENCH_LOG_LEVEL:-warn}
bcrypt_cost=${BENCH_BCRYPT_COST:-4}
cmd_timeout=${BENCH_TIMEOUT:-600}
GO=${GO:-go}
ug_bin=${BENCH_UPGATE:-}
ug_label=${BENCH_UPGATE_LABEL:-$ug_bin}
if [[ -n $ug_bin ]]; then
  [[ -f $ug_bin && -x $ug_bin ]] || { echo "run.sh: BENCH_UPGATE: $ug_bin is not an executable file" >&2; exit 2; }
  ug_bin=$(realpath "$ug_bin")
fi
for v in rounds big_mib nfiles nsaves ncommands bcrypt_cost cmd_timeout; do
  if ! [[ ${!v} =~ ^[1-9][0-9]{0,5}$ ]]; then
    echo "run.sh: $v must be a positive integer, got '${!v}'" >&2
    exit 2
  fi
done
((rounds <= 50)) || { echo "run.sh: at most 50 rounds" >&2; exit 2; }

# --- prerequisites: checked, never installed ------------------------------
vsftpd_bin=$(command -v vsftpd || true)
[[ -z $vsftpd_bin && -x /usr/sbin/vsftpd ]] && vsftpd_bin=/usr/sbin/vsftpd
missing=() pkgs=()
[[ -n $vsftpd_bin ]] || { missing+=(vsftpd); pkgs+=(vsftpd); }
command -v lftp >/dev/null || { missing+=(lftp); pkgs+=(lftp); }
command -v curl >/dev/null || { missing+=(curl); pkgs+=(curl); }
[[ -x $PY ]] || { missing+=("$PY"); pkgs+=(python3); }
for t in useradd userdel chpasswd; do
  command -v $t >/dev/null || [[ -x /usr/sbin/$t ]] || { missing+=($t); pkgs+=(passwd); }
done
coreutils=0
for t in timeout sha256sum stat sync; do
  command -v $t >/dev/null || { missing+=($t); coreutils=1; }
done
((coreutils)) && pkgs+=(coreutils)
command -v setsid >/dev/null || { missing+=(setsid); pkgs+=(util-linux); }
procps=0
for t in ps pkill; do
  command -v $t >/dev/null || { missing+=($t); procps=1; }
done
((procps)) && pkgs+=(procps)
[[ -n $ug_bin ]] || command -v "$GO" >/dev/null || missing+=("$GO (the Go toolchain)")
if ((${#missing[@]})); then
  echo "run.sh: missing: ${missing[*]}" >&2
  ((${#pkgs[@]})) && echo "run.sh: install with: apt-get install -y ${pkgs[*]}" >&2
  exit 3
fi
if ((EUID != 0)); then
  echo "run.sh: must run as root (it adds a throwaway user for vsftpd, which chroots it)" >&2
  exit 3
fi
export PATH=$PATH:/usr/sbin:/sbin

# --- cleanup, temp dir ------------------------------------------------------
# The traps come first, so that no signal falls between mktemp and them.
tmp=
servers=()
vs_user=
vs_pgid=
cur=
stop() { # pid: TERM, up to 5 s, then KILL; reaps it
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
  for ((i = 0; i < 50; i++)); do
    alive "$pid" || { reap "$pid"; return 0; }
    sleep 0.1
  done
  log "pid $pid ignored SIGTERM for 5 s; killing it"
  kill -KILL "$pid" 2>/dev/null
  reap "$pid"
}
stop_vsftpd() { # the master's process group and every session: TERM, up
  # to 3 s, then KILL; reaps the master. vsftpd makes each connection a
  # session (and process group) of its own, which can outlive the master
  # (a client killed mid-transfer); all of them carry the master's arguments
  # (setproctitle_enable=NO), so the config file's path finds them.
  local re i
  re=$(printf '%s' "$tmp/vsftpd.conf" | sed 's/[][\.*^$+?(){}|]/\\&/g')
  kill -TERM -- "-$vs_pgid" "$vs_pgid" 2>/dev/null
  pkill -TERM -f -- "$re"
  for ((i = 0; i < 30; i++)); do
    alive "$vs_pgid" || pgrep -f -- "$re" >/dev/null || break
    sleep 0.1
  done
  if alive "$vs_pgid" || pgrep -f -- "$re" >/dev/null; then
    log "vsftpd outlived SIGTERM for 3 s; killing it"
    kill -KILL -- "-$vs_pgid" "$vs_pgid" 2>/dev/null
    pkill -KILL -f -- "$re"
  fi
  reap "$vs_pgid"
}
own_user() { # name: the throwaway user exists and is this run's (its home)
  [[ $(getent passwd "$1" | cut -d: -f6) == "$tmp/vsftpd-root" ]]
}
cleanup() {
  local rc=$? pid
  set +e
  trap - EXIT ERR
  # A second signal does not cut the cleanup short: it is bounded (a few
  # seconds per step, about 20 s at worst).
  trap 'log "cleaning up; signal ignored"' INT TERM HUP
  # cur is timeout(1), which runs the client in timeout's own process group.
  [[ -z $cur ]] || stop_group "$cur" 5
  # upgate's gateways and the agent: each the leader of its own group.
  for pid in "${servers[@]}"; do stop_group "$pid" 5; done
  [[ -z $vs_pgid ]] || stop_vsftpd
  if [[ -n $vs_user ]] && own_user "$vs_user"; then
    if ! userdel -f "$vs_user"; then
      pkill -KILL -u "$vs_user"
      sleep 0.5
      userdel -f "$vs_user" || log "could not remove user $vs_user: userdel -f $vs_user"
    fi
  fi
  if [[ -z $tmp ]]; then
    :
  elif [[ ${BENCH_KEEP:-0} == 1 ]]; then
    log "kept $tmp"
  else
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
tmp=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/upgate-ftpbench.XXXXXX")
chmod 755 "$tmp"

# --- upgate -------------------------------------------------------------------
prepare_upgate
pw=$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')
hash=$(printf '%s\n' "$pw" | "$tmp/upgate" hash-password --cost "$bcrypt_cost")
[[ $hash == \$2* ]] || die "hash-password printed '$hash'"
# From here on the clients read no personal configuration (~/.lftprc,
# ~/.netrc); set after the build, which needs the real module cache.
export HOME=$tmp/home
mkdir -p "$HOME"

# upgate with the embedded agent.
ug_port=$("$PY" "$helper" freeport)
read -r ug_pasv_lo ug_pasv_hi < <("$PY" "$helper" portrange 50)
mkdir -p "$tmp/upgate-root/up"
ftp_gateway_config "$ug_port" "$ug_pasv_lo" "$ug_pasv_hi" "    embedded: true
    root: $tmp/upgate-root" >"$tmp/upgate.yaml"
start_server "$tmp/upgate.log" "$tmp/upgate" serve --config "$tmp/upgate.yaml"
ug_pid=$srv_pid

# upgate with the agent as its own process, on loopback with a token.
ag_port=$("$PY" "$helper" freeport)
mkdir -p "$tmp/agent-root/up"
(umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$tmp/agent-token") || die "writing the agent token"
start_server "$tmp/agent.log" "$tmp/upgate" agent --listen "127.0.0.1:$ag_port" --root "$tmp/agent-root" \
  --token-file "$tmp/agent-token" --log-level "$loglevel"
ag_pid=$srv_pid
"$PY" "$helper" waitport "$ag_port" 20 || { cat "$tmp/agent.log" >&2; die "upgate agent did not listen on $ag_port"; }
uga_port=$("$PY" "$helper" freeport)
read -r uga_pasv_lo uga_pasv_hi < <("$PY" "$helper" portrange 50)
ftp_gateway_config "$uga_port" "$uga_pasv_lo" "$uga_pasv_hi" "    address: 127.0.0.1:$ag_port
    token_file: $tmp/agent-token" >"$tmp/upgate-agent.yaml"
start_server "$tmp/upgate-agent.log" "$tmp/upgate" serve --config "$tmp/upgate-agent.yaml"
uga_pid=$srv_pid

# --- vsftpd -------------------------------------------------------------------
# A throwaway local user (no home, removed at exit), chrooted into a root-owned
# directory that holds its upload directory up/, so that both servers see
# the same paths (/up/...). A local user, not anonymous: vsftpd refuses SITE
# CHMOD to anonymous users (550 at no cost), and lftp mirror sends one per
# file, which upgate carries out. Writes overwrite in place (STOR), times are
# set with MDTM and a time (mdtm_write; vsftpd has no MFMT and refuses SITE
# UTIME). The password hash is SHA-512 with the minimum 1,000 rounds, like
# upgate's bcrypt at cost 4: a login costs about a millisecond on both sides.
vs_port=$("$PY" "$helper" freeport)
read -r vs_pasv_lo vs_pasv_hi < <("$PY" "$helper" portrange 50)
# vs_user is set first, so that a signal right after useradd still removes
# the user; the cleanup checks the home directory before it removes one.
vs_user=upgbench$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
useradd --system --no-create-home --home-dir "$tmp/vsftpd-root" --shell /bin/sh --user-group "$vs_user" ||
  die "useradd $vs_user"
printf '%s:%s\n' "$vs_user" "$pw" | chpasswd -c SHA512 -s 1000 || die "chpasswd $vs_user"
mkdir -p "$tmp/vsftpd-root/up" "$tmp/vsftpd-empty"
chown "$vs_user:$vs_user" "$tmp/vsftpd-root/up"
cat >"$tmp/vsftpd.conf" <<EOF
listen=YES
listen_ipv6=NO
listen_address=127.0.0.1
listen_port=$vs_port
background=NO
anonymous_enable=NO
local_enable=YES
pam_service_name=vsftpd
userlist_enable=NO
local_root=$tmp/vsftpd-root
chroot_local_user=YES
write_enable=YES
local_umask=022
chmod_enable=YES
mdtm_write=YES
pasv_enable=YES
pasv_min_port=$vs_pasv_lo
pasv_max_port=$vs_pasv_hi
connect_from_port_20=NO
xferlog_enable=NO
dirmessage_enable=NO
use_localtime=NO
max_clients=0
max_per_ip=0
seccomp_sandbox=NO
setproctitle_enable=NO
secure_chroot_dir=$tmp/vsftpd-empty
EOF
# Under helper.py's reaper (a child subreaper, so that the CPU time of
# connection processes vsftpd does not reap itself still counts), in a
# session (and process group) of its own, stopped as one by the cleanup
# (stop_vsftpd, which also finds the per-connection sessions vsftpd makes;
# the reaper passes a SIGTERM on to those it adopted). Started in the
# background by a shell without job control, setsid is no group leader and
# so execs the reaper in place: $! is the reaper's pid and its group's id;
# vsftpd is its child.
setsid "$PY" "$helper" reaper "$vsftpd_bin" "$tmp/vsftpd.conf" >"$tmp/vsftpd.log" 2>&1 </dev/null &
vs_pid=$!
vs_pgid=$vs_pid

"$PY" "$helper" waitftp "$ug_port" 20 || { cat "$tmp/upgate.log" >&2; die "upgate did not answer on $ug_port"; }
"$PY" "$helper" waitftp "$uga_port" 20 || { cat "$tmp/upgate-agent.log" >&2; die "upgate (agent process) did not answer on $uga_port"; }
"$PY" "$helper" waitftp "$vs_port" 20 || { cat "$tmp/vsftpd.log" >&2; die "vsftpd did not answer on $vs_port"; }
vs_pg=$(ps -o pgid= -p "$vs_pid" | tr -d ' ' || true)
[[ $vs_pg == "$vs_pid" ]] || die "vsftpd's reaper (pid $vs_pid) is in process group '$vs_pg', not its own"
vs_master=$(ps --ppid "$vs_pid" -o pid= | tr -d ' ')
[[ $vs_master =~ ^[0-9]+$ ]] || die "vsftpd is not running under its reaper (pid $vs_pid)"
log "upgate on 127.0.0.1:$ug_port (pid $ug_pid, pasv $ug_pasv_lo-$ug_pasv_hi)," \
  "upgate with agent process on 127.0.0.1:$uga_port (pid $uga_pid, pasv $uga_pasv_lo-$uga_pasv_hi, agent pid $ag_pid on 127.0.0.1:$ag_port)," \
  "vsftpd on 127.0.0.1:$vs_port (pid $vs_master, pasv $vs_pasv_lo-$vs_pasv_hi)"

declare -A port user updir
sides=(upgate upgate-agent vsftpd)
port[upgate]=$ug_port user[upgate]=bench updir[upgate]=$tmp/upgate-root/up
port[upgate-agent]=$uga_port user[upgate-agent]=bench updir[upgate-agent]=$tmp/agent-root/up
port[vsftpd]=$vs_port user[vsftpd]=$vs_user updir[vsftpd]=$tmp/vsftpd-root/up
# Both logins, for curl (--netrc-file, the user in the URL), lftp (open -u
# user: it reads ~/.netrc) and helper.py saves, which all look the password
# up by host and user.
netrc=$HOME/.netrc
(umask 077 && printf 'machine 127.0.0.1 login %s password %s\n' \
  "${user[upgate]}" "$pw" "${user[vsftpd]}" "$pw" >"$netrc") || die "writing $netrc"
same_fs=$(stat -c %d "${updir[@]}" | sort -u | wc -l)
[[ $same_fs == 1 ]] || die "upload directories are on different filesystems"

# --- data -----------------------------------------------------------------
mkdir -p "$tmp/data"
big=$tmp/data/big.bin
big_bytes=$((big_mib * 1024 * 1024))
log "generating ${big_mib} MiB and $nfiles small files"
gen_big "$big" "$big_bytes"
big_sha=$(sha256sum "$big" | cut -d' ' -f1)
read -r _ small_bytes small_dirs < <("$PY" "$helper" gensmall "$tmp/data/small" "$nfiles" 8)
small_sum=$("$PY" "$helper" treesum "$tmp/data/small")
head -c 4096 /dev/urandom >"$tmp/data/save.bin"
head -c 2000 /dev/urandom >"$tmp/data/cycle.bin"
cycle_sha=$(sha256sum "$tmp/data/cycle.bin" | cut -d' ' -f1)
if ((big_mib % 1024 == 0)); then big_label="$((big_mib / 1024)) GiB"; else big_label="$big_mib MiB"; fi

# --- measurements -------------------------------------------------------------
lftp_set='set ftp:ssl-allow no; set net:max-retries 1; set net:timeout 20; set cmd:fail-exit yes; set xfer:clobber on; set xfer:log no'
# vsftpd answers SITE UTIME with 550 and lftp would leave it at that; so both
# sides are asked to set times the way they can: upgate advertises MFMT,
# which lftp prefers, vsftpd takes MDTM with a time (ftp:use-mdtm-overloaded).
lftp_set+='; set ftp:use-site-utime no; set ftp:use-site-utime2 no; set ftp:use-mdtm-overloaded yes'
lftp_run() { # side script
  bounded lftp -c "$lftp_set; open -u ${user[$1]} -p ${port[$1]} 127.0.0.1; $2"
}

results=$tmp/results.tsv
: >"$results"
empty_targets() { # empties every upload dir and flushes dirty pages (untimed)
  # All, so that each run writes into page cache freed just before: on a VM
  # whose memory is backed lazily, pages the guest never touched cost more.
  find "${updir[@]}" -mindepth 1 -delete
  sync
}
# The server processes whose CPU a side's figure counts: the gateway (and
# the agent process); every process under vsftpd's reaper (the listener, the
# connections' processes, those it adopted), not the reaper's own polling.
cpu_pids() { # side
  case $1 in
    upgate) echo "$ug_pid" ;;
    upgate-agent) echo "$uga_pid $ag_pid" ;;
    vsftpd) echo "+$vs_pid" ;;
  esac
}
settle() { # side: the connection's processes are gone (vsftpd); bounded
  if [[ $1 == vsftpd ]]; then
    "$PY" "$helper" settle "$vs_pid" 1 10 || die "vsftpd's session processes did not exit"
  fi
}
cpu_per_gib() { # before after
  awk -v a="$1" -v b="$2" -v n="$big_bytes" 'BEGIN { printf "%.3f", (b - a) / (n / 1073741824) }'
}
check_big() { # side round label
  local f=${updir[$1]}/big.bin size
  size=$(stat -c %s "$f" 2>/dev/null || echo missing)
  [[ $size == "$big_bytes" ]] || die "$3 to $1: big.bin is $size bytes on disk, want $big_bytes"
  # The full hash in round 1 (and always in quick mode), the size after.
  if [[ $2 == 1 || $quick == 1 ]]; then
    [[ $(sha256sum "$f" | cut -d' ' -f1) == "$big_sha" ]] || die "$3 to $1: big.bin content differs"
  fi
}

bench_curl() { # side round
  local s=$1 t0 t1 c0 c1 ca0 ca1
  empty_targets
  settle "$s"
  # shellcheck disable=SC2046
  c0=$("$PY" "$helper" treecpu $(cpu_pids "$s"))
  ca0=$("$PY" "$helper" treecpu "$ag_pid")
  t0=$EPOCHREALTIME
  bounded curl -q -sS --fail -T "$big" --netrc-file "$netrc" \
    "ftp://${user[$s]}@127.0.0.1:${port[$s]}/up/big.bin" || die "curl -T to $s"
  t1=$EPOCHREALTIME
  settle "$s"
  # shellcheck disable=SC2046
  c1=$("$PY" "$helper" treecpu $(cpu_pids "$s"))
  ca1=$("$PY" "$helper" treecpu "$ag_pid")
  check_big "$s" "$2" "curl -T"
  record curl_mbps "$s" "$2" "$(awk -v b="$big_bytes" -v t="$(elapsed "$t0" "$t1")" 'BEGIN { printf "%.2f", b / t / 1e6 }')"
  record curl_cpu "$s" "$2" "$(cpu_per_gib "$c0" "$c1")"
  [[ $s != upgate-agent ]] || record curl_cpu_agent "$s" "$2" "$(cpu_per_gib "$ca0" "$ca1")"
}
bench_lftp() { # side round
  local s=$1 t0 t1
  empty_targets
  t0=$EPOCHREALTIME
  lftp_run "$s" "put $big -o /up/big.bin" >&2 || die "lftp put to $s"
  t1=$EPOCHREALTIME
  check_big "$s" "$2" "lftp put"
  record lftp_mbps "$s" "$2" "$(awk -v b="$big_bytes" -v t="$(elapsed "$t0" "$t1")" 'BEGIN { printf "%.2f", b / t / 1e6 }')"
}
bench_mirror() { # side round key extra-flags
  local s=$1 t0 t1 got
  empty_targets
  t0=$EPOCHREALTIME
  lftp_run "$s" "mirror -R $4 $tmp/data/small /up/m" >/dev/null || die "lftp mirror -R $4 to $s"
  t1=$EPOCHREALTIME
  got=$("$PY" "$helper" treesum "${updir[$s]}/m")
  [[ $got == "$small_sum" ]] || die "mirror -R $4 to $s: target has '$got' (files bytes digest), want '$small_sum'"
  record "$3" "$s" "$2" "$(elapsed "$t0" "$t1")"
}
bench_cycle() { # round: all sides at once, alternating file by file
  local s verb specs=() name v got
  empty_targets
  for s in "${sides[@]}"; do
    verb=MFMT
    [[ $s != vsftpd ]] || verb=MDTM
    specs+=("$s:${port[$s]}:${user[$s]}:$verb")
  done
  bounded "$PY" "$helper" cycles "$netrc" "$tmp/data/cycle.bin" "$nfiles" "$1" "${specs[@]}" \
    >"$tmp/cycle.out" 2>>"$tmp/cycle.log" || die "cycles (helper.py; $tmp/cycle.log)"
  while read -r name v; do record cycle_us "$name" "$1" "$v"; done <"$tmp/cycle.out"
  for s in "${sides[@]}"; do
    # Every file there, each with the bytes sent.
    got=$(find "${updir[$s]}/cycle$1-0" -name 'f*.php' -type f -exec sha256sum {} + | cut -d' ' -f1 | sort | uniq -c |
      awk '{ print $1 " " $2 }')
    [[ $got == "$nfiles $cycle_sha" ]] || die "cycles to $s: the upload directory holds '$got' (count sha256), want '$nfiles $cycle_sha'"
    got=$(find "${updir[$s]}" -name '.upgate-upload-*' -print -quit)
    [[ -z $got ]] || die "cycles to $s: a temp file was left behind: $got"
  done
}
bench_saves() { # round: all sides at once, by turns save by save
  local s specs=() name p50 p99
  empty_targets
  for s in "${sides[@]}"; do specs+=("$s:${port[$s]}:${user[$s]}"); done
  bounded "$PY" "$helper" saves "$netrc" /up/save.bin "$tmp/data/save.bin" "$nsaves" "${specs[@]}" \
    >"$tmp/saves.out" || die "ftplib saves"
  sides_printed "$tmp/saves.out"
  for s in "${sides[@]}"; do
    cmp -s "$tmp/data/save.bin" "${updir[$s]}/save.bin" || die "ftplib saves to $s: save.bin differs on disk"
  done
  while read -r name p50 p99; do
    record save_p50_ms "$name" "$1" "$p50"
    record save_p99_ms "$name" "$1" "$p99"
    log "round $1/$rounds $nsaves saves  $name: p50/p99 $p50/$p99 ms"
  done <"$tmp/saves.out"
}
bench_commands() { # side round
  local s=$1 noop chmod settime verb=MFMT
  [[ $s != vsftpd ]] || verb=MDTM
  bounded "$PY" "$helper" commands "${port[$s]}" "${user[$s]}" "$netrc" \
    /up/cmd.bin "$ncommands" "$verb" >"$tmp/commands.out" || die "ftplib commands to $s"
  read -r noop chmod settime <"$tmp/commands.out"
  record noop_us "$s" "$2" "$noop"
  record chmod_us "$s" "$2" "$chmod"
  record settime_us "$s" "$2" "$settime"
}

if [[ ${BENCH_WARMUP:-1} == 1 ]]; then
  # One untimed big upload and mirror per side: first-touch costs (page
  # cache, dentries, the servers' own warm-up) out of round 1.
  log "warm-up (untimed)"
  for s in "${sides[@]}"; do
    if want curl || want lftp; then bench_curl "$s" 0; fi
    if want mirror || want mirror4; then bench_mirror "$s" 0 warmup ""; fi
  done
  : >"$results"
fi
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
start=$EPOCHREALTIME
for ((r = 1; r <= rounds; r++)); do
  alive "$ug_pid" || { cat "$tmp/upgate.log" >&2; die "upgate exited"; }
  alive "$uga_pid" || { cat "$tmp/upgate-agent.log" >&2; die "upgate (agent process) exited"; }
  alive "$ag_pid" || { cat "$tmp/agent.log" >&2; die "the upgate agent exited"; }
  alive "$vs_master" || { cat "$tmp/vsftpd.log" >&2; die "vsftpd exited"; }
  if want curl; then for s in "${sides[@]}"; do
    bench_curl "$s" "$r"
    log "round $r/$rounds curl -T $big_label  $s: $(grep "^curl_mbps $s $r " "$results" | cut -d' ' -f4) MB/s," \
      "$(grep "^curl_cpu $s $r " "$results" | cut -d' ' -f4) CPU s/GiB"
  done; fi
  if want lftp; then for s in "${sides[@]}"; do
    bench_lftp "$s" "$r"; log "round $r/$rounds lftp put $big_label  $s: $(tail -n1 "$results" | cut -d' ' -f4) MB/s"
  done; fi
  if want mirror; then for s in "${sides[@]}"; do
    bench_mirror "$s" "$r" mirror_s ""; log "round $r/$rounds mirror -R $nfiles files  $s: $(tail -n1 "$results" | cut -d' ' -f4) s"
  done; fi
  if want mirror4; then for s in "${sides[@]}"; do
    bench_mirror "$s" "$r" mirror4_s "--parallel=4"; log "round $r/$rounds mirror -R --parallel=4 $nfiles files  $s: $(tail -n1 "$results" | cut -d' ' -f4) s"
  done; fi
  if want cycle; then
    bench_cycle "$r"
    log "round $r/$rounds $nfiles cycles of a mirror's per-file commands, p50 $(grep "^cycle_us [^ ]* $r " "$results" | cut -d' ' -f2,4 | paste -sd' ') us"
  fi
  if want saves; then bench_saves "$r"; fi
  if want commands; then for s in "${sides[@]}"; do
    bench_commands "$s" "$r"; log "round $r/$rounds $ncommands commands  $s: NOOP/SITE CHMOD/time p50 $(tail -n3 "$results" | cut -d' ' -f4 | paste -sd/) us"
  done; fi
done
log "measured in $(elapsed "$start" "$EPOCHREALTIME") s; upgate logs: $(cat "$tmp/upgate.log" "$tmp/upgate-agent.log" "$tmp/agent.log" | wc -l) lines at level $loglevel"

# --- report -------------------------------------------------------------------
cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
fs=$(df -T "$tmp" | awk 'NR == 2 { print $2 " on " $1 }')
vs_version=$(dpkg-query -W -f '${Version}' vsftpd 2>/dev/null || true)
# vsftpd -v writes its version to file descriptor 0.
[[ -n $vs_version ]] || vs_version=$("$vsftpd_bin" -v 0>&1 2>/dev/null | awk '{ print $NF; exit }' || true)
cat >"$tmp/meta" <<EOF
date=$(date -u '+%Y-%m-%d %H:%M UTC')
machine=$(nproc) CPUs ($cpu), $(free -g | awk '/^Mem:/ { print $2 }') GiB, Linux $(uname -r)
fs=$fs
upgate=$ug_version
loglevel=$loglevel
vsftpd=$vs_version
lftp=$(lftp --version | sed -n '1s/.*Version \([^ ]*\).*/\1/p')
curl=$(curl --version | awk 'NR == 1 { print $2 }')
python=$("$PY" -c 'import platform; print(platform.python_version())')
load_before=$load_before
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
big=$big_label
files=$nfiles
files_bytes=$small_bytes
dirs=$small_dirs
saves=$nsaves
commands=$ncommands
rounds=$rounds
bcrypt_cost=$bcrypt_cost
EOF
"$PY" "$helper" table "$results" "$tmp/meta"
