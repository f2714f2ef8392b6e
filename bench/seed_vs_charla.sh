#!/usr/bin/env bash
# The workshop's Python emisor.py + receptor.py pair against `charla bench` (queue mode, the
# seed's list semantics plus reliable acks), on the same freshly started redis-server, in the
# same run, alternating. Prints both rates and the ratio charla / seed.
#
#   bench/seed_vs_charla.sh [ROUNDS]        env: SEED_MESSAGES (20000), CHARLA_MESSAGES (100000), SIZE (100)
#
# Needs redis-server and the redis package for Python (pip install redis).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
seed_n=${SEED_MESSAGES:-20000}
charla_n=${CHARLA_MESSAGES:-100000}
size=${SIZE:-100}

cargo build --release -q -p charla
charla=target/release/charla
python3 -c "import redis" 2>/dev/null || { echo "bench needs: pip install redis" >&2; exit 1; }

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
dir=$(mktemp -d)
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" --daemonize yes --pidfile "$dir/pid" --logfile "$dir/log"
trap 'kill "$(cat "$dir/pid")" 2>/dev/null; rm -rf "$dir"' EXIT
until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.05; done

printf '%-6s %14s %14s %8s\n' round seed_msg/s charla_msg/s ratio
sum=0
for r in $(seq 1 "$rounds"); do
  seed=$(python3 bench/seed_pair.py "$port" "$seed_n" "$size" | python3 -c 'import json,sys; print(json.load(sys.stdin)["msgs_per_sec"])')
  ours=$("$charla" bench --broker "redis://127.0.0.1:$port" --mode queue --messages "$charla_n" --size "$size" --json \
         | python3 -c 'import json,sys; print(json.load(sys.stdin)["msgs_per_sec"])')
  ratio=$(python3 -c "print(f'{$ours/$seed:.1f}')")
  printf '%-6s %14.0f %14.0f %8s\n' "$r" "$seed" "$ours" "$ratio"
done
