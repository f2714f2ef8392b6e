#!/usr/bin/env bash
# Fan-out through `charla web`: CLIENTS WebSocket pages in one room, spread over two gateway
# processes on one `charla serve`, one poster sending RATE messages per second (open loop:
# each message is due at a fixed time, and latency counts from that time) for DURATION s.
# Prints delivered messages per second, latency due→received p50/p99/p99.9/max over every
# (message, page) pair, whether every page got every message, and each gateway's resident
# memory per connection (RSS with the pages connected minus before, over its pages).
#
#   bench/web_fanout.sh                      # CLIENTS=1000 RATE=1000 DURATION=10
#   env: CLIENTS, RATE, DURATION (seconds), MODE (stream | broadcast), BROKER (a URL instead of a
#   private charla serve), CHARLA (the charla binary to measure instead of this tree's release
#   build), FANOUT (the load generator, already built), LINGER_MS (the gateways' --linger-ms, default 2), PIN=1 (broker+gateways on core 0, load generator on core 1)
#
# The load generator is crates/charla-web/examples/fanout.rs (tokio-tungstenite).
set -uo pipefail
cd "$(dirname "$0")/.."

clients=${CLIENTS:-1000}
rate=${RATE:-1000}
seconds=${DURATION:-10}   # (not SECONDS: bash's own clock)
mode=${MODE:-stream}
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

if [ -n "${CHARLA:-}" ]; then
  charla=$CHARLA   # another build to measure (e.g. the current release), same load generator
else
  cargo build --release -q -p charla || exit 1
  charla=$PWD/target/release/charla
fi
if [ -n "${FANOUT:-}" ]; then
  fanout=$FANOUT   # a load generator already built
else
  cargo build --release -q -p charla-web --example fanout || exit 1
  fanout=$PWD/target/release/examples/fanout
fi
source bench/lib.sh fanout
server_cpus=""; client_cpus=""
if [ "${PIN:-0}" = 1 ]; then server_cpus="taskset -c 0"; client_cpus="taskset -c 1"; fi

export CHARLA_NO_AUTOSTART=1
if [ -z "${BROKER:-}" ]; then
  bport=$(free_port)
  $server_cpus "$charla" serve --port "$bport" >"$work/serve.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do up "$bport" && break; sleep 0.05; done
  BROKER="redis://127.0.0.1:$bport"
fi

gateways=(); gpids=()
for _ in 1 2; do
  port=$(free_port)
  $server_cpus "$charla" web --broker "$BROKER" --listen "127.0.0.1:$port" --mode "$mode" \
    --history 0 --rate 1000000 --burst 1000000 --linger-ms "${LINGER_MS:-2}" >"$work/web-$port.log" 2>&1 &
  pids+=($!); gpids+=($!)
  for _ in $(seq 200); do up "$port" && break; sleep 0.05; done
  gateways+=("127.0.0.1:$port")
done

echo "== $clients pages over 2 gateways, $rate msg/s for ${seconds}s, $mode mode, broker $BROKER"
before_cpu=$(for p in "${gpids[@]}"; do awk '{print $14+$15}' "/proc/$p/stat"; done | paste -sd+ | bc)
/usr/bin/time -f "load generator CPU time: %U s user + %S s system" $client_cpus "$fanout" --gateways "$(IFS=,; echo "${gateways[*]}")" --clients "$clients" \
  --rate "$rate" --seconds "$seconds" --pids "$(IFS=,; echo "${gpids[*]}")"
status=$?
after_cpu=$(for p in "${gpids[@]}"; do awk '{print $14+$15}' "/proc/$p/stat"; done | paste -sd+ | bc)
ticks=$(getconf CLK_TCK)
echo "gateways' CPU time (both, connect + run): $(echo "scale=2; ($after_cpu - $before_cpu) / $ticks" | bc) s"
exit $status
