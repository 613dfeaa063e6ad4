//! `GET /v2/read` (RLP-gateway-compatible SSE) over real HTTP against an in-process
//! collector on a real store: exact event bytes, heartbeats, closing, errors, selectors.

mod common;

use common::live::*;
use common::*;
use weir_collector::metrics::RejectReason;
use weir_collector::{CollectorConfig, EgressConfig};
use weir_core::Envelope;
use weir_proto::lv2::envelope::Message;
use weir_proto::lv2::ingress_client::IngressClient;
use weir_proto::lv2::{Counter, Gauge, GaugeValue, Log, Value, value::Data};

/// TV1 of PROTOCOLS.md, as an envelope and as the gateway writes it.
const TV1_JSON: &str = r#"{"batch":[{"timestamp":"1700000000000000000","source_id":"6e4f5b2a-1c3d-4e5f-8a9b-0c1d2e3f4a5b","instance_id":"0","deprecated_tags":{},"tags":{"origin":"rep","source_type":"APP/PROC/WEB"},"log":{"payload":"SGVsbG8sIHdvcmxkIQ==","type":"OUT"}}]}"#;

fn tv1() -> Envelope {
    Envelope {
        timestamp: 1_700_000_000_000_000_000,
        source_id: "6e4f5b2a-1c3d-4e5f-8a9b-0c1d2e3f4a5b".into(),
        instance_id: "0".into(),
        tags: [("origin", "rep"), ("source_type", "APP/PROC/WEB")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        message: Some(Message::Log(Log {
            payload: "Hello, world!".into(),
            r#type: 0,
        })),
        ..Default::default()
    }
}

fn server_config(egress: EgressConfig) -> CollectorConfig {
    CollectorConfig {
        egress: EgressConfig {
            flush_interval_ms: 10,
            ..egress
        },
        ..CollectorConfig::default()
    }
}

/// Reads an SSE body event by event (each returned with its closing blank line).
struct Events {
    resp: reqwest::Response,
    buf: Vec<u8>,
}

impl Events {
    async fn open(server: &TestServer, query: &str) -> Events {
        let resp = tokio::time::timeout(
            PATIENCE,
            reqwest::get(server.http_url(&format!("/v2/read{query}"))),
        )
        .await
        .expect("headers arrive before any event")
        .expect("request");
        assert_eq!(resp.status(), 200);
        let h = resp.headers();
        assert_eq!(h["content-type"], "text/event-stream");
        assert_eq!(h["cache-control"], "no-cache");
        assert_eq!(h["connection"], "keep-alive");
        Events {
            resp,
            buf: Vec::new(),
        }
    }

    /// The next event's exact text, or `None` at the end of the body.
    async fn next(&mut self) -> Option<String> {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let event: Vec<u8> = self.buf.drain(..end + 2).collect();
                return Some(String::from_utf8(event).expect("UTF-8"));
            }
            let chunk = tokio::time::timeout(PATIENCE, self.resp.chunk())
                .await
                .expect("an event in time")
                .expect("body");
            match chunk {
                Some(c) => self.buf.extend_from_slice(&c),
                None => {
                    assert!(
                        self.buf.is_empty(),
                        "partial event at the end: {:?}",
                        self.buf
                    );
                    return None;
                }
            }
        }
    }

    /// The next data event's JSON value.
    async fn next_data(&mut self) -> serde_json::Value {
        let e = self.next().await.expect("an event");
        let json = e
            .strip_prefix("data: ")
            .and_then(|r| r.strip_suffix("\n\n"))
            .unwrap_or_else(|| panic!("not a data event: {e:?}"));
        assert!(!json.contains('\n'), "one line");
        serde_json::from_str(json).expect("JSON")
    }
}

