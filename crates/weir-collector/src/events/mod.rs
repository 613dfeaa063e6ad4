//! The collector's own events (issue 5; DESIGN.md, Observability): what happens to the
//! collector, recorded on weir-core's [`EventQueue`] and kept in the collector's store.
//!
//! - [`StreamEventStore`] ([`store`]): the queue's store, the collector-owned stream
//!   [`EVENTS_PATH`] of Loggregator `Event` envelopes ([`codec`]), published to the live
//!   hub with source id [`SOURCE_ID`] once stored.
//! - [`query`]: reading them by type and time, and following them
//!   (`GET /v1/events`, `weir events`).
//! - [`Events`]: the queue over that store, started by [`crate::Server::run`] and
//!   stopped (after writing what is buffered) before the store closes.
//!
//! Event types ([`kind`]) and their fields:
//!
//! | type | when | fields |
//! | --- | --- | --- |
//! | `collector_started` | the servers accept connections | `grpc_addr`, `http_addr` |
//! | `collector_stopping` | shutdown begins | |
//! | `config_loaded` | `weir serve` read its configuration | `file` |
//! | `stream_registered` | a stream is newly registered | `stream` |
//! | `stream_terminated` | a producer terminated a stream (again on a resent termination) | `stream`, `count` |
//! | `stream_conflict` | an append was refused: a different payload is stored | `stream`, `index` |
//! | `stream_wrong_secret` | an append or termination was refused: wrong secret | `stream` |
//! | `subscriber_dropping` | a live subscriber lost envelopes (at most one per subscriber per `egress.drop_report_interval_ms`) | `subscriber`, `egress`, `dropped`, `total`, `ended` |
//! | `retention_expired` | retention expired entries by age | `prefix`, `max_age`, `streams`, `entries`, `partitions` |
//! | `retention_size_cap` | the size cap dropped the oldest partitions | `partitions`, `entries`, `bytes_before`, `max_bytes` |
//! | `event_queue_paused`, `event_queue_resumed` | the event store failed / is back (both written once it is back) | `discarded` |
//!
//! **Agents' events.** An agent with a `weir` flusher ships its own events (see
//! `weir_agent::events` for their types) on its stream `weir/agent/<member>/+/events`,
//! exactly once like any stream. The collector stores them there and hands every newly
//! stored one to this queue as it is ([`Events::forward`]: the agent's time, type and
//! member kept), so `GET /v1/events` and `weir events` list them with the collector's
//! own; `member` tells them apart. The prefix `weir/` is otherwise reserved: ingest
//! refuses any other stream under it (`invalid`, reason `invalid_path`).

pub mod codec;
pub mod query;
pub mod store;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use weir_core::event_queue::{
    EventClient, EventQueue, EventQueueConfig, EventQueueError, StatsSnapshot,
};
use weir_store::Store;

pub use query::{EventPage, EventQuery};
pub use store::StreamEventStore;

use crate::hub::{DropReport, Hub};

/// The stream the collector keeps its events in.
pub const EVENTS_PATH: &str = "weir/+/events";

/// The source id of event envelopes (what egress subscribers select).
pub const SOURCE_ID: &str = weir_core::event_queue::EVENT_SOURCE_ID;

/// Event types the collector reports (see the module docs for their fields).
pub mod kind {
    pub const COLLECTOR_STARTED: &str = "collector_started";
    pub const COLLECTOR_STOPPING: &str = "collector_stopping";
    pub const CONFIG_LOADED: &str = "config_loaded";
    pub const STREAM_REGISTERED: &str = "stream_registered";
    pub const STREAM_TERMINATED: &str = "stream_terminated";
    pub const STREAM_CONFLICT: &str = "stream_conflict";
    pub const STREAM_WRONG_SECRET: &str = "stream_wrong_secret";
    pub const SUBSCRIBER_DROPPING: &str = "subscriber_dropping";
    pub const RETENTION_EXPIRED: &str = "retention_expired";
    pub const RETENTION_SIZE_CAP: &str = "retention_size_cap";
    pub const EVENT_QUEUE_PAUSED: &str = "event_queue_paused";
    pub const EVENT_QUEUE_RESUMED: &str = "event_queue_resumed";
}

/// The `[events]` table: the collector's event queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventsConfig {
    /// Events buffered before new ones are discarded (and counted).
    pub buffer_len: usize,
    /// Workers writing events to the store.
    pub workers: usize,
    /// Events older than this are purged (`"24h"`; units ms, s, m, h, d).
    #[serde(with = "weir_core::duration::serde_human")]
    pub max_age: Duration,
    /// How often old events are purged.
    #[serde(with = "weir_core::duration::serde_human")]
    pub purge_interval: Duration,
    /// How often a paused queue checks whether the store is back.
    #[serde(with = "weir_core::duration::serde_human")]
    pub health_check_interval: Duration,
    /// This node's name in every event; empty: the `HOSTNAME` environment variable, or
    /// `collector`.
    pub member_id: String,
}

