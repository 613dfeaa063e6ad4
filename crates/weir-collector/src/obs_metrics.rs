//! The metrics of issue 5 beside [`crate::metrics`]'s counters: append histograms,
//! retries, retention, and gauges read at scrape time from components that keep their
//! own counts (the event queue, the hub).
//!
//! | metric | type | labels | meaning |
//! | --- | --- | --- | --- |
//! | `weir_append_entries` | histogram | | entries per append to the store (one stream of a bundle, or one Loggregator batch per stream) |
//! | `weir_store_append_seconds` | histogram | | time the store took to answer an append |
//! | `weir_retried_total` | counter | `what` | work the collector retried itself: `register` (a stream vanished behind the cache and was registered again) |
//! | `weir_retention_runs_total` | counter | `result` | retention rounds, `ok` or `failed` |
//! | `weir_retention_partitions_dropped_total` | counter | `reason` | time partitions dropped: `age` or `size` |
//! | `weir_retention_entries_expired_total` | counter | `reason` | entries expired: `age` (partitions and per-prefix rules) or `size` |
//! | `weir_store_bytes` | gauge | | bytes of the live time partitions on disk (as of the last retention round) |
//! | `weir_store_partitions` | gauge | | live time partitions (as of the last retention round) |
//! | `weir_event_queue_depth` | gauge | | events waiting in the event queue's buffer |
//! | `weir_event_queue_paused` | gauge | | 1 while the event queue is paused (its store failed) |
//! | `weir_events_added_total` | counter | | events accepted into the queue |
//! | `weir_events_stored_total` | counter | | events written to the store |
//! | `weir_events_discarded_total` | counter | `reason` | events discarded: `full` (buffer full) or `paused` (store failing) |
//! | `weir_events_purged_total` | counter | | events purged for age |
//! | `weir_hub_subscribers` | gauge | | live hub subscribers (egress streams reading the hub) |

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus_client::collector::Collector as PromCollector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use weir_core::event_queue::StatsSnapshot;

type Labels = [(&'static str, &'static str); 1];

/// Why retention removed data (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetentionReason {
    /// Older than its max age.
    Age,
    /// The store was over its size cap.
    Size,
}

impl RetentionReason {
    /// The `reason` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RetentionReason::Age => "age",
            RetentionReason::Size => "size",
        }
    }
}

/// Values read at scrape time.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    /// The event queue's counters.
    pub events: StatsSnapshot,
    /// Events waiting in its buffer.
    pub event_depth: usize,
    /// Whether it is paused.
    pub event_paused: bool,
    /// Live hub subscribers.
    pub hub_subscribers: usize,
}

/// What produces a [`Sample`]; `None` once its source is gone.
pub type Sampler = Box<dyn Fn() -> Option<Sample> + Send + Sync>;

/// The issue-5 metrics; cheap to clone.
#[derive(Clone)]
pub struct ObsMetrics {
    inner: Arc<Inner>,
}

struct Inner {
    append_entries: Histogram,
    append_seconds: Histogram,
    retried: Family<Labels, Counter>,
    retention_runs: Family<Labels, Counter>,
    retention_partitions: Family<Labels, Counter>,
    retention_entries: Family<Labels, Counter>,
    store_bytes: Gauge,
    store_partitions: Gauge,
    sampler: Arc<OnceLock<Sampler>>,
}

/// Encodes the sampled values on every scrape.
struct Sampled(Arc<OnceLock<Sampler>>);

impl std::fmt::Debug for Sampled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sampled")
    }
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    labels: Option<&Labels>,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let c = ConstCounter::new(value);
    let mut m = encoder.encode_descriptor(name, help, None, c.metric_type())?;
    match labels {
        Some(l) => c.encode(m.encode_family(l)?),
        None => c.encode(m),
    }
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(value);
    g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)
}

impl PromCollector for Sampled {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = self.0.get().and_then(|f| f()).unwrap_or_default();
        let ev = s.events;
        gauge(
            &mut e,
            "weir_event_queue_depth",
            "Events waiting in the event queue's buffer",
            s.event_depth as i64,
        )?;
        gauge(
            &mut e,
            "weir_event_queue_paused",
            "1 while the event queue is paused because its store failed",
            i64::from(s.event_paused),
        )?;
        counter(
            &mut e,
            "weir_events_added",
            "Events accepted into the event queue",
            None,
            ev.added,
        )?;
        counter(
            &mut e,
            "weir_events_stored",
            "Events written to the store",
            None,
            ev.stored,
        )?;
        // One descriptor, two series.
        let full = ConstCounter::new(ev.discarded_full);
        let paused = ConstCounter::new(ev.discarded_paused);
        let mut m = e.encode_descriptor(
            "weir_events_discarded",
            "Events discarded, by reason: full (buffer full) or paused (store failing)",
            None,
            full.metric_type(),
        )?;
        full.encode(m.encode_family(&[("reason", "full")])?)?;
        paused.encode(m.encode_family(&[("reason", "paused")])?)?;
        counter(
            &mut e,
            "weir_events_purged",
            "Events purged for age",
            None,
            ev.purged,
        )?;
        gauge(
            &mut e,
            "weir_hub_subscribers",
            "Live hub subscribers (egress streams reading the hub)",
            s.hub_subscribers as i64,
        )
    }
}

