//! `weir-bench hub`: live fan-out of the collector's hub (issue 3's benchmark).
//!
//! Three modes, each with 1, 10 and 100 subscribers:
//!
//! - `in-process`: a task publishes straight into `weir_collector::Hub`; subscribers are
//!   tasks reading their `Subscription` ([`inprocess`]).
//! - `grpc`: a fresh release `weir serve` on loopback; one Loggregator `BatchSender`
//!   connection ingests; each subscriber is its own `EnvelopeStreamConnector`
//!   (`BatchedReceiver`) connection ([`remote`]).
//! - `sse`: the same, each subscriber an `RlpGatewayClient` on `GET /v2/read`.
//!
//! **Throughput runs** are closed-loop: the producer keeps at most `window` envelopes
//! beyond what the slowest subscriber has received ([`progress`]), so no buffer
//! overflows and the figure is what the path sustains without loss. Their latency is
//! therefore latency at saturation (bounded by the window), not at a given load.
//!
//! **Rate runs** are open-loop: gRPC ingest paced at `--rate` envelopes/s (batches of
//! 100) for `--rate-secs`, with `--rate-subscribers` gRPC or SSE subscribers; this is
//! where ingest-to-delivery latency is measured against the 10 ms target.
//!
//! Latency: each envelope's `timestamp` is its send time; the subscriber subtracts it
//! from its own clock on arrival ([`latency`]); every [`SAMPLE_EVERY`]th envelope of a
//! subscriber is sampled. Drops: in-process, what the subscriptions report; over the
//! network, envelopes sent but not received (missing) and the collector's own
//! `weir_egress_dropped_envelopes_total`. Every run is bounded: a fixed count, and it
//! stops when no subscriber makes progress for `--stall-secs` or after `--timeout-secs`.

mod inprocess;
mod latency;
mod metrics;
mod producer;
mod progress;
mod reader;
mod remote;
mod report;

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;

use latency::Latencies;

/// One latency sample per this many envelopes of a subscriber.
pub const SAMPLE_EVERY: u64 = 10;

/// Options of `weir-bench hub`.
#[derive(clap::Args, Clone)]
pub struct Args {
    /// Modes: in-process, grpc, sse.
    #[arg(long, default_value = "in-process,grpc,sse", value_delimiter = ',')]
    modes: Vec<Mode>,
    /// Subscriber counts of the throughput runs.
    #[arg(long, default_value = "1,10,100", value_delimiter = ',')]
    subscribers: Vec<usize>,
    /// Deliveries (envelopes × subscribers) per in-process throughput run.
    #[arg(long, default_value_t = 20_000_000)]
    inprocess_deliveries: u64,
    /// Deliveries per gRPC throughput run.
    #[arg(long, default_value_t = 3_000_000)]
    grpc_deliveries: u64,
    /// Deliveries per SSE throughput run.
    #[arg(long, default_value_t = 1_500_000)]
    sse_deliveries: u64,
    /// Envelopes the producer may have beyond the slowest subscriber in a throughput
    /// run over the network (half the collector's default diode of 10,000).
    #[arg(long, default_value_t = 5_000)]
    window: u64,
    /// Ingest rate of the rate-limited runs, envelopes/s (0: no rate runs).
    #[arg(long, default_value_t = 50_000)]
    rate: u64,
    /// Seconds of paced ingest per rate-limited run.
    #[arg(long, default_value_t = 10)]
    rate_secs: u64,
    /// Subscribers of the rate-limited runs.
    #[arg(long, default_value_t = 10)]
    rate_subscribers: usize,
    /// Modes of the rate-limited runs (grpc, sse).
    #[arg(long, default_value = "grpc,sse", value_delimiter = ',')]
    rate_modes: Vec<Mode>,
    /// Bytes per log payload.
    #[arg(long, default_value_t = 120)]
    payload_bytes: usize,
    /// Repetitions of everything; medians are printed at the end.
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// A run ends when no subscriber has made progress for this long.
    #[arg(long, default_value_t = 5)]
    stall_secs: u64,
    /// A run ends after this long whatever happens.
    #[arg(long, default_value_t = 120)]
    timeout_secs: u64,
    /// A `weir serve --config` file for the network modes (e.g. to change
    /// `[store] fsync` or `[egress]`); default: the built-in configuration.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The weir binary.
    #[arg(long)]
    weir: Option<PathBuf>,
}

