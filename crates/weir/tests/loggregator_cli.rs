//! Loggregator clients against `weir serve`, read back with `weir cat`.

mod common;

use common::{Serve, log};
use weir_proto::lv2::{self, envelope::Message as Body, ingress_client::IngressClient};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_sender_in_arrival_order_and_bad_envelope_dropped_alone() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path(), &[]);
    let mut client = IngressClient::connect(serve.grpc_uri()).await.unwrap();
    let mut batches = Vec::new();
    let mut n = 0;
    for b in 0..20 {
        let mut batch = lv2::EnvelopeBatch::default();
        for _ in 0..50 {
            batch.batch.push(log("web", "0", &format!("line {n}")));
            n += 1;
        }
        if b == 10 {
            // A bad envelope in the middle of the stream: no message at all.
            batch.batch.insert(
                25,
                lv2::Envelope {
                    source_id: "web".into(),
                    ..Default::default()
                },
            );
        }
        batches.push(batch);
    }
    let received_before = serve.metric("weir_received_envelopes_total", "").await;
    client
        .batch_sender(tokio_stream::iter(batches))
        .await
        .expect("BatchSender stream is not aborted by a bad envelope");

    let out = common::weir_cli(&serve, &["cat", "loggregator/web/+/0"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1000);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(*l, format!("line {i}"));
    }
    let dropped = serve.metric("weir_dropped_envelopes_total", "").await;
    assert_eq!(dropped, 1.0, "the bad envelope is counted as dropped");
    let received = serve.metric("weir_received_envelopes_total", "").await;
    assert_eq!(received - received_before, 1001.0);

    // `weir cat --json` prints the people form with the payload as "message".
    let out = common::weir_cli(
        &serve,
        &["cat", "loggregator/web/+/0", "--from", "998", "--json"],
    );
    let rows: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["index"], 998);
    assert_eq!(rows[1]["message"], "line 999");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_and_sender_store_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path(), &[]);
    let mut client = IngressClient::connect(serve.grpc_uri()).await.unwrap();
    client
        .send(lv2::EnvelopeBatch {
            batch: vec![lv2::Envelope {
                source_id: "api".into(),
                message: Some(Body::Event(lv2::Event {
                    title: "deployed".into(),
                    body: "v2".into(),
                })),
                ..Default::default()
            }],
        })
        .await
        .unwrap();
    let singles: Vec<lv2::Envelope> = (0..30)
        .map(|i| log("api", "", &format!("one {i}")))
        .collect();
    client.sender(tokio_stream::iter(singles)).await.unwrap();
    let out = common::weir_cli(&serve, &["cat", "loggregator/api/+/0"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 31);
    assert_eq!(lines[0], "event deployed: v2");
    for i in 0..30 {
        assert_eq!(lines[i + 1], format!("one {i}"));
    }
    let listed = common::weir_cli(&serve, &["ls", "loggregator/"]);
    assert!(
        listed.contains("loggregator/api/+/0\tentries=31"),
        "{listed}"
    );
}
