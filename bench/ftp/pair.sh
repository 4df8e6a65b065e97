#!/usr/bin/env bash
# bench/ftp/pair.sh: which of two upgate builds answers lftp's per-file FTP
# commands faster. Both gateways run at once on loopback and one client
# (helper.py pair) alternates between them file by file: PASV, connect the
# data connection, STOR 2,000 bytes, 226, MFMT, SITE CHMOD. Both meet the
# same moments of a noisy machine, where two runs of run.sh one after the
# other differ by up to a third on the same binary. Each round opens new
# sessions and starts with the other gateway. On this repository's 2-vCPU
# VM, identical binaries as A and B gave a cycle's B/A of 0.91 to 1.04
# (4 rounds of 300 files), so read a B/A within that band as no
# difference, and swap A and B for a second opinion. Run by hand; CI runs
# its quick mode untimed (bench_test.go).
#
#   bash bench/ftp/pair.sh A B            # two upgate binaries, embedded agents
#   bash bench/ftp/pair.sh --agent A B    # each with an `upgate agent` process
#   bash bench/ftp/pair.sh --saves A B    # an IDE's save instead (below)
#   bash bench/ftp/pair.sh --quick A B    # 20 files, 1 round
#
# With --saves the client (helper.py pair-saves) saves one 4 KiB file over
# and over on an open session, as Python's ftplib.storbinary does (TYPE I,
# PASV, connect, STOR, the data, 226), so that every save replaces the
# file the one before wrote: the path an IDE's save takes, where the
# mirror creates new files.
#
# Environment (defaults in brackets, quick mode's after the slash):
#   BENCH_CYCLES     files (or saves) per gateway per round [300 / 20]
#   BENCH_ROUNDS     rounds [4 / 1]
#   BENCH_TIMEOUT    seconds the client may take [600]
#   BENCH_DIR        where the temp dir goes [$TMPDIR or /tmp]
#   BENCH_KEEP=1     keep the temp dir (configs, logs, uploaded files)
# The markdown table (p50 of each step per round, their median, B/A) goes
# to stdout, progress to stderr. Every uploaded file is checked on disk
# (count and content); with --saves, each round's file, which must hold
# its last save's bytes.
set -euo pipefail
export LC_ALL=C

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib.sh
source "$here/../lib.sh"
PY=/usr/bin/python3
helper=$here/helper.py

quick=0 agent=0 saves=0 bins=()
while (($#)); do
  case $1 in
    --quick) quick=1 ;;
    --agent) agent=1 ;;
    --saves) saves=1 ;;
    -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "pair.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) bins+=("$1") ;;
  esac
  shift
done
pair_settings "$quick"
[[ -x $PY ]] || { echo "pair.sh: $PY missing (apt-get install -y python3)" >&2; exit 3; }
command -v setsid >/dev/null || { echo "pair.sh: setsid missing (apt-get install -y util-linux)" >&2; exit 3; }
pair_start pair
pw=$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')
hash=$(printf '%s\n' "$pw" | "$tmp/upgate-a" hash-password --cost 4)
[[ $hash == \$2* ]] || die "hash-password printed '$hash'"
(umask 077 && printf 'machine 127.0.0.1 login bench password %s\n' "$pw" >"$tmp/netrc") || die "writing netrc"
(umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$tmp/agent-token") || die "writing the agent token"

ports=()
for side in a b; do
  pair_side "$side"
  port=$("$PY" "$helper" freeport) || die "no free port"
  range=$("$PY" "$helper" portrange 50) || die "no free passive range"
  read -r lo hi <<<"$range"
  ftp_gateway_config "$port" "$lo" "$hi" "$agent_yaml" >"$tmp/upgate-$side.yaml"
  start_server "$tmp/upgate-$side.log" "$tmp/upgate-$side" serve --config "$tmp/upgate-$side.yaml"
  "$PY" "$helper" waitftp "$port" 20 || { cat "$tmp/upgate-$side.log" >&2; die "gateway $side did not answer on $port"; }
  ports+=("$port")
done

mode="embedded agent"
((agent)) && mode="agent process"
what="per-file commands" unit=files
((saves)) && what="saves of one file" unit=saves
log "A ${bins[0]}, B ${bins[1]} ($mode): $rounds round(s) of $cycles $unit each"
echo "### FTP $what, A against B (bench/ftp/pair.sh)"
echo
echo "$(date -u '+%Y-%m-%d %H:%M UTC'). A: ${bins[0]} (sha256 $(sha256sum "$tmp/upgate-a" | cut -c1-12)); B: ${bins[1]} (sha256 $(sha256sum "$tmp/upgate-b" | cut -c1-12)); each with its $mode. $rounds round(s) of $cycles $unit per gateway, alternating one by one; cells: median of the rounds' p50 (the rounds in brackets)."
echo
if ((saves)); then
  bounded "$PY" "$helper" pair-saves "${ports[0]}" "${ports[1]}" bench "$tmp/netrc" "$cycles" "$rounds" || die "the pair client failed"
  # Each round's file on both sides holds the last save's bytes
  # (helper.py save_data, numbered: not an earlier save's), and no temp
  # file is left.
  want_sum=$("$PY" -B -c 'import hashlib, sys; sys.path.insert(0, sys.argv[1]); import helper; print(hashlib.sha256(helper.save_data(int(sys.argv[2]))).hexdigest())' "$here" "$cycles") ||
    die "computing the last save's sha256"
  for side in a b; do
    n=$(find "$tmp/root-$side/up" -type f -name 'save*.bin' | wc -l)
    ((n == rounds)) || die "gateway $side: $n saved files on disk, want $rounds"
    sums=$(find "$tmp/root-$side/up" -type f -name 'save*.bin' -exec sha256sum {} + | awk '{print $1}' | sort -u)
    [[ $sums == "$want_sum" ]] || die "gateway $side: a saved file does not hold the last save's bytes"
    [[ -z $(find "$tmp/root-$side/up" -name '.upgate-upload-*' -print -quit) ]] || die "gateway $side: temp files left"
  done
  log "checked: each round's file holds its last save's 4,096 bytes, on each side"
  exit 0
fi
bounded "$PY" "$helper" pair "${ports[0]}" "${ports[1]}" bench "$tmp/netrc" "$cycles" "$rounds" || die "the pair client failed"

# Every upload landed, whole, on both sides: as many files as were sent,
# each with the content sent (helper.py's PAIR_FILE_DATA), and no temp
# file left.
want_sum=$("$PY" -B -c 'import hashlib, sys; sys.path.insert(0, sys.argv[1]); import helper; print(hashlib.sha256(helper.PAIR_FILE_DATA).hexdigest())' "$here") ||
  die "computing the files' sha256"
for side in a b; do
  n=$(find "$tmp/root-$side/up" -type f -name 'f*.php' | wc -l)
  ((n == cycles * rounds)) || die "gateway $side: $n files on disk, want $((cycles * rounds))"
  sums=$(find "$tmp/root-$side/up" -type f -name 'f*.php' -exec sha256sum {} + | awk '{print $1}' | sort -u)
  [[ $sums == "$want_sum" ]] || die "gateway $side: uploads whose content differs from what was sent"
  [[ -z $(find "$tmp/root-$side/up" -name '.upgate-upload-*' -print -quit) ]] || die "gateway $side: temp files left"
done
log "checked: $((cycles * rounds)) files of 2,000 bytes, as sent, on each side"
