#!/usr/bin/env bash
# Collector ingest benchmark (issue 2): builds weir in release mode, makes the input
# with shared/bench/gen-logs.py, and runs weir-bench against a real `weir serve`.
# Usage: bench/collector.sh [weir-bench collector options…]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p weir -p weir-bench
input="${WEIR_BENCH_INPUT:-target/bench/logs-64m.txt}"
if [ ! -s "$input" ]; then
  mkdir -p "$(dirname "$input")"
  gen="${WEIR_GEN_LOGS:-../shared/bench/gen-logs.py}"
  python3 "$gen" "$input" --mib 64
fi
exec target/release/weir-bench collector --lines "$input" "$@"
