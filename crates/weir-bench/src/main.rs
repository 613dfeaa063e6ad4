//! `weir-bench`: whole-process benchmarks. Each scenario starts a fresh release
//! `weir serve` on loopback with a temporary data dir, drives load from this process,
//! and prints envelopes/s, MiB/s, CPU seconds per GiB (collector and client), the
//! collector's peak RSS, and disk bytes written per ingested byte.
//!
//! `hub` measures the live fan-out (in-process, gRPC, SSE subscribers). `agent` measures
//! `weir agent` pipelines: file → tcp, file → blackhole, file → collector, steady load.
//! `jetstream` measures ingest on NATS JetStream (single node and a three-node cluster,
//! one and two collectors) beside fjall.
//!
//! Run it with `bench/collector.sh` (builds in release mode, makes the input with
//! `shared/bench/gen-logs.py`), `bench/hub.sh` or `bench/agent.sh`.

mod agent;
mod collector;
mod emit;
mod hub;
mod jetstream;
mod procstat;
mod serve;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "weir-bench")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Collector ingest: Loggregator BatchSender and weir.v1 bundles.
    Collector(collector::Args),
    /// IngressClient emit cost on the caller's thread, drained into `weir serve`.
    Emit(emit::Args),
    /// Live hub fan-out: in-process, gRPC and SSE subscribers; throughput and latency.
    Hub(hub::Args),
    /// Agent pipelines: file → tcp / blackhole / collector, and a steady writer.
    Agent(agent::Args),
    /// Collector ingest on NATS JetStream (one and two collectors, one and three
    /// nodes) beside fjall.
    Jetstream(jetstream::Args),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        match cli.command {
            Cmd::Collector(args) => collector::run(args).await,
            Cmd::Emit(args) => emit::run(args).await,
            Cmd::Hub(args) => hub::run(args).await,
            Cmd::Agent(args) => agent::run(args).await,
            Cmd::Jetstream(args) => jetstream::run(args).await,
        }
    })
}

/// The `weir` binary beside this one (both built by the same `cargo build --release`).
pub fn default_weir_bin() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("weir")))
        .unwrap_or_else(|| PathBuf::from("weir"))
}
