//! The agent's own events (issue 5; DESIGN.md, Observability): what happens to the
//! agent, on weir-core's [`EventQueue`], kept in a small bounded file of its own and
//! shipped to the collector.
//!
//! - [`file_store`]: the queue's store, `<data_dir>/events.ndjson`, bounded by bytes and
//!   lines (the oldest dropped and counted), purged by age.
//! - [`shipper`]: when the agent has a `weir` flusher, its events go to that collector
//!   too, on the stream `weir/agent/<member>/+/events`, exactly once; the collector
//!   lists them with its own (`GET /v1/events`, `weir events`). Without a `weir`
//!   flusher (or with `ship = false`) they stay local.
//! - [`limiter`]: at most one event per key (a flusher, the spool) per `rate_limit`,
//!   counting what it held back (field `suppressed`).
//! - [`spool_watch`]: turns the spool's loss counters into events.
//!
//! ```toml
//! [events]
//! member_id = ""          # this node's name in every event; empty: the host name
//! max_bytes = 1048576     # bound of events.ndjson
//! max_lines = 10000       # and in events
//! max_age = "24h"         # events older than this are purged
//! rate_limit = "10s"      # at most one event per key per this long
//! ship = true             # ship to the collector of a weir flusher
//! ship_via = ""           # that flusher's name; empty: the first weir flusher by name
//! ```
//!
//! Event types ([`kind`]) and their fields:
//!
//! | type | when | fields |
//! | --- | --- | --- |
//! | `config_loaded` | the agent starts with its configuration | `data_dir`, `sources`, `flushers` |
//! | `agent_started` | every source and flusher runs | |
//! | `agent_stopping` | shutdown begins | |
//! | `flusher_failing` | a flusher's flush failed after it had succeeded (or at its first attempt); one per flusher per `rate_limit` | `flusher`, `reason`, `suppressed` |
//! | `flusher_recovered` | a flusher that was reported failing delivered again | `flusher`, `outage_ms`, `retries` |
//! | `spool_full` | appends waited for room (`when_full = "block"`) | `blocked_appends`, `bytes`, `max_bytes` |
//! | `spool_dropped` | `when_full = "drop_oldest"` removed records not every flusher had | `count`, `total`, `max_bytes` |
//! | `dead_lettered` | a flusher refused entries for good (written to the dead-letter file, or only counted when it is full) | `flusher`, `stream`, `first_index`, `entries`, `reason`, `written`, `suppressed` |
//! | `event_queue_paused`, `event_queue_resumed` | the events file could not be written / can again | `discarded` |

pub mod file_store;
pub mod limiter;
pub mod shipper;
pub mod spool_watch;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use weir_core::event_queue::{
    Event, EventClient, EventQueue, EventQueueConfig, EventStore, EventStoreError, StatsSnapshot,
};

use crate::config::AgentConfig;
use crate::flusher::registry::FlusherConfig;
use crate::spool::Spool;
use file_store::{FileBounds, FileEventStore};
use limiter::Limiter;
use shipper::{ShipStats, Shipper};

/// Event types the agent reports (see the module docs for their fields).
pub mod kind {
    pub const CONFIG_LOADED: &str = "config_loaded";
    pub const AGENT_STARTED: &str = "agent_started";
    pub const AGENT_STOPPING: &str = "agent_stopping";
    pub const FLUSHER_FAILING: &str = "flusher_failing";
    pub const FLUSHER_RECOVERED: &str = "flusher_recovered";
    pub const SPOOL_FULL: &str = "spool_full";
    pub const SPOOL_DROPPED: &str = "spool_dropped";
    pub const DEAD_LETTERED: &str = "dead_lettered";
}

/// Content type of the agent's events stream on the collector.
pub const EVENTS_CONTENT_TYPE: &str = "application/x-loggregator-v2-envelope; kind=event";

