#!/usr/bin/env bash
# Live hub fan-out benchmark (issue 3): builds weir in release mode and runs
# `weir-bench hub` three times over (in-process, gRPC and SSE subscribers; 1, 10, 100 of
# them; then gRPC ingest paced at 50,000 envelopes/s with 10 subscribers), printing each
# run and the medians. Every run starts its own `weir serve` on loopback ports with a
# temporary data dir.
# Usage: [WEIR_BENCH_RUNS=3] bench/hub.sh [weir-bench hub options…]
#   e.g. bench/hub.sh --modes grpc --subscribers 10 --rate 0
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p weir -p weir-bench
exec target/release/weir-bench hub --runs "${WEIR_BENCH_RUNS:-3}" "$@"
