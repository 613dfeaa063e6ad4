//! The ingest pipeline: what every ingress (gRPC, later HTTP and OTLP) hands its data to.
//!
//! - [`Collector::process`] takes a weir.v1 bundle (LogDog's `Collector.Process`,
//!   PROTOCOLS.md §5.5): validate each stream's append, register the stream through
//!   the [`StateCache`], append to the store, terminate it when asked, and answer one
//!   result per stream. See `bundle.rs`.
//! - [`Collector::ingest_envelopes`] takes envelopes of Loggregator v2 clients, which
//!   have no streams: each goes to the collector-owned stream
//!   `loggregator/<source_id>/+/<instance_id>` and is numbered on arrival. See
//!   `loggregator.rs`.
//! - [`Collector::close`] stops taking work and waits for the work under way.
//!
//! Whatever the store acknowledges as newly written (not a duplicate) is then published
//! to the live [`Hub`], for `loggregator.v2.Egress` and `/v2/read` subscribers: directly,
//! or through the live relay to every collector when one is attached
//! ([`Collector::attach_relay`], [`crate::relay`]).
//!
//! Every refusal and every drop is counted in [`Metrics`] exactly once, here.

mod bundle;
mod loggregator;

use std::sync::{Arc, OnceLock};

use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};
use tokio_util::task::TaskTracker;
use tokio_util::task::task_tracker::TaskTrackerToken;
use weir_core::Limits;
use weir_store::Store;

pub use bundle::{DEFAULT_CONTENT_TYPE, MAX_SECRET_BYTES};
pub use loggregator::IngestReport;

use crate::config::CollectorConfig;
use crate::events::Events;
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::obs_metrics::Sample;
use crate::relay::{LiveRelay, Pending};
use crate::state_cache::StateCache;

/// The collector's ingest pipeline. Cheap to clone: clones share everything.
#[derive(Clone)]
pub struct Collector {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    cache: StateCache,
    hub: Hub,
    /// The live relay when attached; unset: the hub in process.
    relay: OnceLock<LiveRelay>,
    metrics: Metrics,
    /// The collector's own events (started by the server).
    events: Arc<Events>,
    limits: Limits,
    workers: usize,
    /// Every call under way holds a token of it; [`Collector::close`] waits for them.
    tracker: TaskTracker,
    /// Cancelled when closing begins, so long-lived calls (client streams, follows)
    /// can end.
    closing: CancellationToken,
}

impl std::fmt::Debug for Collector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collector")
            .field("workers", &self.inner.workers)
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

impl Collector {
    /// A collector writing to `store`, with the limits, worker count and cache bounds of
    /// `config`, counting into `metrics`.
    pub fn new(store: Arc<dyn Store>, config: &CollectorConfig, metrics: Metrics) -> Self {
        // LogDog: a worker count of 0 means the default of 4.
        let workers = match config.max_message_workers {
            0 => 4,
            n => n,
        };
        let hub = Hub::new(config.egress.clone(), metrics.clone());
        let events = Arc::new(Events::new(store.clone(), hub.clone(), &config.events));
        let cache = StateCache::new(
            store.clone(),
            &config.state_cache,
            metrics.clone(),
            events.clone(),
        );
        let hook_events = Arc::downgrade(&events);
        hub.set_drop_hook(Arc::new(move |report| {
            if let Some(events) = hook_events.upgrade() {
                events.subscriber_dropped(report);
            }
        }));
        let collector = Collector {
            inner: Arc::new(Inner {
                store,
                cache,
                hub,
                relay: OnceLock::new(),
                metrics,
                events,
                limits: config.limits.clone(),
                workers,
                tracker: TaskTracker::new(),
                closing: CancellationToken::new(),
            }),
        };
        let weak = Arc::downgrade(&collector.inner);
        collector.inner.metrics.obs().set_sampler(Box::new(move || {
            let inner = weak.upgrade()?;
            Some(Sample {
                events: inner.events.stats(),
                event_depth: inner.events.depth(),
                event_paused: inner.events.is_paused(),
                hub_subscribers: inner.hub.subscribers().len(),
            })
        }));
        collector
    }

    /// The collector's event queue (see [`crate::events`]).
    pub fn events(&self) -> &Arc<Events> {
        &self.inner.events
    }

    /// The store the collector writes to.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The collector's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The live hub that egress subscribers read from.
    pub fn hub(&self) -> &Hub {
        &self.inner.hub
    }

    /// Sends what is stored from now on through `relay` instead of straight to the hub
    /// (see [`crate::relay`]). Only once: `false` when a relay was attached already.
    pub fn attach_relay(&self, relay: LiveRelay) -> bool {
        self.inner.relay.set(relay).is_ok()
    }

    /// The attached live relay, if any.
    pub fn relay(&self) -> Option<&LiveRelay> {
        self.inner.relay.get()
    }

    /// Stops the attached NATS relay (publishing what it has queued), if any.
    pub async fn close_relay(&self) {
        if let Some(LiveRelay::Nats(relay)) = self.inner.relay.get() {
            relay.close().await;
        }
    }

    /// What the ingest path calls before an append: see [`LiveRelay::prepare`].
    fn live_prepare(&self, entries: &[weir_core::Envelope]) -> Option<Pending> {
        match self.inner.relay.get() {
            Some(relay) => relay.prepare(entries),
            None => self.inner.hub.prepare(entries).map(Pending::local),
        }
    }

    /// The `[egress]` configuration.
    pub fn egress_config(&self) -> &crate::config::EgressConfig {
        self.inner.hub.config()
    }

    /// A token cancelled when [`close`](Self::close) begins, for long-lived tasks that
    /// outlive a borrow of the collector (egress streams).
    pub fn closing_token(&self) -> CancellationToken {
        self.inner.closing.clone()
    }

    /// The limits producers are held to.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// Whether [`close`](Self::close) has begun: new work is answered `unavailable`.
    pub fn is_closed(&self) -> bool {
        self.inner.closing.is_cancelled()
    }

    /// Completes when [`close`](Self::close) begins; long-lived calls (a client's
    /// envelope stream, a follow) select on it to end.
    pub fn closing(&self) -> WaitForCancellationFuture<'_> {
        self.inner.closing.cancelled()
    }

    /// Stops taking new work (later calls answer `unavailable`) and waits until every
    /// call under way has finished. Idempotent.
    pub async fn close(&self) {
        self.inner.closing.cancel();
        self.inner.tracker.close();
        self.inner.tracker.wait().await;
    }

    /// Admits one call, or `None` once closing has begun. The token is held for the
    /// whole call so that [`close`](Self::close) waits for it.
    fn enter(&self) -> Option<TaskTrackerToken> {
        // Take the token first: a close that starts after the check below waits for it.
        let token = self.inner.tracker.token();
        if self.inner.tracker.is_closed() {
            None
        } else {
            Some(token)
        }
    }
}
