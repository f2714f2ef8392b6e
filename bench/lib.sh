# Shared by the bench scripts (sourced): a scratch directory `$work` and the processes in
# `pids`, both removed on exit; `free_port` and `up PORT` (something listens there).
# Usage: source bench/lib.sh NAME   (NAME names the scratch directory)
work=$(mktemp -d -t "charla-$1-XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
