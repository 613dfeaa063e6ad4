//! Two `weir serve --store nats://…` processes on one `nats-server` act as one
//! collector: the same bundles ingested through both at once are stored once, and a
//! stream written through one is followed live through the other (history then live,
//! no gap, no duplicate). A collector lost with `kill -9` loses nothing: producers and
//! readers go on through the other.

mod common;

use std::time::Duration;

use common::{Serve, log};
use weir_proto::lv2::{self, envelope::Message as Body, ingress_client::IngressClient};
use weir_proto::wv1::{self, FollowRequest, ingest_client::IngestClient};
use weir_proto::wv1::{stream_result::Result as R, streams_client::StreamsClient};
use weir_store_nats::test_support::{NatsServer, stream_records};

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef0123";
const PATIENCE: Duration = Duration::from_secs(30);

fn collector(nats: &NatsServer, dir: &std::path::Path) -> Serve {
    let url = nats.url();
    Serve::start(dir, &["--store", &url, "--nats-prefix", "js"])
}

fn append(path: &str, first: u64, to: u64, terminal: Option<u64>) -> wv1::StreamAppend {
    wv1::StreamAppend {
        path: path.into(),
        secret: SECRET.to_vec(),
        descriptor: Some(wv1::StreamDescriptor {
            content_type: "text/plain".into(),
            ..Default::default()
        }),
        first_index: first,
        entries: (first..to)
            .map(|i| log("p", "0", &format!("{path} #{i}")))
            .collect(),
        terminal_count: terminal,
    }
}

fn text(e: &lv2::Envelope) -> String {
    match &e.message {
        Some(Body::Log(l)) => String::from_utf8_lossy(&l.payload).into_owned(),
        other => panic!("not a log: {other:?}"),
    }
}

