#!/usr/bin/env bash
# JetStream ingest benchmark (issue 6): envelopes/s and MiB/s through one and two
# `weir serve --store nats://…` collectors on a single-node JetStream and on a
# three-node cluster (replicas 3), beside the embedded fjall store, in one run;
# medians of 3 runs. Needs nats-server (Debian package nats-server).
# Usage: bench/jetstream.sh [weir-bench jetstream options…]
#   e.g. bench/jetstream.sh --envelopes 100000 --scenario a --setups fjall,js1x2
set -euo pipefail
cd "$(dirname "$0")/.."
command -v nats-server >/dev/null || {
  echo "nats-server not found: apt-get install nats-server" >&2
  exit 1
}
cargo build --release -p weir -p weir-bench
if ! target/release/weir serve --help | grep -q -- '--store'; then
  echo "this weir has no 'serve --store nats://…' yet: the JetStream store has not landed" >&2
  exit 1
fi
input="${WEIR_BENCH_INPUT:-target/bench/logs-64m.txt}"
if [ ! -s "$input" ]; then
  mkdir -p "$(dirname "$input")"
  gen="${WEIR_GEN_LOGS:-../shared/bench/gen-logs.py}"
  python3 "$gen" "$input" --mib 64
fi
exec target/release/weir-bench jetstream --lines "$input" "$@"
