//! The event queue: components' own events (started, paused, flusher failing, stream
//! refused, …) on a bounded queue served by workers (after 9volt's event queue).
//!
//! - [`EventClient::add`] never blocks: when the buffer is full the event is discarded and
//!   counted (`discarded_full`).
//! - Workers write events to an [`EventStore`]. When a write fails the queue **pauses**:
//!   events added while paused are discarded and counted (`discarded_paused`), and a
//!   periodic health check resumes it once the store answers again. The pause and the
//!   resume are then written as events themselves (`event_queue_paused`,
//!   `event_queue_resumed`), since while paused there is nowhere to write them.
//! - A purger removes events older than `max_age` (24 h by default).
//! - [`EventQueue::start`] may be called once; a second start is refused.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Mutex, mpsc, watch};
use tokio::task::JoinHandle;

use crate::now_ns;

/// One event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// What happened, e.g. `flusher_failing`, `stream_conflict`.
    pub kind: String,
    /// A sentence for people.
    pub message: String,
    /// When, Unix nanoseconds.
    pub timestamp_ns: i64,
    /// The node that reported it (its name).
    pub member_id: String,
    /// Details as key-value pairs (stream, flusher, count, …).
    pub fields: BTreeMap<String, String>,
}

/// The source id of event envelopes (what egress subscribers select).
pub const EVENT_SOURCE_ID: &str = "weir";

impl Event {
    /// The event as a Loggregator v2 `Event` envelope: `kind` → `event.title`, `message`
    /// → `event.body`, `timestamp_ns` → `timestamp`, `member_id` → `instance_id`,
    /// `fields` → `tags`, source id [`EVENT_SOURCE_ID`].
    pub fn to_envelope(&self) -> crate::Envelope {
        use weir_proto::lv2::{self, envelope::Message as Body};
        crate::Envelope {
            timestamp: self.timestamp_ns,
            source_id: EVENT_SOURCE_ID.to_string(),
            instance_id: self.member_id.clone(),
            tags: self
                .fields
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            message: Some(Body::Event(lv2::Event {
                title: self.kind.clone(),
                body: self.message.clone(),
            })),
            ..Default::default()
        }
    }

    /// The event an envelope carries (the inverse of [`Event::to_envelope`]); `None`
    /// when it is not an `Event` envelope.
    pub fn from_envelope(envelope: &crate::Envelope) -> Option<Event> {
        use weir_proto::lv2::envelope::Message as Body;
        let Some(Body::Event(e)) = &envelope.message else {
            return None;
        };
        Some(Event {
            kind: e.title.clone(),
            message: e.body.clone(),
            timestamp_ns: envelope.timestamp,
            member_id: envelope.instance_id.clone(),
            fields: envelope
                .tags
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        })
    }
}

/// Why the event store failed.
#[derive(Debug, thiserror::Error)]
#[error("event store: {0}")]
pub struct EventStoreError(pub String);

/// Where events are kept.
#[async_trait::async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Stores events.
    async fn put(&self, events: Vec<Event>) -> Result<(), EventStoreError>;
    /// Whether the store can take writes again (called while the queue is paused).
    async fn healthy(&self) -> bool;
    /// Removes events older than `cutoff_ns`; returns how many.
    async fn purge_before(&self, cutoff_ns: i64) -> Result<u64, EventStoreError>;
}

/// Settings of an [`EventQueue`].
#[derive(Debug, Clone)]
pub struct EventQueueConfig {
    /// Events buffered before `add` discards (default 1000).
    pub buffer_len: usize,
    /// Workers writing to the store (default 2).
    pub workers: usize,
    /// Events older than this are purged (default 24 h).
    pub max_age: Duration,
    /// How often a paused queue checks the store (default 5 s).
    pub health_check_interval: Duration,
    /// How often old events are purged (default 10 min).
    pub purge_interval: Duration,
    /// This node's name, written into every event.
    pub member_id: String,
}

