//! `/metrics` is valid Prometheus text (version 0.0.4), every family the README lists
//! is there, and ingesting exactly N envelopes in K appends moves received and stored
//! by N and the append histograms by K.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{TestServer, lg_log};
use weir_collector::metrics::protocol;

/// Parses Prometheus text strictly: `# HELP name text`, `# TYPE name type`, and samples
/// `name{label="value",…} number` whose family was typed before. Returns the samples.
fn parse(text: &str) -> BTreeMap<String, f64> {
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = BTreeMap::new();
    let name_ok = |n: &str| {
        !n.is_empty()
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
            && !n.starts_with(|c: char| c.is_ascii_digit())
    };
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, _) = rest.split_once(' ').expect("HELP text");
            assert!(name_ok(name), "bad name in {line:?}");
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, t) = rest.split_once(' ').expect("TYPE type");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&t),
                "{line:?}"
            );
            assert!(
                types.insert(name.to_string(), t.to_string()).is_none(),
                "twice: {line:?}"
            );
        } else {
            assert!(!line.starts_with('#'), "unknown comment {line:?}");
            let (key, value) = line.rsplit_once(' ').expect("sample value");
            let v: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("value of {line:?}"));
            let name = match key.split_once('{') {
                Some((n, labels)) => {
                    let labels = labels.strip_suffix('}').expect("closing brace");
                    for pair in labels.split("\",").filter(|p| !p.is_empty()) {
                        let (k, v) = pair.split_once("=\"").expect("label=\"value\"");
                        assert!(name_ok(k), "label {k:?} in {line:?}");
                        assert!(!v.trim_end_matches('"').contains('"'), "{line:?}");
                    }
                    n
                }
                None => key,
            };
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| {
                    name.strip_suffix(s)
                        .filter(|f| types.get(*f).is_some_and(|t| t == "histogram"))
                })
                .unwrap_or(name);
            assert!(
                types.contains_key(family),
                "sample before its TYPE: {line:?}"
            );
            samples.insert(key.to_string(), v);
        }
    }
    samples
}

async fn scrape(server: &TestServer) -> (String, BTreeMap<String, f64>) {
    let text = reqwest::get(server.http_url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body");
    let samples = parse(&text);
    (text, samples)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_move_by_exactly_what_was_sent() {
    let server = TestServer::start().await;
    let (text, before) = scrape(&server).await;
    let families: BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    for f in [
        "weir_received_envelopes_total",
        "weir_stored_envelopes_total",
        "weir_rejected_total",
        "weir_dropped_envelopes_total",
        "weir_retried_total",
        "weir_append_entries",
        "weir_store_append_seconds",
        "weir_event_queue_depth",
        "weir_events_discarded_total",
        "weir_hub_subscribers",
        "weir_egress_streams",
        "weir_stream_state_cache_entries",
        "weir_streams",
        "weir_retention_partitions_dropped_total",
        "weir_store_bytes",
    ] {
        assert!(families.contains(f), "no {f} in\n{text}");
    }

    // N envelopes in K appends (one stream per source, one append per source).
    const K: u64 = 7;
    const PER: u64 = 13;
    for s in 0..K {
        let envs = (0..PER)
            .map(|i| lg_log(&format!("src{s}"), "0", &i.to_string()))
            .collect();
        server
            .collector
            .ingest_envelopes(envs, protocol::LOGGREGATOR_SEND)
            .await;
    }
    let (_, after) = scrape(&server).await;
    let delta =
        |k: &str| after.get(k).copied().unwrap_or(0.0) - before.get(k).copied().unwrap_or(0.0);
    assert_eq!(
        delta("weir_received_envelopes_total{protocol=\"loggregator_send\"}"),
        (K * PER) as f64
    );
    assert_eq!(delta("weir_stored_envelopes_total"), (K * PER) as f64);
    assert_eq!(delta("weir_append_entries_count"), K as f64);
    assert_eq!(delta("weir_append_entries_sum"), (K * PER) as f64);
    assert_eq!(delta("weir_store_append_seconds_count"), K as f64);
    assert_eq!(delta("weir_append_entries_bucket{le=\"16.0\"}"), K as f64);
    assert_eq!(delta("weir_append_entries_bucket{le=\"8.0\"}"), 0.0);
    server.stop().await.expect("stop");
}

/// `weir_streams` counts the streams already in the store at start (the collector's
/// events stream included) and every stream registered afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_gauge_counts_the_registry() {
    let (dir, store) = common::open_store();
    for i in 0..5 {
        let reg = weir_store::Registration {
            path: format!("before/+/s{i}"),
            owner: weir_store::Owner::Producer(b"secret".to_vec()),
            descriptor: weir_core::Descriptor {
                content_type: "text/plain".into(),
                tags: Default::default(),
                created_ns: 1,
            },
        };
        store.register(reg).await.expect("register");
    }
    let server =
        TestServer::start_with_store(weir_collector::CollectorConfig::default(), (dir, store))
            .await;
    let (text, samples) = scrape(&server).await;
    assert_eq!(samples.get("weir_streams"), Some(&6.0), "{text}");
    let envs = vec![lg_log("app", "0", "x"), lg_log("web", "0", "y")];
    server
        .collector
        .ingest_envelopes(envs, protocol::LOGGREGATOR_SEND)
        .await;
    let (text, samples) = scrape(&server).await;
    assert_eq!(samples.get("weir_streams"), Some(&8.0), "{text}");
    assert!(server.stop().await.is_ok());
}
