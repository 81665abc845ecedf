#!/usr/bin/env bash
# Resident memory of server binaries under and after load: idle, after each
# round (3,000,000 1:1 messages then 1,000,000 queue-group messages, 256 B),
# 5 s after the last client left, and the peak (VmHWM). Issue #15 item 7.
#
#   bench/scripts/memory-after-load.sh [NATS_BENCH_BIN] BIN...
#   env: ROUNDS=6, SIZE=256, MSGS=3000000, QMSGS=1000000, AFTER=5 (seconds
#   to wait after the last round before the "after wait" figure)
#
# Each binary is started as `BIN -a 127.0.0.1 -p PORT` (nats-server's flags;
# works for nats-server itself too).
set -euo pipefail
bench=${1:?usage: memory-after-load.sh NATS_BENCH_BIN BIN...}
shift
ROUNDS=${ROUNDS:-6} SIZE=${SIZE:-256} MSGS=${MSGS:-3000000} QMSGS=${QMSGS:-1000000}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
mib() { awk -v k="$1" '$1==k":" {printf "%.1f", $2/1024}' "/proc/$2/status"; }
printf '%-40s %8s %s %12s %10s\n' server "idle" "after each round (MiB)" "after wait" "peak"
for bin in "$@"; do
  port=$(free_port)
  "$bin" -a 127.0.0.1 -p "$port" >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 1 50); do (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break; sleep 0.1; done
  idle=$(mib VmRSS "$pid")
  rounds=""
  for _ in $(seq 1 "$ROUNDS"); do
    "$bench" run --url "nats://127.0.0.1:$port" --workload pubsub --sizes "$SIZE" --msgs "$MSGS" >/dev/null 2>&1
    "$bench" run --url "nats://127.0.0.1:$port" --workload queue --sizes "$SIZE" --msgs "$QMSGS" >/dev/null 2>&1
    rounds="$rounds $(mib VmRSS "$pid")"
  done
  sleep "${AFTER:-5}"
  printf '%-40s %8s %s %12s %10s\n' "$(basename "$bin")" "$idle" "$rounds" "$(mib VmRSS "$pid")" "$(mib VmHWM "$pid")"
  kill "$pid"; wait "$pid" 2>/dev/null || true
done
