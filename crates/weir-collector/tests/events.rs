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
use weir_collector::metrics::{RejectReason, protocol};
use weir_collector::retention::RetentionRule;
use weir_proto::lv2::envelope::Message as Body;
use weir_proto::wv1;
use weir_proto::wv1::stream_result::Result as R;
use weir_store::hooked::{Hook, HookedStore, Operation};
use weir_store::{FjallConfig, FjallStore, FsyncPolicy, Store, StoreError};

use common::{TestServer, append, lg_log};

const DAY_NS: i64 = 86_400 * 1_000_000_000;
/// How long a test waits for an event before failing.
const WAIT: Duration = Duration::from_secs(30);

/// A switch over the real store that makes writes and lookups of the events stream
/// fail, as a store that goes down would; everything else goes straight through.
struct FailEvents {
    failing: AtomicBool,
}

#[async_trait::async_trait]
impl Hook for FailEvents {
    async fn before(&self, op: Operation<'_>) -> Result<(), StoreError> {
        let events = matches!(
            op,
            Operation::Register(p) | Operation::Append(p) | Operation::Stream(p) if p == EVENTS_PATH
        );
        if events && self.failing.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("injected failure".into()));
        }
        Ok(())
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
    let faulty = Arc::new(HookedStore::new(
        store_with_offset(dir.path(), offset.clone()),
        FailEvents {
            failing: AtomicBool::new(false),
        },
    ));
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
    faulty.hook().failing.store(true, Ordering::SeqCst);
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
    faulty.hook().failing.store(false, Ordering::SeqCst);
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

/// An append of agent events (`Event` envelopes) to `path` from `first`.
fn agent_events(path: &str, member: &str, first: u64, kinds: &[(&str, i64)]) -> wv1::StreamAppend {
    wv1::StreamAppend {
        path: path.into(),
        secret: b"agent-secret".to_vec(),
        descriptor: None,
        first_index: first,
        entries: kinds
            .iter()
            .map(|(kind, ts)| {
                weir_core::event_queue::Event {
                    kind: kind.to_string(),
                    message: format!("{kind} on {member}"),
                    timestamp_ns: *ts,
                    member_id: member.into(),
                    fields: [("flusher".to_string(), "central".to_string())].into(),
                }
                .to_envelope()
            })
            .collect(),
        terminal_count: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn agent_event_streams_are_listed_once_and_the_weir_prefix_is_reserved() {
    let mut config = CollectorConfig::default();
    // One worker: events are stored in the order they were added.
    config.events.workers = 1;
    let server = TestServer::start_with(config).await;
    let c = &server.collector;
    let path = "weir/agent/edge-1/+/events";
    let t0 = weir_core::now_ns() - 60_000_000_000;

    // An agent ships two events; a resend of the first is a duplicate.
    let r = c
        .process(bundle(vec![agent_events(
            path,
            "edge-1",
            0,
            &[("flusher_failing", t0), ("flusher_recovered", t0 + 1)],
        )]))
        .await;
    assert_eq!(r.results[0].result, Some(R::StoredNext(2)), "{r:?}");
    let r = c
        .process(bundle(vec![agent_events(
            path,
            "edge-1",
            0,
            &[("flusher_failing", t0)],
        )]))
        .await;
    assert_eq!(r.results[0].result, Some(R::StoredNext(2)), "{r:?}");
    assert_eq!(r.results[0].duplicates, 1);
    // A marker after the resend: once it is listed, a forwarded duplicate would be too.
    c.process(bundle(vec![agent_events(
        path,
        "edge-1",
        2,
        &[("marker", t0 + 2)],
    )]))
    .await;
    let marker = event_of(&server, "marker").await;
    assert_eq!(marker["member"], "edge-1");

    let (status, page) = get_json(&server, "/v1/events?type=flusher_failing").await;
    assert_eq!(status, 200);
    let failing = page["events"].as_array().expect("events");
    assert_eq!(failing.len(), 1, "listed once: {page}");
    assert_eq!(failing[0]["member"], "edge-1");
    assert_eq!(
        failing[0]["timestamp_ns"], t0,
        "the agent's own time is kept"
    );
    assert_eq!(field(&failing[0], "flusher"), "central");
    // `since` finds an agent event by its own time even though it arrived later.
    let (_, page) = get_json(
        &server,
        &format!("/v1/events?type=flusher_recovered&since={}", t0 - 1),
    )
    .await;
    assert_eq!(page["events"].as_array().map(Vec::len), Some(1), "{page}");

    // The agent's stream keeps them too, numbered as the agent sent them.
    let stored = server
        .store
        .stream(path)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(stored.next_index, 3);

    // Only Event envelopes go on an agent's event stream.
    let mut logs = append(path, "x", 3, &["not an event"]);
    logs.secret = b"agent-secret".to_vec();
    let r = c.process(bundle(vec![logs])).await;
    assert!(
        matches!(&r.results[0].result, Some(R::Invalid(m)) if m.contains("only Event envelopes")),
        "{r:?}"
    );

    // Everything else under weir/ is refused, the collector's own stream above all.
    let refused_before = c.metrics().rejected_count(RejectReason::InvalidPath);
    for bad in [
        "weir/+/events",
        "weir/+/other",
        "weir/agent/edge-1/+/logs",
        "weir/x/+/events",
    ] {
        let r = c.process(bundle(vec![append(bad, "s", 0, &["x"])])).await;
        assert!(
            matches!(&r.results[0].result, Some(R::Invalid(m)) if m.contains("reserved for weir's own events")),
            "{bad}: {r:?}"
        );
    }
    assert_eq!(
        c.metrics().rejected_count(RejectReason::InvalidPath),
        refused_before + 4
    );
    let own = server
        .store
        .stream(EVENTS_PATH)
        .await
        .expect("read")
        .expect("the collector's events stream");
    assert!(own.collector_owned, "still the collector's");
    assert!(server.stop().await.is_ok());
}
