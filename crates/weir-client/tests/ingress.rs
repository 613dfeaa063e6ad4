//! `IngressClient` against a real collector on loopback: batching, drops, events,
//! closing, and exact accounting across graceful collector restarts.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::{Collector, closed_port, path_of, payload, within};
use weir_client::{ClientError, CounterValue, IngressClient, LogType, SourceInfo};
use weir_proto::lv2::envelope::Message as Body;

fn client_for(c: &Collector) -> weir_client::IngressClientBuilder {
    IngressClient::builder()
        .addr(c.grpc_addr())
        .source(SourceInfo::new("app", "APP/PROC/WEB", "0"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_by_size_and_keeps_order() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(dir.path()).await;
    let path = path_of("app", "0");
    // A flush interval that never fires in the test: only full batches go out.
    let client = client_for(&c)
        .batch_max_size(10)
        .flush_interval(Duration::from_secs(3600))
        .build()
        .unwrap();
    for i in 0..25 {
        assert!(client.emit_log(format!("line-{i}"), LogType::Out));
    }
    c.wait_for_count(&path, 20).await;
    common::until(|| client.delivered() == 20).await;
    assert_eq!(
        client.stats().buffered,
        0,
        "the last 5 wait in the unfinished batch"
    );
    assert_eq!(
        c.count(&path).await,
        20,
        "a partial batch is not sent by size"
    );

    within(client.close_send()).await.unwrap();
    let want: Vec<String> = (0..25).map(|i| format!("line-{i}")).collect();
    assert_eq!(c.payloads(&path).await, want);
    assert_eq!(client.delivered(), 25);
    assert_eq!(client.dropped(), 0);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_by_interval() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(dir.path()).await;
    let path = path_of("app", "0");
    let client = client_for(&c)
        .batch_max_size(1000)
        .flush_interval(Duration::from_millis(20))
        .build()
        .unwrap();
    for i in 0..7 {
        client.emit_log(format!("tick-{i}"), LogType::Err);
    }
    // No close: the interval alone sends the partial batch.
    c.wait_for_count(&path, 7).await;
    let stored = c.read_all(&path).await;
    let want: Vec<String> = (0..7).map(|i| format!("tick-{i}")).collect();
    assert_eq!(stored.iter().map(payload).collect::<Vec<_>>(), want);
    let env = &stored[0];
    assert_eq!(env.source_id, "app");
    assert_eq!(env.instance_id, "0");
    assert_eq!(
        env.tags.get("source_type").map(String::as_str),
        Some("APP/PROC/WEB")
    );
    match &env.message {
        Some(Body::Log(l)) => assert_eq!(l.r#type, LogType::Err as i32),
        other => panic!("not a log: {other:?}"),
    }
    assert!(env.timestamp > 0);
    within(client.close_send()).await.unwrap();
    c.stop().await;
}

/// A current-thread runtime: the sender task cannot run while the test emits, so the
/// buffer's capacity is exactly what gets in.
#[tokio::test(flavor = "current_thread")]
async fn full_buffer_drops_the_newest_and_counts_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(dir.path()).await;
    let path = path_of("app", "0");
    let client = client_for(&c).buffer_capacity(16).build().unwrap();
    let accepted: Vec<bool> = (0..100)
        .map(|i| client.emit_log(format!("n-{i}"), LogType::Out))
        .collect();
    assert!(accepted[..16].iter().all(|a| *a), "the first 16 fit");
    assert!(accepted[16..].iter().all(|a| !*a), "the newest are dropped");
    assert_eq!(client.dropped(), 84);

    within(client.close_send()).await.unwrap();
    let want: Vec<String> = (0..16).map(|i| format!("n-{i}")).collect();
    assert_eq!(c.payloads(&path).await, want, "the oldest 16 are delivered");
    assert_eq!(client.delivered(), 16);
    assert_eq!(client.dropped(), 84);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emit_event_returns_the_error_when_the_collector_is_down() {
    let client = IngressClient::builder()
        .addr(closed_port().to_string())
        .build()
        .unwrap();
    let err = within(client.emit_event("deployed", "v1"))
        .await
        .unwrap_err();
    match err {
        ClientError::Send(status) => assert_eq!(status.code(), tonic::Code::Unavailable),
        other => panic!("unexpected error: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emit_event_is_sent_at_once_with_the_client_tags() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(dir.path()).await;
    let client = client_for(&c)
        .tag("deployment", "prod")
        .flush_interval(Duration::from_secs(3600))
        .build()
        .unwrap();
    within(client.emit_event("deployed", "v42")).await.unwrap();
    // Stored when Send returned: no waiting.
    let stored = c.read_all(&path_of("app", "0")).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(
        stored[0].tags.get("deployment").map(String::as_str),
        Some("prod")
    );
    match &stored[0].message {
        Some(Body::Event(e)) => {
            assert_eq!((e.title.as_str(), e.body.as_str()), ("deployed", "v42"))
        }
        other => panic!("not an event: {other:?}"),
    }
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_envelope_and_tags_as_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(dir.path()).await;
    let client = client_for(&c).tag("deployment", "prod").build().unwrap();
    client.emit_counter("hits", CounterValue::default());
    client.emit_counter("total", CounterValue::Total(40));
    client.emit_gauge([
        ("mem", 1.0, "bytes"),
        ("cpu", 0.5, "percent"),
        ("mem", 2.0, "bytes"),
    ]);
    client.emit_timer("req", 10, 20);
    let other = client
        .emitter(SourceInfo::new("worker", "", "7"))
        .tag("deployment", "canary");
    other.emit_log("from the worker", LogType::Out);
    // A raw envelope gets no client tags (as upstream's Emit).
    client.emit(weir_proto::lv2::Envelope {
        timestamp: 5,
        source_id: "app".into(),
        instance_id: "0".into(),
        message: Some(Body::Log(weir_proto::lv2::Log {
            payload: "raw".into(),
            r#type: 0,
        })),
        ..Default::default()
    });
    within(client.close_send()).await.unwrap();

    let app = c.read_all(&path_of("app", "0")).await;
    assert_eq!(app.len(), 5);
    let kinds: Vec<&Body> = app.iter().map(|e| e.message.as_ref().unwrap()).collect();
    match kinds[0] {
        Body::Counter(k) => assert_eq!((k.name.as_str(), k.delta, k.total), ("hits", 1, 0)),
        other => panic!("{other:?}"),
    }
    match kinds[1] {
        Body::Counter(k) => assert_eq!((k.name.as_str(), k.delta, k.total), ("total", 0, 40)),
        other => panic!("{other:?}"),
    }
    match kinds[2] {
        Body::Gauge(g) => {
            assert_eq!(g.metrics.len(), 2);
            assert_eq!(
                g.metrics["mem"].value, 2.0,
                "a repeated name keeps the last"
            );
            assert_eq!(g.metrics["cpu"].unit, "percent");
        }
        other => panic!("{other:?}"),
    }
    match kinds[3] {
        Body::Timer(t) => assert_eq!((t.name.as_str(), t.start, t.stop), ("req", 10, 20)),
        other => panic!("{other:?}"),
    }
    for e in &app[..4] {
        assert_eq!(e.tags.get("deployment").map(String::as_str), Some("prod"));
    }
    assert_eq!(app[4].timestamp, 5);
    assert!(
        app[4].tags.is_empty(),
        "raw emit adds no tags: {:?}",
        app[4].tags
    );

    let worker = c.read_all(&path_of("worker", "7")).await;
    assert_eq!(worker.len(), 1);
    assert_eq!(
        worker[0].tags.get("deployment").map(String::as_str),
        Some("canary")
    );
    assert!(
        !worker[0].tags.contains_key("source_type"),
        "empty source type: no tag"
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_send_delivers_everything_buffered() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(dir.path()).await;
    let path = path_of("app", "0");
    let client = client_for(&c)
        .batch_max_size(1000)
        .flush_interval(Duration::from_secs(3600))
        .build()
        .unwrap();
    for i in 0..500 {
        client.emit_log(format!("held-{i}"), LogType::Out);
    }
    assert_eq!(c.count(&path).await, 0, "nothing is due yet");
    within(client.close_send()).await.unwrap();
    let want: Vec<String> = (0..500).map(|i| format!("held-{i}")).collect();
    assert_eq!(c.payloads(&path).await, want);
    assert_eq!(client.delivered(), 500);
    // Emits after closing are refused and counted; closing again is fine.
    assert!(!client.emit_log("late", LogType::Out));
    assert_eq!(client.dropped(), 1);
    within(client.close_send()).await.unwrap();
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_send_waits_for_a_collector_that_comes_up_late() {
    let dir = tempfile::tempdir().unwrap();
    let addr = closed_port();
    let client = IngressClient::builder()
        .addr(addr.to_string())
        .source(SourceInfo::new("app", "", "0"))
        .reconnect_backoff(Duration::from_millis(10), Duration::from_millis(100))
        .build()
        .unwrap();
    for i in 0..300 {
        client.emit_log(format!("early-{i}"), LogType::Out);
    }
    // The sender fails to connect (nothing was sent, so nothing is dropped) while
    // close_send waits.
    let closing = tokio::spawn({
        let client = client.clone();
        async move { client.close_send().await }
    });
    common::until(|| client.stats().failed_calls >= 2).await;
    let http = closed_port();
    let c = Collector::start_on(dir.path(), addr, http).await;
    within(closing).await.unwrap().unwrap();
    let want: Vec<String> = (0..300).map(|i| format!("early-{i}")).collect();
    assert_eq!(c.payloads(&path_of("app", "0")).await, want);
    assert_eq!(client.dropped(), 0);
    c.stop().await;
}

/// The required test: a producer emits continuously while the collector is shut down
/// gracefully and restarted (three times) on the same port and data directory. The client
/// reconnects, and emitted = stored + dropped, exactly; no envelope is stored twice
/// and order is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_mid_run_accounts_for_every_envelope() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Collector::start(dir.path()).await;
    let path = path_of("app", "0");
    let client = client_for(&c)
        .flush_interval(Duration::from_millis(10))
        .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(200))
        .build()
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let emitted = Arc::new(AtomicU64::new(0));
    let producer = tokio::spawn({
        let (client, stop, emitted) = (client.clone(), stop.clone(), emitted.clone());
        async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..50 {
                    client.emit_log(format!("seq-{i:08}"), LogType::Out);
                    i += 1;
                }
                emitted.store(i, Ordering::Relaxed);
                // Pace the producer (about 50,000 envelopes/s at most).
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            i
        }
    });

    let mut seen = c.wait_for_count(&path, 5_000).await;
    for round in 0..3 {
        c = c.restart().await;
        // The client reconnects: the restarted collector stores new envelopes.
        seen = c.wait_for_count(&path, seen + 5_000).await;
        eprintln!("round {round}: {seen} stored, stats {:?}", client.stats());
    }
    stop.store(true, Ordering::Relaxed);
    let emitted = within(producer).await.unwrap();
    within(client.close_send()).await.unwrap();

    let stored = c.payloads(&path).await;
    let stats = client.stats();
    eprintln!(
        "emitted {emitted}, stored {}, stats {stats:?}",
        stored.len()
    );
    assert_eq!(
        emitted,
        stored.len() as u64 + client.dropped(),
        "emitted = stored + dropped, exactly"
    );
    assert_eq!(stats.delivered, stored.len() as u64, "delivered = stored");
    assert!(stats.failed_calls > 0, "the restarts did break calls");
    let mut sorted = stored.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), stored.len(), "no envelope stored twice");
    assert_eq!(sorted, stored, "stored in the order emitted");
    c.stop().await;
}

/// The server side of acknowledgements: a `BatchSender` call ended by a graceful
/// shutdown says how many of its batches were stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_answers_with_the_number_of_batches_stored() {
    use weir_proto::lv2::ingress_client::IngressClient as Raw;
    use weir_proto::lv2::{Envelope, EnvelopeBatch, Log};

    assert_eq!(
        weir_client::ingress::BATCHES_STORED_KEY,
        weir_collector::grpc::ingress::BATCHES_STORED_KEY
    );
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(dir.path()).await;
    let path = path_of("raw", "0");
    let mut raw = Raw::connect(format!("http://{}", c.grpc)).await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel::<EnvelopeBatch>(8);
    let call = tokio::spawn(async move {
        raw.batch_sender(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
    });
    let batch = |n: usize| EnvelopeBatch {
        batch: (0..n)
            .map(|i| Envelope {
                source_id: "raw".into(),
                instance_id: "0".into(),
                message: Some(Body::Log(Log {
                    payload: format!("{i}").into(),
                    r#type: 0,
                })),
                ..Default::default()
            })
            .collect(),
    };
    for n in [3, 4, 5] {
        tx.send(batch(n)).await.unwrap();
    }
    c.wait_for_count(&path, 12).await;
    let stopping = tokio::spawn(c.stop());
    let status = within(call).await.unwrap().unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    let stored = status
        .metadata()
        .get(weir_client::ingress::BATCHES_STORED_KEY)
        .expect("the trailer")
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(stored, "3");
    drop(tx);
    within(stopping).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellation_stops_and_counts_what_was_not_confirmed() {
    let token = tokio_util::sync::CancellationToken::new();
    let client = IngressClient::builder()
        .addr(closed_port().to_string())
        .cancellation(token.clone())
        .reconnect_backoff(Duration::from_secs(60), Duration::from_secs(60))
        .build()
        .unwrap();
    for i in 0..250 {
        client.emit_log(format!("c-{i}"), LogType::Out);
    }
    common::until(|| client.stats().failed_calls >= 1).await;
    token.cancel();
    let r = within(client.close_send()).await;
    assert!(matches!(r, Err(ClientError::Cancelled)), "{r:?}");
    assert_eq!(client.dropped(), 250);
    assert!(matches!(
        within(client.emit_event("x", "y")).await,
        Err(ClientError::Cancelled)
    ));
}