impl Default for EventQueueConfig {
    fn default() -> Self {
        EventQueueConfig {
            buffer_len: 1000,
            workers: 2,
            max_age: Duration::from_secs(24 * 3600),
            health_check_interval: Duration::from_secs(5),
            purge_interval: Duration::from_secs(600),
            member_id: "weir".to_string(),
        }
    }
}

/// Counters of a queue; read them with [`EventQueue::stats`].
#[derive(Debug, Default)]
pub struct EventQueueStats {
    /// Events accepted into the buffer.
    pub added: AtomicU64,
    /// Events written to the store.
    pub stored: AtomicU64,
    /// Discarded because the buffer was full.
    pub discarded_full: AtomicU64,
    /// Discarded because the queue was paused (including the event whose write failed).
    pub discarded_paused: AtomicU64,
    /// Failed writes (each one pauses the queue).
    pub store_failures: AtomicU64,
    /// Events purged for age.
    pub purged: AtomicU64,
    /// Times the queue paused.
    pub pauses: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub added: u64,
    pub stored: u64,
    pub discarded_full: u64,
    pub discarded_paused: u64,
    pub store_failures: u64,
    pub purged: u64,
    pub pauses: u64,
}

impl EventQueueStats {
    fn snapshot(&self) -> StatsSnapshot {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsSnapshot {
            added: l(&self.added),
            stored: l(&self.stored),
            discarded_full: l(&self.discarded_full),
            discarded_paused: l(&self.discarded_paused),
            store_failures: l(&self.store_failures),
            purged: l(&self.purged),
            pauses: l(&self.pauses),
        }
    }
}

/// Errors of starting a queue.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum EventQueueError {
    #[error("the event queue was already started")]
    AlreadyStarted,
}

struct Shared {
    config: EventQueueConfig,
    store: Arc<dyn EventStore>,
    stats: EventQueueStats,
    paused: AtomicBool,
    /// Why and when the current pause began.
    pause_info: std::sync::Mutex<Option<(i64, String, u64)>>,
}

/// A cheap handle that adds events; clone it into every component.
#[derive(Clone)]
pub struct EventClient {
    shared: Arc<Shared>,
    tx: mpsc::Sender<Event>,
}

impl EventClient {
    /// Adds an event of `kind`; never blocks.
    pub fn add(&self, kind: &str, message: impl Into<String>) {
        self.add_with(kind, message, BTreeMap::new());
    }

