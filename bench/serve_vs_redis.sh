#!/usr/bin/env bash
# charla serve vs redis-server under redis-benchmark, alternating in the same run.
#
#   bench/serve_vs_redis.sh [-n REQUESTS] [-c CLIENTS] [-r ROUNDS]
#
# REQUESTS is for -P 1; -P 16 runs 5x as many (otherwise a run lasts a fraction of a second
# and measures connection setup more than the server).
# Builds charla in release, starts redis-server and charla serve on free ports (memory only,
# no persistence on either), and for each test and pipeline depth (-P 1 and -P 16) runs
# redis-benchmark against redis, then charla, ROUNDS times, keeping each side's best run
# (the machine is shared; the best of a few runs is the least noisy estimate).
# Prints a table with requests/s and the ratio charla / redis-server.
set -euo pipefail
N=200000; C=50; ROUNDS=3
while getopts "n:c:r:" o; do
  case $o in n) N=$OPTARG;; c) C=$OPTARG;; r) ROUNDS=$OPTARG;; *) exit 2;; esac
done
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
for t in redis-server redis-benchmark redis-cli; do
  command -v $t >/dev/null || { echo "$t is required (apt-get install redis-server redis-tools)" >&2; exit 1; }
done
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
# Prefer the real CLI (`charla serve`); fall back to the server crate's charla-serve binary.
cargo build --release -q -p charla 2>/dev/null || true
if "$CARGO_TARGET_DIR/release/charla" serve --help >/dev/null 2>&1; then
  SERVE=("$CARGO_TARGET_DIR/release/charla" serve)
else
  cargo build --release -q -p charla-server --bin charla-serve
  SERVE=("$CARGO_TARGET_DIR/release/charla-serve")
fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
RP=$(free_port); CP=$(free_port)
tmp=$(mktemp -d)
redis-server --port "$RP" --bind 127.0.0.1 --save "" --appendonly no --dir "$tmp" --logfile "$tmp/redis.log" --daemonize no &
RPID=$!
"${SERVE[@]}" --port "$CP" >"$tmp/charla.log" 2>&1 &
CPID=$!
cleanup() { kill "$RPID" "$CPID" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
for p in $RP $CP; do
  for _ in $(seq 100); do redis-cli -p "$p" ping >/dev/null 2>&1 && break; sleep 0.05; done
done
echo "redis-server $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/') on :$RP, charla (${SERVE[*]}) on :$CP; -n $N (x5 at -P16) -c $C, best of $ROUNDS alternating rounds"

declare -A best
run() { # port depth label args...
  local port=$1 depth=$2 side=$3; shift 3
  local n=$N; [ "$depth" -gt 1 ] && n=$((N * 5))
  redis-benchmark -p "$port" -n "$n" -c "$C" -P "$depth" -q --csv "$@" 2>/dev/null | tail -n +2 |
  while IFS=, read -r name rps _; do
    name=${name//\"/}; rps=${rps//\"/}
    echo "$name|$rps"
  done
}
record() { # side depth output-lines
  local side=$1 depth=$2
  while IFS='|' read -r name rps; do
    [ -z "$name" ] && continue
    case "$name" in PUBLISH*) name=PUBLISH;; XADD*) name=XADD;; esac
    key="$name|$depth|$side"
    cur=${best[$key]:-0}
    if awk -v a="$rps" -v b="$cur" 'BEGIN{exit !(a>b)}'; then best[$key]=$rps; fi
  done
}
TESTS=(ping set get incr lpush rpush lpop rpop)
for depth in 1 16; do
  for round in $(seq "$ROUNDS"); do
    for t in "${TESTS[@]}"; do
      for side in redis charla; do
        port=$RP; [ $side = charla ] && port=$CP
        record $side $depth < <(run "$port" "$depth" $side -t "$t")
      done
    done
    for side in redis charla; do
      port=$RP; [ $side = charla ] && port=$CP
      redis-cli -p "$port" del bench:stream >/dev/null
      record $side $depth < <(run "$port" "$depth" $side PUBLISH bench:channel hello)
      record $side $depth < <(run "$port" "$depth" $side XADD bench:stream MAXLEN '~' 100000 '*' field value)
    done
  done
done
printf '\n%-12s %5s %14s %14s %8s\n' test depth redis-server charla ratio
fail=0
for depth in 1 16; do
  for name in PING_INLINE PING_MBULK SET GET INCR LPUSH RPUSH LPOP RPOP PUBLISH XADD; do
    r=${best["$name|$depth|redis"]:-0}; c=${best["$name|$depth|charla"]:-0}
    ratio=$(awk -v c="$c" -v r="$r" 'BEGIN{ if (r>0) printf "%.2f", c/r; else print "n/a" }')
    printf '%-12s %5s %14s %14s %8s\n' "$name" "-P$depth" "$r" "$c" "$ratio"
    awk -v x="$ratio" 'BEGIN{exit !(x!="n/a" && x<0.8)}' && fail=1
  done
done
[ $fail = 0 ] && echo "all ratios >= 0.8" || echo "some ratio < 0.8"
