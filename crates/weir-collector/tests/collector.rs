//! `Collector::process` and `Collector::ingest_envelopes` over the real store: every bad
//! input gets its own result and one counted metric, and never hurts the other streams.

mod common;

use common::*;
use weir_collector::CollectorConfig;
use weir_collector::metrics::{DropReason, RejectReason, protocol};
use weir_core::Limits;
use weir_proto::wv1::{self, StreamResult, stream_result::Result as R};
use weir_store::StoreError;
use weir_store::hooked::{Hook, HookedStore, Operation};

const GOOD: &str = "good/+/stream";
const SECRET: &str = "s3cret";

fn bundle(streams: Vec<wv1::StreamAppend>) -> wv1::Bundle {
    wv1::Bundle { streams }
}

fn result(r: &StreamResult) -> &R {
    r.result.as_ref().expect("a result")
}

/// Processes `bad` next to a good append of a fresh stream; checks the good one was
/// stored and returns the bad one's result.
async fn with_good_neighbour(
    collector: &weir_collector::Collector,
    bad: wv1::StreamAppend,
    good_index: u64,
) -> StreamResult {
    let good_path = format!("good/+/n{good_index}");
    let resp = collector
        .process(bundle(vec![
            bad,
            append(&good_path, SECRET, 0, &["a", "b"]),
        ]))
        .await;
    assert_eq!(resp.results.len(), 2);
    assert_eq!(resp.results[1].path, good_path);
    assert_eq!(result(&resp.results[1]), &R::StoredNext(2));
    let stored = read_all(collector.store(), &good_path).await;
    assert_eq!(payloads(&stored), ["a", "b"]);
    resp.results[0].clone()
}

#[tokio::test]
async fn stores_and_acknowledges_a_bundle() {
    let (_dir, c) = collector();
    let resp = c
        .process(bundle(vec![
            append(GOOD, SECRET, 0, &["one", "two", "three"]),
            append("other/+/x", SECRET, 0, &["x"]),
        ]))
        .await;
    assert_eq!(resp.results[0].path, GOOD);
    assert_eq!(result(&resp.results[0]), &R::StoredNext(3));
    assert_eq!(result(&resp.results[1]), &R::StoredNext(1));
    assert_eq!(
        payloads(&read_all(c.store(), GOOD).await),
        ["one", "two", "three"]
    );
    let m = c.metrics();
    assert_eq!(m.received_count(protocol::WEIR), 4);
    assert_eq!(m.stored_count(), 4);
    assert_eq!(m.bundles_count(), 1);
    assert_eq!(m.streams_registered_count(), 2);

    // A resend is acknowledged, counted as duplicates, and stores nothing new.
    let resp = c
        .process(bundle(vec![append(
            GOOD,
            SECRET,
            1,
            &["two", "three", "four"],
        )]))
        .await;
    assert_eq!(result(&resp.results[0]), &R::StoredNext(4));
    assert_eq!(resp.results[0].duplicates, 2);
    assert_eq!(m.duplicates_count(), 2);
    assert_eq!(m.stored_count(), 5);
    assert_eq!(
        payloads(&read_all(c.store(), GOOD).await),
        ["one", "two", "three", "four"]
    );
}

#[tokio::test]
async fn new_stream_without_descriptor_gets_text_plain() {
    let (_dir, c) = collector();
    c.process(bundle(vec![append(GOOD, SECRET, 0, &["x"])]))
        .await;
    let state = c
        .store()
        .stream(GOOD)
        .await
        .expect("stream")
        .expect("exists");
    assert_eq!(state.descriptor.content_type, "text/plain; charset=utf-8");
    assert!(state.descriptor.created_ns > 0);
    assert!(!state.collector_owned);
}

