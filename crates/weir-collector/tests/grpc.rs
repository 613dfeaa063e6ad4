//! The gRPC services over real tonic clients and an in-process server.

mod common;

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use common::*;
use tonic::Code;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use weir_collector::CollectorConfig;
use weir_collector::metrics::{DropReason, RejectReason, protocol};
use weir_core::Limits;
use weir_proto::lv2::{EnvelopeBatch, ingress_client::IngressClient};
use weir_proto::wv1::{
    self, FollowRequest, GetStreamRequest, ListStreamsRequest, ReadRequest,
    ingest_client::IngestClient, stream_result::Result as R, streams_client::StreamsClient,
};

async fn channel(server: &TestServer) -> Channel {
    Channel::from_shared(server.grpc_url())
        .expect("url")
        .connect()
        .await
        .expect("connect")
}

#[tokio::test]
async fn batch_sender_stores_in_arrival_order_and_drops_bad_envelopes() {
    let server = TestServer::start_with(CollectorConfig {
        limits: Limits {
            max_payload_bytes: 64,
            ..Limits::default()
        },
        ..CollectorConfig::default()
    })
    .await;
    let mut client = IngressClient::new(channel(&server).await);
    let mut batches = Vec::new();
    let mut n = 0;
    for b in 0..10 {
        let mut batch = Vec::new();
        for _ in 0..10 {
            batch.push(lg_log("app", "3", &format!("line {n}")));
            n += 1;
        }
        if b == 4 {
            // In the middle: one without a message, one over the payload limit.
            batch.insert(3, weir_core::Envelope::default());
            batch.insert(7, lg_log("app", "3", &"x".repeat(65)));
        }
        batches.push(EnvelopeBatch { batch });
    }
    client
        .batch_sender(futures::stream::iter(batches))
        .await
        .expect("batch sender");
    let entries = read_all(&server.store, "loggregator/app/+/3").await;
    let want: Vec<String> = (0..100).map(|i| format!("line {i}")).collect();
    assert_eq!(payloads(&entries), want);
    assert_eq!(
        entries.iter().map(|e| e.index).collect::<Vec<_>>(),
        (0..100).collect::<Vec<u64>>()
    );
    let m = &server.metrics;
    assert_eq!(m.dropped_count(DropReason::InvalidEnvelope), 2);
    assert_eq!(m.received_count(protocol::LOGGREGATOR_BATCH_SENDER), 102);
    assert_eq!(m.stored_count(), 100);
    server.stop().await.expect("stop");
}

#[tokio::test]
async fn sender_and_send_store_envelopes() {
    let server = TestServer::start().await;
    let mut client = IngressClient::new(channel(&server).await);
    let envs = vec![
        lg_log("s", "1", "a"),
        weir_core::Envelope::default(),
        lg_log("s", "1", "b"),
        lg_log("t", "", "c"),
    ];
    client
        .sender(futures::stream::iter(envs))
        .await
        .expect("sender");
    client
        .send(EnvelopeBatch {
            batch: vec![lg_log("s", "1", "d")],
        })
        .await
        .expect("send");
    assert_eq!(
        payloads(&read_all(&server.store, "loggregator/s/+/1").await),
        ["a", "b", "d"]
    );
    assert_eq!(
        payloads(&read_all(&server.store, "loggregator/t/+/0").await),
        ["c"]
    );
    let m = &server.metrics;
    assert_eq!(m.received_count(protocol::LOGGREGATOR_SENDER), 4);
    assert_eq!(m.received_count(protocol::LOGGREGATOR_SEND), 1);
    assert_eq!(m.dropped_count(DropReason::InvalidEnvelope), 1);
    server.stop().await.expect("stop");
}

/// Sends raw bytes as the request message and ignores the response body.
#[derive(Default, Clone)]
struct RawCodec;

struct RawEncoder;
struct RawDecoder;

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = tonic::Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = ();
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<()>, tonic::Status> {
        src.advance(src.remaining());
        Ok(Some(()))
    }
}

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = ();
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

async fn raw_unary(server: &TestServer, method: &'static str, body: Bytes) -> tonic::Status {
    let mut grpc = tonic::client::Grpc::new(channel(server).await);
    grpc.ready().await.expect("ready");
    match grpc
        .unary(
            tonic::Request::new(body),
            PathAndQuery::from_static(method),
            RawCodec,
        )
        .await
    {
        Ok(_) => panic!("{method} accepted garbage"),
        Err(status) => status,
    }
}

