#!/usr/bin/env bash
# Agent pipeline benchmark (issue 4): builds weir in release mode, makes a 512 MiB input
# with shared/bench/gen-logs.py (default seed), then runs `weir-bench agent` (file → tcp
# flusher → a blackhole listener; file → blackhole flusher; file → weir flusher →
# `weir serve` → fjall store; a steady writer at 10 MiB/s for 60 s) and the spool alone
# (weir-agent's spool_bench example, one run per fsync policy). Prints each run and the
# medians of WEIR_BENCH_RUNS runs (default 3).
#
# Usage: [WEIR_BENCH_RUNS=3] [WEIR_BENCH_INPUT=target/bench/logs-512m.txt] \
#        [WEIR_GEN_LOGS=../shared/bench/gen-logs.py] [WEIR_BENCH_SPOOL=0] \
#        bench/agent.sh [weir-bench agent options…]
#   e.g. bench/agent.sh --scenarios tcp,blackhole --steady-secs 30
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${WEIR_BENCH_RUNS:-3}"
cargo build --release -p weir -p weir-bench
cargo build --release -p weir-agent --example spool_bench
input="${WEIR_BENCH_INPUT:-target/bench/logs-512m.txt}"
if [ ! -s "$input" ]; then
  mkdir -p "$(dirname "$input")"
  gen="${WEIR_GEN_LOGS:-../shared/bench/gen-logs.py}"
  python3 "$gen" "$input" --mib 512
fi
target/release/weir-bench agent --input "$input" --runs "$runs" "$@"
if [ "${WEIR_BENCH_SPOOL:-1}" != 0 ]; then
  echo
  echo "== spool alone (spool_bench: ack = append + read + acknowledge, backlog = append + sync; 256 KiB records)"
  target/release/examples/spool_bench --runs "$runs" --mib 1024 --policy always,interval,never
fi
