//! The `weir` and `loggregator` flushers against a real collector on loopback.

mod agent_support;

use weir_agent::flusher::loggregator::{LoggregatorConfig, LoggregatorFlusher};
use weir_agent::flusher::weir::{WeirConfig, WeirFlusher};
use weir_agent::flusher::{Batch, Flusher, StreamAck, StreamBatch};
use weir_core::Envelope;
use weir_proto::lv2::{Log, envelope::Message as Body};

use agent_support::Collector;

fn stream(path: &str, first: u64, n: u64) -> StreamBatch {
    StreamBatch {
        stream: path.into(),
        first_index: first,
        entries: (first..first + n)
            .map(|i| Envelope {
                message: Some(Body::Log(Log {
                    payload: format!("line {i}").into_bytes().into(),
                    r#type: 0,
                })),
                ..Default::default()
            })
            .collect(),
        terminal_count: None,
    }
}

#[tokio::test]
async fn weir_flusher_exactly_once_gap_and_new_generation() {
    let c = Collector::start().await;
    let data = tempfile::tempdir().unwrap();
    let mut f = WeirFlusher::new(
        WeirConfig {
            addr: c.addr.clone(),
            ..WeirConfig::default()
        },
        data.path().to_path_buf(),
    );
    f.init().await.unwrap();
    let b = Batch {
        streams: vec![stream("h/+/a", 0, 10), stream("h/+/b", 0, 5)],
    };
    assert_eq!(
        f.flush(&b).await.unwrap(),
        vec![StreamAck::Acked { next: 10 }, StreamAck::Acked { next: 5 }]
    );
    // A resend after a crash is acknowledged and stored once.
    let again = Batch {
        streams: vec![stream("h/+/a", 5, 10)],
    };
    assert_eq!(
        f.flush(&again).await.unwrap(),
        vec![StreamAck::Acked { next: 15 }]
    );
    let lines = c.lines("h/+/a").await;
    assert_eq!(
        lines,
        (0..15).map(|i| format!("line {i}")).collect::<Vec<_>>()
    );
    // Past the next index: the entries between were dropped before they reached the
    // flusher (batches go out in order), so the hole can never be filled. The
    // generation is terminated where the collector is and the next one starts at the
    // batch, which is resent.
    f.flush(&Batch {
        streams: vec![stream("h/+/c", 0, 5)],
    })
    .await
    .unwrap();
    let ahead = Batch {
        streams: vec![stream("h/+/c", 8, 2)],
    };
    assert!(matches!(
        f.flush(&ahead).await.unwrap()[0],
        StreamAck::Retry { from: 8, .. }
    ));
    assert_eq!(
        f.flush(&ahead).await.unwrap(),
        vec![StreamAck::Acked { next: 10 }]
    );
    let old = c
        .store
        .stream("h/+/c")
        .await
        .unwrap()
        .expect("old generation");
    assert_eq!(
        old.terminal_count,
        Some(5),
        "the old generation is complete"
    );
    assert_eq!(c.lines("h/+/c").await.len(), 5);
    assert_eq!(c.lines("h/+/c/gen-2").await, vec!["line 8", "line 9"]);

    // The agent loses its data dir: new secrets, so the collector refuses them, and the
    // flusher opens generation 2 of the path, numbered from the batch's first index.
    let lost = tempfile::tempdir().unwrap();
    let mut g = WeirFlusher::new(
        WeirConfig {
            addr: c.addr.clone(),
            ..WeirConfig::default()
        },
        lost.path().to_path_buf(),
    );
    g.init().await.unwrap();
    let next = Batch {
        streams: vec![stream("h/+/a", 15, 3)],
    };
    assert!(matches!(
        g.flush(&next).await.unwrap()[0],
        StreamAck::Retry { from: 15, .. }
    ));
    assert_eq!(
        g.flush(&next).await.unwrap(),
        vec![StreamAck::Acked { next: 18 }]
    );
    assert_eq!(
        c.lines("h/+/a/gen-2").await,
        vec!["line 15", "line 16", "line 17"]
    );
    assert_eq!(
        c.lines("h/+/a").await.len(),
        15,
        "the old stream is untouched"
    );
    c.stop().await;
}

#[tokio::test]
async fn weir_flusher_collector_down_is_transient() {
    let c = Collector::start().await;
    let addr = c.addr.clone();
    c.stop().await;
    let data = tempfile::tempdir().unwrap();
    let mut f = WeirFlusher::new(
        WeirConfig {
            addr,
            timeout_ms: 2000,
            ..WeirConfig::default()
        },
        data.path().to_path_buf(),
    );
    f.init().await.unwrap();
    assert!(
        f.flush(&Batch {
            streams: vec![stream("h/+/a", 0, 1)]
        })
        .await
        .is_err()
    );
}

#[tokio::test]
async fn loggregator_flusher_sends_with_unary_send() {
    let c = Collector::start().await;
    let mut f = LoggregatorFlusher::new(LoggregatorConfig {
        addr: c.addr.clone(),
        ..LoggregatorConfig::default()
    });
    f.init().await.unwrap();
    let mut s = stream("ignored/+/x", 0, 4);
    for e in s.entries.envelopes_mut() {
        e.source_id = "agent-app".into();
    }
    let b = Batch { streams: vec![s] };
    assert_eq!(
        f.flush(&b).await.unwrap(),
        vec![StreamAck::Acked { next: 4 }]
    );
    assert_eq!(
        c.lines("loggregator/agent-app/+/0").await,
        vec!["line 0", "line 1", "line 2", "line 3"]
    );
    c.stop().await;
}
