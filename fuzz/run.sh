#!/usr/bin/env bash
# Bounded fuzzing run for CI: `fuzz/run.sh SECONDS` (default 60).
# Uses cargo-fuzz on nightly when available; otherwise falls back to the stable in-crate
# random-frame test so CI still exercises the parser and commands.
set -euo pipefail
secs="${1:-60}"
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
if cargo +nightly fuzz --version >/dev/null 2>&1; then
  mkdir -p corpus/frame_and_command
  # Seed corpus: a few well-formed requests of each family.
  printf '*1\r\n$4\r\nPING\r\n' > corpus/frame_and_command/ping
  printf '*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n*2\r\n$4\r\nINCR\r\n$1\r\nn\r\n' > corpus/frame_and_command/set
  printf 'RPUSH l a b c\r\nLRANGE l 0 -1\r\nLMOVE l m LEFT RIGHT\r\n' > corpus/frame_and_command/list
  printf 'XADD s 1-1 f v\r\nXGROUP CREATE s g 0\r\nXREADGROUP GROUP g c STREAMS s >\r\nXAUTOCLAIM s g c 0 0\r\n' > corpus/frame_and_command/stream
  printf 'MULTI\r\nSET a 1\r\nEXEC\r\nHSET h f v\r\nHGETALL h\r\n' > corpus/frame_and_command/multi
  exec cargo +nightly fuzz run frame_and_command corpus/frame_and_command -- \
    -max_total_time="$secs" -max_len=4096 -rss_limit_mb=2048
else
  echo "cargo-fuzz/nightly not available: running the stable random-frame test instead" >&2
  cd "$here/.."
  CHARLA_FUZZ_CASES="${CHARLA_FUZZ_CASES:-20000}" exec cargo test -p charla-server --test fuzz_frames -- --nocapture
fi
