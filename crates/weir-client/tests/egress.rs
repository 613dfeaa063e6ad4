//! The readers against a real collector on loopback: `EnvelopeStreamConnector`
//! (`BatchedReceiver`) and `RlpGatewayClient` (`/v2/read`) keep receiving across a
//! collector restart; the buffer diode reports what it drops; and the SSE reader
//! follows upstream's rules against a scripted server.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{Collector, closed_port, payload, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use weir_client::{
    EnvelopeStreamConnector, IngressClient, LogType, RlpError, RlpGatewayClient, SourceInfo,
};
use weir_core::Envelope;
use weir_proto::lv2::selector::Message;
use weir_proto::lv2::{EgressBatchRequest, EnvelopeBatch, Log, LogSelector, Selector};

fn logs_of(source: &str) -> EgressBatchRequest {
    EgressBatchRequest {
        selectors: vec![Selector {
            source_id: source.into(),
            message: Some(Message::Log(LogSelector {})),
        }],
        use_preferred_tags: true,
        ..Default::default()
    }
}

fn ingress(c: &Collector) -> IngressClient {
    IngressClient::builder()
        .addr(c.grpc_addr())
        .source(SourceInfo::new("app", "", "0"))
        .flush_interval(Duration::from_millis(5))
        .reconnect_backoff(Duration::from_millis(10), Duration::from_millis(100))
        .build()
        .unwrap()
}

/// Emits `<prefix>-<n>` lines until the reader (fed into `rx`) sees one; returns what
/// the reader saw with that prefix. Live egress is lossy across subscription changes,
/// so the producer keeps going until the reader is known to be subscribed.
async fn emit_until_seen(
    client: &IngressClient,
    prefix: &str,
    rx: &mut mpsc::UnboundedReceiver<String>,
) -> Vec<String> {
    within(async {
        let mut n = 0u64;
        loop {
            client.emit_log(format!("{prefix}-{n:06}"), LogType::Out);
            n += 1;
            let wait = tokio::time::sleep(Duration::from_millis(20));
            tokio::pin!(wait);
            let mut seen = Vec::new();
            loop {
                tokio::select! {
                    p = rx.recv() => {
                        let p = p.expect("the reader is running");
                        if p.starts_with(prefix) {
                            seen.push(p);
                        }
                    }
                    () = &mut wait => break,
                }
            }
            if !seen.is_empty() {
                return seen;
            }
        }
    })
    .await
}

fn forward(batch: Vec<Envelope>, tx: &mpsc::UnboundedSender<String>) {
    for e in batch {
        let _ = tx.send(payload(&e));
    }
}

fn increasing(v: &[String]) -> bool {
    v.windows(2).all(|w| w[0] < w[1])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connector_keeps_receiving_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Collector::start(dir.path()).await;
    let client = ingress(&c);
    let token = CancellationToken::new();
    let connector = EnvelopeStreamConnector::new(&c.grpc_addr(), None).unwrap();
    let mut stream = connector.stream(token.clone(), logs_of("app"));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        let mut batches = 0u64;
        while let Some(batch) = stream.next().await {
            batches += 1;
            forward(batch, &tx);
        }
        batches
    });

    let before = emit_until_seen(&client, "before", &mut rx).await;
    assert!(increasing(&before));
    c = c.restart().await;
    let after = emit_until_seen(&client, "after", &mut rx).await;
    assert!(increasing(&after), "in order: {after:?}");

    token.cancel();
    let batches = within(reader).await.unwrap();
    assert!(batches >= 2);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connector_diode_reports_the_batches_it_drops() {
    let dir = tempfile::tempdir().unwrap();
    let c = Collector::start(dir.path()).await;
    let client = ingress(&c);
    let alerted = Arc::new(AtomicU64::new(0));
    let connector = EnvelopeStreamConnector::new(&c.grpc_addr(), None)
        .unwrap()
        .with_buffer(4, {
            let alerted = alerted.clone();
            move |n| {
                alerted.fetch_add(n, Ordering::SeqCst);
            }
        });
    let token = CancellationToken::new();
    let mut stream = connector.stream(token.clone(), logs_of("app"));

    // Subscribed once a warm-up envelope comes through.
    within(async {
        loop {
            client.emit_log("warm-up", LogType::Out);
            tokio::select! {
                b = stream.next() => {
                    assert!(b.expect("a batch").iter().all(|e| payload(e) == "warm-up"));
                    break;
                }
                () = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        }
    })
    .await;
    // Drain warm-ups still on their way, then flood without reading.
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(200), stream.next()).await {}
    assert_eq!(alerted.load(Ordering::SeqCst), 0);
    let n = 5_000;
    for i in 0..n {
        client.emit_log(format!("flood-{i:06}"), LogType::Out);
    }
    common::until(|| stream.dropped() >= 10).await;

    // Read until the newest envelope: the diode keeps the newest batches.
    let last = format!("flood-{:06}", n - 1);
    let mut received = Vec::new();
    within(async {
        while !received.contains(&last) {
            received.extend(stream.next().await.expect("a batch").iter().map(payload));
        }
    })
    .await;
    assert!(increasing(&received), "order kept");
    let dropped = stream.dropped();
    assert!(dropped >= 10, "{dropped}");
    assert_eq!(
        alerted.load(Ordering::SeqCst),
        dropped,
        "the alerter was told of every dropped batch"
    );
    assert!(
        (received.len() as u64) < n,
        "some envelopes were lost with their batches"
    );
    token.cancel();
    assert!(stream.next().await.is_none(), "None once cancelled");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rlp_gateway_client_keeps_receiving_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Collector::start(dir.path()).await;
    let client = ingress(&c);
    let token = CancellationToken::new();
    let rlp = RlpGatewayClient::builder(format!("http://{}", c.http))
        .authorization("bearer test")
        .build()
        .unwrap();
    let mut stream = rlp.stream(token.clone(), &logs_of("app")).unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        while let Some(batch) = stream.next().await {
            forward(batch, &tx);
        }
        stream
    });

    let before = emit_until_seen(&client, "before", &mut rx).await;
    assert!(increasing(&before));
    c = c.restart().await;
    let after = emit_until_seen(&client, "after", &mut rx).await;
    assert!(increasing(&after), "in order: {after:?}");

    token.cancel();
    let stream = within(reader).await.unwrap();
    assert!(stream.error().is_none(), "cancelled, not given up");
    assert!(stream.connections() >= 2, "reconnected: {stream:?}");
    assert_eq!(stream.decode_errors(), 0);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rlp_gateway_client_gives_up_after_max_retries() {
    let rlp = RlpGatewayClient::builder(format!("http://{}", closed_port()))
        .max_retries(3)
        .retry_backoff(Duration::from_millis(1), Duration::from_millis(2))
        .build()
        .unwrap();
    let mut stream = rlp.stream(CancellationToken::new(), &logs_of("")).unwrap();
    assert!(within(stream.next()).await.is_none());
    match stream.error() {
        Some(RlpError::GaveUp { attempts, .. }) => {
            assert_eq!(*attempts, 4, "the first + 3 retries")
        }
        other => panic!("{other:?}"),
    }
}

