//! `kill -9` of `weir serve` right after acknowledgements loses nothing acknowledged.

mod common;

use std::collections::BTreeMap;

use common::{Serve, log};
use weir_proto::lv2::{self, ingress_client::IngressClient};
use weir_proto::wv1::{self, ingest_client::IngestClient, stream_result::Result as R};

fn bundle(round: u64, streams: u64, per: u64, secret: &[u8]) -> wv1::Bundle {
    wv1::Bundle {
        streams: (0..streams)
            .map(|s| wv1::StreamAppend {
                path: format!("crash/test/+/s{s}"),
                secret: secret.to_vec(),
                descriptor: Some(wv1::StreamDescriptor {
                    content_type: "text/plain".into(),
                    ..Default::default()
                }),
                first_index: round * per,
                entries: (0..per)
                    .map(|i| log("p", "0", &format!("s{s} line {}", round * per + i)))
                    .collect(),
                terminal_count: None,
            })
            .collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_after_acks_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let secret = b"0123456789abcdef0123456789abcdef0123".to_vec();
    let mut acked: BTreeMap<String, u64> = BTreeMap::new();
    let mut logg_acked = 0u64;
    for cycle in 0..3u64 {
        let serve = Serve::start(dir.path(), &[]);
        let mut ingest = IngestClient::connect(serve.grpc_uri()).await.unwrap();
        let mut ingress = IngressClient::connect(serve.grpc_uri()).await.unwrap();
        for round in cycle * 20..(cycle + 1) * 20 {
            let resp = ingest
                .send(bundle(round, 10, 50, &secret))
                .await
                .unwrap()
                .into_inner();
            for r in resp.results {
                match r.result {
                    Some(R::StoredNext(n)) => {
                        assert_eq!(n, (round + 1) * 50, "{}", r.path);
                        acked.insert(r.path, n);
                    }
                    other => panic!("unexpected result {other:?} for {}", r.path),
                }
            }
            let batch = lv2::EnvelopeBatch {
                batch: (0..10)
                    .map(|i| log("crashapp", "1", &format!("logg {}", logg_acked + i)))
                    .collect(),
            };
            ingress.send(batch).await.unwrap();
            logg_acked += 10;
        }
        // The last acknowledgement has just arrived: kill without warning.
        serve.kill9();
    }
    let serve = Serve::start(dir.path(), &[]);
    for (path, n) in &acked {
        let out = common::weir_cli(&serve, &["cat", path]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len() as u64, *n, "{path}");
        let s = path.rsplit('/').next().unwrap();
        for (i, line) in lines.iter().enumerate() {
            assert_eq!(*line, format!("{s} line {i}"), "{path} entry {i}");
        }
    }
    let out = common::weir_cli(&serve, &["cat", "loggregator/crashapp/+/1"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len() as u64, logg_acked);
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(*line, format!("logg {i}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_shuts_down_cleanly_and_data_survives() {
    let dir = tempfile::tempdir().unwrap();
    let secret = b"0123456789abcdef0123456789abcdef0123".to_vec();
    let serve = Serve::start(dir.path(), &[]);
    let mut ingest = IngestClient::connect(serve.grpc_uri()).await.unwrap();
    ingest.send(bundle(0, 3, 7, &secret)).await.unwrap();
    assert!(
        serve.terminate(std::time::Duration::from_secs(20)),
        "clean exit on SIGTERM"
    );
    let serve = Serve::start(dir.path(), &[]);
    let out = common::weir_cli(&serve, &["ls", "crash/"]);
    assert_eq!(out.lines().count(), 3, "{out}");
    assert!(out.contains("crash/test/+/s2\tentries=7"), "{out}");
}