#[tokio::test]
async fn invalid_paths_are_refused_with_the_rule() {
    let (_dir, c) = collector();
    let r = with_good_neighbour(&c, append("no-separator", SECRET, 0, &["x"]), 0).await;
    match result(&r) {
        R::Invalid(m) => assert!(m.contains("/+/"), "{m}"),
        other => panic!("{other:?}"),
    }
    let r = with_good_neighbour(&c, append("loggregator/app/+/0", SECRET, 0, &["x"]), 1).await;
    match result(&r) {
        R::Invalid(m) => assert!(m.contains("reserved"), "{m}"),
        other => panic!("{other:?}"),
    }
    let r = with_good_neighbour(&c, append("a/+/b c", SECRET, 0, &["x"]), 2).await;
    assert!(
        matches!(result(&r), R::Invalid(m) if m.contains("' '")),
        "{r:?}"
    );
    assert_eq!(c.metrics().rejected_count(RejectReason::InvalidPath), 3);
    assert_eq!(c.store().stream("a/+/b c").await.expect("read"), None);
}

#[tokio::test]
async fn missing_or_long_secret_is_invalid() {
    let (_dir, c) = collector();
    let r = with_good_neighbour(&c, append(GOOD, "", 0, &["x"]), 0).await;
    assert!(
        matches!(result(&r), R::Invalid(m) if m.contains("secret is missing")),
        "{r:?}"
    );
    let long = "k".repeat(257);
    let r = with_good_neighbour(&c, append(GOOD, &long, 0, &["x"]), 1).await;
    assert!(
        matches!(result(&r), R::Invalid(m) if m.contains("257 bytes")),
        "{r:?}"
    );
    assert_eq!(c.metrics().rejected_count(RejectReason::InvalidRequest), 2);
    assert_eq!(c.store().stream(GOOD).await.expect("read"), None);
}

#[tokio::test]
async fn wrong_secret_is_refused_and_owner_keeps_writing() {
    let (_dir, c) = collector();
    c.process(bundle(vec![append(GOOD, SECRET, 0, &["mine"])]))
        .await;
    let r = with_good_neighbour(&c, append(GOOD, "not-it", 1, &["theirs"]), 0).await;
    assert!(
        matches!(result(&r), R::WrongSecret(m) if m.contains(GOOD)),
        "{r:?}"
    );
    // Termination with the wrong secret too.
    let mut t = append(GOOD, "not-it", 0, &[]);
    t.terminal_count = Some(1);
    let r = with_good_neighbour(&c, t, 1).await;
    assert!(matches!(result(&r), R::WrongSecret(_)), "{r:?}");
    assert_eq!(c.metrics().rejected_count(RejectReason::WrongSecret), 2);
    // The owner is not locked out by the cache.
    let resp = c
        .process(bundle(vec![append(GOOD, SECRET, 1, &["more"])]))
        .await;
    assert_eq!(result(&resp.results[0]), &R::StoredNext(2));
    assert_eq!(payloads(&read_all(c.store(), GOOD).await), ["mine", "more"]);
}

#[tokio::test]
async fn envelope_over_a_limit_names_the_entry_and_stores_nothing() {
    let config = CollectorConfig {
        limits: Limits {
            max_payload_bytes: 16,
            max_entries_per_append: 5,
            ..Limits::default()
        },
        ..CollectorConfig::default()
    };
    let (_dir, c) = collector_with(config);
    let big = "x".repeat(17);
    let r = with_good_neighbour(&c, append(GOOD, SECRET, 10, &["ok", "ok", &big]), 0).await;
    match result(&r) {
        R::Invalid(m) => {
            assert!(m.starts_with("entry 12: payload is 17 bytes"), "{m}");
            assert!(m.contains("max_payload_bytes"), "{m}");
        }
        other => panic!("{other:?}"),
    }
    let mut no_message = append(GOOD, SECRET, 0, &["ok"]);
    no_message.entries.push(weir_core::Envelope::default());
    let r = with_good_neighbour(&c, no_message, 1).await;
    assert!(
        matches!(result(&r), R::Invalid(m) if m.starts_with("entry 1: envelope has no message")),
        "{r:?}"
    );
    assert_eq!(c.metrics().rejected_count(RejectReason::InvalidEnvelope), 2);

    let r = with_good_neighbour(&c, append(GOOD, SECRET, 0, &["a"; 6]), 2).await;
    assert!(
        matches!(result(&r), R::Invalid(m) if m.contains("max_entries_per_append")),
        "{r:?}"
    );
    assert_eq!(c.metrics().rejected_count(RejectReason::InvalidRequest), 1);
    assert_eq!(c.store().stream(GOOD).await.expect("read"), None);
}

