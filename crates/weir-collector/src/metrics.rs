//! The collector's Prometheus metrics.
//!
//! | metric | labels | meaning |
//! | --- | --- | --- |
//! | `weir_received_envelopes_total` | `protocol` | envelopes received, valid or not, per ingress protocol |
//! | `weir_stored_envelopes_total` | | envelopes newly written to the store |
//! | `weir_duplicates_ignored_total` | | resent envelopes whose payload equals the stored one (acknowledged, first write kept) |
//! | `weir_conflicts_total` | | appends refused because a different payload is stored at an index |
//! | `weir_rejected_total` | `reason` | requests or per-stream appends refused with an answer to the client |
//! | `weir_dropped_envelopes_total` | `reason` | envelopes of Loggregator clients discarded (those protocols have no per-envelope answer) |
//! | `weir_streams_registered_total` | | streams newly registered |
//! | `weir_streams` | | streams in the store's registry (counted at start, then moved by registrations; streams are never unregistered) |
//! | `weir_bundles_total` | | weir.v1 bundles processed |
//! | `weir_stream_state_cache_entries` | | streams held in the stream-state cache |
//! | `weir_hub_published_envelopes_total` | | newly stored envelopes handed to the live hub (wanted by at least one subscription) |
//! | `weir_egress_delivered_envelopes_total` | `egress` | envelopes live subscribers took out of their buffers |
//! | `weir_egress_dropped_envelopes_total` | `egress` | envelopes live subscribers lost (overwritten in their buffers), all subscribers ever |
//! | `weir_subscriber_dropped_envelopes_total` | `egress`, `subscriber` | the same per live subscriber; the series goes when the subscriber ends |
//! | `weir_egress_streams` | `egress` | egress streams open now (live subscribers and follows) |
//!
//! Histograms, retries, retention, event-queue and hub gauges: [`crate::obs_metrics`].
//! The live relay's: [`crate::relay::RelayMetrics`].
//!
//! Every rejection is counted exactly once, under the first reason that applies.
//! Counters with labels are resolved once here, so the hot path only adds to atomics.

use std::sync::Arc;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Labels = [(&'static str, &'static str); 1];

/// Why a request, an append or a lookup was refused (`weir_rejected_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// The stream path is malformed or under the reserved `loggregator/` prefix.
    InvalidPath,
    /// An envelope breaks a limit or has no message.
    InvalidEnvelope,
    /// The request is malformed: undecodable bytes, a bad or missing parameter, a
    /// missing secret, too many entries, an incompatible terminal count.
    InvalidRequest,
    /// The secret does not match the stream's.
    WrongSecret,
    /// The append started past the stream's next index.
    Gap,
    /// The append reached at or past the stream's terminal count.
    Terminated,
    /// A different payload is stored at an index of the append.
    Conflict,
    /// The store failed or the collector is shutting down.
    Unavailable,
    /// A reader asked for a stream that does not exist.
    NotFound,
    /// An egress stream was refused: `egress.max_streams` are open.
    TooManyStreams,
}

impl RejectReason {
    /// Every reason, in label order.
    pub const ALL: [RejectReason; 10] = [
        RejectReason::InvalidPath,
        RejectReason::InvalidEnvelope,
        RejectReason::InvalidRequest,
        RejectReason::WrongSecret,
        RejectReason::Gap,
        RejectReason::Terminated,
        RejectReason::Conflict,
        RejectReason::Unavailable,
        RejectReason::NotFound,
        RejectReason::TooManyStreams,
    ];

    /// The `reason` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::InvalidPath => "invalid_path",
            RejectReason::InvalidEnvelope => "invalid_envelope",
            RejectReason::InvalidRequest => "invalid_request",
            RejectReason::WrongSecret => "wrong_secret",
            RejectReason::Gap => "gap",
            RejectReason::Terminated => "terminated",
            RejectReason::Conflict => "conflict",
            RejectReason::Unavailable => "unavailable",
            RejectReason::NotFound => "not_found",
            RejectReason::TooManyStreams => "too_many_streams",
        }
    }
}

/// Why envelopes of a Loggregator client were discarded
/// (`weir_dropped_envelopes_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The envelope breaks a limit or has no message.
    InvalidEnvelope,
    /// The store failed (the client was answered `Unavailable`) or the collector was
    /// shutting down.
    Unavailable,
    /// The store refused the append to a collector-owned stream (terminated or owned
    /// by someone else); should not happen.
    Refused,
}

