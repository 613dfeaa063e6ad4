//! One live subscriber: its diode, what it was delivered, what it lost.
//!
//! The publishing side ([`Shared::offer`]) only writes to the subscriber's
//! [`Diode`]: it never blocks and never allocates (the envelope is an `Arc`). When the
//! reader falls more than the diode's capacity behind, the oldest envelopes are
//! overwritten; the diode counts them. The reader side is a [`Subscription`], owned by
//! whatever serves the subscriber (a gRPC stream, an SSE body, an in-process task);
//! dropping it unsubscribes.
//!
//! Counts live in per-subscriber atomics (no shared cache line on the hot path) and are
//! folded into the Prometheus metrics by the hub's reporter ([`super::report`]) every
//! `drop_report_interval_ms` and when the subscriber ends.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use weir_core::Envelope;
use weir_core::diode::Diode;

use super::{Hub, StreamPermit};
use crate::metrics::{Egress, Metrics};

/// The part of a subscriber the hub's routing table holds.
pub(crate) struct Shared {
    id: u64,
    egress: Egress,
    label: String,
    diode: Diode<Arc<Envelope>>,
    /// Envelopes taken out of the diode by the reader.
    delivered: AtomicU64,
    /// What has been folded into the metrics so far.
    accounted_dropped: AtomicU64,
    accounted_delivered: AtomicU64,
}

/// What [`Shared::account`] found new since the last time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Accounted {
    pub dropped: u64,
    pub delivered: u64,
}

impl Shared {
    pub fn new(id: u64, egress: Egress, label: String, capacity: usize) -> Self {
        Shared {
            id,
            egress,
            label,
            diode: Diode::new(capacity),
            delivered: AtomicU64::new(0),
            accounted_dropped: AtomicU64::new(0),
            accounted_delivered: AtomicU64::new(0),
        }
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn egress(&self) -> Egress {
        self.egress
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// Hands an envelope to this subscriber. Never blocks; overwrites the oldest when
    /// the diode is full (counted by the diode).
    #[inline]
    pub fn offer(&self, env: Arc<Envelope>) {
        self.diode.set(env);
    }

    /// Folds the drops and deliveries not yet counted into `metrics`; returns them.
    /// Safe to call from several places at once: each envelope is counted once
    /// (`fetch_max` hands every increment to exactly one caller).
    pub fn account(&self, metrics: &Metrics) -> Accounted {
        let dropped = self.diode.dropped();
        let prev = self.accounted_dropped.fetch_max(dropped, Ordering::AcqRel);
        let new_dropped = dropped.saturating_sub(prev);
        let delivered = self.delivered.load(Ordering::Acquire);
        let prev = self
            .accounted_delivered
            .fetch_max(delivered, Ordering::AcqRel);
        let new_delivered = delivered.saturating_sub(prev);
        metrics.subscriber_dropped(self.egress, &self.label, new_dropped);
        metrics.delivered(self.egress, new_delivered);
        Accounted {
            dropped: new_dropped,
            delivered: new_delivered,
        }
    }

    /// A snapshot of this subscriber's counts.
    pub fn stats(&self) -> SubscriberStats {
        SubscriberStats {
            id: self.id,
            egress: self.egress,
            label: self.label.clone(),
            dropped: self.diode.dropped(),
            delivered: self.delivered.load(Ordering::Acquire),
            waiting: self.diode.len(),
            capacity: self.diode.capacity(),
        }
    }
}

/// A live subscriber's counts, as [`Hub::subscribers`] reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriberStats {
    /// Unique for the life of the hub.
    pub id: u64,
    pub egress: Egress,
    /// How the subscriber is named in metrics and logs: `<id>` or `<id>@<peer>`.
    pub label: String,
    /// Envelopes overwritten in its diode before it read them.
    pub dropped: u64,
    /// Envelopes it has taken out of its diode.
    pub delivered: u64,
    /// Envelopes in its diode now.
    pub waiting: usize,
    /// Its diode's capacity.
    pub capacity: usize,
}

/// The reading end of a live subscription. Dropping it unsubscribes (and releases its
/// egress stream slot).
///
/// Every read is cancel-safe: an envelope is either returned (or put into the caller's
/// batch) or left in the diode.
pub struct Subscription {
    shared: Arc<Shared>,
    hub: Hub,
    batch_size: usize,
    flush_interval: Duration,
    _permit: StreamPermit,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("label", &self.shared.label)
            .field("egress", &self.shared.egress)
            .finish_non_exhaustive()
    }
}

impl Subscription {
    pub(crate) fn new(shared: Arc<Shared>, hub: Hub, permit: StreamPermit) -> Self {
        let config = hub.config();
        Subscription {
            batch_size: config.batch_size.max(1),
            flush_interval: Duration::from_millis(config.flush_interval_ms),
            shared,
            hub,
            _permit: permit,
        }
    }

    /// This subscriber's id (unique for the life of the hub).
    pub fn id(&self) -> u64 {
        self.shared.id
    }

    /// How the subscriber is named in metrics and logs.
    pub fn label(&self) -> &str {
        &self.shared.label
    }

    /// The next envelope, if one is waiting.
    pub fn try_next(&self) -> Option<Arc<Envelope>> {
        let env = self.shared.diode.try_next()?;
        self.shared.delivered.fetch_add(1, Ordering::Release);
        Some(env)
    }

    /// Waits for the next envelope.
    pub async fn next(&self) -> Arc<Envelope> {
        let env = self.shared.diode.next().await;
        self.shared.delivered.fetch_add(1, Ordering::Release);
        env
    }

    /// Waits for the first envelope, then fills `out` until it holds `batch_size`
    /// envelopes or `flush_interval` has passed since that first one (upstream's "100
    /// envelopes or 100 ms"). Appends to `out`; returns how many were added.
    pub async fn next_batch(&self, out: &mut Vec<Arc<Envelope>>) -> usize {
        let start = out.len();
        let max = start + self.batch_size;
        out.push(self.next().await);
        let deadline = tokio::time::Instant::now() + self.flush_interval;
        loop {
            let before = out.len();
            while out.len() < max {
                match self.shared.diode.try_next() {
                    Some(env) => out.push(env),
                    None => break,
                }
            }
            // Counted before the next await, so a cancelled call leaves exact counts.
            self.shared
                .delivered
                .fetch_add((out.len() - before) as u64, Ordering::Release);
            if out.len() >= max {
                break;
            }
            tokio::select! {
                env = self.next() => out.push(env),
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
        out.len() - start
    }

    /// Envelopes this subscriber has lost so far.
    pub fn dropped(&self) -> u64 {
        self.shared.diode.dropped()
    }

    /// This subscriber's counts now.
    pub fn stats(&self) -> SubscriberStats {
        self.shared.stats()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.unsubscribe(&self.shared);
    }
}
