//! Following streams over gRPC (`Streams/Follow`) and SSE (`/v1/entries?follow=true`)
//! while a producer appends: history then live with no gap and no duplicate at the seam,
//! prefix follows that pick up new streams, and followers that lag behind the store's
//! notifications.

mod common;

use std::collections::BTreeMap;

use common::live::PATIENCE;
use common::*;
use weir_proto::wv1::stream_result::Result as R;
use weir_proto::wv1::{self, FollowRequest, ReadResponse, streams_client::StreamsClient};

const SECRET: &str = "follow-test-secret";
/// Entries written before the follow starts, and in all.
const HISTORY: u64 = 40;
const TOTAL: u64 = 100;
const REPETITIONS: u64 = 20;

fn payload(path: &str, i: u64) -> String {
    format!("{path}#{i}")
}

/// Appends entries `from..to` of `path` in one bundle (terminating it at `terminal`).
async fn append_range(server: &TestServer, path: &str, from: u64, to: u64, terminal: Option<u64>) {
    let payloads: Vec<String> = (from..to).map(|i| payload(path, i)).collect();
    let refs: Vec<&str> = payloads.iter().map(String::as_str).collect();
    let mut a = append(path, SECRET, from, &refs);
    a.terminal_count = terminal;
    let r = server
        .collector
        .process(wv1::Bundle { streams: vec![a] })
        .await;
    assert_eq!(r.results[0].result, Some(R::StoredNext(to)), "{r:?}");
}

fn check(path: &str, got: &[(u64, String)]) {
    let want: Vec<(u64, String)> = (0..TOTAL).map(|i| (i, payload(path, i))).collect();
    assert_eq!(got, want.as_slice(), "{path}: exactly 0..{TOTAL}, in order");
}

async fn grpc_client(server: &TestServer) -> StreamsClient<tonic::transport::Channel> {
    StreamsClient::new(common::live::channel(server).await)
}

fn entries(resp: &ReadResponse) -> impl Iterator<Item = (u64, String)> + '_ {
    resp.entries
        .iter()
        .map(|e| (e.index, payload_of(e.envelope.as_ref().expect("envelope"))))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_follow_from_zero_while_appending_has_no_gap_or_duplicate() {
    let server = TestServer::start().await;
    let mut client = grpc_client(&server).await;
    for rep in 0..REPETITIONS {
        let path = format!("seam/+/grpc{rep}");
        append_range(&server, &path, 0, HISTORY, None).await;
        let mut follow = client
            .follow(FollowRequest {
                path: path.clone(),
                from: 0,
                ..Default::default()
            })
            .await
            .expect("follow")
            .into_inner();
        // The gate: the producer starts the live part once the history has arrived.
        let first = follow.message().await.expect("first").expect("a response");
        let mut got: Vec<(u64, String)> = entries(&first).collect();
        assert_eq!(got.len() as u64, HISTORY, "the history part");
        let producer = {
            let c = ServerRef(server.collector.clone());
            let path = path.clone();
            tokio::spawn(async move { c.live_part(&path).await })
        };
        let done = tokio::time::timeout(PATIENCE, async {
            while let Some(resp) = follow.message().await.expect("follow message") {
                got.extend(entries(&resp));
            }
        })
        .await;
        assert!(done.is_ok(), "the follow ends at termination");
        producer.await.expect("producer");
        assert!(got.len() as u64 > HISTORY, "a live part");
        check(&path, &got);
    }
    server.stop().await.expect("stop");
}

/// The producer of one run, on its own task: the live part, in appends of 1 to 3
/// entries, then the termination at `TOTAL`.
struct ServerRef(weir_collector::Collector);

impl ServerRef {
    async fn live_part(&self, path: &str) {
        let mut next = HISTORY;
        while next < TOTAL {
            let end = (next + 1 + next % 3).min(TOTAL);
            let payloads: Vec<String> = (next..end).map(|i| payload(path, i)).collect();
            let refs: Vec<&str> = payloads.iter().map(String::as_str).collect();
            let mut a = append(path, SECRET, next, &refs);
            a.terminal_count = (end == TOTAL).then_some(TOTAL);
            let r = self.0.process(wv1::Bundle { streams: vec![a] }).await;
            assert_eq!(r.results[0].result, Some(R::StoredNext(end)), "{r:?}");
            next = end;
            tokio::task::yield_now().await;
        }
    }
}