impl Default for EventsConfig {
    fn default() -> Self {
        let core = EventQueueConfig::default();
        EventsConfig {
            buffer_len: core.buffer_len,
            workers: core.workers,
            max_age: core.max_age,
            purge_interval: core.purge_interval,
            health_check_interval: core.health_check_interval,
            member_id: String::new(),
        }
    }
}

impl EventsConfig {
    /// The queue's settings.
    pub fn queue_config(&self) -> EventQueueConfig {
        let member_id = match self.member_id.as_str() {
            "" => std::env::var("HOSTNAME")
                .ok()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "collector".to_string()),
            m => m.to_string(),
        };
        EventQueueConfig {
            buffer_len: self.buffer_len,
            workers: self.workers,
            max_age: self.max_age,
            // A zero period would make the queue's timers panic.
            health_check_interval: self.health_check_interval.max(Duration::from_millis(1)),
            purge_interval: self.purge_interval.max(Duration::from_millis(1)),
            member_id,
        }
    }
}

/// Fields of an event from pairs.
pub fn fields<const N: usize>(pairs: [(&str, String); N]) -> BTreeMap<String, String> {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// The collector's event queue over a [`StreamEventStore`]. Events added before
/// [`start`](Events::start) wait in the buffer (up to `buffer_len`).
pub struct Events {
    queue: EventQueue,
    client: EventClient,
    store: Arc<StreamEventStore>,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events")
            .field("stats", &self.queue.stats())
            .finish_non_exhaustive()
    }
}

impl Events {
    /// A queue keeping events in `store`, publishing them to `hub`.
    pub fn new(store: Arc<dyn Store>, hub: Hub, config: &EventsConfig) -> Self {
        let event_store = Arc::new(StreamEventStore::new(store, Some(hub)));
        let queue = EventQueue::new(event_store.clone(), config.queue_config());
        let client = queue.client();
        Events {
            queue,
            client,
            store: event_store,
        }
    }

    /// The handle components add events with.
    pub fn client(&self) -> &EventClient {
        &self.client
    }

    /// Adds an event; never blocks (see [`EventClient::add_with`]).
    pub fn add(&self, kind: &str, message: impl Into<String>, fields: BTreeMap<String, String>) {
        self.client.add_with(kind, message, fields);
    }

    /// Takes in an event an agent shipped (stored on its stream
    /// `weir/agent/<member>/+/events`): added as it is, with the agent's time and member.
    pub fn forward(&self, event: weir_core::event_queue::Event) {
        self.client.forward(event);
    }

    /// Reports a live subscriber's drops (the hub's drop hook).
    pub fn subscriber_dropped(&self, r: &DropReport) {
        self.add(
            kind::SUBSCRIBER_DROPPING,
            format!(
                "live subscriber {} ({}) lost {} envelopes ({} in all){}",
                r.subscriber,
                r.egress.as_str(),
                r.dropped,
                r.total,
                if r.ended { " before it ended" } else { "" }
            ),
            fields([
                ("subscriber", r.subscriber.clone()),
                ("egress", r.egress.as_str().to_string()),
                ("dropped", r.dropped.to_string()),
                ("total", r.total.to_string()),
                ("ended", r.ended.to_string()),
            ]),
        );
    }

    /// Registers the events stream and starts the queue's workers, health check and
    /// purger. A failing store does not stop the start: the first write pauses the
    /// queue until the store is back. A second start is refused.
    pub async fn start(&self) -> Result<(), EventQueueError> {
        if let Err(e) = self.store.ensure_registered().await {
            tracing::warn!("cannot register the events stream yet: {e}");
        }
        self.queue.start()
    }

    /// Stops the queue, writing what is buffered first (unless paused).
    pub async fn stop(&self) {
        self.queue.stop().await;
    }

    /// The queue's counters now.
    pub fn stats(&self) -> StatsSnapshot {
        self.queue.stats()
    }

    /// Events waiting in the buffer.
    pub fn depth(&self) -> usize {
        self.queue.depth()
    }

    /// Whether the queue is paused (its store failed).
    pub fn is_paused(&self) -> bool {
        self.queue.is_paused()
    }

    /// Runs one purge of events older than `max_age` now; returns how many went.
    pub async fn purge_now(&self) -> Result<u64, weir_core::event_queue::EventStoreError> {
        self.queue.purge_now().await
    }
}