#[tokio::test]
async fn data_event_is_exactly_the_gateways() {
    let server = TestServer::start_with(server_config(EgressConfig::default())).await;
    let mut events = Events::open(
        &server,
        "?log&source_id=6e4f5b2a-1c3d-4e5f-8a9b-0c1d2e3f4a5b",
    )
    .await;
    let mut producer = IngressClient::new(channel(&server).await);
    send(&mut producer, vec![tv1()]).await;
    assert_eq!(
        events.next().await.expect("event"),
        format!("data: {TV1_JSON}\n\n")
    );

    // use_preferred_tags: deprecated tags arrive as tags.
    let mut env = tv1();
    env.tags.clear();
    env.deprecated_tags.insert(
        "n".into(),
        Value {
            data: Some(Data::Integer(-7)),
        },
    );
    send(&mut producer, vec![env]).await;
    let v = events.next_data().await;
    assert_eq!(v["batch"][0]["tags"], serde_json::json!({"n": "-7"}));
    assert_eq!(v["batch"][0]["deprecated_tags"], serde_json::json!({}));
    server.stop().await.expect("stop");
}

#[tokio::test]
async fn heartbeat_after_quiet_then_closing_at_the_stream_timeout() {
    let server = TestServer::start_with(server_config(EgressConfig {
        heartbeat_interval_ms: 100,
        stream_timeout_ms: 1_000,
        ..EgressConfig::default()
    }))
    .await;
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let mut events = Events::open(&server, "?log").await;
    let hb = events.next().await.expect("heartbeat");
    let after = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let secs: u64 = hb
        .strip_prefix("event: heartbeat\ndata: ")
        .and_then(|r| r.strip_suffix("\n\n"))
        .unwrap_or_else(|| panic!("not a heartbeat: {hb:?}"))
        .parse()
        .expect("unix seconds");
    assert!(
        (before..=after).contains(&secs),
        "{before} <= {secs} <= {after}"
    );

    // Data in between resets the heartbeat; the stream still ends at its timeout.
    let mut producer = IngressClient::new(channel(&server).await);
    send(&mut producer, vec![numbered("x", 1)]).await;
    let mut saw_data = false;
    loop {
        let e = events.next().await.expect("events until closing");
        if e.starts_with("data: ") {
            saw_data = true;
            continue;
        }
        if e == "event: closing\ndata: closing due to stream timeout\n\n" {
            break;
        }
        assert!(e.starts_with("event: heartbeat\ndata: "), "{e:?}");
    }
    assert!(saw_data);
    assert_eq!(events.next().await, None, "the response ends after closing");
    server.stop().await.expect("stop");
}

#[tokio::test]
async fn errors_are_the_gateways_json() {
    let server = TestServer::start().await;
    let client = reqwest::Client::new();
    let cases: [(reqwest::Method, &str, u16, &str, &str); 5] = [
        (
            reqwest::Method::GET,
            "/v2/read",
            400,
            "empty_query",
            "query cannot be empty",
        ),
        (
            reqwest::Method::GET,
            "/v2/read?",
            400,
            "empty_query",
            "query cannot be empty",
        ),
        (
            reqwest::Method::GET,
            "/v2/read?source_id=a&Log&unknown=1",
            400,
            "missing_envelope_type",
            "query must provide at least one envelope type",
        ),
        (
            reqwest::Method::POST,
            "/v2/read?log",
            405,
            "method_not_allowed",
            "method not allowed",
        ),
        (
            reqwest::Method::DELETE,
            "/v2/read?log",
            405,
            "method_not_allowed",
            "method not allowed",
        ),
    ];
    for (method, path, status, name, message) in cases {
        let resp = client
            .request(method.clone(), server.http_url(path))
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status().as_u16(), status, "{method} {path}");
        assert_eq!(resp.headers()["content-type"], "text/plain; charset=utf-8");
        assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
        let body = resp.text().await.expect("body");
        assert_eq!(
            body,
            format!("{{\"message\":\"{message}\",\"error\":\"{name}\"}}\n\n"),
            "{method} {path}"
        );
    }
    assert_eq!(
        server.metrics.rejected_count(RejectReason::InvalidRequest),
        5
    );
    server.stop().await.expect("stop");
}