/// Reads an SSE response event by event.
struct Sse {
    resp: reqwest::Response,
    buf: Vec<u8>,
}

impl Sse {
    async fn open(server: &TestServer, query: &str) -> Sse {
        let resp = reqwest::get(server.http_url(&format!("/v1/entries?{query}")))
            .await
            .expect("request");
        assert_eq!(resp.status(), 200, "{query}");
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        Sse {
            resp,
            buf: Vec::new(),
        }
    }

    /// The next event, or `None` at the end of the response.
    async fn next(&mut self) -> Option<String> {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let e: Vec<u8> = self.buf.drain(..end + 2).collect();
                return Some(String::from_utf8(e).expect("UTF-8"));
            }
            let chunk = tokio::time::timeout(PATIENCE, self.resp.chunk())
                .await
                .expect("in time")
                .expect("body");
            match chunk {
                Some(c) => self.buf.extend_from_slice(&c),
                None => {
                    assert!(self.buf.is_empty(), "partial event at the end");
                    return None;
                }
            }
        }
    }

    /// The next entry event as `(stream, index, message)`.
    async fn next_entry(&mut self) -> Option<(String, u64, String)> {
        let e = self.next().await?;
        let json = e
            .strip_prefix("data: ")
            .and_then(|j| j.strip_suffix("\n\n"))
            .unwrap_or_else(|| panic!("not an entry event: {e:?}"));
        let v: serde_json::Value = serde_json::from_str(json).expect("JSON");
        Some((
            v["stream"].as_str().expect("stream").to_string(),
            v["index"].as_u64().expect("index"),
            v["message"].as_str().expect("message").to_string(),
        ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_follow_from_zero_while_appending_has_no_gap_or_duplicate() {
    let server = TestServer::start().await;
    for rep in 0..REPETITIONS {
        let path = format!("seam/+/sse{rep}");
        append_range(&server, &path, 0, HISTORY, None).await;
        let query = format!("path={}&from=0&follow=true", path.replace('+', "%2B"));
        let mut sse = Sse::open(&server, &query).await;
        let mut got = Vec::new();
        // The gate: the history has arrived.
        while (got.len() as u64) < HISTORY {
            let (stream, i, m) = sse.next_entry().await.expect("history entry");
            assert_eq!(stream, path);
            got.push((i, m));
        }
        let producer = {
            let c = ServerRef(server.collector.clone());
            let path = path.clone();
            tokio::spawn(async move { c.live_part(&path).await })
        };
        while let Some((_, i, m)) = sse.next_entry().await {
            got.push((i, m));
        }
        producer.await.expect("producer");
        check(&path, &got);
    }
    server.stop().await.expect("stop");
}

#[tokio::test]
async fn prefix_follow_picks_up_new_streams_and_labels_entries() {
    let server = TestServer::start().await;
    append_range(&server, "pf/+/a", 0, 2, None).await;
    append_range(&server, "other/+/x", 0, 1, None).await;

    // gRPC and SSE side by side.
    let mut client = grpc_client(&server).await;
    let mut grpc = client
        .follow(FollowRequest {
            prefix: "pf/".into(),
            ..Default::default()
        })
        .await
        .expect("follow")
        .into_inner();
    let mut sse = Sse::open(&server, "prefix=pf/&follow=true").await;

    let mut grpc_got: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut sse_got: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    async fn grpc_until(
        follow: &mut tonic::Streaming<ReadResponse>,
        got: &mut BTreeMap<String, Vec<u64>>,
        n: usize,
    ) {
        while got.values().map(Vec::len).sum::<usize>() < n {
            let resp = tokio::time::timeout(PATIENCE, follow.message())
                .await
                .expect("in time")
                .expect("message")
                .expect("not ended");
            for e in &resp.entries {
                let m = payload_of(e.envelope.as_ref().expect("envelope"));
                assert_eq!(m, payload(&e.path, e.index), "labelled with its stream");
                got.entry(e.path.clone()).or_default().push(e.index);
            }
        }
    }
    async fn sse_until(sse: &mut Sse, got: &mut BTreeMap<String, Vec<u64>>, n: usize) {
        while got.values().map(Vec::len).sum::<usize>() < n {
            let (stream, i, m) = sse.next_entry().await.expect("entry");
            assert_eq!(m, payload(&stream, i), "labelled with its stream");
            got.entry(stream).or_default().push(i);
        }
    }
    grpc_until(&mut grpc, &mut grpc_got, 2).await;
    sse_until(&mut sse, &mut sse_got, 2).await;

    // A stream created after the follows began, more of an existing one, and one
    // outside the prefix.
    append_range(&server, "pf/+/b", 0, 3, None).await;
    append_range(&server, "other/+/x", 1, 2, None).await;
    append_range(&server, "pf/+/a", 2, 4, Some(4)).await;
    append_range(&server, "pf/deeper/+/c", 0, 1, None).await;

    let want: BTreeMap<String, Vec<u64>> = [
        ("pf/+/a", vec![0, 1, 2, 3]),
        ("pf/+/b", vec![0, 1, 2]),
        ("pf/deeper/+/c", vec![0]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    grpc_until(&mut grpc, &mut grpc_got, 8).await;
    sse_until(&mut sse, &mut sse_got, 8).await;
    assert_eq!(grpc_got, want);
    assert_eq!(sse_got, want);
    server.stop().await.expect("stop");
}

/// Appends entry `index` of `path` with a 512-byte payload: responses of one such entry
/// are DATA frames over 256 bytes, which h2 clients do not count as framing abuse while
/// they sit unread (h2's "too_many_data_frames" budget).
async fn append_padded(server: &TestServer, path: &str, index: u64) {
    let mut p = payload(path, index);
    p.push(' ');
    p.extend(std::iter::repeat_n('.', 512 - p.len()));
    let mut a = append(path, SECRET, index, &[p.as_str()]);
    a.terminal_count = None;
    let r = server
        .collector
        .process(wv1::Bundle { streams: vec![a] })
        .await;
    assert_eq!(r.results[0].result, Some(R::StoredNext(index + 1)), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_that_lag_behind_notifications_miss_nothing() {
    // While the followers do not read: 500 appends to s0, then more appends to other
    // streams than the store's notification channel holds (4096). The followers' last
    // notifications of s0 are lost in the lag, so only re-reading after the lag finds
    // the rest of s0.
    const S0_APPENDS: u64 = 500;
    const OTHER_APPENDS: u64 = 4_600;
    let server = TestServer::start().await;
    append_padded(&server, "lag/+/s0", 0).await;
    // Small HTTP/2 windows, so the followers soon block on their unread responses;
    // a connection each, so one's unread responses cannot hold up the other's.
    async fn small_window_client(server: &TestServer) -> StreamsClient<tonic::transport::Channel> {
        let channel = tonic::transport::Endpoint::from_shared(server.grpc_url())
            .expect("url")
            .initial_stream_window_size(65_535)
            .initial_connection_window_size(65_535)
            .connect()
            .await
            .expect("connect");
        StreamsClient::new(channel)
    }
    let mut single = small_window_client(&server)
        .await
        .follow(FollowRequest {
            path: "lag/+/s0".into(),
            ..Default::default()
        })
        .await
        .expect("follow")
        .into_inner();
    let mut prefix = small_window_client(&server)
        .await
        .follow(FollowRequest {
            prefix: "lag/".into(),
            ..Default::default()
        })
        .await
        .expect("follow")
        .into_inner();
    for i in 1..=S0_APPENDS {
        append_padded(&server, "lag/+/s0", i).await;
    }
    for i in 0..OTHER_APPENDS {
        append_padded(&server, &format!("lag/+/s{}", 1 + i % 4), i / 4).await;
    }
    let s0_len = 1 + S0_APPENDS;
    let mut got = Vec::new();
    while (got.len() as u64) < s0_len {
        let resp = tokio::time::timeout(PATIENCE, single.message())
            .await
            .expect("in time")
            .expect("message")
            .expect("not ended");
        got.extend(resp.entries.iter().map(|e| e.index));
    }
    assert_eq!(got, (0..s0_len).collect::<Vec<_>>());

    let mut by_stream: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    while by_stream.values().map(Vec::len).sum::<usize>() < (s0_len + OTHER_APPENDS) as usize {
        let resp = tokio::time::timeout(PATIENCE, prefix.message())
            .await
            .expect("in time")
            .expect("message")
            .expect("not ended");
        for e in &resp.entries {
            by_stream.entry(e.path.clone()).or_default().push(e.index);
        }
    }
    for (path, indices) in &by_stream {
        let n = indices.len() as u64;
        assert_eq!(indices, &(0..n).collect::<Vec<_>>(), "{path}");
    }
    assert_eq!(by_stream["lag/+/s0"].len() as u64, s0_len);
    server.stop().await.expect("stop");
}
