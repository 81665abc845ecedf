#!/usr/bin/env bash
# Server CPU time (user + system, from /proc/<pid>/stat) spent on the same
# nats-bench workload by two server binaries, alternating, N rounds; prints
# one line per run and the medians. Steadier than throughput on a shared
# 2-core machine, where a throughput ratio mostly measures the client.
#
#   bench/scripts/server-cpu.sh BEFORE_BIN AFTER_BIN [NATS_BENCH_BIN]
#   env: N=5 rounds, WL=pubsub workload(s), SIZES=16, MSGS=2000000
#
# Both binaries are started as `BIN -a 127.0.0.1 -p PORT` (nats-server's
# flags; works for nats-server itself too).
set -euo pipefail
a=${1:?usage: server-cpu.sh BEFORE_BIN AFTER_BIN [NATS_BENCH_BIN]}
b=${2:?usage: server-cpu.sh BEFORE_BIN AFTER_BIN [NATS_BENCH_BIN]}
bench=${3:-nats-bench}
N=${N:-5} WL=${WL:-pubsub} SIZES=${SIZES:-16} MSGS=${MSGS:-2000000}
clk=$(getconf CLK_TCK)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
declare -A runs
for round in $(seq 1 "$N"); do
  for which in before after; do
    bin=$a; [ "$which" = after ] && bin=$b
    port=$(free_port)
    "$bin" -a 127.0.0.1 -p "$port" >/dev/null 2>&1 &
    pid=$!
    for _ in $(seq 1 50); do (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break; sleep 0.1; done
    "$bench" run --url "nats://127.0.0.1:$port" --workload "$WL" --sizes "$SIZES" --msgs "$MSGS" >/dev/null 2>&1
    read -r ut st < <(awk '{print $14, $15}' "/proc/$pid/stat")
    kill "$pid"; wait "$pid" 2>/dev/null || true
    ms=$(( (ut + st) * 1000 / clk ))
    echo "$which round $round: $ms ms CPU"
    runs[$which]="${runs[$which]:-} $ms"
  done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
mb=$(echo "${runs[before]}" | median); ma=$(echo "${runs[after]}" | median)
echo "median CPU ms: before $mb, after $ma, after/before $(awk -v a="$ma" -v b="$mb" 'BEGIN {printf "%.2f", a/b}')"
