//! The live hub: every envelope newly stored by the collector, fanned out to live
//! subscribers (`loggregator.v2.Egress`, `GET /v2/read`, in-process readers).
//!
//! # How an envelope travels
//!
//! ```text
//! ingest ─► Hub::prepare(entries)        clone into an Arc only what some selector wants
//!        ─► Store::append ─► acknowledged
//!        ─► Prepared::publish_from(dups)  skip duplicates; route each new envelope
//!             └─► routing table (route.rs): nodes by kind + source, shard groups
//!                   └─► subscriber diode (subscriber.rs): set, never blocks
//! reader ◄─ Subscription::next / next_batch   (gRPC stream, SSE body, task)
//! ```
//!
//! Guarantees:
//!
//! - **After the store.** Only what the store acknowledged as newly written is
//!   published: resent duplicates are not, nor is anything of a refused append.
//! - **The ingest path never waits for a reader.** Publishing takes a snapshot of the
//!   routing table (an `Arc` behind a lock held for a pointer copy) and writes to
//!   diodes, which overwrite their oldest value when full. Per subscriber and envelope
//!   it costs one `Arc` clone and one diode write; nothing else is allocated.
//! - **Bounded memory.** Each subscriber holds at most its diode's capacity
//!   (`egress.diode_capacity`), and at most `egress.max_streams` egress streams exist.
//! - **Every drop counted.** Per subscriber, in metrics and a rate-limited warning
//!   ([`report`]).
//! - **Order.** A subscriber sees the envelopes of one stream in the order they were
//!   stored, as long as one ingest call at a time writes that stream (one producer
//!   connection); the hub adds no reordering.
//!
//! Subscribers that join see what is published from then on: the hub keeps no history
//! (the store does; see [`crate::follow`]).
//!
//! With a live relay configured ([`crate::relay`]), the ingest path hands new envelopes
//! to the relay instead, and the hub is fed from the relay's subscriptions with
//! [`Hub::publish_scoped`]: every collector's unsharded groups from one copy, each
//! shard group ([`GroupKey`]) from the copy of whichever collector NATS picked.

pub mod filter;
mod key;
mod report;
mod route;
mod subscriber;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use weir_core::Envelope;

pub use filter::{Filter, Kind, Names, SelectorError};
pub use key::GroupKey;
pub use report::{DropHook, DropReport};
pub use route::{GO_CRC64_ECMA, Scope, shard_hash};
pub use subscriber::{SubscriberStats, Subscription};

use crate::config::EgressConfig;
pub use crate::metrics::Egress;
use crate::metrics::Metrics;
use route::{Entry, Table};
use subscriber::Shared;

/// Why a stream or subscription was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HubError {
    /// `egress.max_streams` egress streams are open already.
    #[error("too many egress streams: {max} are open (egress.max_streams)")]
    TooManyStreams { max: usize },
}

/// What a new subscriber asks for.
#[derive(Debug, Clone)]
pub struct SubscribeRequest {
    /// Which egress serves it (a metric label).
    pub egress: Egress,
    /// Who it is, for metrics and logs (e.g. the peer's address).
    pub peer: Option<String>,
    /// One filter per selector; each is its own subscription (PROTOCOLS.md §2.3).
    pub filters: Vec<Filter>,
    /// Shard group; empty: not sharded.
    pub shard_id: String,
    /// Turns on deterministic routing in the shard group.
    pub deterministic_name: String,
    /// Diode capacity; `None`: `egress.diode_capacity`.
    pub diode_capacity: Option<usize>,
}

impl SubscribeRequest {
    /// An unsharded request for these filters.
    pub fn new(egress: Egress, filters: Vec<Filter>) -> Self {
        SubscribeRequest {
            egress,
            peer: None,
            filters,
            shard_id: String::new(),
            deterministic_name: String::new(),
            diode_capacity: None,
        }
    }
}

/// One open egress stream: holds one of the `egress.max_streams` slots and counts in
/// `weir_egress_streams{egress}` until dropped.
pub struct StreamPermit {
    _permit: OwnedSemaphorePermit,
    metrics: Metrics,
    egress: Egress,
}

impl std::fmt::Debug for StreamPermit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamPermit")
            .field("egress", &self.egress)
            .finish()
    }
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        self.metrics.egress_streams_add(self.egress, -1);
    }
}