/// The `[events]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventsConfig {
    /// This node's name in every event (and in its stream's path); empty: the host name.
    pub member_id: String,
    /// Bound of `events.ndjson` in bytes. Default 1 MiB.
    pub max_bytes: u64,
    /// Bound of `events.ndjson` in events. Default 10,000.
    pub max_lines: usize,
    /// Events older than this are purged (`"24h"`).
    #[serde(with = "weir_core::duration::serde_human")]
    pub max_age: Duration,
    /// At most one event per key (a flusher, the spool) per this long (`"10s"`).
    #[serde(with = "weir_core::duration::serde_human")]
    pub rate_limit: Duration,
    /// Events buffered before new ones are discarded (and counted).
    pub buffer_len: usize,
    /// Whether events are shipped to the collector of a `weir` flusher.
    pub ship: bool,
    /// The `weir` flusher whose collector gets the events; empty: the first by name.
    pub ship_via: String,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            member_id: String::new(),
            max_bytes: 1 << 20,
            max_lines: 10_000,
            max_age: Duration::from_secs(24 * 3600),
            rate_limit: Duration::from_secs(10),
            buffer_len: 1000,
            ship: true,
            ship_via: String::new(),
        }
    }
}

impl EventsConfig {
    /// Checks the ranges; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_bytes < 4096 {
            return Err("events.max_bytes must be at least 4096".into());
        }
        if self.max_lines < 10 {
            return Err("events.max_lines must be at least 10".into());
        }
        if self.buffer_len == 0 {
            return Err("events.buffer_len must be above 0".into());
        }
        if self.max_age.is_zero() {
            return Err("events.max_age must be above 0".into());
        }
        Ok(())
    }

    /// The member id: the configured one, else the host name, else `agent`.
    pub fn member(&self) -> String {
        if !self.member_id.is_empty() {
            return self.member_id.clone();
        }
        ["/proc/sys/kernel/hostname", "/etc/hostname"]
            .iter()
            .filter_map(|p| std::fs::read_to_string(p).ok())
            .map(|s| s.trim().to_string())
            .chain(std::env::var("HOSTNAME").ok())
            .find(|h| !h.is_empty())
            .unwrap_or_else(|| "agent".to_string())
    }

    /// The `weir` flusher events are shipped through (`None`: they stay local), or why
    /// `ship_via` is wrong.
    pub fn ship_flusher<'a>(
        &self,
        config: &'a AgentConfig,
    ) -> Result<Option<(&'a str, &'a crate::flusher::weir::WeirConfig)>, String> {
        if !self.ship {
            return Ok(None);
        }
        let weir = |name: &'a str, f: &'a FlusherConfig| match f {
            FlusherConfig::Weir(c) => Some((name, c)),
            _ => None,
        };
        if self.ship_via.is_empty() {
            return Ok(config
                .flushers
                .iter()
                .find_map(|(n, s)| weir(n.as_str(), &s.config)));
        }
        match config.flushers.get_key_value(&self.ship_via) {
            Some((n, s)) => weir(n.as_str(), &s.config)
                .map(Some)
                .ok_or_else(|| format!("flusher {:?} is not of type \"weir\"", self.ship_via)),
            None => Err(format!("no flusher is named {:?}", self.ship_via)),
        }
    }
}

/// Fields of an event from pairs.
pub fn fields<const N: usize>(pairs: [(&str, String); N]) -> BTreeMap<String, String> {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// The handle components report events with: cheap to clone, never blocks.
#[derive(Clone)]
pub struct AgentEvents {
    client: EventClient,
    limiter: Arc<Limiter>,
}

impl std::fmt::Debug for AgentEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentEvents").finish_non_exhaustive()
    }
}

/// A store that keeps nothing (behind [`AgentEvents::noop`]).
struct Nowhere;

#[async_trait::async_trait]
impl EventStore for Nowhere {
    async fn put(&self, _: Vec<Event>) -> Result<(), EventStoreError> {
        Ok(())
    }
    async fn healthy(&self) -> bool {
        true
    }
    async fn purge_before(&self, _: i64) -> Result<u64, EventStoreError> {
        Ok(0)
    }
}

impl AgentEvents {
    /// A handle whose events go nowhere (for components run without an agent, such as
    /// `weir replay-dead-letters`, and tests).
    pub fn noop() -> Self {
        let queue = EventQueue::new(
            Arc::new(Nowhere),
            EventQueueConfig {
                buffer_len: 1,
                ..EventQueueConfig::default()
            },
        );
        AgentEvents {
            client: queue.client(),
            limiter: Arc::new(Limiter::new(Duration::ZERO)),
        }
    }

    /// Adds an event.
    pub fn add(&self, kind: &str, message: impl Into<String>, fields: BTreeMap<String, String>) {
        self.client.add_with(kind, message, fields);
    }

