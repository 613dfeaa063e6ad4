//! One run over the network: a fresh release `weir serve` (loopback, ephemeral ports,
//! temporary data dir), one Loggregator `BatchSender` connection ingesting, and
//! `subscribers` gRPC or SSE readers, each on its own connection.
//!
//! The run goes: subscribers connect (filler is sent until each has seen some); the
//! producer sends `per_sub` real envelopes, closed-loop within the window or paced at a
//! rate; filler completes the last partial batches; the run ends when every subscriber
//! has everything, or when none has made progress for the stall time, or at the
//! timeout. Then the collector's drop count is read (after its reporter's next round)
//! and the readers are cancelled.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::latency::Latencies;
use super::producer::{self, BATCH, FILLER, REAL, Sender};
use super::progress::Progress;
use super::reader::{self, Addrs};
use super::{Load, Mode, RunOpts, RunResult, metrics};
use crate::procstat;
use crate::serve::Collector;

/// Longest wait for every subscriber to connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// The collector folds subscriber drops into its metrics once a second
/// (`egress.drop_report_interval_ms`); wait a little longer before reading them.
const REPORT_WAIT: Duration = Duration::from_millis(1_200);

/// One run of `mode` under `load` on a fresh collector.
pub async fn run(
    mode: Mode,
    load: Load,
    subscribers: usize,
    per_sub: u64,
    opts: &RunOpts,
) -> anyhow::Result<RunResult> {
    let dir = tempfile::tempdir()?;
    let collector = Collector::start_with_config(&opts.weir, dir.path(), opts.config.as_deref())?;
    let result = measure(&collector, mode, load, subscribers, per_sub, opts).await;
    collector.stop()?;
    result
}

async fn measure(
    collector: &Collector,
    mode: Mode,
    load: Load,
    subscribers: usize,
    per_sub: u64,
    opts: &RunOpts,
) -> anyhow::Result<RunResult> {
    let addrs = Addrs {
        grpc: collector.grpc,
        http: collector.http,
    };
    let progress = Arc::new(Progress::new(subscribers));
    let cancel = CancellationToken::new();
    // Readers reconnect until cancelled: cancel them however this function ends.
    let _stop_readers = cancel.clone().drop_guard();
    let readers = (0..subscribers)
        .map(|i| reader::spawn(mode, addrs, i, per_sub, progress.clone(), cancel.clone()))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let sender = Sender::open(collector.grpc).await?;

    let connect_deadline = Instant::now() + CONNECT_TIMEOUT;
    while !progress.all_ready() {
        anyhow::ensure!(
            Instant::now() < connect_deadline,
            "{} subscribers did not all connect within {CONNECT_TIMEOUT:?}",
            mode.name()
        );
        sender.send(producer::batch(&opts.payload, FILLER)).await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let collector_cpu0 = procstat::snapshot(collector.pid())?.cpu_secs;
    let bench_cpu0 = procstat::self_cpu_secs();
    let start = Instant::now();
    let deadline = start + opts.timeout;
    let mut stopped = false;
    let mut sent = 0u64;
    match load {
        Load::Throughput => {
            while sent < per_sub {
                let room =
                    progress.wait_min((sent + BATCH).saturating_sub(opts.window), opts.stall);
                if !room.await || Instant::now() > deadline {
                    stopped = true;
                    break;
                }
                sender.send(producer::batch(&opts.payload, REAL)).await?;
                sent += BATCH;
            }
        }
        Load::Rate(rate) => {
            let every = Duration::from_secs_f64(BATCH as f64 / rate.max(1) as f64);
            let start = tokio::time::Instant::from_std(start);
            let mut k = 0u32;
            while sent < per_sub {
                tokio::time::sleep_until(start + every * k).await;
                if Instant::now() > deadline {
                    stopped = true;
                    break;
                }
                sender.send(producer::batch(&opts.payload, REAL)).await?;
                sent += BATCH;
                k += 1;
            }
        }
    }

    // Filler completes the last partial batches; stop when all is there or nothing
    // moves any more.
    let (mut last_total, mut last_move) = (progress.total(per_sub), Instant::now());
    let end = loop {
        if let Some(end) = progress.all_done() {
            break end;
        }
        let now = Instant::now();
        let total = progress.total(per_sub);
        if total != last_total {
            (last_total, last_move) = (total, now);
        }
        if stopped || now > deadline || now - last_move > opts.stall {
            stopped = true;
            // The rate is over the time deliveries took, not the wait that ended it.
            break progress.last_real().unwrap_or(now).max(start);
        }
        sender.send(producer::batch(&opts.payload, FILLER)).await?;
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let collector_cpu = procstat::snapshot(collector.pid())?.cpu_secs - collector_cpu0;
    let bench_cpu = procstat::self_cpu_secs() - bench_cpu0;

    tokio::time::sleep(REPORT_WAIT).await;
    let reported_drops = metrics::egress_dropped(collector.http).await?;
    if let Err(e) = sender.close().await {
        eprintln!("warning: closing the BatchSender call: {e:#}");
    }
    cancel.cancel();
    let (mut latencies, mut delivered, mut duplicates, mut client_lost) =
        (Latencies::default(), 0u64, 0u64, 0u64);
    for r in readers {
        let seen = r.await?;
        latencies.merge(seen.latencies);
        delivered += seen.received.min(sent);
        duplicates += seen.received.saturating_sub(sent);
        client_lost += seen.client_lost_batches;
    }
    if duplicates > 0 || client_lost > 0 {
        eprintln!(
            "warning: {} x{subscribers}: {duplicates} envelopes received more than sent, {client_lost} batches lost in the client",
            mode.name()
        );
    }
    Ok(RunResult {
        mode,
        load,
        subscribers,
        per_sub,
        delivered,
        elapsed: end - start,
        latencies,
        reported_drops,
        missing: (sent * subscribers as u64).saturating_sub(delivered),
        collector_cpu,
        bench_cpu,
        stopped,
    })
}
