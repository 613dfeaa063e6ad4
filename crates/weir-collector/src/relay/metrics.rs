//! The live relay's metrics, registered with the collector's others.
//!
//! | metric | labels | meaning |
//! | --- | --- | --- |
//! | `weir_relay_published_envelopes_total` | | newly stored envelopes this collector published to the relay |
//! | `weir_relay_received_envelopes_total` | `copy` | envelopes received from the relay: `all` (the copy every collector gets, for unsharded groups), `group` (a shard group's copy) |
//! | `weir_relay_dropped_envelopes_total` | `reason` | envelopes the relay lost: `queue_full` (publish queue at `egress.relay_queue`), `too_large` (one envelope over the server's `max_payload`), `publish_failed` (the connection refused it), `decode_failed` (an undecodable message arrived) |
//! | `weir_relay_slow_consumer_total` | | times the NATS client dropped a relay message because a subscription's buffer was full |
//! | `weir_relay_groups` | | shard groups this collector has joined (NATS queue subscriptions) |

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Labels = [(&'static str, &'static str); 1];

/// Why the relay lost envelopes (`weir_relay_dropped_envelopes_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RelayDrop {
    /// The publish queue was full (`egress.relay_queue`).
    QueueFull,
    /// One envelope alone is larger than the server's `max_payload`.
    TooLarge,
    /// The NATS connection refused the message.
    PublishFailed,
    /// A message on the relay subject did not decode as an `EnvelopeBatch`.
    DecodeFailed,
}

impl RelayDrop {
    /// Every reason, in label order.
    pub const ALL: [RelayDrop; 4] = [
        RelayDrop::QueueFull,
        RelayDrop::TooLarge,
        RelayDrop::PublishFailed,
        RelayDrop::DecodeFailed,
    ];

    /// The `reason` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RelayDrop::QueueFull => "queue_full",
            RelayDrop::TooLarge => "too_large",
            RelayDrop::PublishFailed => "publish_failed",
            RelayDrop::DecodeFailed => "decode_failed",
        }
    }
}

/// Which copy of a relayed message arrived (`weir_relay_received_envelopes_total{copy}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RelayCopy {
    /// The copy every collector receives, for its unsharded groups.
    All,
    /// The copy of one shard group, received by one collector of the group.
    Group,
}

/// See the module docs.
#[derive(Clone)]
pub struct RelayMetrics {
    published: Counter,
    received: [Counter; 2],
    dropped: [Counter; RelayDrop::ALL.len()],
    slow_consumer: Counter,
    groups: Gauge,
}

impl std::fmt::Debug for RelayMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayMetrics").finish_non_exhaustive()
    }
}

impl RelayMetrics {
    /// Registers the metrics in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let published = Counter::default();
        registry.register(
            "weir_relay_published_envelopes",
            "Newly stored envelopes this collector published to the live relay",
            published.clone(),
        );
        let received_family = Family::<Labels, Counter>::default();
        registry.register(
            "weir_relay_received_envelopes",
            "Envelopes received from the live relay, by copy (all: unsharded groups; group: one shard group)",
            received_family.clone(),
        );
        let received =
            ["all", "group"].map(|c| received_family.get_or_create_owned(&[("copy", c)]));
        let dropped_family = Family::<Labels, Counter>::default();
        registry.register(
            "weir_relay_dropped_envelopes",
            "Envelopes the live relay lost, by reason",
            dropped_family.clone(),
        );
        let dropped =
            RelayDrop::ALL.map(|r| dropped_family.get_or_create_owned(&[("reason", r.as_str())]));
        let slow_consumer = Counter::default();
        registry.register(
            "weir_relay_slow_consumer",
            "Times the NATS client dropped a relay message because a subscription's buffer was full",
            slow_consumer.clone(),
        );
        let groups = Gauge::default();
        registry.register(
            "weir_relay_groups",
            "Shard groups this collector has joined on the live relay",
            groups.clone(),
        );
        RelayMetrics {
            published,
            received,
            dropped,
            slow_consumer,
            groups,
        }
    }

    /// Counts envelopes published.
    pub fn published(&self, n: u64) {
        self.published.inc_by(n);
    }

    /// Counts envelopes received in a copy.
    pub fn received(&self, copy: RelayCopy, n: u64) {
        self.received[copy as usize].inc_by(n);
    }

    /// Counts envelopes lost.
    pub fn dropped(&self, reason: RelayDrop, n: u64) {
        if n > 0 {
            self.dropped[reason as usize].inc_by(n);
        }
    }

    /// Counts one slow-consumer event of the NATS client.
    pub fn slow_consumer(&self) {
        self.slow_consumer.inc();
    }

    /// Sets how many shard groups are joined.
    pub fn set_groups(&self, n: usize) {
        self.groups.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Current value of `weir_relay_published_envelopes_total`.
    pub fn published_count(&self) -> u64 {
        self.published.get()
    }

    /// Current value of `weir_relay_received_envelopes_total{copy}`.
    pub fn received_count(&self, copy: RelayCopy) -> u64 {
        self.received[copy as usize].get()
    }

    /// Current value of `weir_relay_dropped_envelopes_total{reason}`.
    pub fn dropped_count(&self, reason: RelayDrop) -> u64 {
        self.dropped[reason as usize].get()
    }

    /// Current value of `weir_relay_groups`.
    pub fn groups(&self) -> i64 {
        self.groups.get()
    }
}