impl DropReason {
    /// Every reason, in label order.
    pub const ALL: [DropReason; 3] = [
        DropReason::InvalidEnvelope,
        DropReason::Unavailable,
        DropReason::Refused,
    ];

    /// The `reason` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::InvalidEnvelope => "invalid_envelope",
            DropReason::Unavailable => "unavailable",
            DropReason::Refused => "refused",
        }
    }
}

/// The egress a live reader uses (the `egress` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Egress {
    /// A reader inside the process (tests, benchmarks, later the web viewer).
    InProcess,
    /// `loggregator.v2.Egress/Receiver`.
    Receiver,
    /// `loggregator.v2.Egress/BatchedReceiver`.
    BatchedReceiver,
    /// `GET /v2/read` (SSE).
    V2Read,
    /// `weir.v1.Streams/Follow`.
    Follow,
    /// `GET /v1/entries?follow=true` (SSE).
    EntriesFollow,
    /// `GET /v1/events?follow=true` (SSE).
    EventsFollow,
}

impl Egress {
    /// Every egress, in label order.
    pub const ALL: [Egress; 7] = [
        Egress::InProcess,
        Egress::Receiver,
        Egress::BatchedReceiver,
        Egress::V2Read,
        Egress::Follow,
        Egress::EntriesFollow,
        Egress::EventsFollow,
    ];

    /// The `egress` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Egress::InProcess => "in_process",
            Egress::Receiver => "receiver",
            Egress::BatchedReceiver => "batched_receiver",
            Egress::V2Read => "v2_read",
            Egress::Follow => "follow",
            Egress::EntriesFollow => "entries_follow",
            Egress::EventsFollow => "events_follow",
        }
    }
}