#[tokio::test]
async fn garbage_requests_are_invalid_argument_and_counted() {
    let server = TestServer::start_with(CollectorConfig {
        limits: Limits {
            max_request_bytes: 1024,
            ..Limits::default()
        },
        ..CollectorConfig::default()
    })
    .await;
    // A length-delimited field whose length runs past the end of the message.
    let garbage = Bytes::from_static(b"\x0a\xff\xff\xff\x0f\x01\x02");
    for method in [
        "/loggregator.v2.Ingress/Send",
        "/weir.v1.Ingest/Send",
        "/weir.v1.Streams/Read",
    ] {
        let status = raw_unary(&server, method, garbage.clone()).await;
        assert_eq!(status.code(), Code::InvalidArgument, "{method}: {status:?}");
        assert!(status.message().contains("malformed request"), "{status:?}");
    }
    // Over the size limit.
    let status = raw_unary(
        &server,
        "/weir.v1.Ingest/Send",
        Bytes::from(vec![0u8; 2048]),
    )
    .await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("too large"), "{status:?}");
    assert_eq!(
        server.metrics.rejected_count(RejectReason::InvalidRequest),
        4
    );

    // Garbage in the middle of a client stream: what came before is stored.
    let mut grpc = tonic::client::Grpc::new(channel(&server).await);
    grpc.ready().await.expect("ready");
    let good = {
        use prost::Message;
        Bytes::from(
            EnvelopeBatch {
                batch: vec![lg_log("g", "0", "before")],
            }
            .encode_to_vec(),
        )
    };
    let status = grpc
        .client_streaming(
            tonic::Request::new(futures::stream::iter(vec![good, garbage.clone()])),
            PathAndQuery::from_static("/loggregator.v2.Ingress/BatchSender"),
            RawCodec,
        )
        .await
        .expect_err("garbage accepted");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(
        server.metrics.rejected_count(RejectReason::InvalidRequest),
        5
    );
    assert_eq!(
        payloads(&read_all(&server.store, "loggregator/g/+/0").await),
        ["before"]
    );

    // The server still serves.
    let mut ingest = IngestClient::new(channel(&server).await);
    let resp = ingest
        .send(wv1::Bundle {
            streams: vec![append("ok/+/s", "k", 0, &["x"])],
        })
        .await
        .expect("send")
        .into_inner();
    assert_eq!(resp.results[0].result, Some(R::StoredNext(1)));
    server.stop().await.expect("stop");
}

#[tokio::test]
async fn ingest_send_answers_per_stream() {
    let server = TestServer::start().await;
    let mut ingest = IngestClient::new(channel(&server).await);
    let resp = ingest
        .send(wv1::Bundle {
            streams: vec![
                append("a/+/one", "k", 0, &["x", "y"]),
                append("bad path", "k", 0, &["x"]),
                append("a/+/two", "k", 4, &["x"]),
            ],
        })
        .await
        .expect("send")
        .into_inner();
    let got: Vec<_> = resp.results.iter().map(|r| r.result.clone()).collect();
    assert_eq!(got[0], Some(R::StoredNext(2)));
    assert!(matches!(&got[1], Some(R::Invalid(m)) if m.contains("/+/")));
    assert_eq!(got[2], Some(R::GapExpected(0)));
    assert_eq!(server.metrics.rejected_count(RejectReason::InvalidPath), 1);
    assert_eq!(server.metrics.rejected_count(RejectReason::Gap), 1);
    server.stop().await.expect("stop");
}

