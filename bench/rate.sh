#!/usr/bin/env bash
# Latency at a fixed rate on every backend: `charla bench --rate R --duration D` (open loop,
# latency from each message's due time) against a private redis-server, a private
# `charla serve`, the shared RabbitMQ and memory://, at each rate, in each mode, interleaved
# over ROUNDS rounds; prints the median p50 / p99 / p99.9 / max per row, the rate achieved,
# and the broker's CPU time per message (the broker process's user+system time over the run;
# memory:// runs inside the bench process, so none).
#
#   bench/rate.sh                       # RATES="1000 10000" MODES="queue stream" ROUNDS=3 DURATION=5s
#   env: RATES, MODES, ROUNDS, DURATION, AMQP (a URL; default the shared amqp://guest:guest@127.0.0.1:5672)
#
# Brokers run on core 0 and the bench on core 1 (taskset), as the project's server comparisons do.
set -uo pipefail
cd "$(dirname "$0")/.."

rates=${RATES:-1000 10000}
modes=${MODES:-queue stream}
rounds=${ROUNDS:-3}
duration=${DURATION:-5s}
amqp=${AMQP:-amqp://guest:guest@127.0.0.1:5672}

cargo build --release -q -p charla || exit 1
charla=$PWD/target/release/charla
source bench/lib.sh rate
export CHARLA_NO_AUTOSTART=1

rport=$(free_port)
taskset -c 0 redis-server --port "$rport" --save '' --appendonly no --dir "$work" >"$work/redis.log" 2>&1 &
redis_pid=$!; pids+=("$redis_pid")
sport=$(free_port)
taskset -c 0 "$charla" serve --port "$sport" --dir "$work/serve" >"$work/serve.log" 2>&1 &
serve_pid=$!; pids+=("$serve_pid")
for port in "$rport" "$sport"; do
  for _ in $(seq 100); do up "$port" && break; sleep 0.05; done
done
# The shared RabbitMQ: its Erlang VM, when it answers (its CPU counts for it).
rabbit_pid=$(pgrep -f 'beam.smp.*rabbit' | head -1)
backends=("redis-server|redis://127.0.0.1:$rport|$redis_pid" "charla serve|redis://127.0.0.1:$sport|$serve_pid" "memory://|memory://|")
if "$charla" -b "$amqp" check >/dev/null 2>&1; then
  backends+=("rabbitmq|$amqp|$rabbit_pid")
else
  echo "(RabbitMQ at $(echo "$amqp" | sed 's|//[^@]*@|//|') does not answer: its rows are left out)"
fi
cpu_ticks() { [ -n "$1" ] && awk '{print $14+$15}' "/proc/$1/stat" 2>/dev/null || echo 0; }

results=$work/results.jsonl
for round in $(seq "$rounds"); do
  for mode in $modes; do
    for rate in $rates; do
      for b in "${backends[@]}"; do
        IFS='|' read -r name url pid <<<"$b"
        before=$(cpu_ticks "$pid")
        out=$(taskset -c 1 "$charla" -b "$url" bench -m "$mode" --rate "$rate" --duration "$duration" --json 2>"$work/err")
        after=$(cpu_ticks "$pid")
        if [ -z "$out" ]; then
          echo "round $round: $name $mode $rate/s failed: $(tail -2 "$work/err")"
          continue
        fi
        echo "$out" | python3 -c '
import json, sys
r = json.loads(sys.stdin.read())
r.update(name=sys.argv[1], ticks=int(sys.argv[2]), hz=int(sys.argv[3]))
print(json.dumps(r))' "$name" "$((after - before))" "$(getconf CLK_TCK)" >>"$results"
        echo "round $round: $name $mode $rate/s done" >&2
      done
    done
  done
done

python3 - "$results" "$rounds" "$duration" <<'EOF'
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    rows.setdefault((r["mode"], r["rate"], r["name"]), []).append(r)
print(f"\ncharla bench --rate, open loop, {sys.argv[3]} per run, medians of {sys.argv[2]} interleaved rounds")
print(f"{'mode':<7} {'rate/s':>7} {'broker':<13} {'sent/s':>8} {'p50 µs':>8} {'p99 µs':>8} {'p99.9 µs':>9} {'max µs':>8} {'broker CPU µs/msg':>18}")
for (mode, rate, name), runs in sorted(rows.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2])):
    med = lambda f: statistics.median(f(r) for r in runs)
    cpu = med(lambda r: r["ticks"] / r["hz"] * 1e6 / max(r["received"], 1))
    cpu_text = "-" if name == "memory://" else f"{cpu:.1f}"
    print(f"{mode:<7} {rate:>7} {name:<13} {med(lambda r: r['sent_per_sec']):>8.0f} "
          f"{med(lambda r: r['latency_us']['p50']):>8.0f} {med(lambda r: r['latency_us']['p99']):>8.0f} "
          f"{med(lambda r: r['latency_us']['p999']):>9.0f} {med(lambda r: r['latency_us']['max']):>8.0f} {cpu_text:>18}")
EOF