    /// Adds an event with fields; never blocks.
    pub fn add_with(
        &self,
        kind: &str,
        message: impl Into<String>,
        fields: BTreeMap<String, String>,
    ) {
        let stats = &self.shared.stats;
        if self.shared.paused.load(Ordering::Acquire) {
            stats.discarded_paused.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let event = Event {
            kind: kind.to_string(),
            message: message.into(),
            timestamp_ns: now_ns(),
            member_id: self.shared.config.member_id.clone(),
            fields,
        };
        self.push(event);
    }

    /// Adds an event made elsewhere as it is (its time and member kept): how a
    /// collector takes in the events agents ship. Never blocks; counted as `add` is.
    pub fn forward(&self, event: Event) {
        if self.shared.paused.load(Ordering::Acquire) {
            self.shared
                .stats
                .discarded_paused
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.push(event);
    }

    fn push(&self, event: Event) {
        let stats = &self.shared.stats;
        match self.tx.try_send(event) {
            Ok(()) => stats.added.fetch_add(1, Ordering::Relaxed),
            Err(_) => stats.discarded_full.fetch_add(1, Ordering::Relaxed),
        };
    }
}

/// The queue: a bounded buffer, its workers, the health checker and the purger.
pub struct EventQueue {
    shared: Arc<Shared>,
    tx: mpsc::Sender<Event>,
    rx: std::sync::Mutex<Option<mpsc::Receiver<Event>>>,
    stop: watch::Sender<bool>,
    tasks: std::sync::Mutex<Vec<JoinHandle<()>>>,
}

impl EventQueue {
    /// A queue writing to `store`; nothing runs until [`EventQueue::start`].
    pub fn new(store: Arc<dyn EventStore>, config: EventQueueConfig) -> Self {
        let (tx, rx) = mpsc::channel(config.buffer_len.max(1));
        EventQueue {
            shared: Arc::new(Shared {
                config,
                store,
                stats: EventQueueStats::default(),
                paused: AtomicBool::new(false),
                pause_info: std::sync::Mutex::new(None),
            }),
            tx,
            rx: std::sync::Mutex::new(Some(rx)),
            stop: watch::channel(false).0,
            tasks: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// A handle to add events.
    pub fn client(&self) -> EventClient {
        EventClient {
            shared: self.shared.clone(),
            tx: self.tx.clone(),
        }
    }

    /// The counters now.
    pub fn stats(&self) -> StatsSnapshot {
        self.shared.stats.snapshot()
    }

    /// Whether the queue is paused because its store failed.
    pub fn is_paused(&self) -> bool {
        self.shared.paused.load(Ordering::Acquire)
    }

    /// Events waiting in the buffer.
    pub fn depth(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Starts the workers, the health checker and the purger (on the current tokio
    /// runtime). A second call is refused.
    pub fn start(&self) -> Result<(), EventQueueError> {
        let rx = self
            .rx
            .lock()
            .map_err(|_| EventQueueError::AlreadyStarted)?
            .take()
            .ok_or(EventQueueError::AlreadyStarted)?;
        let rx = Arc::new(Mutex::new(rx));
        let mut tasks = Vec::new();
        for _ in 0..self.shared.config.workers.max(1) {
            tasks.push(tokio::spawn(worker(
                self.shared.clone(),
                rx.clone(),
                self.stop.subscribe(),
            )));
        }
        tasks.push(tokio::spawn(health_checker(
            self.shared.clone(),
            self.stop.subscribe(),
        )));
        tasks.push(tokio::spawn(purger(
            self.shared.clone(),
            self.stop.subscribe(),
        )));
        if let Ok(mut t) = self.tasks.lock() {
            t.extend(tasks);
        }
        Ok(())
    }

    /// Runs one purge now; returns how many events were removed.
    pub async fn purge_now(&self) -> Result<u64, EventStoreError> {
        purge_once(&self.shared).await
    }

    /// Runs one health check now (what the periodic checker does).
    pub async fn check_now(&self) {
        check_once(&self.shared).await;
    }

    /// Stops the tasks; workers write what is buffered first (unless paused).
    pub async fn stop(&self) {
        let _ = self.stop.send(true);
        let tasks = match self.tasks.lock() {
            Ok(mut t) => std::mem::take(&mut *t),
            Err(_) => Vec::new(),
        };
        for t in tasks {
            let _ = t.await;
        }
    }
}

async fn worker(
    shared: Arc<Shared>,
    rx: Arc<Mutex<mpsc::Receiver<Event>>>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let event = {
            let mut rx = rx.lock().await;
            if *stop.borrow() {
                // Drain what is buffered, then leave.
                match rx.try_recv() {
                    Ok(e) => e,
                    Err(_) => return,
                }
            } else {
                tokio::select! {
                    e = rx.recv() => match e { Some(e) => e, None => return },
                    _ = stop.changed() => continue,
                }
            }
        };
        write_event(&shared, event).await;
    }
}

async fn write_event(shared: &Shared, event: Event) {
    let stats = &shared.stats;
    if shared.paused.load(Ordering::Acquire) {
        stats.discarded_paused.fetch_add(1, Ordering::Relaxed);
        return;
    }
    match shared.store.put(vec![event]).await {
        Ok(()) => {
            stats.stored.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => {
            stats.store_failures.fetch_add(1, Ordering::Relaxed);
            stats.discarded_paused.fetch_add(1, Ordering::Relaxed);
            if !shared.paused.swap(true, Ordering::AcqRel) {
                stats.pauses.fetch_add(1, Ordering::Relaxed);
                let discarded_before = stats.discarded_paused.load(Ordering::Relaxed);
                if let Ok(mut info) = shared.pause_info.lock() {
                    *info = Some((now_ns(), e.to_string(), discarded_before - 1));
                }
            }
        }
    }
}

async fn health_checker(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(shared.config.health_check_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => check_once(&shared).await,
            _ = stop.changed() => return,
        }
    }
}

/// Resumes a paused queue when the store is healthy, writing the pause and the resume.
async fn check_once(shared: &Shared) {
    if !shared.paused.load(Ordering::Acquire) || !shared.store.healthy().await {
        return;
    }
    let stats = &shared.stats;
    let info = shared.pause_info.lock().ok().and_then(|mut i| i.take());
    let (since, reason, before) = info.unwrap_or((now_ns(), "unknown".into(), 0));
    let discarded = stats.discarded_paused.load(Ordering::Relaxed) - before;
    let member = shared.config.member_id.clone();
    let mk = |kind: &str, message: String, ts: i64| Event {
        kind: kind.into(),
        message,
        timestamp_ns: ts,
        member_id: member.clone(),
        fields: BTreeMap::from([("discarded".to_string(), discarded.to_string())]),
    };
    let events = vec![
        mk(
            "event_queue_paused",
            format!("event queue paused: {reason}"),
            since,
        ),
        mk(
            "event_queue_resumed",
            format!("event queue resumed; {discarded} events discarded while paused"),
            now_ns(),
        ),
    ];
    if shared.store.put(events).await.is_ok() {
        stats.stored.fetch_add(2, Ordering::Relaxed);
        shared.paused.store(false, Ordering::Release);
    } else if let Ok(mut i) = shared.pause_info.lock() {
        // Still failing: stay paused, keep what we know about the pause.
        *i = Some((since, reason, before));
    }
}

async fn purger(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(shared.config.purge_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => { let _ = purge_once(&shared).await; }
            _ = stop.changed() => return,
        }
    }
}

async fn purge_once(shared: &Shared) -> Result<u64, EventStoreError> {
    let cutoff = now_ns() - shared.config.max_age.as_nanos() as i64;
    let n = shared.store.purge_before(cutoff).await?;
    shared.stats.purged.fetch_add(n, Ordering::Relaxed);
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex as StdMutex;

    /// An event store in memory whose writes fail while `failing` is set; it stands in
    /// for a store that goes down, which the queue must survive.
    struct FlakyStore {
        events: StdMutex<Vec<Event>>,
        failing: AtomicBool,
        /// Released once per `put`, so a test can wait for a write without sleeping.
        wrote: tokio::sync::Semaphore,
    }

    impl Default for FlakyStore {
        fn default() -> Self {
            FlakyStore {
                events: StdMutex::new(Vec::new()),
                failing: AtomicBool::new(false),
                wrote: tokio::sync::Semaphore::new(0),
            }
        }
    }

    #[async_trait::async_trait]
    impl EventStore for FlakyStore {
        async fn put(&self, events: Vec<Event>) -> Result<(), EventStoreError> {
            let r = if self.failing.load(Ordering::SeqCst) {
                Err(EventStoreError("disk on fire".into()))
            } else {
                self.events.lock().unwrap().extend(events);
                Ok(())
            };
            self.wrote.add_permits(1);
            r
        }
        async fn healthy(&self) -> bool {
            !self.failing.load(Ordering::SeqCst)
        }
        async fn purge_before(&self, cutoff_ns: i64) -> Result<u64, EventStoreError> {
            let mut ev = self.events.lock().unwrap();
            let before = ev.len();
            ev.retain(|e| e.timestamp_ns >= cutoff_ns);
            Ok((before - ev.len()) as u64)
        }
    }

    fn config(buffer_len: usize) -> EventQueueConfig {
        EventQueueConfig {
            buffer_len,
            workers: 2,
            // Long periods: tests drive checks and purges themselves.
            health_check_interval: Duration::from_secs(3600),
            purge_interval: Duration::from_secs(3600),
            ..EventQueueConfig::default()
        }
    }

    #[test]
    fn full_buffer_discards_counts_and_never_blocks() {
        let store = Arc::new(FlakyStore::default());
        let q = EventQueue::new(store, config(10));
        let c = q.client();
        let start = std::time::Instant::now();
        for i in 0..1000 {
            c.add("test", format!("event {i}"));
        }
        // Not started: nothing drains, so exactly the buffer's worth was accepted.
        assert_eq!(q.stats().added, 10);
        assert_eq!(q.stats().discarded_full, 990);
        assert_eq!(q.depth(), 10);
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "add returned at once"
        );
    }

    #[tokio::test]
    async fn second_start_refused_and_events_stored() {
        let store = Arc::new(FlakyStore::default());
        let q = EventQueue::new(store.clone(), config(100));
        q.start().unwrap();
        assert_eq!(q.start(), Err(EventQueueError::AlreadyStarted));
        let c = q.client();
        for i in 0..20 {
            c.add("test", format!("event {i}"));
        }
        let _ = store.wrote.acquire_many(20).await.unwrap();
        q.stop().await;
        let events = store.events.lock().unwrap();
        assert_eq!(events.len(), 20);
        assert!(
            events
                .iter()
                .all(|e| e.member_id == "weir" && e.kind == "test")
        );
    }

    #[tokio::test]
    async fn failing_store_pauses_then_recovery_resumes_with_events() {
        let store = Arc::new(FlakyStore::default());
        let q = EventQueue::new(store.clone(), config(100));
        q.start().unwrap();
        let c = q.client();
        store.failing.store(true, Ordering::SeqCst);
        c.add("test", "lost while failing");
        let _ = store.wrote.acquire().await.unwrap();
        // The worker marks the pause right after the failed write returns.
        tokio::time::timeout(Duration::from_secs(10), async {
            while !q.is_paused() {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("queue pauses after a failed write");
        for _ in 0..5 {
            c.add("test", "discarded while paused");
        }
        let s = q.stats();
        assert_eq!(s.store_failures, 1);
        assert_eq!(s.discarded_paused, 6);
        // Still failing: a check keeps it paused.
        q.check_now().await;
        assert!(q.is_paused());
        store.failing.store(false, Ordering::SeqCst);
        q.check_now().await;
        assert!(!q.is_paused());
        {
            let ev = store.events.lock().unwrap();
            let kinds: Vec<&str> = ev.iter().map(|e| e.kind.as_str()).collect();
            assert_eq!(kinds, vec!["event_queue_paused", "event_queue_resumed"]);
            assert_eq!(ev[1].fields["discarded"], "6");
            assert!(ev[0].message.contains("disk on fire"));
        }
        c.add("test", "after resume");
        let _ = store.wrote.acquire_many(2).await.unwrap();
        q.stop().await;
        assert_eq!(store.events.lock().unwrap().len(), 3);
    }

    #[tokio::test]
    async fn purge_removes_only_events_past_max_age() {
        let store = Arc::new(FlakyStore::default());
        let day = 24 * 3600 * 1_000_000_000i64;
        let mk = |ts| Event {
            kind: "old".into(),
            message: String::new(),
            timestamp_ns: ts,
            member_id: "n".into(),
            fields: BTreeMap::new(),
        };
        store
            .put(vec![
                mk(now_ns() - 2 * day),
                mk(now_ns() - day / 2),
                mk(now_ns()),
            ])
            .await
            .unwrap();
        let q = EventQueue::new(store.clone(), config(10));
        assert_eq!(q.purge_now().await.unwrap(), 1);
        assert_eq!(store.events.lock().unwrap().len(), 2);
        assert_eq!(q.stats().purged, 1);
    }
}