/// The live hub. Cheap to clone: clones share everything. See the module docs.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    config: EgressConfig,
    metrics: Metrics,
    /// The routing table publishers read; replaced whole on every (un)subscribe.
    table: RwLock<Arc<Table>>,
    /// The registrations the table is built from, and whether the reporter runs.
    entries: Mutex<Entries>,
    next_id: AtomicU64,
    streams: Arc<Semaphore>,
    hook: RwLock<Option<DropHook>>,
    /// Bumped whenever the table is rebuilt (a subscriber came or went).
    changes: watch::Sender<u64>,
}

#[derive(Default)]
struct Entries {
    by_id: BTreeMap<u64, Entry>,
    reporter: bool,
}

impl Inner {
    fn live_subscribers(&self) -> Vec<Arc<Shared>> {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .by_id
            .values()
            .map(|e| e.sub.clone())
            .collect()
    }

    fn snapshot(&self) -> Arc<Table> {
        self.table
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Rebuilds the table from `entries` and swaps it in (caller holds the lock).
    fn rebuild(&self, entries: &Entries) {
        let table = Arc::new(Table::build(entries.by_id.values()));
        let old = std::mem::replace(
            &mut *self.table.write().unwrap_or_else(PoisonError::into_inner),
            table,
        );
        // The old table (and the diodes only it still references) is freed here, out
        // of the write lock.
        drop(old);
        self.changes.send_modify(|v| *v = v.wrapping_add(1));
    }
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("subscriptions", &self.inner.snapshot().subscriptions())
            .finish_non_exhaustive()
    }
}

/// Envelopes of one append, cloned before the store consumed them, waiting for its
/// answer; see [`Hub::prepare`].
pub struct Prepared {
    table: Arc<Table>,
    /// (position in the append, envelope) for each envelope some selector wants.
    envs: Vec<(usize, Arc<Envelope>)>,
    metrics: Metrics,
}

impl Prepared {
    /// Publishes the envelopes at positions `first_new..` of the append: the store
    /// answered that the ones before are duplicates. Returns how many were published.
    pub fn publish_from(self, first_new: usize) -> u64 {
        let mut published = 0;
        for (pos, env) in &self.envs {
            if *pos >= first_new && self.table.route(env) > 0 {
                published += 1;
            }
        }
        self.metrics.hub_published(published);
        published
    }
}

impl Hub {
    /// A hub with the bounds of `config`, counting into `metrics`.
    pub fn new(config: EgressConfig, metrics: Metrics) -> Self {
        let streams = Arc::new(Semaphore::new(
            config.max_streams.min(Semaphore::MAX_PERMITS),
        ));
        Hub {
            inner: Arc::new(Inner {
                config,
                metrics,
                table: RwLock::new(Arc::new(Table::default())),
                entries: Mutex::new(Entries::default()),
                next_id: AtomicU64::new(1),
                streams,
                hook: RwLock::new(None),
                changes: watch::channel(0).0,
            }),
        }
    }

    /// The `[egress]` configuration.
    pub fn config(&self) -> &EgressConfig {
        &self.inner.config
    }

    /// Takes one of the `egress.max_streams` egress stream slots, for an egress that is
    /// not a hub subscriber (a follow). Hub subscriptions take theirs in
    /// [`subscribe`](Self::subscribe).
    pub fn open_stream(&self, egress: Egress) -> Result<StreamPermit, HubError> {
        let permit = self
            .inner
            .streams
            .clone()
            .try_acquire_owned()
            .map_err(|_| HubError::TooManyStreams {
                max: self.inner.config.max_streams,
            })?;
        self.inner.metrics.egress_streams_add(egress, 1);
        Ok(StreamPermit {
            _permit: permit,
            metrics: self.inner.metrics.clone(),
            egress,
        })
    }

