#!/usr/bin/env bash
# A bounded chaos soak: one `charla send` and several `charla listen` processes move numbered
# messages through a broker while the broker and the listeners are killed and restarted at
# random. At the end it counts, per backend: sent (lines `send` confirmed), received (every
# line the listeners printed), lost (sent, never received: must be 0) and duplicated
# (received more than once: redeliveries of messages a killed listener had not acked).
#
#   bench/chaos.sh [BACKEND...]     backends: redis serve amqp kafka (default: all four)
#   env: CHAOS_SECONDS (60 per backend), LISTENERS (3), RATE (messages/s, 200), MODE (queue)
#        SEED (random seed, default: the current time; printed so a run can be replayed)
#        KEEP_WORK=1 keeps the logs (broker, send, each listener) for a look afterwards
#
# redis: a redis-server with appendonly yes / appendfsync always, killed with SIGKILL.
# serve: `charla serve --appendonly yes --appendfsync always`, killed with SIGKILL.
# amqp:  the machine's RabbitMQ (127.0.0.1:5672, guest/guest), stopped and started with
#        `rabbitmqctl stop_app` / `start_app` (it is shared, so it is not SIGKILLed).
# kafka: a tansu broker (SQLite storage, as the tests run it), killed with SIGKILL.
# Listeners are always killed with SIGKILL. Everything runs on loopback and stops by itself.
# Exit status: 0 when nothing was lost on any backend.
set -uo pipefail
cd "$(dirname "$0")/.."

seconds=${CHAOS_SECONDS:-60}
listeners=${LISTENERS:-3}
rate=${RATE:-200}
mode=${MODE:-queue}
seed=${SEED:-$(date +%s)}
RANDOM=$seed
backends=("$@")
[ ${#backends[@]} -gt 0 ] || backends=(redis serve amqp kafka)
tansu=${CHARLA_TANSU:-$(command -v tansu || echo "${CARGO_HOME:-$HOME/.cargo}/bin/tansu")}

cargo build --release -q -p charla || exit 1
charla=$PWD/target/release/charla
work=$(mktemp -d -t charla-chaos-XXXXXX)
pids_to_kill=()
cleanup() {
  for p in "${pids_to_kill[@]}"; do kill -9 "$p" 2>/dev/null; done
  if [ -n "${KEEP_WORK:-}" ]; then echo "work dir kept: $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
log() { printf '[%s %s] %s\n' "$(date +%T)" "$backend" "$*" >&2; }
up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# --- the broker of each backend: start / crash
broker_start() {
  case $backend in
    redis)
      redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly yes --appendfsync always \
        --dir "$dir" --logfile "$dir/broker.log" >/dev/null 2>&1 &
      broker_pid=$! ;;
    serve)
      "$charla" serve --port "$port" --bind 127.0.0.1 --appendonly yes --appendfsync always \
        --dir "$dir" >>"$dir/broker.log" 2>&1 &
      broker_pid=$! ;;
    amqp)
      rabbitmqctl start_app >/dev/null 2>&1; rabbitmqctl await_startup >/dev/null 2>&1 ;;
    kafka)
      (cd "$dir" && exec "$tansu" broker --listener-url "tcp://127.0.0.1:$port" \
        --advertised-listener-url "tcp://127.0.0.1:$port" --storage-engine sqlite://tansu.db \
        >>"$dir/broker.log" 2>&1) &
      broker_pid=$! ;;
  esac
  [ -n "${broker_pid:-}" ] && pids_to_kill+=("$broker_pid")
  for _ in $(seq 1 200); do up "$port" && return 0; sleep 0.05; done
  log "the broker did not come up"; return 1
}
broker_crash() {
  case $backend in
    redis|serve|kafka) kill -9 "$broker_pid" 2>/dev/null; wait "$broker_pid" 2>/dev/null ;;
    amqp) rabbitmqctl stop_app >/dev/null 2>&1 ;;
  esac
}

listener_start() { # $1: index
  local extra=()
  [ "$mode" = stream ] && extra=(--group chaos)
  CHARLA_NO_AUTOSTART=1 "$charla" listen --broker "$url" --room "$room" --mode "$mode" "${extra[@]}" \
    --json >>"$dir/listen-$1.ndjson" 2>>"$dir/listen-$1.err" &
  lpid[$1]=$!
  pids_to_kill+=("${lpid[$1]}")
}

count_unique() { # the distinct message texts the listeners printed
  cat "$dir"/listen-*.ndjson 2>/dev/null | grep -o '"mensaje":"chaos-[0-9]*"' | sort -u | wc -l
}