/// Where the subscribers read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// `weir_collector::Hub` in this process.
    InProcess,
    /// `loggregator.v2.Egress/BatchedReceiver` of a `weir serve`.
    Grpc,
    /// `GET /v2/read` of a `weir serve`.
    Sse,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::InProcess => "in-process",
            Mode::Grpc => "grpc",
            Mode::Sse => "sse",
        }
    }
}

/// Closed-loop (as fast as the slowest subscriber) or paced at envelopes/s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Load {
    Throughput,
    Rate(u64),
}

/// What one run measured.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub mode: Mode,
    pub load: Load,
    pub subscribers: usize,
    /// Real envelopes each subscriber should receive.
    pub per_sub: u64,
    /// Real envelopes received, all subscribers (at most `per_sub` each).
    pub delivered: u64,
    /// From the first send to the last subscriber's last envelope (when stopped: to the
    /// last real envelope any subscriber received).
    pub elapsed: Duration,
    pub latencies: Latencies,
    /// Drops the subscriptions (in-process) or the collector (network) reported.
    pub reported_drops: u64,
    /// Envelopes sent but never received, all subscribers.
    pub missing: u64,
    /// CPU seconds of the collector process (network modes) during the run.
    pub collector_cpu: f64,
    /// CPU seconds of this process (producer and subscribers) during the run.
    pub bench_cpu: f64,
    /// Whether it ended on a stall or the timeout instead of every subscriber having
    /// everything (then `missing` is not zero, or the producer was held up).
    pub stopped: bool,
}

impl RunResult {
    /// Envelopes delivered per second, all subscribers together.
    pub fn rate(&self) -> f64 {
        self.delivered as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Per-run options shared by the modes.
#[derive(Debug, Clone)]
pub struct RunOpts {
    pub payload: Bytes,
    pub window: u64,
    pub stall: Duration,
    pub timeout: Duration,
    pub weir: PathBuf,
    pub config: Option<PathBuf>,
}

/// Envelopes per subscriber for a delivery budget: a multiple of 100, at least 1,000.
fn per_subscriber(deliveries: u64, subscribers: usize) -> u64 {
    (deliveries / subscribers.max(1) as u64 / 100 * 100).max(1_000)
}

/// Runs every chosen scenario `--runs` times and prints each run and the medians.
pub async fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(args.runs > 0, "--runs must be at least 1");
    anyhow::ensure!(
        args.subscribers.iter().all(|&n| n > 0) && args.rate_subscribers > 0,
        "subscriber counts must be at least 1"
    );
    let opts = RunOpts {
        payload: Bytes::from("x".repeat(args.payload_bytes)),
        window: args.window.max(100),
        stall: Duration::from_secs(args.stall_secs.max(1)),
        timeout: Duration::from_secs(args.timeout_secs.max(1)),
        weir: args.weir.clone().unwrap_or_else(crate::default_weir_bin),
        config: args.config.clone(),
    };
    println!(
        "payload {} bytes, window {} envelopes, {} run(s); latency = ingest (send) to delivery",
        args.payload_bytes, opts.window, args.runs
    );
    report::header();
    let mut all = Vec::new();
    for _ in 0..args.runs {
        for &mode in &args.modes {
            for &subs in &args.subscribers {
                let budget = match mode {
                    Mode::InProcess => args.inprocess_deliveries,
                    Mode::Grpc => args.grpc_deliveries,
                    Mode::Sse => args.sse_deliveries,
                };
                let per_sub = per_subscriber(budget, subs);
                let r = match mode {
                    Mode::InProcess => inprocess::run(subs, per_sub, &opts).await?,
                    Mode::Grpc | Mode::Sse => {
                        remote::run(mode, Load::Throughput, subs, per_sub, &opts).await?
                    }
                };
                report::line(&r);
                all.push(r);
            }
        }
        if args.rate > 0 {
            let per_sub = (args.rate * args.rate_secs).div_ceil(100) * 100;
            for &mode in &args.rate_modes {
                anyhow::ensure!(mode != Mode::InProcess, "rate runs are grpc or sse");
                let r = remote::run(
                    mode,
                    Load::Rate(args.rate),
                    args.rate_subscribers,
                    per_sub,
                    &opts,
                )
                .await?;
                report::line(&r);
                all.push(r);
            }
        }
    }
    report::medians(&mut all, args.runs);
    Ok(())
}
