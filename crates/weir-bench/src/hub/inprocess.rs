//! The in-process hub alone: a producer task publishes batches of 100 envelopes
//! straight into `weir_collector::Hub` (no store, no network); each subscriber is a task
//! reading its `Subscription` in batches (100 or 100 ms), as the egress servers do.

use std::sync::Arc;
use std::time::{Duration, Instant};

use weir_collector::Hub;
use weir_collector::config::EgressConfig;
use weir_collector::hub::{Filter, Kind, Names, SubscribeRequest};
use weir_collector::metrics::{Egress, Metrics};
use weir_proto::lv2::Envelope;

use super::latency::{Latencies, now_ns};
use super::producer::{self, BATCH, FILLER, REAL};
use super::progress::Progress;
use super::{Load, Mode, RunOpts, RunResult, SAMPLE_EVERY};
use crate::procstat;

/// Diode capacity of the in-process subscribers; the producer keeps half of it in flight.
const CAPACITY: usize = 65_536;

/// One batch of `instance` envelopes stamped now, as the hub holds them.
fn arc_batch(opts: &RunOpts, instance: &str) -> Vec<Arc<Envelope>> {
    producer::batch(&opts.payload, instance)
        .into_iter()
        .map(Arc::new)
        .collect()
}

/// One throughput run with `subscribers` tasks, `per_sub` real envelopes each.
pub async fn run(subscribers: usize, per_sub: u64, opts: &RunOpts) -> anyhow::Result<RunResult> {
    let hub = Hub::new(
        EgressConfig {
            diode_capacity: CAPACITY,
            max_streams: subscribers + 1,
            ..EgressConfig::default()
        },
        Metrics::new(),
    );
    let progress = Arc::new(Progress::new(subscribers));
    let mut tasks = Vec::new();
    for i in 0..subscribers {
        let sub = hub.subscribe(SubscribeRequest::new(
            Egress::InProcess,
            vec![Filter {
                kind: Kind::Log,
                source_id: producer::SOURCE.into(),
                names: Names::Any,
            }],
        ))?;
        let progress = progress.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Latencies::with_capacity((per_sub / SAMPLE_EVERY) as usize + 1);
            let mut buf = Vec::with_capacity(100);
            let mut got = 0u64;
            while got < per_sub {
                buf.clear();
                sub.next_batch(&mut buf).await;
                let now = now_ns();
                let mut real = 0;
                for e in buf.iter().filter(|e| e.instance_id != FILLER) {
                    if (got + real).is_multiple_of(SAMPLE_EVERY) {
                        lat.record(e.timestamp, now);
                    }
                    real += 1;
                }
                got += real;
                progress.add(i, real);
            }
            progress.finish(i);
            (lat, got, sub.dropped())
        }));
    }
    let window = (CAPACITY / 2) as u64;
    let cpu0 = procstat::self_cpu_secs();
    let start = Instant::now();
    let deadline = start + opts.timeout;
    let mut sent = 0u64;
    let mut stopped = false;
    while sent < per_sub {
        let room = progress.wait_min((sent + BATCH).saturating_sub(window), opts.stall);
        if !room.await || Instant::now() > deadline {
            stopped = true;
            break;
        }
        hub.publish(&arc_batch(opts, REAL));
        sent += BATCH;
    }
    // Filler completes the subscribers' last batches so they need not wait for the
    // flush interval.
    let end = loop {
        if let Some(end) = progress.all_done() {
            break end;
        }
        if stopped || Instant::now() > deadline {
            stopped = true;
            break progress.last_real().unwrap_or(start).max(start);
        }
        hub.publish(&arc_batch(opts, FILLER));
        progress.changed(Duration::from_millis(5)).await;
    };
    let bench_cpu = procstat::self_cpu_secs() - cpu0;
    let (mut latencies, mut delivered, mut dropped) = (Latencies::default(), 0, 0);
    if stopped {
        // The stuck subscribers are still subscribed: take their counts from the hub.
        dropped = hub.subscribers().iter().map(|s| s.dropped).sum();
        delivered = progress.total(sent);
        tasks.iter().for_each(|t| t.abort());
    } else {
        for t in tasks {
            let (lat, got, d) = t.await?;
            latencies.merge(lat);
            delivered += got.min(per_sub);
            dropped += d;
        }
    }
    Ok(RunResult {
        mode: Mode::InProcess,
        load: Load::Throughput,
        subscribers,
        per_sub,
        delivered,
        elapsed: end - start,
        latencies,
        reported_drops: dropped,
        missing: (sent * subscribers as u64).saturating_sub(delivered),
        collector_cpu: 0.0,
        bench_cpu,
        stopped,
    })
}
