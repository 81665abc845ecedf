#!/usr/bin/env bash
# A CPU profile of one server binary under one nats-bench workload
# (issue #15 item 5; docs/benchmarks.md, "Where the time goes"): starts the
# server with JetStream on a fresh store, runs the workload once to warm
# up, then three times with `perf record -F 999 -g` on the server, and
# prints the runs and the top symbols (`perf report --no-children --sort
# symbol`). With PHASE=1 perf records only the measured phase of each run
# (nats-bench's NATS_BENCH_PERF_CTL), not e.g. the untimed pre-publishing
# of the JetStream consume workloads.
#
#   bench/scripts/profile.sh NATS_BENCH_BIN SERVER_BIN LABEL WORKLOAD [nats-bench run args]
#   e.g. PHASE=1 bench/scripts/profile.sh target/release/nats-bench \
#          target/release/angzarr-nats-server after js-fetch --msgs 100000
#   env: OUT (directory for LABEL-WORKLOAD.data and .top.txt, default
#   /tmp/profiles), TOPN (symbols printed, default 20), PHASE
#
# perf needs perf_event_paranoid <= 1 or root to attach to a pid. Build
# with line tables for readable symbols:
#   CARGO_PROFILE_RELEASE_DEBUG=line-tables-only cargo build --release \
#     -p bus-embedded-server -p nats-bench
set -euo pipefail
bench=${1:?usage: profile.sh NATS_BENCH_BIN SERVER_BIN LABEL WORKLOAD [args]}
bin=${2:?server binary}
label=${3:?label}
workload=${4:?workload}
shift 4
out_dir=${OUT:-/tmp/profiles}
mkdir -p "$out_dir"
out="$out_dir/$label-$workload"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
store=$(mktemp -d)
ctl=""
"$bin" -js -sd "$store" -a 127.0.0.1 -p "$port" >/dev/null 2>&1 &
server=$!
cleanup() {
  kill "$server" 2>/dev/null || true
  rm -rf "$store"
  [ -n "$ctl" ] && rm -f "$ctl"
}
trap cleanup EXIT
sleep 0.5
url="nats://127.0.0.1:$port"
"$bench" run --url "$url" --workload "$workload" "$@" >/dev/null 2>&1
if [ -n "${PHASE:-}" ]; then
  ctl=$(mktemp -u)
  mkfifo "$ctl"
  perf record -F 999 -g -D -1 --control "fifo:$ctl" -p "$server" -o "$out.data" >/dev/null 2>&1 &
else
  perf record -F 999 -g -p "$server" -o "$out.data" >/dev/null 2>&1 &
fi
perf_pid=$!
sleep 0.5
for _ in 1 2 3; do
  if [ -n "$ctl" ]; then
    NATS_BENCH_PERF_CTL="$ctl" "$bench" run --url "$url" --workload "$workload" "$@" 2>/dev/null | tail -n 1
  else
    "$bench" run --url "$url" --workload "$workload" "$@" 2>/dev/null | tail -n 1
  fi
done
kill -INT "$perf_pid"
wait "$perf_pid" 2>/dev/null || true
perf report -i "$out.data" --no-children --sort symbol -g none --stdio 2>/dev/null \
  | grep -E '^# Samples|%' | head -n $((${TOPN:-20} + 1)) | tee "$out.top.txt"
