# bench/lib.sh: the shell functions bench/ftp/run.sh, bench/ftp/pair.sh,
# bench/sftp/run.sh and bench/sftp/pair.sh share, sourced by each at its
# start. They use these globals of the sourcing script: only (the
# measurements asked for, comma separated), cur (the pid of the bounded
# command running now, for the cleanup trap), cmd_timeout (seconds a
# bounded command may take), results (the file record appends to), for
# prepare_upgate tmp, repo, GO, ug_bin and ug_label, for start_server
# servers (an array), for ftp_gateway_config hash and loglevel, for
# sftp_gateway_config client_pub and loglevel, and for the pair scripts'
# functions (pair_*) bins, agent, PY and helper, for sides_printed sides
# (an array) and port (an associative array by side). pair_start sets only,
# cur, cmd_timeout, loglevel, servers and tmp; pair_settings sets cycles
# and rounds; pair_side sets agent_yaml.

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }
want() { [[ ,$only, == *,$1,* ]]; }
sides_printed() { # file: a helper's output for all sides at once holds a
  # line per side, each starting with a side's name, each side once
  local name rest n=0 seen=" "
  while read -r name rest; do
    [[ -n ${port[$name]:-} ]] || die "$1: a line for '$name', which is no side"
    [[ $seen != *" $name "* ]] || die "$1: two lines for $name"
    seen+="$name "
    n=$((n + 1))
  done <"$1"
  ((n == ${#sides[@]})) || die "$1: lines for$seen, want one for each of ${sides[*]}"
}
alive() { # pid: running (not gone, not a zombie)
  local st
  st=$(ps -o stat= -p "$1" 2>/dev/null) && [[ ${st// /} != Z* ]]
}
group_alive() { # pgid: some member of the process group is running
  ps -e -o pgid=,stat= | awk -v g="$1" '$1 == g && $2 !~ /^Z/ { n++ } END { exit !n }'
}
reap() { # pid: waits for a child of ours that is dead or dying, 2 s at most
  local i
  for ((i = 0; i < 20; i++)); do
    alive "$1" || { wait "$1" 2>/dev/null || true; return 0; }
    sleep 0.1
  done
  log "pid $1 survived SIGKILL for 2 s; not waiting for it"
}
stop_group() { # pgid secs: TERM to the whole process group (its leader too,
  # in case it has not made itself one yet), up to secs, then KILL; reaps the
  # leader, a child of ours
  local pg=$1 i
  kill -TERM -- "-$pg" "$pg" 2>/dev/null || true
  for ((i = 0; i < $2 * 10; i++)); do
    group_alive "$pg" || alive "$pg" || break
    sleep 0.1
  done
  if group_alive "$pg" || alive "$pg"; then
    log "process group $pg outlived SIGTERM for $2 s; killing it"
    kill -KILL -- "-$pg" "$pg" 2>/dev/null || true
  fi
  reap "$pg"
}
# bounded cmd...: runs a client under timeout, in the background so that a
# SIGTERM or SIGINT to this script runs the cleanup at once (bash runs traps
# only between foreground commands, but interrupts wait). timeout puts the
# client in a process group of its own, which the cleanup stops.
bounded() {
  local rc=0
  timeout -k 5 "$cmd_timeout" "$@" &
  cur=$!
  wait "$cur" || rc=$?
  cur=
  return "$rc"
}
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.4f", b - a }'; }
record() { # key side round value
  printf '%s %s %s %s\n' "$@" >>"$results"
}
prepare_upgate() { # $tmp/upgate: a copy of $ug_bin, or built from $repo
  # with $GO; sets ug_version to what the report says of it
  local v gov commit
  if [[ -n $ug_bin ]]; then
    # A copy in the temp dir, so that every upgate process of the run has
    # the temp dir in its arguments (internal/benchtest's sweep finds them so).
    log "upgate: $ug_bin"
    cp "$ug_bin" "$tmp/upgate" || die "cp $ug_bin"
    read -r _ v gov _ < <("$tmp/upgate" version) || die "$ug_bin version"
    ug_version="$v, $ug_label, sha256 $(sha256sum "$tmp/upgate" | cut -c1-12) ($gov)"
  else
    log "building upgate"
    (cd "$repo" && "$GO" build -o "$tmp/upgate" ./cmd/upgate) || die "go build ./cmd/upgate"
    ug_version="$("$tmp/upgate" version | awk 'NR == 1 { print $2 }')"
    if commit=$(git -C "$repo" describe --always --dirty 2>/dev/null); then ug_version+=" at $commit"; fi
    ug_version+=" ($("$GO" env GOVERSION))"
  fi
  # The servers inherit the environment: a GODEBUG (schedtrace keeps the
  # runtime's monitor awake, README's CPUs) changes what is measured.
  if [[ -n ${GODEBUG:-} ]]; then ug_version+=", GODEBUG=$GODEBUG"; fi
}
gen_big() { # file bytes: incompressible data
  if command -v openssl >/dev/null; then
    # AES-CTR over zeros: incompressible and several times faster than urandom.
    head -c "$2" /dev/zero |
      openssl enc -aes-128-ctr -nosalt -pass "pass:$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')" -pbkdf2 2>/dev/null |
      head -c "$2" >"$1" || true
  fi
  [[ -f $1 && $(stat -c %s "$1") == "$2" ]] || head -c "$2" /dev/urandom >"$1"
}
# start_server log cmd...: a server (upgate, sshd) in a session and process
# group of its own (setsid, started in the background by a shell without
# job control, is no group leader and execs in place: $! is the server's
# pid and group id), without UPGATE_* variables from the caller's
# environment (they would override upgate's config file). Sets srv_pid and
# adds it to servers, the groups the caller's cleanup stops.
start_server() {
  local logf=$1
  shift
  (
    while read -r v; do unset "$v"; done < <(compgen -e | grep '^UPGATE_' || true)
    exec setsid "$@"
  ) >"$logf" 2>&1 </dev/null &
  srv_pid=$!
  servers+=("$srv_pid")
}
bench_config() { # ftp-listen sftp-listen protocol-yaml agent-yaml-lines
  # credential-yaml-line: a gateway config for the user bench, with one
  # agent, bench, mounted at /, logging at $loglevel
  cat <<EOF
listen:
  ftp: "$1"
  ftps: ""
  sftp: "$2"
  admin: ""
connections:
  drain_timeout: 2s
$3
agents:
  bench:
$4
users:
  - name: bench
    $5
    mounts:
      - path: /
        agent: bench
        root: ""
log:
  level: $loglevel
EOF
}
ftp_gateway_config() { # port pasv-lo pasv-hi agent-yaml-lines: a gateway
  # config serving FTP only (bench/ftp's run.sh and pair.sh), for the user
  # bench with the bcrypt hash $hash
  bench_config "127.0.0.1:$1" "" "ftp:
  passive_ports: \"$2-$3\"" "$4" "password_hash: \"$hash\""
}
sftp_gateway_config() { # port host-key agent-yaml-lines: a gateway config
  # serving SFTP only (bench/sftp's run.sh and pair.sh), for the user bench
  # with the public key $client_pub
  bench_config "" "127.0.0.1:$1" "sftp:
  host_keys: ['$2']" "$3" "authorized_keys: [\"$client_pub\"]"
}

# The pair scripts' (bench/ftp/pair.sh, bench/sftp/pair.sh) common parts.
pair_start() { # name: the pair scripts' start once their options are read:
  # lib.sh's globals (the measurements, the bounded client), the cleanup
  # traps, the temp dir $tmp (upgate-name.XXXXXX) and in it a copy of each
  # binary of bins, upgate-a and upgate-b, so that every process of the run
  # has the temp dir in its arguments (internal/benchtest's sweep finds
  # them)
  only=pair cur='' cmd_timeout=${BENCH_TIMEOUT:-600} loglevel=warn
  tmp='' servers=()
  pair_traps
  tmp=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/upgate-$1.XXXXXX")
  cp "${bins[0]}" "$tmp/upgate-a" || die "copying ${bins[0]}"
  cp "${bins[1]}" "$tmp/upgate-b" || die "copying ${bins[1]}"
}
pair_settings() { # quick: checks bins (two executable files, A and B)
  # and sets cycles and rounds from BENCH_CYCLES and BENCH_ROUNDS [300 and
  # 4; quick 20 and 1]; exits 2 on a bad value
  local d_cycles=300 d_rounds=4 v b
  ((${#bins[@]} == 2)) || { echo "pair.sh: two upgate binaries, A and B (see --help)" >&2; exit 2; }
  for b in "${bins[@]}"; do
    [[ -f $b && -x $b ]] || { echo "pair.sh: $b is not an executable file" >&2; exit 2; }
  done
  if (($1)); then d_cycles=20 d_rounds=1; fi
  cycles=${BENCH_CYCLES:-$d_cycles}
  rounds=${BENCH_ROUNDS:-$d_rounds}
  for v in cycles rounds; do
    [[ ${!v} =~ ^[1-9][0-9]{0,4}$ ]] || { echo "pair.sh: $v must be a positive integer, got '${!v}'" >&2; exit 2; }
  done
  ((rounds <= 50)) || { echo "pair.sh: at most 50 rounds" >&2; exit 2; }
}
pair_cleanup() { # the EXIT trap pair_traps sets: stops the bounded client
  # and the servers, and removes $tmp unless BENCH_KEEP=1
  local rc=$? pid
  set +e
  trap - EXIT
  trap 'log "cleaning up; signal ignored"' INT TERM HUP
  [[ -z $cur ]] || stop_group "$cur" 5
  for pid in "${servers[@]}"; do stop_group "$pid" 5; done
  if [[ -n $tmp ]]; then
    if [[ ${BENCH_KEEP:-0} == 1 ]]; then log "kept $tmp"; else rm -rf -- "$tmp"; fi
  fi
  exit "$rc"
}
pair_traps() {
  trap pair_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  trap 'exit 129' HUP
}
pair_side() { # side: makes side's agent root, $tmp/root-side with up/ in
  # it, and sets agent_yaml to the gateway config's lines for its agent:
  # embedded, or with $agent set, an `upgate agent` process ($tmp/upgate-side)
  # on a free loopback port with the token in $tmp/agent-token
  local root=$tmp/root-$1 port
  mkdir -p "$root/up"
  if ((!agent)); then
    agent_yaml="    embedded: true
    root: '$root'"
    return
  fi
  port=$("$PY" "$helper" freeport) || die "no free port"
  start_server "$tmp/agent-$1.log" "$tmp/upgate-$1" agent --listen "127.0.0.1:$port" --root "$root" \
    --token-file "$tmp/agent-token" --log-level "$loglevel"
  "$PY" "$helper" waitport "$port" 20 || { cat "$tmp/agent-$1.log" >&2; die "agent $1 did not listen"; }
  agent_yaml="    address: 127.0.0.1:$port
    token_file: '$tmp/agent-token'"
}
