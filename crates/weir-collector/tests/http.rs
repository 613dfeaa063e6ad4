//! The HTTP API and /metrics over a real HTTP client and an in-process server.

mod common;

use common::*;
use serde_json::Value;
use weir_collector::metrics::{RejectReason, protocol};
use weir_proto::lv2::EnvelopeBatch;
use weir_proto::lv2::ingress_client::IngressClient;
use weir_proto::wv1;

const SECRET: &str = "very-secret-value-0123456789";

async fn get(server: &TestServer, path_and_query: &str) -> (u16, String, Value) {
    let resp = reqwest::get(server.http_url(path_and_query))
        .await
        .expect("request");
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let text = resp.text().await.expect("body");
    assert!(!text.contains(SECRET), "secret leaked: {text}");
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, content_type, json)
}

async fn seed(server: &TestServer) {
    let mut a = append("web/+/app", SECRET, 0, &["hello", "world", "!"]);
    a.descriptor = Some(wv1::StreamDescriptor {
        content_type: "text/plain".into(),
        tags: [("team".to_string(), "blue".to_string())]
            .into_iter()
            .collect(),
        created_ns: 42,
    });
    let b = append("web/+/db", SECRET, 0, &["q"]);
    let mut done = append("zz/+/done", SECRET, 0, &["x"]);
    done.terminal_count = Some(1);
    let resp = server
        .collector
        .process(wv1::Bundle {
            streams: vec![a, b, done],
        })
        .await;
    assert!(
        resp.results
            .iter()
            .all(|r| matches!(r.result, Some(wv1::stream_result::Result::StoredNext(_))))
    );
}

#[tokio::test]
async fn healthz_and_streams() {
    let server = TestServer::start().await;
    seed(&server).await;
    let resp = reqwest::get(server.http_url("/healthz"))
        .await
        .expect("healthz");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.text().await.expect("body"), "ok");

    let (status, ct, json) = get(&server, "/v1/streams?prefix=web/").await;
    assert_eq!(status, 200);
    assert!(ct.starts_with("application/json"), "{ct}");
    let list = json.as_array().expect("array");
    assert_eq!(list.len(), 2);
    let app = &list[0];
    assert_eq!(app["path"], "web/+/app");
    assert_eq!(app["next_index"], 3);
    assert_eq!(app["low_water"], 0);
    assert_eq!(app["terminal_count"], Value::Null);
    assert_eq!(app["descriptor"]["content_type"], "text/plain");
    assert_eq!(app["descriptor"]["tags"]["team"], "blue");
    assert_eq!(app["descriptor"]["created_ns"], 42);
    assert!(app["registered_ns"].as_i64().expect("registered_ns") > 0);
    assert_eq!(app["collector_owned"], false);

    let (_, _, json) = get(&server, "/v1/streams?after=web/%2B/app&limit=1").await;
    let list = json.as_array().expect("array");
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["path"], "web/+/db");

    let (status, _, json) = get(&server, "/v1/stream?path=zz/%2B/done").await;
    assert_eq!(status, 200);
    assert_eq!(json["terminal_count"], 1);
    server.stop().await.expect("stop");
}

#[tokio::test]
async fn entries_as_people_json() {
    let server = TestServer::start().await;
    seed(&server).await;
    let (status, _, json) = get(&server, "/v1/entries?path=web/%2B/app&from=1&limit=5").await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["stream"]["path"], "web/+/app");
    assert_eq!(json["started_at"], 1);
    assert_eq!(json["below_low_water"], false);
    let entries = json["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["index"], 1);
    assert_eq!(entries[0]["message"], "world");
    assert_eq!(entries[1]["message"], "!");
    assert_eq!(entries[0]["stream"], "web/+/app");
    // A literal `+`, as people type it into curl, is the path's `+`, not a space.
    let (status, _, plain) = get(&server, "/v1/entries?path=web/+/app&from=1&limit=5").await;
    assert_eq!(status, 200, "{plain}");
    assert_eq!(plain, json);
    server.stop().await.expect("stop");
}

#[tokio::test]
async fn errors_are_json_naming_the_parameter_and_counted() {
    let server = TestServer::start().await;
    seed(&server).await;
    let cases = [
        ("/v1/stream", 400, "invalid_request", "\"path\" is required"),
        ("/v1/stream?path=nope", 400, "invalid_path", "\"path\""),
        (
            "/v1/stream?path=a/%2B/missing",
            404,
            "not_found",
            "a/+/missing",
        ),
        (
            "/v1/entries?path=a/%2B/missing",
            404,
            "not_found",
            "a/+/missing",
        ),
        (
            "/v1/entries?path=web/%2B/app&from=x",
            400,
            "invalid_request",
            "\"from\"",
        ),
        (
            "/v1/entries?path=web/%2B/app&limit=-1",
            400,
            "invalid_request",
            "\"limit\"",
        ),
        (
            "/v1/entries?path=web/%2B/app&prefix=web/&follow=true",
            400,
            "invalid_request",
            "\"prefix\"",
        ),
        (
            "/v1/streams?limit=many",
            400,
            "invalid_request",
            "\"limit\"",
        ),
    ];
    for (url, code, error, needle) in cases {
        let (status, ct, json) = get(&server, url).await;
        assert_eq!(status, code, "{url}: {json}");
        assert!(ct.starts_with("application/json"), "{url}: {ct}");
        assert_eq!(json["error"], error, "{url}: {json}");
        let message = json["message"].as_str().expect("message");
        assert!(message.contains(needle), "{url}: {message}");
    }
    let m = &server.metrics;
    assert_eq!(m.rejected_count(RejectReason::InvalidRequest), 5);
    assert_eq!(m.rejected_count(RejectReason::InvalidPath), 1);
    assert_eq!(m.rejected_count(RejectReason::NotFound), 2);
    server.stop().await.expect("stop");
}

/// The value of one sample line of the Prometheus text.
fn sample(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
        .parse()
        .expect("number")
}

async fn metrics_text(server: &TestServer) -> String {
    let resp = reqwest::get(server.http_url("/metrics"))
        .await
        .expect("metrics");
    assert_eq!(resp.status().as_u16(), 200);
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    resp.text().await.expect("body")
}

#[tokio::test]
async fn metrics_move_by_exactly_what_was_sent() {
    let server = TestServer::start().await;
    let before = metrics_text(&server).await;
    let received = "weir_received_envelopes_total{protocol=\"loggregator_batch_sender\"}";
    let stored = "weir_stored_envelopes_total";
    let (r0, s0) = (sample(&before, received), sample(&before, stored));

    const N: u64 = 137;
    let channel = tonic::transport::Channel::from_shared(server.grpc_url())
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let mut client = IngressClient::new(channel);
    let batches: Vec<EnvelopeBatch> = (0..N)
        .collect::<Vec<_>>()
        .chunks(10)
        .map(|c| EnvelopeBatch {
            batch: c
                .iter()
                .map(|i| lg_log("m", "0", &format!("{i}")))
                .collect(),
        })
        .collect();
    client
        .batch_sender(futures::stream::iter(batches))
        .await
        .expect("send");

    let after = metrics_text(&server).await;
    assert_eq!(sample(&after, received) - r0, N);
    assert_eq!(sample(&after, stored) - s0, N);
    assert_eq!(
        server
            .metrics
            .received_count(protocol::LOGGREGATOR_BATCH_SENDER),
        N
    );
    assert!(
        after.contains("# TYPE weir_rejected_total counter"),
        "{after}"
    );
    assert!(
        after.contains("weir_stream_state_cache_entries 1"),
        "{after}"
    );
    server.stop().await.expect("stop");
}