#[tokio::test]
async fn streams_list_get_read() {
    let server = TestServer::start().await;
    let c = &server.collector;
    for i in 0..5 {
        c.process(wv1::Bundle {
            streams: vec![append(&format!("list/+/s{i}"), "k", 0, &["a", "b", "c"])],
        })
        .await;
    }
    let mut client = StreamsClient::new(channel(&server).await);
    let listed = client
        .list(ListStreamsRequest {
            prefix: "list/".into(),
            limit: 2,
            after: "list/+/s1".into(),
        })
        .await
        .expect("list")
        .into_inner();
    let paths: Vec<_> = listed.streams.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(paths, ["list/+/s2", "list/+/s3"]);
    assert_eq!(listed.streams[0].next_index, 3);

    let info = client
        .get(GetStreamRequest {
            path: "list/+/s0".into(),
        })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(info.next_index, 3);
    assert_eq!(info.terminal_count, None);
    let missing = client
        .get(GetStreamRequest {
            path: "list/+/nope".into(),
        })
        .await
        .expect_err("unknown stream");
    assert_eq!(missing.code(), Code::NotFound);
    let bad = client
        .get(GetStreamRequest {
            path: "no separator".into(),
        })
        .await
        .expect_err("bad path");
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert_eq!(server.metrics.rejected_count(RejectReason::NotFound), 1);
    assert_eq!(server.metrics.rejected_count(RejectReason::InvalidPath), 1);

    let read = client
        .read(ReadRequest {
            path: "list/+/s0".into(),
            from: 1,
            limit: 1,
            from_time_ns: None,
        })
        .await
        .expect("read")
        .into_inner();
    assert_eq!(read.started_at, 1);
    assert!(!read.below_low_water);
    assert_eq!(read.entries.len(), 1);
    assert_eq!(read.entries[0].index, 1);
    assert_eq!(
        payload_of(read.entries[0].envelope.as_ref().expect("envelope")),
        "b"
    );
    // From a time: everything was ingested after 0.
    let read = client
        .read(ReadRequest {
            path: "list/+/s0".into(),
            from: 99,
            limit: 0,
            from_time_ns: Some(0),
        })
        .await
        .expect("read")
        .into_inner();
    assert_eq!(read.entries.len(), 3);
    server.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_sends_history_then_live_then_ends_at_termination() {
    let server = TestServer::start().await;
    let c = server.collector.clone();
    let path = "follow/+/s";
    c.process(wv1::Bundle {
        streams: vec![append(path, "k", 0, &["h0", "h1", "h2"])],
    })
    .await;
    let mut client = StreamsClient::new(channel(&server).await);
    let mut follow = client
        .follow(FollowRequest {
            path: path.into(),
            from: 1,
            ..Default::default()
        })
        .await
        .expect("follow")
        .into_inner();
    let mut seen: Vec<(u64, String)> = Vec::new();
    let mut next_live = 3u64;
    let mut responses = 0;
    // Each time the follower has caught up, write the next live entry; terminate
    // after three of them. The follow must end by itself.
    let done = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(resp) = follow.message().await.expect("follow message") {
            responses += 1;
            for e in &resp.entries {
                seen.push((e.index, payload_of(e.envelope.as_ref().expect("envelope"))));
            }
            let caught_up = seen.last().map(|(i, _)| i + 1) == Some(next_live);
            if caught_up && next_live < 6 {
                let live = format!("l{next_live}");
                let mut a = append(path, "k", next_live, &[live.as_str()]);
                if next_live == 5 {
                    a.terminal_count = Some(6);
                }
                let r = c.process(wv1::Bundle { streams: vec![a] }).await;
                assert_eq!(r.results[0].result, Some(R::StoredNext(next_live + 1)));
                next_live += 1;
            }
        }
    })
    .await;
    assert!(done.is_ok(), "follow did not end at termination");
    assert!(responses >= 2);
    let want: Vec<(u64, String)> = [(1, "h1"), (2, "h2"), (3, "l3"), (4, "l4"), (5, "l5")]
        .into_iter()
        .map(|(i, s)| (i, s.to_string()))
        .collect();
    assert_eq!(seen, want);
    server.stop().await.expect("stop");
}

#[tokio::test]
async fn follow_of_unknown_stream_is_not_found() {
    let server = TestServer::start().await;
    let mut client = StreamsClient::new(channel(&server).await);
    let err = client
        .follow(FollowRequest {
            path: "no/+/such".into(),
            from: 0,
            ..Default::default()
        })
        .await
        .expect_err("unknown");
    assert_eq!(err.code(), Code::NotFound);
    server.stop().await.expect("stop");
}

#[tokio::test]
async fn shutdown_ends_open_client_streams_and_closes() {
    let server = TestServer::start().await;
    let mut client = IngressClient::new(channel(&server).await);
    let (tx, rx) = tokio::sync::mpsc::channel::<EnvelopeBatch>(4);
    let call = tokio::spawn(async move {
        client
            .batch_sender(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
    });
    tx.send(EnvelopeBatch {
        batch: vec![lg_log("open", "0", "kept")],
    })
    .await
    .expect("send");
    // Wait until the first batch is stored, then shut down with the stream still open.
    while server.metrics.stored_count() == 0 {
        tokio::task::yield_now().await;
    }
    let store = server.store.clone();
    server.stop().await.expect("stop");
    let status = call
        .await
        .expect("task")
        .expect_err("stream ended by shutdown");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    drop(tx);
    // The store is closed after run returns.
    assert!(store.stream("loggregator/open/+/0").await.is_err());
}
