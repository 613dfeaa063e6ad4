//! The live relay across collectors: two collectors (each on its own fjall store) whose
//! relays share one real `nats-server`. A subscriber on one collector receives what the
//! other ingests, each envelope once; the members of a shard group spread over both
//! collectors together receive each envelope exactly once.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::live::*;
use common::*;
use weir_collector::relay::{LiveRelay, RelayCopy};
use weir_collector::{CollectorConfig, EgressConfig};
use weir_core::Envelope;
use weir_proto::lv2::ingress_client::IngressClient;
use weir_store_nats::test_support::NatsServer;

/// How long a warm-up round waits for its envelope before sending the next.
const ROUND: Duration = Duration::from_millis(200);

fn relay_config(url: &str) -> CollectorConfig {
    CollectorConfig {
        egress: EgressConfig {
            relay: Some(url.to_string()),
            flush_interval_ms: 5,
            ..EgressConfig::default()
        },
        ..CollectorConfig::default()
    }
}

async fn two_collectors(nats: &NatsServer) -> (TestServer, TestServer) {
    let a = TestServer::start_with(relay_config(&nats.url())).await;
    let b = TestServer::start_with(relay_config(&nats.url())).await;
    for s in [&a, &b] {
        assert!(matches!(s.collector.relay(), Some(LiveRelay::Nats(_))));
    }
    (a, b)
}

/// Sends `source` envelopes through `producer` until `done(recorders)` holds, waiting a
/// round for the recorders between sends; returns how many were sent. The first
/// envelopes may be missed while the new subscriptions' interest and group joins
/// propagate through NATS; this is what the warm-up absorbs.
async fn warm_up(
    producer: &mut IngressClient<tonic::transport::Channel>,
    source: &str,
    recorders: &mut [&mut Recorder],
    done: impl Fn(&[&mut Recorder]) -> bool,
) -> u64 {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut i = 0;
    while !done(recorders) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "warm-up: nothing relayed in {PATIENCE:?}"
        );
        send(producer, vec![numbered(source, i)]).await;
        i += 1;
        if let Some(r) = recorders.first_mut() {
            r.changed_within(ROUND).await;
        }
    }
    i
}

/// Counts of each `(source, number)` a recorder received.
fn tally(envs: &[Envelope], source: &str) -> HashMap<u64, usize> {
    let mut t = HashMap::new();
    for e in envs {
        let (s, i) = number_of(e);
        if s == source {
            *t.entry(i).or_default() += 1;
        }
    }
    t
}

#[tokio::test]
async fn a_subscriber_on_b_receives_what_a_ingests_and_b_its_own_once() {
    let nats = NatsServer::start();
    let (a, b) = two_collectors(&nats).await;
    let mut rec = Recorder::start(
        channel(&b).await,
        batch_request(
            vec![
                log_selector("warm"),
                log_selector("from-a"),
                log_selector("from-b"),
                log_selector("fence"),
            ],
            "",
            "",
        ),
    )
    .await;
    let mut pa = IngressClient::new(channel(&a).await);
    let mut pb = IngressClient::new(channel(&b).await);
    let warm = warm_up(&mut pa, "warm", &mut [&mut rec], |r| r[0].count() > 0).await;
    assert!(warm >= 1);

    // Interleaved batches through both collectors.
    const N: u64 = 500;
    for start in (0..N).step_by(50) {
        send(
            &mut pa,
            (start..start + 50).map(|i| numbered("from-a", i)).collect(),
        )
        .await;
        send(
            &mut pb,
            (start..start + 50).map(|i| numbered("from-b", i)).collect(),
        )
        .await;
    }
    let wanted = 2 * N as usize;
    // Every data envelope (and perhaps some late warm-up ones).
    rec.wait_for(wanted).await;
    // A fence from each producer: NATS keeps each publisher's order, so once both
    // fences are in, every earlier envelope (and any duplicate) is in too.
    send(&mut pa, vec![numbered("fence", 0)]).await;
    send(&mut pb, vec![numbered("fence", 1)]).await;
    let envs = loop {
        let envs = rec.envelopes();
        let fences: Vec<u64> = envs
            .iter()
            .map(number_of)
            .filter(|(s, _)| s == "fence")
            .map(|(_, i)| i)
            .collect();
        if fences.contains(&0) && fences.contains(&1) {
            break envs;
        }
        assert!(
            rec.changed_within(PATIENCE).await,
            "fences did not arrive: {fences:?}"
        );
    };
    for source in ["from-a", "from-b"] {
        let t = tally(&envs, source);
        for i in 0..N {
            assert_eq!(
                t.get(&i),
                Some(&1),
                "{source}-{i} received {:?} times",
                t.get(&i)
            );
        }
        assert_eq!(t.len() as u64, N);
        // In order, per producer.
        let order: Vec<u64> = envs
            .iter()
            .map(number_of)
            .filter(|(s, _)| s == source)
            .map(|(_, i)| i)
            .collect();
        assert!(
            order.windows(2).all(|w| w[0] < w[1]),
            "{source} out of order"
        );
    }
    // Both published, B received its own ingest through the relay only.
    let ra = a.metrics.relay();
    let rb = b.metrics.relay();
    assert!(
        ra.published_count() >= N,
        "A published {}",
        ra.published_count()
    );
    assert!(
        rb.published_count() >= N,
        "B published {}",
        rb.published_count()
    );
    assert!(rb.received_count(RelayCopy::All) >= 2 * N);
    rec.stop();
    a.stop().await.expect("stop a");
    b.stop().await.expect("stop b");
}