/// A live follow of `path` from `from` through the collector at `uri`.
async fn follow(uri: String, path: &str, from: u64) -> tonic::Streaming<wv1::ReadResponse> {
    StreamsClient::connect(uri)
        .await
        .unwrap()
        .follow(FollowRequest {
            path: path.into(),
            from,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

/// Adds a follow response's entries to `got` as (index, text).
fn take(got: &mut Vec<(u64, String)>, resp: &wv1::ReadResponse) {
    got.extend(
        resp.entries
            .iter()
            .map(|e| (e.index, text(e.envelope.as_ref().unwrap()))),
    );
}

/// Reads `follow` until `got` holds `count` entries (bounded by the patience).
async fn take_until(
    follow: &mut tonic::Streaming<wv1::ReadResponse>,
    got: &mut Vec<(u64, String)>,
    count: u64,
) {
    while (got.len() as u64) < count {
        let resp = tokio::time::timeout(PATIENCE, follow.message())
            .await
            .expect("entries within the patience")
            .unwrap()
            .expect("the follow goes on");
        take(got, &resp);
    }
}

/// Reads `follow` to its end (the stream's termination); whether it ended within the
/// patience.
async fn take_to_end(
    follow: &mut tonic::Streaming<wv1::ReadResponse>,
    got: &mut Vec<(u64, String)>,
) -> bool {
    tokio::time::timeout(PATIENCE, async {
        while let Some(resp) = follow.message().await.expect("follow message") {
            take(got, &resp);
        }
    })
    .await
    .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_bundles_through_two_collectors_are_stored_once() {
    const STREAMS: u64 = 8;
    const ROUNDS: u64 = 15;
    const PER: u64 = 20;
    let nats = NatsServer::start();
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (collector(&nats, da.path()), collector(&nats, db.path()));
    let mut ia = IngestClient::connect(a.grpc_uri()).await.unwrap();
    let mut ib = IngestClient::connect(b.grpc_uri()).await.unwrap();
    for round in 0..ROUNDS {
        let bundle = wv1::Bundle {
            streams: (0..STREAMS)
                .map(|s| {
                    append(
                        &format!("twice/+/s{s}"),
                        round * PER,
                        (round + 1) * PER,
                        None,
                    )
                })
                .collect(),
        };
        let (ra, rb) = tokio::join!(ia.send(bundle.clone()), ib.send(bundle));
        for resp in [ra.unwrap().into_inner(), rb.unwrap().into_inner()] {
            for r in resp.results {
                assert_eq!(
                    r.result,
                    Some(R::StoredNext((round + 1) * PER)),
                    "{} round {round}",
                    r.path
                );
            }
        }
    }
    for s in 0..STREAMS {
        let path = format!("twice/+/s{s}");
        // One record per round: nothing was written twice.
        assert_eq!(
            stream_records(&nats.url(), "js", &path).await,
            ROUNDS,
            "{path}"
        );
        for serve in [&a, &b] {
            let out = common::weir_cli(serve, &["cat", &path]);
            let want: Vec<String> = (0..ROUNDS * PER).map(|i| format!("{path} #{i}")).collect();
            assert_eq!(out.lines().collect::<Vec<_>>(), want, "{path}");
        }
    }

    // Loggregator clients on both collectors feed one stream: the store numbers them
    // without a gap or a clash.
    let mut la = IngressClient::connect(a.grpc_uri()).await.unwrap();
    let mut lb = IngressClient::connect(b.grpc_uri()).await.unwrap();
    let batch = |who: &str, round: u32| lv2::EnvelopeBatch {
        batch: (0..50)
            .map(|i| log("shared", "0", &format!("{who} {round} {i}")))
            .collect(),
    };
    for round in 0..4 {
        let (x, y) = tokio::join!(la.send(batch("a", round)), lb.send(batch("b", round)));
        x.unwrap();
        y.unwrap();
    }
    let out = common::weir_cli(&b, &["cat", "loggregator/shared/+/0"]);
    let mut lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 400);
    lines.sort_unstable();
    lines.dedup();
    assert_eq!(lines.len(), 400, "every envelope once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_written_through_a_is_followed_live_through_b() {
    const HISTORY: u64 = 40;
    const TOTAL: u64 = 120;
    let nats = NatsServer::start();
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (collector(&nats, da.path()), collector(&nats, db.path()));
    let mut ia = IngestClient::connect(a.grpc_uri()).await.unwrap();
    let path = "cross/+/follow";
    let resp = ia
        .send(wv1::Bundle {
            streams: vec![append(path, 0, HISTORY, None)],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.results[0].result, Some(R::StoredNext(HISTORY)));

    let mut follow = follow(b.grpc_uri(), path, 0).await;
    let mut got: Vec<(u64, String)> = Vec::new();
    // The history arrives before anything more is written.
    take_until(&mut follow, &mut got, HISTORY).await;
    // The live part, through A, in small bundles; the last one terminates the stream.
    let producer = tokio::spawn(async move {
        let mut next = HISTORY;
        while next < TOTAL {
            let end = (next + 1 + next % 3).min(TOTAL);
            let terminal = (end == TOTAL).then_some(TOTAL);
            let resp = ia
                .send(wv1::Bundle {
                    streams: vec![append(path, next, end, terminal)],
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(resp.results[0].result, Some(R::StoredNext(end)));
            next = end;
        }
    });
    let done = take_to_end(&mut follow, &mut got).await;
    producer.await.expect("producer");
    assert!(done, "the follow through B ends at the termination");
    let want: Vec<(u64, String)> = (0..TOTAL).map(|i| (i, format!("{path} #{i}"))).collect();
    assert_eq!(got, want, "exactly 0..{TOTAL}, in order, through B");
}

/// What the README says of a collector lost: a producer that loses collector A with
/// `kill -9` resends its last bundle to B (a duplicate: stored once), goes on through
/// B, and a reader that followed through A follows on through B from where it stopped:
/// the stream holds exactly 0..120, one JetStream record per bundle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_lost_with_kill_9_loses_nothing_and_stores_nothing_twice() {
    const PER: u64 = 10;
    const BEFORE: u64 = 60;
    const TOTAL: u64 = 120;
    let nats = NatsServer::start();
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (collector(&nats, da.path()), collector(&nats, db.path()));
    let path = "lost/+/a";
    let mut ia = IngestClient::connect(a.grpc_uri()).await.unwrap();
    let mut follow_a = None;
    for first in (0..BEFORE).step_by(PER as usize) {
        let resp = ia
            .send(wv1::Bundle {
                streams: vec![append(path, first, first + PER, None)],
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(resp.results[0].result, Some(R::StoredNext(first + PER)));
        if follow_a.is_none() {
            // A reader follows through A once the stream exists.
            follow_a = Some(follow(a.grpc_uri(), path, 0).await);
        }
    }
    let mut follow_a = follow_a.expect("a follow through A");
    // The reader takes what A serves of the acknowledged part; then A dies.
    let mut got: Vec<(u64, String)> = Vec::new();
    take_until(&mut follow_a, &mut got, BEFORE).await;
    a.kill9();
    let ended = tokio::time::timeout(PATIENCE, follow_a.message())
        .await
        .expect("the follow through A ends when A dies");
    assert!(
        !matches!(ended, Ok(Some(_))),
        "nothing more through a dead collector: {ended:?}"
    );

    // The producer did not know whether its last bundle was stored: it sends it again,
    // to B, and goes on there.
    let mut ib = IngestClient::connect(b.grpc_uri()).await.unwrap();
    let resend = ib
        .send(wv1::Bundle {
            streams: vec![append(path, BEFORE - PER, BEFORE, None)],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        resend.results[0].result,
        Some(R::StoredNext(BEFORE)),
        "a resend of what A stored is a duplicate"
    );
    assert_eq!(
        stream_records(&nats.url(), "js", path).await,
        BEFORE / PER,
        "one record per bundle: the resend added none"
    );
    let mut follow_b = follow(b.grpc_uri(), path, got.len() as u64).await;
    for first in (BEFORE..TOTAL).step_by(PER as usize) {
        let end = first + PER;
        let terminal = (end == TOTAL).then_some(TOTAL);
        let resp = ib
            .send(wv1::Bundle {
                streams: vec![append(path, first, end, terminal)],
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(resp.results[0].result, Some(R::StoredNext(end)));
    }
    assert!(
        take_to_end(&mut follow_b, &mut got).await,
        "the follow through B ends at the termination"
    );
    let want: Vec<(u64, String)> = (0..TOTAL).map(|i| (i, format!("{path} #{i}"))).collect();
    assert_eq!(
        got, want,
        "exactly 0..{TOTAL}, in order, across the two collectors"
    );
    assert_eq!(
        stream_records(&nats.url(), "js", path).await,
        TOTAL / PER + 1,
        "one record per bundle, and the termination's own"
    );
}