    /// Adds a subscriber; it receives what is published from now on. Refused when
    /// `egress.max_streams` streams are open.
    pub fn subscribe(&self, request: SubscribeRequest) -> Result<Subscription, HubError> {
        let permit = self.open_stream(request.egress)?;
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let label = match &request.peer {
            Some(peer) => format!("{id}@{peer}"),
            None => id.to_string(),
        };
        let capacity = request
            .diode_capacity
            .unwrap_or(self.inner.config.diode_capacity)
            .max(1);
        let shared = Arc::new(Shared::new(id, request.egress, label, capacity));
        {
            let mut entries = self
                .inner
                .entries
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            entries.by_id.insert(
                id,
                Entry {
                    sub: shared.clone(),
                    filters: request.filters,
                    shard_id: request.shard_id,
                    deterministic_name: request.deterministic_name,
                },
            );
            self.inner.rebuild(&entries);
            if !entries.reporter {
                // Started by the first subscriber, which always runs inside tokio.
                if let Ok(rt) = tokio::runtime::Handle::try_current() {
                    entries.reporter = true;
                    let interval = Duration::from_millis(self.inner.config.drop_report_interval_ms);
                    rt.spawn(report::run(Arc::downgrade(&self.inner), interval));
                }
            }
        }
        Ok(Subscription::new(shared, self.clone(), permit))
    }

    /// Removes a subscriber (from [`Subscription`]'s `Drop`) and reports it one last
    /// time.
    fn unsubscribe(&self, shared: &Arc<Shared>) {
        {
            let mut entries = self
                .inner
                .entries
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if entries.by_id.remove(&shared.id()).is_some() {
                self.inner.rebuild(&entries);
            }
        }
        report::account(&self.inner, shared, true);
        self.inner
            .metrics
            .subscriber_ended(shared.egress(), shared.label());
    }

    /// Whether some subscription exists now.
    pub fn has_subscribers(&self) -> bool {
        !self.inner.snapshot().is_empty()
    }

    /// Subscriptions (selectors of all subscribers) now.
    pub fn subscription_count(&self) -> usize {
        self.inner.snapshot().subscriptions()
    }

    /// Clones into `Arc`s the envelopes of `entries` that some subscriber wants, before
    /// the store consumes them; `None` when nobody wants any (the common case without
    /// subscribers costs one table lookup per envelope). Publish what the store
    /// acknowledged with [`Prepared::publish_from`].
    pub fn prepare(&self, entries: &[Envelope]) -> Option<Prepared> {
        let table = self.inner.snapshot();
        if table.is_empty() {
            return None;
        }
        let envs: Vec<(usize, Arc<Envelope>)> = entries
            .iter()
            .enumerate()
            .filter(|(_, e)| table.wants(e))
            .map(|(i, e)| (i, Arc::new(e.clone())))
            .collect();
        if envs.is_empty() {
            return None;
        }
        Some(Prepared {
            table,
            envs,
            metrics: self.inner.metrics.clone(),
        })
    }

    /// Publishes envelopes directly (in-process producers, benchmarks). The collector's
    /// ingest path uses [`prepare`](Self::prepare) instead, so that only stored
    /// envelopes are published. Returns how many reached at least one subscriber.
    pub fn publish(&self, envs: &[Arc<Envelope>]) -> u64 {
        let table = self.inner.snapshot();
        if table.is_empty() {
            return 0;
        }
        let published = envs.iter().filter(|e| table.route(e) > 0).count() as u64;
        self.inner.metrics.hub_published(published);
        published
    }

    /// Publishes envelopes relayed from some collector to the groups of `scope` (see
    /// [`crate::relay`]). Returns how many reached at least one subscriber.
    pub fn publish_scoped(&self, envs: &[Arc<Envelope>], scope: Scope) -> u64 {
        let table = self.inner.snapshot();
        if table.is_empty() {
            return 0;
        }
        let published = envs
            .iter()
            .filter(|e| table.route_scoped(e, scope) > 0)
            .count() as u64;
        self.inner.metrics.hub_published(published);
        published
    }

    /// The keys of the shard groups that have members here now.
    pub fn group_keys(&self) -> Vec<GroupKey> {
        self.inner.snapshot().group_keys().collect()
    }

    /// A receiver that changes whenever a subscriber comes or goes.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }

    /// Every live subscriber's counts, by id.
    pub fn subscribers(&self) -> Vec<SubscriberStats> {
        self.inner
            .live_subscribers()
            .iter()
            .map(|s| s.stats())
            .collect()
    }

    /// Folds every subscriber's counts into the metrics and reports drops now, without
    /// waiting for the reporter's next round.
    pub fn report_now(&self) {
        report::round(&self.inner);
    }

    /// Sets the function called with every [`DropReport`] (the event queue's hook).
    pub fn set_drop_hook(&self, hook: DropHook) {
        *self
            .inner
            .hook
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(hook);
    }
}

#[cfg(test)]
mod tests;
