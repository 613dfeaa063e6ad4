//! The collector's own events (issue 5): each one appears when its cause is provoked
//! against an in-process server on loopback over a real store; `GET /v1/events` filters
//! by type, time and index; events reach live subscribers as Loggregator `Event`
//! envelopes with source id `weir`.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use serde_json::Value;
use weir_collector::CollectorConfig;
use weir_collector::events::query::{self, EventQuery};
use weir_collector::events::{EVENTS_PATH, kind};
use weir_collector::hub::{Egress, Filter, Kind, Names, SubscribeRequest};
use weir_collector::metrics::protocol;
use weir_collector::retention::RetentionRule;
use weir_proto::lv2::envelope::Message as Body;
use weir_proto::wv1;
use weir_store::{
    AppendOutcome, AppendRequest, Appended, FjallConfig, FjallStore, FsyncPolicy, Owner,
    PartitionUsage, ReadBatch, RegisterOutcome, Registration, RetentionReport, Store, StoreError,
    StreamState, TerminateOutcome,
};

use common::{TestServer, append, lg_log};

const DAY_NS: i64 = 86_400 * 1_000_000_000;
/// How long a test waits for an event before failing.
const WAIT: Duration = Duration::from_secs(30);

/// The real store with a switch that makes writes and lookups of the events stream
/// fail, as a store that goes down would; everything else goes straight through.
struct FaultyStore {
    inner: Arc<dyn Store>,
    failing: AtomicBool,
}

impl FaultyStore {
    fn check(&self, path: &str) -> Result<(), StoreError> {
        if path == EVENTS_PATH && self.failing.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("injected failure".into()));
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Store for FaultyStore {
    async fn register(&self, reg: Registration) -> Result<RegisterOutcome, StoreError> {
        self.check(&reg.path)?;
        self.inner.register(reg).await
    }
    async fn append(&self, req: AppendRequest) -> Result<AppendOutcome, StoreError> {
        self.check(&req.path)?;
        self.inner.append(req).await
    }
    async fn terminate(
        &self,
        path: &str,
        owner: &Owner,
        count: u64,
    ) -> Result<TerminateOutcome, StoreError> {
        self.inner.terminate(path, owner, count).await
    }
    async fn stream(&self, path: &str) -> Result<Option<StreamState>, StoreError> {
        self.check(path)?;
        self.inner.stream(path).await
    }
    async fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StreamState>, StoreError> {
        self.inner.list(prefix, after, limit).await
    }
    async fn read(
        &self,
        path: &str,
        from: u64,
        limit: usize,
    ) -> Result<Option<ReadBatch>, StoreError> {
        self.inner.read(path, from, limit).await
    }
    async fn index_at_time(&self, path: &str, time_ns: i64) -> Result<Option<u64>, StoreError> {
        self.inner.index_at_time(path, time_ns).await
    }
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Appended> {
        self.inner.subscribe()
    }
    async fn expire_before(&self, cutoff_ns: i64) -> Result<RetentionReport, StoreError> {
        self.inner.expire_before(cutoff_ns).await
    }
    async fn expire_stream(&self, path: &str, low_water: u64) -> Result<Option<u64>, StoreError> {
        self.inner.expire_stream(path, low_water).await
    }
    async fn partitions(&self) -> Result<Vec<PartitionUsage>, StoreError> {
        self.inner.partitions().await
    }
    async fn close(&self) -> Result<(), StoreError> {
        self.inner.close().await
    }
}

/// A fjall store in `dir` whose ingest clock is the real one plus `offset` (ns).
fn store_with_offset(dir: &std::path::Path, offset: Arc<AtomicI64>) -> Arc<dyn Store> {
    let config = FjallConfig {
        data_dir: dir.to_path_buf(),
        fsync: FsyncPolicy::Never,
        ..FjallConfig::default()
    };
    let clock = move || weir_core::now_ns() + offset.load(Ordering::SeqCst);
    Arc::new(FjallStore::open_with_clock(config, Arc::new(clock)).expect("open store"))
}

/// Reads `GET /v1/events?follow=true&…` until `n` events arrived; returns them.
async fn follow(server: &TestServer, query: &str, n: usize) -> Vec<Value> {
    let url = server.http_url(&format!("/v1/events?follow=true&{query}"));
    let mut resp = reqwest::get(url).await.expect("follow events");
    assert_eq!(resp.status().as_u16(), 200);
    let mut buf = String::new();
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, async {
        while out.len() < n {
            let chunk = resp
                .chunk()
                .await
                .expect("read events")
                .expect("the event stream ended early");
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let event: String = buf.drain(..end + 2).collect();
                if let Some(data) = event.trim_end().strip_prefix("data: ") {
                    out.push(serde_json::from_str::<Value>(data).expect("event JSON"));
                }
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("fewer than {n} events for {query} within {WAIT:?}: {out:?}"));
    out
}

/// The first event of type `kind` (waiting for it).
async fn event_of(server: &TestServer, kind: &str) -> Value {
    follow(server, &format!("type={kind}"), 1).await.remove(0)
}

fn field<'a>(event: &'a Value, name: &str) -> &'a str {
    event["fields"][name]
        .as_str()
        .unwrap_or_else(|| panic!("no field {name} in {event}"))
}