#[tokio::test]
async fn append_past_the_next_index_is_a_gap() {
    let (_dir, c) = collector();
    c.process(bundle(vec![append(GOOD, SECRET, 0, &["a", "b"])]))
        .await;
    let r = with_good_neighbour(&c, append(GOOD, SECRET, 5, &["f"]), 0).await;
    assert_eq!(result(&r), &R::GapExpected(2));
    assert_eq!(c.metrics().rejected_count(RejectReason::Gap), 1);
    // A brand-new stream that does not start at 0 is a gap too.
    let r = with_good_neighbour(&c, append("fresh/+/s", SECRET, 3, &["d"]), 1).await;
    assert_eq!(result(&r), &R::GapExpected(0));
    assert_eq!(c.metrics().rejected_count(RejectReason::Gap), 2);
    assert_eq!(payloads(&read_all(c.store(), GOOD).await), ["a", "b"]);
}

#[tokio::test]
async fn overlapping_appends_in_one_bundle_are_judged_in_order() {
    let (_dir, c) = collector();
    let resp = c
        .process(bundle(vec![
            append(GOOD, SECRET, 0, &["a", "b", "c"]),
            // Overlaps 1..3 with the same payloads and extends: duplicates + stored.
            append(GOOD, SECRET, 1, &["b", "c", "d"]),
            // Overlaps with a different payload at index 2: conflict, nothing written.
            append(GOOD, SECRET, 2, &["C", "e"]),
            append("other/+/y", SECRET, 0, &["y"]),
        ]))
        .await;
    let got: Vec<(&R, u64)> = resp
        .results
        .iter()
        .map(|r| (result(r), r.duplicates))
        .collect();
    assert_eq!(
        got,
        vec![
            (&R::StoredNext(3), 0),
            (&R::StoredNext(4), 2),
            (&R::ConflictIndex(2), 0),
            (&R::StoredNext(1), 0),
        ]
    );
    assert_eq!(
        payloads(&read_all(c.store(), GOOD).await),
        ["a", "b", "c", "d"]
    );
    let m = c.metrics();
    assert_eq!(m.rejected_count(RejectReason::Conflict), 1);
    assert_eq!(m.conflicts_count(), 1);
    assert_eq!(m.duplicates_count(), 2);
    assert_eq!(m.stored_count(), 5);
}

#[tokio::test]
async fn termination_and_appends_past_it() {
    let (_dir, c) = collector();
    let mut a = append(GOOD, SECRET, 0, &["a", "b"]);
    a.terminal_count = Some(2);
    let resp = c.process(bundle(vec![a])).await;
    assert_eq!(result(&resp.results[0]), &R::StoredNext(2));
    let state = c.store().stream(GOOD).await.expect("read").expect("exists");
    assert_eq!(state.terminal_count, Some(2));

    let r = with_good_neighbour(&c, append(GOOD, SECRET, 2, &["c"]), 0).await;
    assert_eq!(result(&r), &R::TerminatedCount(2));
    assert_eq!(c.metrics().rejected_count(RejectReason::Terminated), 1);

    // A different terminal count names both counts.
    let mut t = append(GOOD, SECRET, 0, &[]);
    t.terminal_count = Some(3);
    let r = with_good_neighbour(&c, t, 1).await;
    assert!(
        matches!(result(&r), R::Invalid(m) if m.contains('3') && m.contains('2')),
        "{r:?}"
    );

    // A terminal count below what this append writes.
    let mut t = append("short/+/s", SECRET, 0, &["a", "b", "c"]);
    t.terminal_count = Some(2);
    let r = with_good_neighbour(&c, t, 2).await;
    assert!(
        matches!(result(&r), R::Invalid(m) if m.contains("terminal count 2")),
        "{r:?}"
    );
    assert_eq!(c.metrics().rejected_count(RejectReason::InvalidRequest), 2);
}