    /// Adds an event unless one of `key` passed within the rate limit; the one that
    /// passes carries the count held back as field `suppressed`. Whether it passed.
    pub fn add_limited(
        &self,
        key: &str,
        kind: &str,
        message: impl Into<String>,
        mut fields: BTreeMap<String, String>,
    ) -> bool {
        let Some(held) = self.limiter.check(key) else {
            return false;
        };
        if held > 0 {
            fields.insert("suppressed".into(), held.to_string());
        }
        self.add(kind, message, fields);
        true
    }

    /// [`add_limited`](Self::add_limited) for events whose fields carry the whole count
    /// since the last one (held-back attempts are not counted).
    pub fn add_quiet_limited(
        &self,
        key: &str,
        kind: &str,
        message: impl Into<String>,
        fields: BTreeMap<String, String>,
    ) -> bool {
        if !self.limiter.check_quiet(key) {
            return false;
        }
        self.add(kind, message, fields);
        true
    }

    /// A flusher began failing; whether the event passed the rate limit (only then is
    /// its recovery reported).
    pub fn flusher_failing(&self, flusher: &str, reason: &str) -> bool {
        self.add_limited(
            &format!("flusher_failing/{flusher}"),
            kind::FLUSHER_FAILING,
            format!("flusher {flusher} is failing: {reason}"),
            fields([
                ("flusher", flusher.to_string()),
                ("reason", reason.to_string()),
            ]),
        )
    }

    /// A flusher reported failing delivers again after `outage` and `retries` retries.
    pub fn flusher_recovered(&self, flusher: &str, outage: Duration, retries: u32) {
        self.add(
            kind::FLUSHER_RECOVERED,
            format!(
                "flusher {flusher} recovered after {} ms and {retries} retries",
                outage.as_millis()
            ),
            fields([
                ("flusher", flusher.to_string()),
                ("outage_ms", outage.as_millis().to_string()),
                ("retries", retries.to_string()),
            ]),
        );
    }

    /// A flusher refused a run of entries for good.
    pub fn dead_lettered(
        &self,
        flusher: &str,
        stream: &str,
        first_index: u64,
        entries: usize,
        reason: &str,
        written: bool,
    ) {
        self.add_limited(
            &format!("dead_lettered/{flusher}"),
            kind::DEAD_LETTERED,
            format!(
                "flusher {flusher} refused {entries} entries of {stream} from index {first_index} for good ({reason}){}",
                if written {
                    "; kept in the dead-letter file"
                } else {
                    "; the dead-letter file is full: only counted"
                }
            ),
            fields([
                ("flusher", flusher.to_string()),
                ("stream", stream.to_string()),
                ("first_index", first_index.to_string()),
                ("entries", entries.to_string()),
                ("reason", reason.to_string()),
                ("written", written.to_string()),
            ]),
        );
    }
}

/// Why the agent's events cannot start.
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    #[error("events file under {path}: {source}")]
    File {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Config(String),
}

/// The counts of the agent's events, for its metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventsStats {
    pub queue: StatsSnapshot,
    /// Events dropped from the file by its bound.
    pub file_dropped: u64,
    /// Events the collector acknowledged.
    pub shipped: u64,
    /// Events the collector refused for good.
    pub unshipped: u64,
}

/// The agent's event queue, its file and its shipper, running.
pub struct EventsRuntime {
    queue: EventQueue,
    store: Arc<FileEventStore>,
    events: AgentEvents,
    ship_stats: Arc<ShipStats>,
    ship_stop: watch::Sender<Option<tokio::time::Instant>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    shipper: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for EventsRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventsRuntime").finish_non_exhaustive()
    }
}