async fn get_json(server: &TestServer, path_and_query: &str) -> (u16, Value) {
    let resp = reqwest::get(server.http_url(path_and_query))
        .await
        .expect("get");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("json"))
}

fn bundle(streams: Vec<wv1::StreamAppend>) -> wv1::Bundle {
    wv1::Bundle { streams }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_appear_when_their_cause_is_provoked() {
    let dir = tempfile::tempdir().expect("temp dir");
    let offset = Arc::new(AtomicI64::new(0));
    let faulty = Arc::new(FaultyStore {
        inner: store_with_offset(dir.path(), offset.clone()),
        failing: AtomicBool::new(false),
    });
    let mut config = CollectorConfig::default();
    config.events.health_check_interval = Duration::from_millis(50);
    config.retention.interval = Duration::from_secs(1);
    config.retention.rules = vec![RetentionRule {
        prefix: "host/".into(),
        max_age: Duration::from_secs(2 * 86_400),
    }];
    let server = TestServer::start_with_store(
        config,
        (tempfile::tempdir().expect("temp dir"), faulty.clone()),
    )
    .await;
    let c = server.collector.clone();

    let started = event_of(&server, kind::COLLECTOR_STARTED).await;
    assert_eq!(field(&started, "http_addr"), server.http.to_string());

    // Registered, conflict, wrong secret, terminated.
    c.process(bundle(vec![append("app/+/a", "s1", 0, &["x", "y"])]))
        .await;
    let registered = event_of(&server, kind::STREAM_REGISTERED).await;
    assert_eq!(field(&registered, "stream"), "app/+/a");
    c.process(bundle(vec![append("app/+/a", "s1", 1, &["other"])]))
        .await;
    let conflict = event_of(&server, kind::STREAM_CONFLICT).await;
    assert_eq!(
        (field(&conflict, "stream"), field(&conflict, "index")),
        ("app/+/a", "1")
    );
    c.process(bundle(vec![append("app/+/a", "s2", 2, &["z"])]))
        .await;
    let wrong = event_of(&server, kind::STREAM_WRONG_SECRET).await;
    assert_eq!(field(&wrong, "stream"), "app/+/a");
    let mut end = append("app/+/a", "s1", 2, &["z"]);
    end.terminal_count = Some(3);
    c.process(bundle(vec![end])).await;
    let terminated = event_of(&server, kind::STREAM_TERMINATED).await;
    assert_eq!(
        (field(&terminated, "stream"), field(&terminated, "count")),
        ("app/+/a", "3")
    );

    // A live subscriber with room for one envelope loses nine of ten: one event, with
    // the count.
    let slow = c
        .hub()
        .subscribe(SubscribeRequest {
            diode_capacity: Some(1),
            ..SubscribeRequest::new(
                Egress::InProcess,
                vec![Filter {
                    kind: Kind::Log,
                    source_id: "burst".into(),
                    names: Names::Any,
                }],
            )
        })
        .expect("subscribe");
    let burst = (0..10)
        .map(|i| lg_log("burst", "0", &i.to_string()))
        .collect();
    c.ingest_envelopes(burst, protocol::LOGGREGATOR_SEND).await;
    c.hub().report_now();
    let dropping = event_of(&server, kind::SUBSCRIBER_DROPPING).await;
    assert_eq!(field(&dropping, "subscriber"), slow.label());
    assert_eq!(
        (field(&dropping, "dropped"), field(&dropping, "total")),
        ("9", "9")
    );
    c.hub().report_now();
    drop(slow);

    // Retention: entries written three days ago under host/ (max age 2 days) expire;
    // those of app/ (the default, 7 days) stay.
    offset.store(-3 * DAY_NS, Ordering::SeqCst);
    c.process(bundle(vec![
        append("host/web/+/log", "h", 0, &["old1", "old2"]),
        append("app/+/old", "o", 0, &["kept"]),
    ]))
    .await;
    offset.store(0, Ordering::SeqCst);
    c.process(bundle(vec![append("host/web/+/log", "h", 2, &["new"])]))
        .await;
    let expired = follow(&server, "type=retention_expired", 1).await.remove(0);
    assert_eq!(field(&expired, "prefix"), "host/");
    assert_eq!(field(&expired, "entries"), "2");
    let host = c.store().stream("host/web/+/log").await.unwrap().unwrap();
    assert_eq!((host.low_water, host.next_index), (2, 3));
    let app = c.store().stream("app/+/old").await.unwrap().unwrap();
    assert_eq!((app.low_water, app.next_index), (0, 1));

    // The event store fails: the queue pauses, discarding (counted); once the store is
    // back the pause and the resume are written.
    faulty.failing.store(true, Ordering::SeqCst);
    c.process(bundle(vec![append("app/+/during-pause", "p", 0, &["x"])]))
        .await;
    tokio::time::timeout(WAIT, async {
        while !c.events().is_paused() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the queue pauses when its store fails");
    c.events()
        .add("test_while_paused", "discarded", Default::default());
    assert!(c.events().stats().discarded_paused >= 2);
    faulty.failing.store(false, Ordering::SeqCst);
    let resumed = event_of(&server, kind::EVENT_QUEUE_RESUMED).await;
    let paused = event_of(&server, kind::EVENT_QUEUE_PAUSED).await;
    assert!(
        paused["message"]
            .as_str()
            .unwrap()
            .contains("injected failure")
    );
    assert!(field(&resumed, "discarded").parse::<u64>().unwrap() >= 2);
    let (_, none) = get_json(&server, "/v1/events?type=test_while_paused").await;
    assert_eq!(none["events"], Value::Array(vec![]));

    // Stopping is the last event, written before the store closes.
    server.stop().await.expect("stop");
    let store = store_with_offset(dir.path(), Arc::new(AtomicI64::new(0)));
    let all = query::list(
        store.as_ref(),
        &EventQuery {
            limit: 10_000,
            ..EventQuery::default()
        },
    )
    .await
    .expect("list events");
    let kinds: Vec<&str> = all.events.iter().map(|(_, e)| e.kind.as_str()).collect();
    assert_eq!(kinds.first(), Some(&kind::COLLECTOR_STARTED), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&kind::COLLECTOR_STOPPING), "{kinds:?}");
    store.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn v1_events_filters_by_type_time_and_index() {
    let server = TestServer::start().await;
    let c = server.collector.clone();
    for p in ["f/+/a", "f/+/b", "f/+/c"] {
        c.process(bundle(vec![append(p, "s", 0, &["x"])])).await;
    }
    c.process(bundle(vec![append("f/+/a", "s", 0, &["different"])]))
        .await;
    // Wait until all four are stored: three registrations, then the conflict.
    follow(&server, "type=stream_registered", 3).await;
    event_of(&server, kind::STREAM_CONFLICT).await;

    let (status, regs) = get_json(&server, "/v1/events?type=stream_registered").await;
    assert_eq!(status, 200);
    let streams: Vec<&str> = regs["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| field(e, "stream"))
        .collect();
    assert_eq!(streams, ["f/+/a", "f/+/b", "f/+/c"]);
    for e in regs["events"].as_array().unwrap() {
        assert_eq!(e["type"], "stream_registered");
        assert!(e["timestamp"].as_str().unwrap().ends_with('Z'), "{e}");
        assert!(e["member"].as_str().is_some_and(|m| !m.is_empty()), "{e}");
    }

    // Paging: two, then the rest from `next`.
    let (_, first) = get_json(&server, "/v1/events?type=stream_registered&limit=2").await;
    assert_eq!(first["events"].as_array().unwrap().len(), 2);
    let next = first["next"].as_u64().unwrap();
    let (_, rest) = get_json(
        &server,
        &format!("/v1/events?type=stream_registered&from={next}"),
    )
    .await;
    let rest: Vec<&str> = rest["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| field(e, "stream"))
        .collect();
    assert_eq!(rest, ["f/+/c"]);

    // Time: nothing after an hour from now; everything of the last hour.
    let later = weir_core::now_ns() + 3_600 * 1_000_000_000;
    let (_, none) = get_json(&server, &format!("/v1/events?since={later}")).await;
    assert_eq!(none["events"].as_array().unwrap().len(), 0);
    let (_, hour) = get_json(&server, "/v1/events?since=1h&type=stream_conflict").await;
    assert_eq!(hour["events"].as_array().unwrap().len(), 1);
    let (_, all) = get_json(&server, "/v1/events").await;
    let kinds: Vec<&str> = all["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"collector_started"), "{kinds:?}");
    assert!(kinds.contains(&"stream_conflict"), "{kinds:?}");

    let (status, err) = get_json(&server, "/v1/events?since=yesterday").await;
    assert_eq!(status, 400);
    assert!(err["message"].as_str().unwrap().contains("since"), "{err}");
    server.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_reach_live_subscribers_as_loggregator_events() {
    let server = TestServer::start().await;
    let c = server.collector.clone();
    let sub = c
        .hub()
        .subscribe(SubscribeRequest::new(
            Egress::InProcess,
            vec![Filter {
                kind: Kind::Event,
                source_id: "weir".into(),
                names: Names::Any,
            }],
        ))
        .expect("subscribe");
    c.process(bundle(vec![append("live/+/a", "s", 0, &["x"])]))
        .await;
    let found = tokio::time::timeout(WAIT, async {
        loop {
            let env = sub.next().await;
            match &env.message {
                Some(Body::Event(e)) if e.title == kind::STREAM_REGISTERED => return env,
                _ => continue,
            }
        }
    })
    .await
    .expect("the registration event reaches the subscriber");
    assert_eq!(found.source_id, "weir");
    assert_eq!(
        found.tags.get("stream").map(String::as_str),
        Some("live/+/a")
    );
    drop(sub);
    server.stop().await.expect("stop");
}