#[tokio::test]
async fn a_shard_group_spread_over_two_collectors_gets_each_envelope_once() {
    let nats = NatsServer::start();
    let (a, b) = two_collectors(&nats).await;
    let req = || batch_request(vec![log_selector("")], "group-1", "");
    let mut on_a = Recorder::start(channel(&a).await, req()).await;
    let mut on_b = Recorder::start(channel(&b).await, req()).await;
    // An unsharded subscriber of the same selector gets its own full copy.
    let mut full = Recorder::start(
        channel(&b).await,
        batch_request(vec![log_selector("")], "", ""),
    )
    .await;
    let mut pa = IngressClient::new(channel(&a).await);
    let mut pb = IngressClient::new(channel(&b).await);

    // Until both collectors have joined the group: both members got something.
    warm_up(
        &mut pa,
        "warm",
        &mut [&mut on_a, &mut on_b, &mut full],
        |r| r[0].count() > 0 && r[1].count() > 0 && r[2].count() > 0,
    )
    .await;
    assert_eq!(a.metrics.relay().groups(), 1);
    assert_eq!(b.metrics.relay().groups(), 1);

    const N: u64 = 400;
    // One envelope per call, from both collectors: many relay messages, so NATS
    // spreads them over both members' collectors.
    for i in 0..N {
        let producer = if i % 2 == 0 { &mut pa } else { &mut pb };
        send(producer, vec![numbered("data", i)]).await;
    }
    // Fences from both producers until each subscriber has one of each: NATS keeps
    // each publisher's order per subscription, so then nothing earlier (and no
    // duplicate) is still on its way.
    let fenced = |r: &Recorder| {
        let envs = r.envelopes();
        ["fence-a", "fence-b"]
            .iter()
            .all(|f| envs.iter().any(|e| number_of(e).0 == *f))
    };
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut k = 0u64;
    while !(fenced(&on_a) && fenced(&on_b) && fenced(&full)) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "fences did not arrive"
        );
        send(&mut pa, vec![numbered("fence-a", k)]).await;
        send(&mut pb, vec![numbered("fence-b", k)]).await;
        k += 1;
        on_a.changed_within(ROUND).await;
    }

    let ta = tally(&on_a.envelopes(), "data");
    let tb = tally(&on_b.envelopes(), "data");
    let tf = tally(&full.envelopes(), "data");
    for i in 0..N {
        let (x, y) = (
            ta.get(&i).copied().unwrap_or(0),
            tb.get(&i).copied().unwrap_or(0),
        );
        assert_eq!(x + y, 1, "data-{i}: {x} times on A's member, {y} on B's");
        assert_eq!(tf.get(&i), Some(&1), "data-{i} in the full copy");
    }
    // Both members took a share (all 400 messages to one side: p = 2^-399).
    assert!(
        !ta.is_empty() && !tb.is_empty(),
        "{} / {}",
        ta.len(),
        tb.len()
    );
    // The group's copies arrived as group copies on both collectors.
    assert!(a.metrics.relay().received_count(RelayCopy::Group) > 0);
    assert!(b.metrics.relay().received_count(RelayCopy::Group) > 0);

    // When B's member leaves, B leaves the group and A's member gets everything.
    on_b.stop();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while b.metrics.relay().groups() != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "B did not leave the group"
        );
        // The server sees the stream go when the next batch is written to it.
        send(&mut pb, vec![numbered("poke", 0)]).await;
        full.changed_within(ROUND).await;
    }
    on_a.stop();
    full.stop();
    a.stop().await.expect("stop a");
    b.stop().await.expect("stop b");
}

