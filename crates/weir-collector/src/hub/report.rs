//! Reporting what live subscribers lose.
//!
//! A diode counts its drops the moment it overwrites; this module makes them visible:
//! every `drop_report_interval_ms` the hub's reporter task folds each subscriber's new
//! drops (and deliveries) into the metrics
//! (`weir_subscriber_dropped_envelopes_total{egress,subscriber}`,
//! `weir_egress_dropped_envelopes_total{egress}`,
//! `weir_egress_delivered_envelopes_total{egress}`) and, for each subscriber that lost
//! something since the last round, writes **one** `warn` naming it and the count and
//! calls the [`DropHook`]. So a subscriber that loses a million envelopes in a second
//! costs one log line, not a million. A subscriber that ends is reported one last time
//! as it goes.
//!
//! The hook is where the event queue plugs in (DESIGN.md, Observability: "subscriber
//! drops" are component events): [`super::Hub::set_drop_hook`].

use std::sync::{Arc, Weak};
use std::time::Duration;

use super::Inner;
use super::subscriber::Shared;
use crate::metrics::Egress;

/// One subscriber's losses since its previous report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropReport {
    /// The subscriber's label (`<id>` or `<id>@<peer>`), as in the metric.
    pub subscriber: String,
    pub egress: Egress,
    /// Dropped since the previous report.
    pub dropped: u64,
    /// Dropped over the subscriber's life so far.
    pub total: u64,
    /// Whether the subscriber has ended (this is its last report).
    pub ended: bool,
}

/// Called with each [`DropReport`], on the reporter task (or on the task dropping a
/// subscription, for its last report). Must not block.
pub type DropHook = Arc<dyn Fn(&DropReport) + Send + Sync>;

/// Folds one subscriber's counts into the metrics and reports new drops.
pub(crate) fn account(inner: &Inner, sub: &Shared, ended: bool) {
    let new = sub.account(&inner.metrics);
    if new.dropped == 0 {
        return;
    }
    let report = DropReport {
        subscriber: sub.label().to_string(),
        egress: sub.egress(),
        dropped: new.dropped,
        total: sub.stats().dropped,
        ended,
    };
    tracing::warn!(
        subscriber = %report.subscriber,
        egress = report.egress.as_str(),
        dropped = report.dropped,
        total = report.total,
        "live subscriber too slow: {} envelopes overwritten in its buffer{}",
        report.dropped,
        if ended { " before it ended" } else { "" },
    );
    let hook = inner
        .hook
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    if let Some(hook) = hook {
        hook(&report);
    }
}

/// The reporter task: one round every `interval` until the hub is gone.
pub(crate) async fn run(hub: Weak<Inner>, interval: Duration) {
    let mut tick = tokio::time::interval(interval.max(Duration::from_millis(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(inner) = hub.upgrade() else { return };
        round(&inner);
    }
}

/// One reporting round over every live subscriber.
pub(crate) fn round(inner: &Inner) {
    for sub in inner.live_subscribers() {
        account(inner, &sub, false);
    }
}
