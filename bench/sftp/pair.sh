#!/usr/bin/env bash
# bench/sftp/pair.sh: which of two upgate builds answers an SFTP client's
# requests faster; bench/ftp/pair.sh's twin. Both gateways serve SFTP at
# once on loopback and one paramiko client (helper.py pair-saves or
# pair-files) alternates between them operation by operation, so that
# both meet the same moments of a noisy machine, where two runs of run.sh
# one after the other differ by up to a third on the same binary. Each
# round opens new sessions and starts with the other gateway. Run with the
# same binary as A and B first to see the noise band on the machine (read
# a B/A within it as no difference), and swap A and B for a second
# opinion. Run by hand; CI runs its quick mode untimed (bench_test.go).
#
#   bash bench/sftp/pair.sh A B            # two upgate binaries, embedded agents
#   bash bench/sftp/pair.sh --agent A B    # each with an `upgate agent` process
#   bash bench/sftp/pair.sh --files A B    # new files instead (below)
#   bash bench/sftp/pair.sh --quick A B    # 20 saves (or files), 1 round
#
# The default (--saves): an IDE's save on an open session, the five
# requests of helper.py saves() (run.sh's saves), each waiting for its
# answer: open (OPEN with CREAT|TRUNC|WRITE), write (one WRITE of 4 KiB),
# close, utime (SETSTAT of the times), chmod (SETSTAT 0644), always to the
# same file, /up/save<round>.bin, after one untimed save, so that every
# timed save replaces the file the one before wrote.
# With --files: new files as lftp's SFTP mirror writes them, the same five
# requests per file with 2,000 bytes, into /up/pair<round>/f<i>.php (the
# directory made once per session).
#
# Environment (defaults in brackets, quick mode's after the slash):
#   BENCH_CYCLES     saves (or files) per gateway per round [300 / 20]
#   BENCH_ROUNDS     rounds [4 / 1]
#   BENCH_TIMEOUT    seconds the client may take [600]
#   BENCH_DIR        where the temp dir goes [$TMPDIR or /tmp]
#   BENCH_KEEP=1     keep the temp dir (keys, configs, logs, uploaded files)
# The markdown table (p50 of each step per round, their median, B/A) goes
# to stdout, progress to stderr. Logins are by an Ed25519 key made for the
# run, the gateways' Ed25519 host key (also made for the run) checked
# against a known_hosts file. Every upload is checked on disk on both
# sides: with --saves each round's file, which must hold its last save's
# bytes and time; with --files every file (count, content, time, mode);
# and no temp file left.
set -euo pipefail
export LC_ALL=C

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib.sh
source "$here/../lib.sh"
PY=/usr/bin/python3
helper=$here/helper.py

quick=0 agent=0 files=0 saves=0 bins=()
while (($#)); do
  case $1 in
    --quick) quick=1 ;;
    --agent) agent=1 ;;
    --saves) saves=1 ;;
    --files) files=1 ;;
    -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "pair.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) bins+=("$1") ;;
  esac
  shift
done
((saves && files)) && { echo "pair.sh: --saves or --files, not both" >&2; exit 2; }
pair_settings "$quick"
[[ -x $PY ]] || { echo "pair.sh: $PY missing (apt-get install -y python3 python3-paramiko)" >&2; exit 3; }
"$PY" -c 'import paramiko' 2>/dev/null ||
  { echo "pair.sh: paramiko missing for $PY (apt-get install -y python3-paramiko)" >&2; exit 3; }
command -v ssh-keygen >/dev/null || { echo "pair.sh: ssh-keygen missing (apt-get install -y openssh-client)" >&2; exit 3; }
command -v setsid >/dev/null || { echo "pair.sh: setsid missing (apt-get install -y util-linux)" >&2; exit 3; }
pair_start sftppair
mkdir -p "$tmp/keys"
(umask 077 && ssh-keygen -q -t ed25519 -N '' -C upgate-pair-client -f "$tmp/keys/client") >/dev/null ||
  die "ssh-keygen (client key)"
