#!/usr/bin/env bash
# charla serve vs redis-server under redis-benchmark: pinned, interleaved, medians, with the
# server's CPU time per request beside its throughput.
#
#   bench/serve_vs_redis.sh [-n REQUESTS] [-c CLIENTS] [-r ROUNDS]
#
# Both servers run on core 0 (memory only, no persistence on either) and redis-benchmark on
# core 1, so the load generator never takes the server's CPU. For each round, each test and
# each pipeline depth (-P 1, and -P 16 with 5x the requests: otherwise a run lasts a fraction
# of a second and measures connection setup more than the server), redis-benchmark runs
# against both servers back to back, the order swapped every round; each run records
# requests/s and the server process's user+system CPU time over the run (/proc/PID/stat).
# Medians over the rounds (single runs swing about ±10 % on this machine). Prints per test:
# throughput and CPU µs per request of both and their ratios; then the geometric means of the
# ratios and the lowest throughput ratio. Targets (issue 10): throughput geomean >= 0.95,
# CPU-per-request geomean <= 1.0, no test below 0.8x throughput.
set -euo pipefail
N=200000; C=50; ROUNDS=5
while getopts "n:c:r:" o; do
  case $o in n) N=$OPTARG;; c) C=$OPTARG;; r) ROUNDS=$OPTARG;; *) exit 2;; esac
done
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
for t in redis-server redis-benchmark redis-cli taskset; do
  command -v $t >/dev/null || { echo "$t is required (apt-get install redis-server redis-tools util-linux)" >&2; exit 1; }
done
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
cargo build --release -q -p charla
SERVE=("$CARGO_TARGET_DIR/release/charla" serve)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
RP=$(free_port); CP=$(free_port)
tmp=$(mktemp -d)
export CHARLA_NO_AUTOSTART=1
taskset -c 0 redis-server --port "$RP" --bind 127.0.0.1 --save "" --appendonly no --dir "$tmp" --logfile "$tmp/redis.log" --daemonize no &
RPID=$!
taskset -c 0 "${SERVE[@]}" --port "$CP" --dir "$tmp/charla" >"$tmp/charla.log" 2>&1 &
CPID=$!
cleanup() { kill "$RPID" "$CPID" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
for p in $RP $CP; do
  for _ in $(seq 100); do redis-cli -p "$p" ping >/dev/null 2>&1 && break; sleep 0.05; done
done
echo "redis-server $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/') on :$RP, charla serve on :$CP (both on core 0; redis-benchmark on core 1)"
echo "-n $N (x5 at -P16) -c $C, medians of $ROUNDS interleaved rounds"

ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
results=$tmp/results
: >"$results"
run() { # side depth args... → lines "side|depth|test|rps|ticks|requests"
  local side=$1 depth=$2; shift 2
  local port=$RP pid=$RPID n=$N
  [ "$side" = charla ] && port=$CP pid=$CPID
  [ "$depth" -gt 1 ] && n=$((N * 5))
  local before after out
  before=$(ticks "$pid")
  out=$(taskset -c 1 redis-benchmark -p "$port" -n "$n" -c "$C" -P "$depth" -q --csv "$@" 2>/dev/null | tail -n +2)
  after=$(ticks "$pid")
  # One redis-benchmark call runs one test here, so the CPU delta is that test's.
  while IFS=, read -r name rps _; do
    name=${name//\"/}; rps=${rps//\"/}
    case "$name" in PUBLISH*) name=PUBLISH;; XADD*) name=XADD;; esac
    [ -n "$name" ] && echo "$side|$depth|$name|$rps|$((after - before))|$n" >>"$results"
  done <<<"$out"
}
TESTS=(ping_inline ping_mbulk set get incr lpush rpush lpop rpop)
for round in $(seq "$ROUNDS"); do
  order=(redis charla); [ $((round % 2)) = 0 ] && order=(charla redis)
  for depth in 1 16; do
    for t in "${TESTS[@]}"; do
      for side in "${order[@]}"; do run "$side" "$depth" -t "$t"; done
    done
    for side in "${order[@]}"; do
      port=$RP; [ "$side" = charla ] && port=$CP
      redis-cli -p "$port" del bench:stream >/dev/null
      run "$side" "$depth" PUBLISH bench:channel hello
      run "$side" "$depth" XADD bench:stream MAXLEN '~' 100000 '*' field value
    done
  done
  echo "round $round of $ROUNDS done" >&2
done

python3 - "$results" "$(getconf CLK_TCK)" <<'EOF'
import math, statistics, sys
hz = int(sys.argv[2])
runs = {}
for line in open(sys.argv[1]):
    side, depth, name, rps, ticks, n = line.strip().split("|")
    cpu_us = int(ticks) / hz * 1e6 / int(n)
    runs.setdefault((name, int(depth)), {}).setdefault(side, []).append((float(rps), cpu_us))
order = ["PING_INLINE", "PING_MBULK", "SET", "GET", "INCR", "LPUSH", "RPUSH", "LPOP", "RPOP", "PUBLISH", "XADD"]
print(f"\n{'test':<12} {'depth':>5} {'redis rps':>11} {'charla rps':>11} {'ratio':>6}   {'redis µs/req':>12} {'charla µs/req':>13} {'ratio':>6}")
tput, cpu = [], []
for depth in (1, 16):
    for name in order:
        sides = runs.get((name, depth))
        if not sides or "redis" not in sides or "charla" not in sides:
            continue
        med = lambda side, i: statistics.median(r[i] for r in sides[side])
        r_rps, c_rps = med("redis", 0), med("charla", 0)
        r_cpu, c_cpu = med("redis", 1), med("charla", 1)
        t_ratio = c_rps / r_rps if r_rps else float("nan")
        c_ratio = c_cpu / r_cpu if r_cpu else float("nan")
        tput.append((name, depth, t_ratio)); cpu.append(c_ratio)
        print(f"{name:<12} {'-P'+str(depth):>5} {r_rps:>11.0f} {c_rps:>11.0f} {t_ratio:>6.2f}   {r_cpu:>12.2f} {c_cpu:>13.2f} {c_ratio:>6.2f}")
geo = lambda xs: math.exp(sum(math.log(x) for x in xs) / len(xs))
g_t = geo([t for _, _, t in tput]); g_c = geo(cpu)
low = min(tput, key=lambda x: x[2])
print(f"\ngeometric mean over {len(tput)} tests: throughput {g_t:.2f}x redis-server, CPU per request {g_c:.2f}x")
print(f"lowest throughput ratio: {low[2]:.2f} ({low[0]} -P{low[1]})")
ok = g_t >= 0.95 and g_c <= 1.0 and low[2] >= 0.8
print("targets (throughput >= 0.95x, CPU per request <= 1.0x, no test below 0.8x):", "met" if ok else "NOT met")
EOF