#[tokio::test]
async fn without_a_relay_collectors_are_separate_and_nothing_is_published() {
    // The default: in-process only. B's subscriber sees nothing of A's ingest.
    let a = TestServer::start().await;
    let b = TestServer::start().await;
    assert!(a.collector.relay().is_none());
    let mut on_a = Recorder::start(
        channel(&a).await,
        batch_request(vec![log_selector("")], "", ""),
    )
    .await;
    let on_b = Recorder::start(
        channel(&b).await,
        batch_request(vec![log_selector("")], "", ""),
    )
    .await;
    let mut pa = IngressClient::new(channel(&a).await);
    send(&mut pa, (0..10).map(|i| numbered("x", i)).collect()).await;
    on_a.wait_for(10).await;
    // B's hub has a subscriber but got nothing: it was never published to it.
    assert_eq!(b.metrics.hub_published_count(), 0);
    assert_eq!(on_b.count(), 0);
    assert_eq!(a.metrics.relay().published_count(), 0);
    on_a.stop();
    on_b.stop();
    a.stop().await.expect("stop a");
    b.stop().await.expect("stop b");
}

#[tokio::test]
async fn a_relay_that_cannot_connect_fails_the_start_with_its_address() {
    let (_dir, store) = open_store();
    // A port nobody listens on: bind, learn, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let mut config = relay_config(&format!("nats://127.0.0.1:{port}"));
    config.grpc_addr = "127.0.0.1:0".parse().expect("addr");
    config.http_addr = "127.0.0.1:0".parse().expect("addr");
    let err = weir_collector::Server::bind(config, store)
        .await
        .expect_err("no NATS there");
    let msg = err.to_string();
    assert!(
        msg.contains("relay") && msg.contains(&port.to_string()),
        "{msg}"
    );

    let (_dir, store) = open_store();
    let mut config = relay_config("nats://127.0.0.1:4222");
    config.egress.relay_subject = "weir.*".into();
    config.grpc_addr = "127.0.0.1:0".parse().expect("addr");
    config.http_addr = "127.0.0.1:0".parse().expect("addr");
    let err = weir_collector::Server::bind(config, store)
        .await
        .expect_err("wildcard prefix");
    assert!(err.to_string().contains("weir.*"), "{err}");
}

/// Envelopes of `source` in the SSE events of a `/v2/read` body read so far.
struct SseCount {
    resp: reqwest::Response,
    buf: Vec<u8>,
    by_source: HashMap<String, usize>,
}

impl SseCount {
    async fn open(server: &TestServer, query: &str) -> SseCount {
        let resp = reqwest::get(server.http_url(&format!("/v2/read{query}")))
            .await
            .expect("request");
        assert_eq!(resp.status(), 200);
        SseCount {
            resp,
            buf: Vec::new(),
            by_source: HashMap::new(),
        }
    }

    /// Reads for at most `d`; counts the envelopes of every complete data event.
    async fn read_for(&mut self, d: Duration) {
        let Ok(chunk) = tokio::time::timeout(d, self.resp.chunk()).await else {
            return;
        };
        let chunk = chunk.expect("body").expect("the stream goes on");
        self.buf.extend_from_slice(&chunk);
        while let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
            let event: Vec<u8> = self.buf.drain(..end + 2).collect();
            let text = String::from_utf8(event).expect("UTF-8");
            let Some(json) = text.strip_prefix("data: ") else {
                continue;
            };
            let v: serde_json::Value = serde_json::from_str(json.trim()).expect("JSON");
            for e in v["batch"].as_array().expect("batch") {
                let source = e["source_id"].as_str().expect("source_id").to_string();
                *self.by_source.entry(source).or_default() += 1;
            }
        }
    }

    fn count(&self, source: &str) -> usize {
        self.by_source.get(source).copied().unwrap_or(0)
    }
}

#[tokio::test]
async fn v2_read_on_b_streams_what_a_ingests() {
    let nats = NatsServer::start();
    let (a, b) = two_collectors(&nats).await;
    let mut sse = SseCount::open(&b, "?log&source_id=warm&source_id=sse").await;
    let mut pa = IngressClient::new(channel(&a).await);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut i = 0;
    while sse.count("warm") == 0 {
        assert!(tokio::time::Instant::now() < deadline, "nothing relayed");
        send(&mut pa, vec![numbered("warm", i)]).await;
        i += 1;
        sse.read_for(ROUND).await;
    }
    const N: usize = 200;
    send(&mut pa, (0..N as u64).map(|i| numbered("sse", i)).collect()).await;
    while sse.count("sse") < N {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {N} in time",
            sse.count("sse")
        );
        sse.read_for(PATIENCE).await;
    }
    assert_eq!(sse.count("sse"), N);
    drop(sse);
    a.stop().await.expect("stop a");
    b.stop().await.expect("stop b");
}