#[tokio::test]
async fn too_many_streams_is_503_streaming_unavailable() {
    let server = TestServer::start_with(server_config(EgressConfig {
        max_streams: 1,
        ..EgressConfig::default()
    }))
    .await;
    let _one = Events::open(&server, "?log").await;
    let resp = reqwest::get(server.http_url("/v2/read?log"))
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 503);
    let body = resp.text().await.expect("body");
    let v: serde_json::Value = serde_json::from_str(body.trim_end()).expect("JSON");
    assert_eq!(v["error"], "streaming_unavailable");
    assert_eq!(
        server.metrics.rejected_count(RejectReason::TooManyStreams),
        1
    );
    server.stop().await.expect("stop");
}

fn counter(source: &str, name: &str) -> Envelope {
    Envelope {
        source_id: source.into(),
        message: Some(Message::Counter(Counter {
            name: name.into(),
            delta: 1,
            total: 1,
        })),
        ..Default::default()
    }
}

fn gauge(source: &str, names: &[&str]) -> Envelope {
    Envelope {
        source_id: source.into(),
        message: Some(Message::Gauge(Gauge {
            metrics: names
                .iter()
                .map(|n| {
                    (
                        n.to_string(),
                        GaugeValue {
                            unit: "u".into(),
                            value: 1.0,
                        },
                    )
                })
                .collect(),
        })),
        ..Default::default()
    }
}

/// `(source_id, kind or name)` of every envelope of the next data events until `n`
/// envelopes have arrived.
async fn collect(events: &mut Events, n: usize) -> Vec<(String, String)> {
    let mut got = Vec::new();
    while got.len() < n {
        let v = events.next_data().await;
        for e in v["batch"].as_array().expect("batch") {
            let source = e["source_id"].as_str().expect("source").to_string();
            let what = if let Some(c) = e.get("counter") {
                format!("counter:{}", c["name"].as_str().expect("name"))
            } else if let Some(g) = e.get("gauge") {
                let mut names: Vec<&String> =
                    g["metrics"].as_object().expect("metrics").keys().collect();
                names.sort();
                format!(
                    "gauge:{}",
                    names
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                )
            } else if e.get("log").is_some() {
                "log".to_string()
            } else {
                "other".to_string()
            };
            got.push((source, what));
        }
    }
    got
}

#[tokio::test]
async fn source_ids_cross_types_and_names_select_exactly() {
    let server = TestServer::start_with(server_config(EgressConfig::default())).await;
    let mut events = Events::open(
        &server,
        "?log&counter.name=hits&gauge.name=cpu,mem&source_id=a&source_id=b&ignored=yes",
    )
    .await;
    let mut producer = IngressClient::new(channel(&server).await);
    let wanted = vec![
        numbered("a", 0),
        counter("a", "hits"),
        gauge("a", &["mem", "cpu"]),
        numbered("b", 0),
        counter("b", "hits"),
        gauge("b", &["cpu", "mem"]),
    ];
    let unwanted = vec![
        numbered("c", 0),
        counter("a", "misses"),
        counter("c", "hits"),
        gauge("a", &["cpu"]),
        gauge("b", &["cpu", "mem", "disk"]),
    ];
    // Unwanted first, in the same batch: if any got through it would arrive first.
    send(&mut producer, unwanted.into_iter().chain(wanted).collect()).await;
    // A marker proves nothing else is still on its way.
    send(&mut producer, vec![numbered("a", 1)]).await;
    let mut got = collect(&mut events, 7).await;
    let s = |a: &str, b: &str| (a.to_string(), b.to_string());
    // The collector stores (and so publishes) per stream, so envelopes of different
    // streams may be reordered; the marker, sent later, comes last.
    assert_eq!(got.pop(), Some(s("a", "log")), "the marker");
    got.sort();
    assert_eq!(
        got,
        vec![
            s("a", "counter:hits"),
            s("a", "gauge:cpu,mem"),
            s("a", "log"),
            s("b", "counter:hits"),
            s("b", "gauge:cpu,mem"),
            s("b", "log"),
        ]
    );
    server.stop().await.expect("stop");
}