run_backend() {
  dir="$work/$backend"; mkdir -p "$dir"
  room="chaos-$backend-$seed-$RANDOM"
  case $backend in
    redis|serve) port=$(free_port); url="redis://127.0.0.1:$port" ;;
    # tansu 0.6 deletes every topic when one is deleted: nothing here deletes any.
    kafka) port=$(free_port); url="kafka://127.0.0.1:$port?delete_topics=false" ;;
    amqp) port=5672; url="amqp://guest:guest@127.0.0.1:5672/%2f"
          up 5672 || { log "RabbitMQ is not running on 127.0.0.1:5672"; return 2; }
          # The lock charla's RabbitMQ tests share (charla-testkit): no test runs while we
          # stop and start the node.
          exec 9>"${TMPDIR:-/tmp}/charla-rabbitmq-tests.lock"
          log "waiting for RabbitMQ tests to finish (exclusive lock)"
          flock 9 ;;
  esac
  broker_pid=""
  broker_start || return 2
  declare -g -a lpid=()
  for i in $(seq 1 "$listeners"); do listener_start "$i"; done
  sleep 1 # listeners subscribed (stream mode creates the group at the start)
  total=$((seconds * rate))
  log "sending $total messages over ~${seconds}s to $url room $room ($mode), $listeners listeners, seed $seed"
  # The sender: numbered lines at a steady rate; `send` prints one confirmation per line.
  python3 -c "
import sys, time
n, rate = $total, $rate
start = time.time()
for i in range(n):
    print(f'chaos-{i:07d}', flush=True)
    lag = start + (i + 1) / rate - time.time()
    if lag > 0: time.sleep(lag)
" | CHARLA_NO_AUTOSTART=1 "$charla" send --broker "$url" --room "$room" --mode "$mode" --name chaos \
      >"$dir/send.out" 2>"$dir/send.err" &
  send_pid=$!
  pids_to_kill+=("$send_pid")
  local crashes=0 kills=0 end=$((SECONDS + seconds))
  while [ $SECONDS -lt $end ] && kill -0 "$send_pid" 2>/dev/null; do
    sleep "0.$((RANDOM % 9 + 1))"; sleep $((RANDOM % 3))
    if [ $((RANDOM % 4)) -eq 0 ]; then
      broker_crash; crashes=$((crashes + 1))
      sleep "$((RANDOM % 2)).$((RANDOM % 9))"
      broker_start || return 2
    else
      i=$((RANDOM % listeners + 1))
      kill -9 "${lpid[$i]}" 2>/dev/null; wait "${lpid[$i]}" 2>/dev/null
      kills=$((kills + 1))
      listener_start "$i"
    fi
  done
  wait "$send_pid"; send_status=$?
  sent=$(grep -c 'chaos-[0-9]' "$dir/send.out")
  log "chaos over: $crashes broker crashes, $kills listener kills; send exited $send_status; draining"
  # Drain: wait until every confirmed message was printed by some listener (at most 90 s:
  # messages a killed listener held come back after its consumer lease expires).
  for _ in $(seq 1 180); do
    [ "$(count_unique)" -ge "$sent" ] && break
    sleep 0.5
  done
  sleep 2 # let late redeliveries show up in the duplicate count
  for i in $(seq 1 "$listeners"); do kill "${lpid[$i]}" 2>/dev/null; wait "${lpid[$i]}" 2>/dev/null; done
  [ -n "$broker_pid" ] && { kill "$broker_pid" 2>/dev/null; wait "$broker_pid" 2>/dev/null; }
  grep -o 'chaos-[0-9]*' "$dir/send.out" | sort -u >"$dir/sent.ids"
  cat "$dir"/listen-*.ndjson | grep -o '"mensaje":"chaos-[0-9]*"' | grep -o 'chaos-[0-9]*' | sort >"$dir/recv.all"
  sort -u "$dir/recv.all" >"$dir/recv.ids"
  received=$(wc -l <"$dir/recv.all")
  unique=$(wc -l <"$dir/recv.ids")
  lost=$(comm -23 "$dir/sent.ids" "$dir/recv.ids" | wc -l)
  duplicated=$((received - unique))
  printf '%-6s %-6s %8s %9s %8s %6s %11s %8s %6s\n' "$backend" "$mode" "$sent" "$received" "$unique" "$lost" "$duplicated" "$crashes" "$kills" >>"$work/results"
  if [ "$send_status" -ne 0 ]; then
    log "send failed: $(tail -3 "$dir/send.err")"
  fi
  if [ "$lost" -ne 0 ]; then
    log "LOST: $(comm -23 "$dir/sent.ids" "$dir/recv.ids" | head -5 | tr '\n' ' ')…"
    return 1
  fi
  [ "$send_status" -eq 0 ] || return 1
  return 0
}

status=0
for backend in "${backends[@]}"; do
  run_backend || status=1
done
echo
echo "chaos soak: ${seconds}s per backend, $listeners listeners, $rate msg/s, seed $seed"
printf '%-6s %-6s %8s %9s %8s %6s %11s %8s %6s\n' backend mode sent received unique lost duplicated crashes kills
cat "$work/results"
exit $status