impl EventsRuntime {
    /// Opens the events file under `config.data_dir`, starts the queue and, when a
    /// `weir` flusher is there to ship through, the shipper. Needs a tokio runtime.
    pub fn start(config: &AgentConfig) -> Result<Self, EventsError> {
        let ec = &config.events;
        let store = Arc::new(
            FileEventStore::open(
                &config.data_dir,
                FileBounds {
                    max_bytes: ec.max_bytes,
                    max_lines: ec.max_lines,
                },
            )
            .map_err(|source| EventsError::File {
                path: config.data_dir.clone(),
                source,
            })?,
        );
        let member = ec.member();
        let queue = EventQueue::new(
            store.clone(),
            EventQueueConfig {
                buffer_len: ec.buffer_len,
                // One worker keeps the file in the order events were added.
                workers: 1,
                max_age: ec.max_age,
                member_id: member.clone(),
                ..EventQueueConfig::default()
            },
        );
        queue
            .start()
            .map_err(|e| EventsError::Config(e.to_string()))?;
        let events = AgentEvents {
            client: queue.client(),
            limiter: Arc::new(Limiter::new(ec.rate_limit)),
        };
        let ship_stats = Arc::new(ShipStats::default());
        let (ship_stop, stop_rx) = watch::channel(None);
        let shipper = match ec.ship_flusher(config).map_err(EventsError::Config)? {
            Some((name, weir)) => {
                let mut weir = weir.clone();
                weir.content_type = EVENTS_CONTENT_TYPE.to_string();
                let dir = ship_dir(&config.data_dir);
                std::fs::create_dir_all(&dir).map_err(|source| EventsError::File {
                    path: dir.clone(),
                    source,
                })?;
                let stream = weir_core::path::agent_events_path(&member);
                tracing::info!(flusher = %name, %stream, "shipping the agent's events to the collector");
                let shipper = Shipper {
                    store: store.clone(),
                    flusher: FlusherConfig::Weir(weir).build(&dir.join("flusher")),
                    stream: stream.into(),
                    state_path: dir.join("shipped.json"),
                    retry: config.retry.clone(),
                    stats: ship_stats.clone(),
                    stop: stop_rx,
                };
                Some(tokio::spawn(shipper.run()))
            }
            None => None,
        };
        Ok(EventsRuntime {
            queue,
            store,
            events,
            ship_stats,
            ship_stop,
            tasks: Mutex::new(Vec::new()),
            shipper: Mutex::new(shipper),
        })
    }

    /// The handle to report events with.
    pub fn events(&self) -> &AgentEvents {
        &self.events
    }

    /// The events file.
    pub fn store(&self) -> &Arc<FileEventStore> {
        &self.store
    }

    /// The counts now.
    pub fn stats(&self) -> EventsStats {
        use std::sync::atomic::Ordering::Relaxed;
        EventsStats {
            queue: self.queue.stats(),
            file_dropped: self.store.dropped(),
            shipped: self.ship_stats.shipped.load(Relaxed),
            unshipped: self.ship_stats.unshipped.load(Relaxed),
        }
    }

    /// Keeps `weir_agent_events_total{outcome}` up to date with these counts (refreshed
    /// when scraped).
    pub fn export_metrics(self: &Arc<Self>, metrics: &crate::metrics::AgentMetrics) {
        const OUTCOMES: [&str; 6] = [
            "stored",
            "discarded_full",
            "discarded_paused",
            "dropped_bound",
            "shipped",
            "unshipped",
        ];
        let counters = OUTCOMES.map(|o| metrics.events(o));
        let me = Arc::downgrade(self);
        let seen = Mutex::new([0u64; 6]);
        metrics.on_scrape(move |_| {
            let Some(me) = me.upgrade() else { return };
            let s = me.stats();
            let now = [
                s.queue.stored,
                s.queue.discarded_full,
                s.queue.discarded_paused,
                s.file_dropped,
                s.shipped,
                s.unshipped,
            ];
            let mut seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
            for (i, c) in counters.iter().enumerate() {
                c.inc_by(now[i].saturating_sub(seen[i]));
                seen[i] = seen[i].max(now[i]);
            }
        });
    }

    /// Reports `spool`'s losses as events, naming it `name`, until [`stop`](Self::stop).
    pub fn watch_spool(&self, spool: Spool, name: impl Into<String>) {
        let task = tokio::spawn(spool_watch::watch(spool, name.into(), self.events.clone()));
        self.tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(task);
    }

    /// Stops the watchers, writes what the queue holds, and gives the shipper until
    /// `deadline` to ship what is left (what it cannot ship is shipped at the next
    /// start).
    pub async fn stop(&self, deadline: tokio::time::Instant) {
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(PoisonError::into_inner));
        for t in tasks {
            t.abort();
            // Awaited, so nothing a watcher holds (a spool handle) outlives the stop:
            // `weir run` removes the data directory right after.
            let _ = t.await;
        }
        self.queue.stop().await;
        let _ = self.ship_stop.send(Some(deadline));
        let shipper = self
            .shipper
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(mut task) = shipper
            && tokio::time::timeout_at(deadline, &mut task).await.is_err()
        {
            task.abort();
        }
    }
}

/// Where the shipper keeps its position and its flusher's secret.
pub fn ship_dir(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("events")
}