ssh-keygen -q -t ed25519 -N '' -C upgate-pair-host -f "$tmp/keys/host" >/dev/null || die "ssh-keygen (host key)"
key=$tmp/keys/client
client_pub=$(cat "$key.pub")
(umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$tmp/agent-token") || die "writing the agent token"

ports=()
for side in a b; do
  pair_side "$side"
  port=$("$PY" "$helper" freeport) || die "no free port"
  sftp_gateway_config "$port" "$tmp/keys/host" "$agent_yaml" >"$tmp/upgate-$side.yaml"
  start_server "$tmp/upgate-$side.log" "$tmp/upgate-$side" serve --config "$tmp/upgate-$side.yaml"
  "$PY" "$helper" waitport "$port" 20 SSH-2.0- ||
    { cat "$tmp/upgate-$side.log" >&2; die "gateway $side did not answer on $port"; }
  ports+=("$port")
done
known=$tmp/keys/known_hosts
for port in "${ports[@]}"; do
  printf '[127.0.0.1]:%s %s\n' "$port" "$(cut -d' ' -f1,2 "$tmp/keys/host.pub")"
done >"$known"

mode="embedded agent"
((agent)) && mode="agent process"
what="saves of one file" unit=saves client=pair-saves
((files)) && what="new files" unit=files client=pair-files
log "A ${bins[0]}, B ${bins[1]} ($mode): $rounds round(s) of $cycles $unit each"
echo "### SFTP $what, A against B (bench/sftp/pair.sh)"
echo
echo "$(date -u '+%Y-%m-%d %H:%M UTC'). A: ${bins[0]} (sha256 $(sha256sum "$tmp/upgate-a" | cut -c1-12)); B: ${bins[1]} (sha256 $(sha256sum "$tmp/upgate-b" | cut -c1-12)); each with its $mode. Client paramiko $("$PY" -c 'import paramiko; print(paramiko.__version__)'). $rounds round(s) of $cycles $unit per gateway, alternating one by one; cells: median of the rounds' p50 (the rounds in brackets)."
echo
bounded "$PY" "$helper" "$client" "${ports[0]}" "${ports[1]}" bench "$key" "$known" "$cycles" "$rounds" ||
  die "the pair client failed"

# What the client wrote, on disk on both sides (helper.py pair-want): the
# last save's bytes (helper.py save_data, numbered: not an earlier save's)
# and mtime, or every file's bytes and mtime; mode 644; no temp file left.
read -r save_sum save_mtime file_sum file_mtime < <("$PY" "$helper" pair-want "$cycles") ||
  die "helper.py pair-want"
[[ -n $file_mtime ]] || die "helper.py pair-want printed too little"
if ((files)); then
  pattern='f*.php' want_n=$((cycles * rounds)) want_sum=$file_sum want_mtime=$file_mtime
else
  pattern='save*.bin' want_n=$rounds want_sum=$save_sum want_mtime=$save_mtime
fi
for side in a b; do
  up=$tmp/root-$side/up
  n=$(find "$up" -type f -name "$pattern" | wc -l)
  ((n == want_n)) || die "gateway $side: $n files on disk, want $want_n"
  sums=$(find "$up" -type f -name "$pattern" -exec sha256sum {} + | awk '{print $1}' | sort -u)
  [[ $sums == "$want_sum" ]] || die "gateway $side: files whose content differs from what was sent last"
  attrs=$(find "$up" -type f -name "$pattern" -exec stat -c '%Y %a' {} + | sort -u)
  [[ $attrs == "$want_mtime 644" ]] || die "gateway $side: mtime and mode '${attrs//$'\n'/, }', want '$want_mtime 644'"
  [[ -z $(find "$up" -name '.upgate-upload-*' -print -quit) ]] || die "gateway $side: temp files left"
done
if ((files)); then
  log "checked: $want_n files of 2,000 bytes, as sent, their mtime and mode set, on each side"
else
  log "checked: each round's file holds its last save's 4,096 bytes, its mtime and mode, on each side"
fi
