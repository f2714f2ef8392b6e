#!/usr/bin/env bash
# charla bench on kafka:// beside redis://, amqp:// and a plain confluent-kafka producer and
# consumer pair (bench/kafka_raw.py) on the same Kafka broker, for the same work: N messages
# of SIZE bytes of text in stream mode (one producer, one consumer, a fresh room each run).
# ROUNDS rounds, the tools interleaved within each round; prints every run and the medians.
#
#   bench/kafka_vs.sh                 # N=50000 SIZE=100 ROUNDS=3
#   env: N, SIZE, ROUNDS, TOOLS ("kafka raw redis amqp")
#
# The Kafka broker is tansu (SQLite storage) on a free loopback port, as the tests run it;
# Redis a redis-server on a free port (no persistence, as the machine's); RabbitMQ the
# machine's (127.0.0.1:5672, guest/guest, a stream queue). Needs tansu (scripts/test installs
# it), redis-server, RabbitMQ and `pip install confluent-kafka`.
set -uo pipefail
cd "$(dirname "$0")/.."

n=${N:-50000}
size=${SIZE:-100}
rounds=${ROUNDS:-3}
read -r -a tools <<<"${TOOLS:-kafka raw redis amqp}"

cargo build --release -q -p charla || exit 1
charla=$PWD/target/release/charla
tansu=${CHARLA_TANSU:-$(command -v tansu || echo "${CARGO_HOME:-$HOME/.cargo}/bin/tansu")}
work=$(mktemp -d -t charla-kafka-vs-XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

kport=$(free_port)
(cd "$work" && exec "$tansu" broker --listener-url "tcp://127.0.0.1:$kport" \
  --advertised-listener-url "tcp://127.0.0.1:$kport" --storage-engine sqlite://tansu.db \
  >"$work/tansu.log" 2>&1) &
pids+=($!)
rport=$(free_port)
redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" \
  --logfile "$work/redis.log" &
pids+=($!)
for _ in $(seq 1 200); do up "$kport" && up "$rport" && break; sleep 0.05; done

url_of() {
  case $1 in
    # tansu 0.6 deletes every topic when one is deleted: bench's clean-up keeps topics.
    kafka) echo "kafka://127.0.0.1:$kport?delete_topics=false" ;;
    redis) echo "redis://127.0.0.1:$rport" ;;
    amqp) echo "amqp://guest:guest@127.0.0.1:5672/%2f" ;;
  esac
}

# One run: prints "<tool> <msgs_per_sec>".
run_one() {
  local tool=$1 rate
  if [ "$tool" = raw ]; then
    rate=$(python3 bench/kafka_raw.py --bootstrap "127.0.0.1:$kport" -n "$n" -s "$size" --keep-topic |
      python3 -c 'import json,sys; print(round(json.loads(sys.stdin.readline())["msgs_per_sec"]))')
  else
    rate=$("$charla" bench --broker "$(url_of "$tool")" --mode stream -n "$n" -s "$size" --json |
      python3 -c 'import json,sys; print(round(json.loads(sys.stdin.readline())["msgs_per_sec"]))')
  fi
  echo "$tool ${rate:-failed}"
}

results=$work/results
for round in $(seq 1 "$rounds"); do
  for tool in "${tools[@]}"; do
    line=$(run_one "$tool")
    echo "round $round: $line msg/s" >&2
    echo "$line" >>"$results"
  done
done

echo "median msg/s over $rounds rounds (N=$n, $size-byte text, stream mode):"
for tool in "${tools[@]}"; do
  grep "^$tool " "$results" | awk '{print $2}' | sort -n |
    awk -v t="$tool" '{v[NR]=$1} END {m = (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2; printf "  %-6s %8d\n", t, m}'
done