/// Labels of a per-subscriber series: `egress` and `subscriber`.
type SubscriberLabels = [(&'static str, String); 2];

fn subscriber_labels(egress: Egress, subscriber: &str) -> SubscriberLabels {
    [
        ("egress", egress.as_str().to_string()),
        ("subscriber", subscriber.to_string()),
    ]
}

/// Ingress protocols, the `protocol` label of `weir_received_envelopes_total`.
pub mod protocol {
    /// weir.v1 `Ingest/Send` bundles.
    pub const WEIR: &str = "weir";
    /// loggregator.v2 `Ingress/Sender` (a stream of envelopes).
    pub const LOGGREGATOR_SENDER: &str = "loggregator_sender";
    /// loggregator.v2 `Ingress/BatchSender` (a stream of batches).
    pub const LOGGREGATOR_BATCH_SENDER: &str = "loggregator_batch_sender";
    /// loggregator.v2 `Ingress/Send` (one batch, unary).
    pub const LOGGREGATOR_SEND: &str = "loggregator_send";
    /// The protocols counted without a lock.
    pub const ALL: [&str; 4] = [
        WEIR,
        LOGGREGATOR_SENDER,
        LOGGREGATOR_BATCH_SENDER,
        LOGGREGATOR_SEND,
    ];
}

/// The collector's metrics; cheap to clone (all clones share the counters).
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    received_family: Family<Labels, Counter>,
    received: [Counter; protocol::ALL.len()],
    stored: Counter,
    duplicates: Counter,
    conflicts: Counter,
    rejected: [Counter; RejectReason::ALL.len()],
    dropped: [Counter; DropReason::ALL.len()],
    registered: Counter,
    streams: Gauge,
    bundles: Counter,
    cached_streams: Gauge,
    hub_published: Counter,
    delivered: [Counter; Egress::ALL.len()],
    egress_dropped: [Counter; Egress::ALL.len()],
    subscriber_dropped: Family<SubscriberLabels, Counter>,
    egress_streams: [Gauge; Egress::ALL.len()],
    obs: crate::obs_metrics::ObsMetrics,
    relay: crate::relay::RelayMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// A fresh set of metrics, all zero, in their own registry.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let received_family = Family::<Labels, Counter>::default();
        registry.register(
            "weir_received_envelopes",
            "Envelopes received, valid or not, by ingress protocol",
            received_family.clone(),
        );
        let received =
            protocol::ALL.map(|p| received_family.get_or_create_owned(&[("protocol", p)]));

        let stored = Counter::default();
        registry.register(
            "weir_stored_envelopes",
            "Envelopes newly written to the store",
            stored.clone(),
        );
        let duplicates = Counter::default();
        registry.register(
            "weir_duplicates_ignored",
            "Resent envelopes whose payload equals the stored one: acknowledged, first write kept",
            duplicates.clone(),
        );
        let conflicts = Counter::default();
        registry.register(
            "weir_conflicts",
            "Appends refused because a different payload is stored at one of their indices",
            conflicts.clone(),
        );
        let rejected_family = Family::<Labels, Counter>::default();
        registry.register(
            "weir_rejected",
            "Requests and per-stream appends refused with an answer to the client, by reason",
            rejected_family.clone(),
        );
        let rejected = RejectReason::ALL
            .map(|r| rejected_family.get_or_create_owned(&[("reason", r.as_str())]));
        let dropped_family = Family::<Labels, Counter>::default();
        registry.register(
            "weir_dropped_envelopes",
            "Envelopes of Loggregator clients discarded (no per-envelope answer), by reason",
            dropped_family.clone(),
        );
        let dropped =
            DropReason::ALL.map(|r| dropped_family.get_or_create_owned(&[("reason", r.as_str())]));
        let registered = Counter::default();
        registry.register(
            "weir_streams_registered",
            "Streams newly registered in the store",
            registered.clone(),
        );
        let streams = Gauge::default();
        registry.register(
            "weir_streams",
            "Streams in the store's registry",
            streams.clone(),
        );
        let bundles = Counter::default();
        registry.register("weir_bundles", "weir.v1 bundles processed", bundles.clone());
        let cached_streams = Gauge::default();
        registry.register(
            "weir_stream_state_cache_entries",
            "Streams held in the collector's stream-state cache",
            cached_streams.clone(),
        );
        let hub_published = Counter::default();
        registry.register(
            "weir_hub_published_envelopes",
            "Newly stored envelopes handed to the live hub (wanted by at least one subscription)",
            hub_published.clone(),
        );
        let by_egress = |registry: &mut Registry, name: &str, help: &str| {
            let family = Family::<Labels, Counter>::default();
            registry.register(name, help, family.clone());
            Egress::ALL.map(|e| family.get_or_create_owned(&[("egress", e.as_str())]))
        };
        let delivered = by_egress(
            &mut registry,
            "weir_egress_delivered_envelopes",
            "Envelopes live subscribers took out of their buffers, by egress",
        );
        let egress_dropped = by_egress(
            &mut registry,
            "weir_egress_dropped_envelopes",
            "Envelopes live subscribers lost (overwritten in their buffers), by egress, all subscribers ever",
        );
        let subscriber_dropped = Family::<SubscriberLabels, Counter>::default();
        registry.register(
            "weir_subscriber_dropped_envelopes",
            "Envelopes a live subscriber lost (overwritten in its buffer); the series goes when the subscriber ends",
            subscriber_dropped.clone(),
        );
        let streams_family = Family::<Labels, Gauge>::default();
        registry.register(
            "weir_egress_streams",
            "Egress streams open now (live subscribers and follows), by egress",
            streams_family.clone(),
        );
        let egress_streams =
            Egress::ALL.map(|e| streams_family.get_or_create_owned(&[("egress", e.as_str())]));
        let obs = crate::obs_metrics::ObsMetrics::register(&mut registry);
        let relay = crate::relay::RelayMetrics::register(&mut registry);
        Metrics {
            inner: Arc::new(Inner {
                registry,
                received_family,
                received,
                stored,
                duplicates,
                conflicts,
                rejected,
                dropped,
                registered,
                streams,
                bundles,
                cached_streams,
                hub_published,
                delivered,
                egress_dropped,
                subscriber_dropped,
                egress_streams,
                obs,
                relay,
            }),
        }
    }

    /// The live relay's counters ([`crate::relay::RelayMetrics`]).
    pub fn relay(&self) -> &crate::relay::RelayMetrics {
        &self.inner.relay
    }

    /// Histograms, retries, retention and scrape-time gauges ([`crate::obs_metrics`]).
    pub fn obs(&self) -> &crate::obs_metrics::ObsMetrics {
        &self.inner.obs
    }

    /// Counts `n` envelopes published to the live hub.
    pub fn hub_published(&self, n: u64) {
        if n > 0 {
            self.inner.hub_published.inc_by(n);
        }
    }

    /// Counts `n` envelopes delivered to live subscribers of `egress`.
    pub fn delivered(&self, egress: Egress, n: u64) {
        if n > 0 {
            self.inner.delivered[egress as usize].inc_by(n);
        }
    }

    /// Counts `n` envelopes lost by the live subscriber `subscriber` of `egress`.
    pub fn subscriber_dropped(&self, egress: Egress, subscriber: &str, n: u64) {
        if n > 0 {
            self.inner.egress_dropped[egress as usize].inc_by(n);
            self.inner
                .subscriber_dropped
                .get_or_create(&subscriber_labels(egress, subscriber))
                .inc_by(n);
        }
    }

    /// Removes an ended subscriber's series (its drops stay in the `egress` total).
    pub fn subscriber_ended(&self, egress: Egress, subscriber: &str) {
        self.inner
            .subscriber_dropped
            .remove(&subscriber_labels(egress, subscriber));
    }

    /// Moves the count of open `egress` streams by `delta`.
    pub fn egress_streams_add(&self, egress: Egress, delta: i64) {
        self.inner.egress_streams[egress as usize].inc_by(delta);
    }

    /// Current value of `weir_hub_published_envelopes_total`.
    pub fn hub_published_count(&self) -> u64 {
        self.inner.hub_published.get()
    }

    /// Current value of `weir_egress_delivered_envelopes_total{egress}`.
    pub fn delivered_count(&self, egress: Egress) -> u64 {
        self.inner.delivered[egress as usize].get()
    }

    /// Current value of `weir_egress_dropped_envelopes_total{egress}`.
    pub fn egress_dropped_count(&self, egress: Egress) -> u64 {
        self.inner.egress_dropped[egress as usize].get()
    }

    /// Current value of `weir_subscriber_dropped_envelopes_total{egress,subscriber}`
    /// (`None` when the series does not exist: no drop yet, or the subscriber ended).
    pub fn subscriber_dropped_count(&self, egress: Egress, subscriber: &str) -> Option<u64> {
        self.inner
            .subscriber_dropped
            .get(&subscriber_labels(egress, subscriber))
            .map(|c| c.get())
    }

    /// Current value of `weir_egress_streams{egress}`.
    pub fn egress_streams(&self, egress: Egress) -> i64 {
        self.inner.egress_streams[egress as usize].get()
    }

    /// Counts `n` envelopes received over `protocol` (see [`protocol`]).
    pub fn received(&self, protocol: &'static str, n: u64) {
        if n == 0 {
            return;
        }
        match protocol::ALL.iter().position(|p| *p == protocol) {
            Some(i) => {
                self.inner.received[i].inc_by(n);
            }
            None => {
                self.inner
                    .received_family
                    .get_or_create(&[("protocol", protocol)])
                    .inc_by(n);
            }
        }
    }

    /// Counts `n` envelopes newly stored.
    pub fn stored(&self, n: u64) {
        self.inner.stored.inc_by(n);
    }

    /// Counts `n` duplicates acknowledged and ignored.
    pub fn duplicates(&self, n: u64) {
        self.inner.duplicates.inc_by(n);
    }

    /// Counts one rejection. A conflict is also counted in `weir_conflicts_total`.
    pub fn rejected(&self, reason: RejectReason) {
        if reason == RejectReason::Conflict {
            self.inner.conflicts.inc();
        }
        self.inner.rejected[reason as usize].inc();
    }

    /// Counts `n` envelopes dropped.
    pub fn dropped(&self, reason: DropReason, n: u64) {
        self.inner.dropped[reason as usize].inc_by(n);
    }

    /// Counts one stream newly registered (and one more stream in the registry).
    pub fn stream_registered(&self) {
        self.inner.registered.inc();
        self.inner.streams.inc();
    }

    /// Sets the number of streams in the registry (counted at start).
    pub fn set_streams(&self, n: u64) {
        self.inner.streams.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Current value of `weir_streams`.
    pub fn streams(&self) -> i64 {
        self.inner.streams.get()
    }

    /// Counts one bundle.
    pub fn bundle(&self) {
        self.inner.bundles.inc();
    }

    /// Moves the gauge of cached stream states by `delta`.
    pub fn cached_streams_add(&self, delta: i64) {
        self.inner.cached_streams.inc_by(delta);
    }

    /// Current value of `weir_rejected_total{reason}` (for tests and the event queue).
    pub fn rejected_count(&self, reason: RejectReason) -> u64 {
        self.inner.rejected[reason as usize].get()
    }

    /// Current value of `weir_dropped_envelopes_total{reason}`.
    pub fn dropped_count(&self, reason: DropReason) -> u64 {
        self.inner.dropped[reason as usize].get()
    }

    /// Current value of `weir_received_envelopes_total{protocol}`.
    pub fn received_count(&self, protocol: &'static str) -> u64 {
        match protocol::ALL.iter().position(|p| *p == protocol) {
            Some(i) => self.inner.received[i].get(),
            None => self
                .inner
                .received_family
                .get(&[("protocol", protocol)])
                .map(|c| c.get())
                .unwrap_or(0),
        }
    }

    /// Current value of `weir_stored_envelopes_total`.
    pub fn stored_count(&self) -> u64 {
        self.inner.stored.get()
    }

    /// Current value of `weir_duplicates_ignored_total`.
    pub fn duplicates_count(&self) -> u64 {
        self.inner.duplicates.get()
    }

    /// Current value of `weir_conflicts_total`.
    pub fn conflicts_count(&self) -> u64 {
        self.inner.conflicts.get()
    }

    /// Current value of `weir_streams_registered_total`.
    pub fn streams_registered_count(&self) -> u64 {
        self.inner.registered.get()
    }

    /// Current value of `weir_bundles_total`.
    pub fn bundles_count(&self) -> u64 {
        self.inner.bundles.get()
    }

    /// Current value of `weir_stream_state_cache_entries`.
    pub fn cached_streams(&self) -> i64 {
        self.inner.cached_streams.get()
    }

    /// All metrics in the Prometheus text exposition format, version 0.0.4 (what
    /// `GET /metrics` serves): counters are named `…_total` in their `# HELP` and
    /// `# TYPE` lines too, and there is no OpenMetrics `# EOF` line.
    pub fn encode(&self) -> String {
        to_prometheus_text(&self.encode_openmetrics())
    }

    /// All metrics in the OpenMetrics text format (ending with `# EOF`).
    pub fn encode_openmetrics(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail; an error would only come from a metric's
        // own encoder, and ours are the stock ones.
        if let Err(e) = encode(&mut out, &self.inner.registry) {
            tracing::error!("encoding metrics failed: {e}");
        }
        out
    }
}

/// Rewrites OpenMetrics text as Prometheus text 0.0.4 (see [`Metrics::encode`]).
fn to_prometheus_text(open: &str) -> String {
    let mut lines: Vec<String> = Vec::with_capacity(open.lines().count());
    for line in open.lines() {
        if line == "# EOF" {
            continue;
        }
        if let Some(name) = line
            .strip_prefix("# TYPE ")
            .and_then(|rest| rest.strip_suffix(" counter"))
        {
            let help = format!("# HELP {name} ");
            let renamed = lines
                .last()
                .and_then(|prev| prev.strip_prefix(&help))
                .map(|text| format!("# HELP {name}_total {text}"));
            if let (Some(renamed), Some(prev)) = (renamed, lines.last_mut()) {
                *prev = renamed;
            }
            lines.push(format!("# TYPE {name}_total counter"));
            continue;
        }
        lines.push(line.to_string());
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_labels_appear_in_text() {
        let m = Metrics::new();
        m.received(protocol::WEIR, 3);
        m.received("other", 2);
        m.rejected(RejectReason::Conflict);
        m.dropped(DropReason::InvalidEnvelope, 4);
        let text = m.encode();
        assert!(
            text.contains("weir_received_envelopes_total{protocol=\"weir\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("weir_received_envelopes_total{protocol=\"other\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("weir_rejected_total{reason=\"conflict\"} 1"),
            "{text}"
        );
        assert!(text.contains("weir_conflicts_total 1"), "{text}");
        assert!(
            text.contains("weir_dropped_envelopes_total{reason=\"invalid_envelope\"} 4"),
            "{text}"
        );
        assert!(
            text.contains("weir_rejected_total{reason=\"gap\"} 0"),
            "{text}"
        );
        assert!(text.contains("weir_stream_state_cache_entries 0"), "{text}");
        assert!(
            text.contains("# HELP weir_conflicts_total Appends refused"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE weir_conflicts_total counter\n"),
            "{text}"
        );
        assert!(!text.contains("# EOF"), "{text}");
        assert_eq!(m.received_count("other"), 2);
    }
}
