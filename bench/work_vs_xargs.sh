#!/usr/bin/env bash
# `charla work` against `xargs -P4 -n1` running the same command the same number of times:
# the spawn is the cost both pay; what charla adds is a broker round trip or two per task
# (take, ack), which must not be what limits it. Target: charla work ≥ 0.8× xargs.
#
# For each backend, RUNS rounds, interleaved (xargs, then charla work, then xargs…): N tasks
# are queued with `charla send` (not timed), then timed `charla work --concurrency 4 --count N
# -- /bin/true` until it exits; and timed `seq N | xargs -P4 -n1 /bin/true`. Prints the
# median tasks/s of each, the ratio, and the broker's CPU time per task (its /proc stat
# before and after the timed runs, for brokers this script started).
#
#   bench/work_vs_xargs.sh                       # N=2000 RUNS=5, redis-server and charla serve
#   env: N, RUNS, BACKENDS ("redis serve amqp kafka"; amqp uses the local RabbitMQ,
#   kafka a tansu it starts, or a KAFKA=host:port broker), CHARLA (the binary; default this tree's release build),
#   PIN=1 (brokers on core 0; charla work, xargs and their commands on core 1)
set -uo pipefail
cd "$(dirname "$0")/.."

n=${N:-2000}
runs=${RUNS:-5}
backends=${BACKENDS:-redis serve}
if [ -n "${CHARLA:-}" ]; then
  charla=$CHARLA
else
  cargo build --release -q -p charla || exit 1
  charla=$PWD/target/release/charla
fi
source bench/lib.sh work
server_cpus=""; client_cpus=""
if [ "${PIN:-0}" = 1 ]; then server_cpus="taskset -c 0"; client_cpus="taskset -c 1"; fi
export CHARLA_NO_AUTOSTART=1

# CPU seconds (user + system) a process has used so far.
cpu_of() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.3f", ($14 + $15) / hz }' "/proc/$1/stat"; }
now() { date +%s.%N; }
median() { sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

# start_broker KIND: sets url and broker_pid (empty for brokers this script did not start).
start_broker() {
  broker_pid=""
  case "$1" in
    redis)
      local port; port=$(free_port)
      $server_cpus redis-server --port "$port" --save "" --appendonly no >"$work/redis.log" 2>&1 &
      broker_pid=$!; pids+=("$broker_pid")
      for _ in $(seq 100); do up "$port" && break; sleep 0.05; done
      url="redis://127.0.0.1:$port" ;;
    serve)
      local port; port=$(free_port)
      $server_cpus "$charla" serve --port "$port" >"$work/serve.log" 2>&1 &
      broker_pid=$!; pids+=("$broker_pid")
      for _ in $(seq 100); do up "$port" && break; sleep 0.05; done
      url="redis://127.0.0.1:$port" ;;
    amqp) url="amqp://guest:guest@127.0.0.1:5672/%2f" ;;
    kafka)
      if [ -n "${KAFKA:-}" ]; then url="kafka://$KAFKA"; return; fi
      # tansu (SQLite storage) on a free port, as the tests run it
      local tansu port
      tansu=${CHARLA_TANSU:-$(command -v tansu || echo "${CARGO_HOME:-$HOME/.cargo}/bin/tansu")}
      port=$(free_port)
      (cd "$work" && exec $server_cpus "$tansu" broker --listener-url "tcp://127.0.0.1:$port" \
        --advertised-listener-url "tcp://127.0.0.1:$port" --storage-engine sqlite://tansu.db \
        >"$work/tansu.log" 2>&1) &
      broker_pid=$!; pids+=("$broker_pid")
      for _ in $(seq 200); do up "$port" && break; sleep 0.05; done
      url="kafka://127.0.0.1:$port" ;;
  esac
}

printf '%-8s %8s %12s %12s %7s %16s\n' backend tasks xargs/s work/s ratio "broker µs/task"
for backend in $backends; do
  start_broker "$backend"
  xs=(); ws=(); cpu=0
  for r in $(seq "$runs"); do
    t0=$(now); seq "$n" | $client_cpus xargs -P4 -n1 /bin/true; t1=$(now)
    xs+=("$(echo "$n / ($t1 - $t0)" | bc -l)")
    room="work-bench-$RANDOM$RANDOM"
    seq "$n" | "$charla" --broker "$url" send --room "$room" --quiet 2>/dev/null
    [ -n "$broker_pid" ] && c0=$(cpu_of "$broker_pid")
    t0=$(now)
    $client_cpus "$charla" --broker "$url" work --room "$room" --concurrency 4 --count "$n" \
      -- /bin/true >/dev/null 2>"$work/work.err" || { cat "$work/work.err"; exit 1; }
    t1=$(now)
    [ -n "$broker_pid" ] && cpu=$(echo "$cpu + $(cpu_of "$broker_pid") - $c0" | bc -l)
    ws+=("$(echo "$n / ($t1 - $t0)" | bc -l)")
  done
  x=$(printf '%s\n' "${xs[@]}" | median); w=$(printf '%s\n' "${ws[@]}" | median)
  per_task="-"
  [ -n "$broker_pid" ] && per_task=$(echo "$cpu * 1000000 / ($n * $runs)" | bc -l | xargs printf '%.1f')
  printf '%-8s %8d %12.0f %12.0f %7.2f %16s\n' "$backend" "$n" "$x" "$w" "$(echo "$w / $x" | bc -l)" "$per_task"
done
