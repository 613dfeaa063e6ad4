//! `IngressClient` emit cost: `emit_log` calls per second on the caller's thread, with
//! a buffer large enough for the whole run, drained by the client's real sender into a
//! fresh release `weir serve` on loopback. Prints, per run and as medians: calls/s,
//! drops (must be 0), the time the sender needs after the last call to have every
//! envelope confirmed (`close_send`), and envelopes/s end to end.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use weir_client::{IngressClient, LogType, SourceInfo};

use crate::serve::Collector;

/// Options of `weir-bench emit`.
#[derive(clap::Args)]
pub struct Args {
    /// `emit_log` calls per run.
    #[arg(long, default_value_t = 2_000_000)]
    calls: usize,
    /// Runs (each on a fresh collector); medians are reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Bytes per log payload.
    #[arg(long, default_value_t = 120)]
    payload_bytes: usize,
    /// Envelopes per batch (the client's default: 100).
    #[arg(long, default_value_t = weir_client::ingress::DEFAULT_BATCH_MAX_SIZE)]
    batch_size: usize,
    /// Batches per BatchSender call (the client's default: 32).
    #[arg(long, default_value_t = weir_client::ingress::DEFAULT_MAX_BATCHES_PER_CALL)]
    batches_per_call: usize,
    /// The weir binary.
    #[arg(long)]
    weir: Option<PathBuf>,
}

struct Run {
    calls_per_sec: f64,
    dropped: u64,
    drain: Duration,
    end_to_end: f64,
    client_cpu: f64,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let bin = args.weir.clone().unwrap_or_else(crate::default_weir_bin);
    // 1,000 distinct payloads, reused in a cycle (cloning a Bytes is a reference count).
    let payloads: Vec<Bytes> = (0..1000)
        .map(|i| {
            let mut line = format!("{i:06} GET /api/v1/items 200 ");
            line.extend(std::iter::repeat_n(
                'x',
                args.payload_bytes.saturating_sub(line.len()),
            ));
            Bytes::from(line)
        })
        .collect();
    let mut runs = Vec::new();
    for n in 1..=args.runs {
        let dir = tempfile::tempdir()?;
        let collector = Collector::start(&bin, dir.path())?;
        let r = one_run(&args, &payloads, &collector).await;
        collector.stop()?;
        let r = r?;
        println!(
            "run {n}: {:>12.0} emit_log calls/s on the caller's thread, dropped {}, drain {:.3} s after the last call (client CPU {:.2} s), {:.0} envelopes/s end to end",
            r.calls_per_sec,
            r.dropped,
            r.drain.as_secs_f64(),
            r.client_cpu,
            r.end_to_end
        );
        anyhow::ensure!(r.dropped == 0, "run {n} dropped {} envelopes", r.dropped);
        runs.push(r);
    }
    let median = |f: &dyn Fn(&Run) -> f64| {
        let mut v: Vec<f64> = runs.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "median of {}: {:.0} calls/s, drops 0, drain {:.3} s, {:.0} envelopes/s end to end ({} calls of {} bytes per run)",
        runs.len(),
        median(&|r| r.calls_per_sec),
        median(&|r| r.drain.as_secs_f64()),
        median(&|r| r.end_to_end),
        args.calls,
        args.payload_bytes,
    );
    Ok(())
}

async fn one_run(args: &Args, payloads: &[Bytes], collector: &Collector) -> anyhow::Result<Run> {
    let client = IngressClient::builder()
        .addr(collector.grpc.to_string())
        .source(SourceInfo::new("bench", "APP/PROC/WEB", "0"))
        .tag("deployment", "bench")
        .buffer_capacity(args.calls)
        .batch_max_size(args.batch_size)
        .max_batches_per_call(args.batches_per_call)
        .build()?;
    // The caller's thread: a plain OS thread emitting as fast as it can.
    let calls = args.calls;
    let emitter = client.clone();
    let payloads = payloads.to_vec();
    let start = Instant::now();
    let emit_time = std::thread::spawn(move || {
        let t0 = Instant::now();
        for i in 0..calls {
            emitter.emit_log(payloads[i % payloads.len()].clone(), LogType::Out);
        }
        t0.elapsed()
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the emitting thread panicked"))?;
    let last_call = Instant::now();
    let cpu0 = crate::procstat::self_cpu_secs();
    client.close_send().await.context("close_send")?;
    let drained = Instant::now();
    let client_cpu = crate::procstat::self_cpu_secs() - cpu0;
    let stats = client.stats();
    anyhow::ensure!(
        stats.delivered + stats.dropped == calls as u64,
        "accounting: delivered {} + dropped {} != {calls}",
        stats.delivered,
        stats.dropped
    );
    Ok(Run {
        calls_per_sec: calls as f64 / emit_time.as_secs_f64(),
        dropped: stats.dropped,
        drain: drained - last_call,
        end_to_end: stats.delivered as f64 / (drained - start).as_secs_f64(),
        client_cpu,
    })
}