impl ObsMetrics {
    /// Registers the metrics in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        // 1, 2, 4, … 65536 entries.
        let append_entries = Histogram::new(exponential_buckets(1.0, 2.0, 17));
        registry.register(
            "weir_append_entries",
            "Entries per append to the store",
            append_entries.clone(),
        );
        // 50 µs … about 1.6 s.
        let append_seconds = Histogram::new(exponential_buckets(0.000_05, 2.0, 16));
        registry.register(
            "weir_store_append_seconds",
            "Time the store took to answer an append, seconds",
            append_seconds.clone(),
        );
        let family = |registry: &mut Registry, name: &str, help: &str| {
            let f = Family::<Labels, Counter>::default();
            registry.register(name, help, f.clone());
            f
        };
        let retried = family(
            registry,
            "weir_retried",
            "Work the collector retried itself, by what: register (a stream vanished behind the cache)",
        );
        let retention_runs = family(
            registry,
            "weir_retention_runs",
            "Retention rounds, by result: ok or failed",
        );
        let retention_partitions = family(
            registry,
            "weir_retention_partitions_dropped",
            "Time partitions dropped by retention, by reason: age or size",
        );
        let retention_entries = family(
            registry,
            "weir_retention_entries_expired",
            "Entries expired by retention, by reason: age or size",
        );
        for r in ["ok", "failed"] {
            let _ = retention_runs.get_or_create_owned(&[("result", r)]);
        }
        for r in [RetentionReason::Age, RetentionReason::Size] {
            let _ = retention_partitions.get_or_create_owned(&[("reason", r.as_str())]);
            let _ = retention_entries.get_or_create_owned(&[("reason", r.as_str())]);
        }
        let _ = retried.get_or_create_owned(&[("what", "register")]);
        let store_bytes = Gauge::default();
        registry.register(
            "weir_store_bytes",
            "Bytes of the live time partitions on disk, as of the last retention round",
            store_bytes.clone(),
        );
        let store_partitions = Gauge::default();
        registry.register(
            "weir_store_partitions",
            "Live time partitions, as of the last retention round",
            store_partitions.clone(),
        );
        let sampler = Arc::new(OnceLock::new());
        registry.register_collector(Box::new(Sampled(sampler.clone())));
        ObsMetrics {
            inner: Arc::new(Inner {
                append_entries,
                append_seconds,
                retried,
                retention_runs,
                retention_partitions,
                retention_entries,
                store_bytes,
                store_partitions,
                sampler,
            }),
        }
    }

    /// Sets where scrape-time values come from; the first call wins.
    pub fn set_sampler(&self, sampler: Sampler) {
        let _ = self.inner.sampler.set(sampler);
    }

    /// Records one append of `entries` that the store answered in `took`.
    pub fn append(&self, entries: usize, took: Duration) {
        self.inner.append_entries.observe(entries as f64);
        self.inner.append_seconds.observe(took.as_secs_f64());
    }

    /// Counts one retry of `what` (`register`).
    pub fn retried(&self, what: &'static str) {
        self.inner.retried.get_or_create(&[("what", what)]).inc();
    }

    /// Counts one retention round.
    pub fn retention_run(&self, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.inner
            .retention_runs
            .get_or_create(&[("result", result)])
            .inc();
    }

    /// Counts what retention removed for `reason`.
    pub fn retention_removed(&self, reason: RetentionReason, partitions: u64, entries: u64) {
        let l = [("reason", reason.as_str())];
        self.inner
            .retention_partitions
            .get_or_create(&l)
            .inc_by(partitions);
        self.inner
            .retention_entries
            .get_or_create(&l)
            .inc_by(entries);
    }

    /// Sets the store size gauges.
    pub fn store_size(&self, bytes: u64, partitions: usize) {
        self.inner
            .store_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        self.inner.store_partitions.set(partitions as i64);
    }

    /// Current `weir_retention_entries_expired_total{reason}`.
    pub fn retention_entries_count(&self, reason: RetentionReason) -> u64 {
        self.inner
            .retention_entries
            .get_or_create(&[("reason", reason.as_str())])
            .get()
    }

    /// Current `weir_retention_partitions_dropped_total{reason}`.
    pub fn retention_partitions_count(&self, reason: RetentionReason) -> u64 {
        self.inner
            .retention_partitions
            .get_or_create(&[("reason", reason.as_str())])
            .get()
    }
}