/// A server answering each connection with the next scripted response, recording the
/// request heads; once the script is done it stops listening.
async fn scripted(responses: Vec<String>) -> (SocketAddr, tokio::task::JoinHandle<Vec<String>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut heads = Vec::new();
        for response in responses {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                if sock.read(&mut byte).await.unwrap() == 0 {
                    break;
                }
                head.push(byte[0]);
            }
            heads.push(String::from_utf8_lossy(&head).into_owned());
            sock.write_all(response.as_bytes()).await.unwrap();
            let _ = sock.shutdown().await;
        }
        heads
    });
    (addr, task)
}

fn sse_ok(body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n{body}"
    )
}

fn data_event(payloads: &[&str]) -> String {
    let batch = EnvelopeBatch {
        batch: payloads
            .iter()
            .map(|p| Envelope {
                timestamp: 1,
                source_id: "app".into(),
                message: Some(weir_proto::lv2::envelope::Message::Log(Log {
                    payload: p.as_bytes().to_vec().into(),
                    r#type: 0,
                })),
                ..Default::default()
            })
            .collect(),
    };
    format!("data: {}\n\n", weir_core::json::batch_to_json(&batch.batch))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rlp_gateway_client_reads_as_upstream() {
    let first = format!(
        "{}event: heartbeat\ndata: 1700000015\n\n{}event: closing\ndata: closing due to stream timeout\n\n{}",
        data_event(&["a1", "a2"]),
        data_event(&["a3"]),
        data_event(&["never read: after closing"]),
    );
    let (addr, server) = scripted(vec![
        sse_ok(&first),
        "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            .into(),
        sse_ok(&format!("data: {{not json}}\n\n{}", data_event(&["b1"]))),
    ])
    .await;
    let rlp = RlpGatewayClient::builder(format!("http://{addr}"))
        .authorization("bearer t0ken")
        .max_retries(1)
        .retry_backoff(Duration::from_millis(1), Duration::from_millis(2))
        .build()
        .unwrap();
    let mut stream = rlp
        .stream(CancellationToken::new(), &logs_of("app"))
        .unwrap();
    let mut got = Vec::new();
    while let Some(batch) = within(stream.next()).await {
        got.push(batch.iter().map(payload).collect::<Vec<_>>());
    }
    assert_eq!(got, vec![vec!["a1", "a2"], vec!["a3"], vec!["b1"]]);
    assert_eq!(
        stream.decode_errors(),
        1,
        "the bad event is skipped and counted"
    );
    assert_eq!(stream.connections(), 2);
    // After the script: refused twice in a row (max_retries 1) and it gives up; the
    // 500 in the middle did not count, a successful connection followed it.
    assert!(
        matches!(stream.error(), Some(RlpError::GaveUp { attempts: 2, .. })),
        "{:?}",
        stream.error()
    );

    let heads = within(server).await.unwrap();
    assert_eq!(heads.len(), 3);
    for head in &heads {
        let lower = head.to_ascii_lowercase();
        assert!(
            head.starts_with("GET /v2/read?source_id=app&log HTTP/1.1\r\n"),
            "{head}"
        );
        assert!(
            lower.contains("\r\naccept: text/event-stream\r\n"),
            "{head}"
        );
        assert!(lower.contains("\r\ncache-control: no-cache\r\n"), "{head}");
        assert!(
            lower.contains("\r\nauthorization: bearer t0ken\r\n"),
            "{head}"
        );
    }
}