#[tokio::test]
async fn termination_alone_and_below_written() {
    let (_dir, c) = collector();
    c.process(bundle(vec![append(GOOD, SECRET, 0, &["a", "b", "c"])]))
        .await;
    let mut t = append(GOOD, SECRET, 0, &[]);
    t.terminal_count = Some(1);
    let r = with_good_neighbour(&c, t, 0).await;
    assert!(
        matches!(result(&r), R::Invalid(m) if m.contains("terminal count 1") && m.contains('3')),
        "{r:?}"
    );
    let mut t = append(GOOD, SECRET, 0, &[]);
    t.terminal_count = Some(3);
    let resp = c.process(bundle(vec![t])).await;
    assert_eq!(result(&resp.results[0]), &R::StoredNext(3));
    let state = c.store().stream(GOOD).await.expect("read").expect("exists");
    assert_eq!(state.terminal_count, Some(3));
    // An empty, complete stream.
    let mut t = append("empty/+/s", SECRET, 0, &[]);
    t.terminal_count = Some(0);
    let resp = c.process(bundle(vec![t])).await;
    assert_eq!(result(&resp.results[0]), &R::StoredNext(0));
    let state = c
        .store()
        .stream("empty/+/s")
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(state.terminal_count, Some(0));
}

#[tokio::test]
async fn too_many_streams_in_a_bundle() {
    let config = CollectorConfig {
        limits: Limits {
            max_streams_per_bundle: 2,
            ..Limits::default()
        },
        ..CollectorConfig::default()
    };
    let (_dir, c) = collector_with(config);
    let resp = c
        .process(bundle(
            (0..3)
                .map(|i| append(&format!("a/+/{i}"), SECRET, 0, &["x"]))
                .collect(),
        ))
        .await;
    assert_eq!(resp.results.len(), 3);
    for r in &resp.results {
        assert!(matches!(result(r), R::Invalid(m) if m.contains("max_streams_per_bundle")));
    }
    assert_eq!(c.metrics().rejected_count(RejectReason::InvalidRequest), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_streams_in_concurrent_bundles() {
    let (_dir, c) = collector();
    const BUNDLES: usize = 8;
    const STREAMS: usize = 150;
    const ENTRIES: usize = 20;
    let mut tasks = Vec::new();
    for b in 0..BUNDLES {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let streams = (0..STREAMS)
                .map(|s| {
                    let texts: Vec<String> = (0..ENTRIES).map(|i| format!("{b}-{s}-{i}")).collect();
                    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                    append(&format!("load/{b}/+/s{s}"), SECRET, 0, &refs)
                })
                .collect();
            c.process(bundle(streams)).await
        }));
    }
    for t in tasks {
        let resp = t.await.expect("task");
        assert_eq!(resp.results.len(), STREAMS);
        for r in &resp.results {
            assert_eq!(result(r), &R::StoredNext(ENTRIES as u64), "{}", r.path);
        }
    }
    for b in 0..BUNDLES {
        for s in 0..STREAMS {
            let path = format!("load/{b}/+/s{s}");
            let got = payloads(&read_all(c.store(), &path).await);
            let want: Vec<String> = (0..ENTRIES).map(|i| format!("{b}-{s}-{i}")).collect();
            assert_eq!(got, want, "{path}");
        }
    }
    assert_eq!(
        c.metrics().stored_count(),
        (BUNDLES * STREAMS * ENTRIES) as u64
    );
    assert_eq!(
        c.metrics().streams_registered_count(),
        (BUNDLES * STREAMS) as u64
    );
    let listed = c.store().list("load/", None, 10_000).await.expect("list");
    assert_eq!(listed.len(), BUNDLES * STREAMS);
}

#[tokio::test]
async fn loggregator_envelopes_go_to_their_streams_in_order() {
    let (_dir, c) = collector();
    let mut from_origin = lg_log("", "", "origin-filled");
    from_origin.tags.insert("origin".into(), "router".into());
    let envs = vec![
        lg_log("app", "1", "a1"),
        lg_log("web", "", "w1"),
        lg_log("app", "1", "a2"),
        weir_core::Envelope::default(), // no message: dropped
        from_origin,
        lg_log("app", "1", "a3"),
    ];
    let report = c.ingest_envelopes(envs, protocol::LOGGREGATOR_SEND).await;
    assert_eq!(report.received, 6);
    assert_eq!(report.stored, 5);
    assert_eq!(report.invalid, 1);
    assert_eq!(report.unavailable, None);
    let store = c.store();
    assert_eq!(
        payloads(&read_all(store, "loggregator/app/+/1").await),
        ["a1", "a2", "a3"]
    );
    assert_eq!(
        payloads(&read_all(store, "loggregator/web/+/0").await),
        ["w1"]
    );
    assert_eq!(
        payloads(&read_all(store, "loggregator/router/+/0").await),
        ["origin-filled"]
    );
    let state = store
        .stream("loggregator/app/+/1")
        .await
        .expect("read")
        .expect("exists");
    assert!(state.collector_owned);
    assert_eq!(
        state.descriptor.content_type,
        weir_core::descriptor::LOGGREGATOR_CONTENT_TYPE
    );
    let m = c.metrics();
    assert_eq!(m.dropped_count(DropReason::InvalidEnvelope), 1);
    assert_eq!(m.received_count(protocol::LOGGREGATOR_SEND), 6);
    assert_eq!(m.stored_count(), 5);

    // The sequencer continues where the stream is.
    c.ingest_envelopes(vec![lg_log("app", "1", "a4")], protocol::LOGGREGATOR_SEND)
        .await;
    let entries = read_all(store, "loggregator/app/+/1").await;
    assert_eq!(
        entries.iter().map(|e| e.index).collect::<Vec<_>>(),
        [0, 1, 2, 3]
    );
}

/// A gate in front of `append` over the real store: it says when an append has
/// arrived and holds it until the test opens the gate (one permit per append).
struct Gate {
    arrived: tokio::sync::Notify,
    gate: tokio::sync::Semaphore,
}

#[async_trait::async_trait]
impl Hook for Gate {
    async fn before(&self, op: Operation<'_>) -> Result<(), StoreError> {
        if let Operation::Append(_) = op {
            self.arrived.notify_one();
            let permit = self.gate.acquire().await;
            permit
                .map_err(|_| StoreError::Unavailable("gate closed".into()))?
                .forget();
        }
        Ok(())
    }
}

#[tokio::test]
async fn close_waits_for_work_under_way_then_refuses() {
    let (_dir, real) = open_store();
    let store = std::sync::Arc::new(HookedStore::new(
        real,
        Gate {
            arrived: tokio::sync::Notify::new(),
            gate: tokio::sync::Semaphore::new(0),
        },
    ));
    let c = weir_collector::Collector::new(
        store.clone(),
        &CollectorConfig::default(),
        weir_collector::Metrics::new(),
    );
    let worker = {
        let c = c.clone();
        tokio::spawn(async move {
            c.process(bundle(vec![append(GOOD, SECRET, 0, &["a", "b"])]))
                .await
        })
    };
    // The append is under way, held at the gate.
    store.hook().arrived.notified().await;
    let closer = {
        let c = c.clone();
        tokio::spawn(async move {
            c.close().await;
            // Once close returns, the work under way is in the store.
            read_all(c.store(), GOOD).await
        })
    };
    while !c.is_closed() {
        tokio::task::yield_now().await;
    }
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    assert!(
        !closer.is_finished(),
        "close returned while an append was under way"
    );

    // New work is refused, counted, and does not reach the store.
    let resp = c
        .process(bundle(vec![append("late/+/s", SECRET, 0, &["late"])]))
        .await;
    assert!(matches!(result(&resp.results[0]), R::Unavailable(_)));
    assert_eq!(c.metrics().rejected_count(RejectReason::Unavailable), 1);
    let report = c
        .ingest_envelopes(vec![lg_log("app", "0", "late")], protocol::LOGGREGATOR_SEND)
        .await;
    assert!(report.unavailable.is_some());
    assert_eq!(c.metrics().dropped_count(DropReason::Unavailable), 1);

    store.hook().gate.add_permits(1);
    let stored = closer.await.expect("closer");
    assert_eq!(payloads(&stored), ["a", "b"]);
    let resp = worker.await.expect("worker");
    assert_eq!(result(&resp.results[0]), &R::StoredNext(2));
    assert_eq!(c.store().stream("late/+/s").await.expect("read"), None);
}
