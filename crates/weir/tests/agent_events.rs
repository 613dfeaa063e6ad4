//! The agent's own events (issue 5) with real `weir serve` and `weir agent` processes:
//! kill the collector under the agent, write more, restart the collector on the same
//! data dir and ports; the agent's `flusher_failing` and `flusher_recovered` events
//! then appear on the collector (`GET /v1/events`, `weir events`) and in the agent's
//! own events file, each once.

mod agent_support;
mod common;

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use agent_support::{AgentProc, file_to_weir};
use common::{Serve, weir_bin};
use serde_json::Value;

const STREAM: &str = "test/+/app.log";
const MEMBER: &str = "edge-1";
const WAIT: Duration = Duration::from_secs(60);

/// Stored entries of `path` (its next index), 0 when it does not exist yet.
async fn stored(serve: &Serve, path: &str) -> u64 {
    let (status, body) = serve.http_get(&format!("/v1/stream?path={path}")).await;
    if status == 404 {
        return 0;
    }
    let v: Value = serde_json::from_str(&body).expect("stream json");
    v["next_index"].as_u64().expect("next_index")
}

/// Waits until `cond` holds, checking every 20 ms (the other side is another process).
async fn wait_for<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The collector's events of `kind` from this agent.
async fn collector_events(serve: &Serve, kind: &str) -> Vec<Value> {
    let (status, body) = serve.http_get(&format!("/v1/events?type={kind}")).await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("events json");
    v["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["member"] == MEMBER)
        .cloned()
        .collect()
}

/// The agent's events file, as JSON lines.
fn local_events(data_dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(data_dir.join("events.ndjson"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn local_of(data_dir: &Path, kind: &str) -> Vec<Value> {
    local_events(data_dir)
        .into_iter()
        .filter(|e| e["type"] == kind)
        .collect()
}

fn append(path: &Path, range: std::ops::Range<usize>) {
    let text: String = range.map(|i| format!("line {i:05}\n")).collect();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open log");
    f.write_all(text.as_bytes()).expect("write log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flusher_failing_and_recovered_reach_the_collector_and_the_local_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let collector_data = dir.path().join("collector");
    let agent_data = dir.path().join("agent");
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).expect("logs dir");
    let log = logs.join("app.log");
    append(&log, 0..10);

    let serve = Serve::start(&collector_data, &[]);
    let (grpc, http) = (serve.grpc.to_string(), serve.http.to_string());
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        file_to_weir(
            &agent_data,
            &logs.join("*.log"),
            serve.grpc,
            &format!(
                "[retry]\ninitial_backoff_ms = 20\nmax_backoff_ms = 200\n\
                 [events]\nmember_id = \"{MEMBER}\"\nrate_limit = \"1s\"\n"
            ),
        ),
    )
    .expect("write config");
    let agent = AgentProc::start(&weir_bin(), &config);

    wait_for("the first lines", || async {
        stored(&serve, STREAM).await >= 10
    })
    .await;
    wait_for("agent_started on the collector", || async {
        !collector_events(&serve, "agent_started").await.is_empty()
    })
    .await;
    let loaded = collector_events(&serve, "config_loaded").await;
    assert_eq!(loaded.len(), 1, "{loaded:?}");
    assert_eq!(loaded[0]["fields"]["flushers"], "central");

    // The collector dies under the agent; more lines arrive meanwhile.
    serve.kill9();
    append(&log, 10..20);
    wait_for("flusher_failing in the agent's file", || async {
        !local_of(&agent_data, "flusher_failing").is_empty()
    })
    .await;

    // Back on the same data dir and ports.
    let serve = Serve::start_on(&collector_data, &grpc, &http, &[]);
    wait_for("every line", || async {
        stored(&serve, STREAM).await >= 20
    })
    .await;
    wait_for("flusher_recovered on the collector", || async {
        !collector_events(&serve, "flusher_recovered")
            .await
            .is_empty()
    })
    .await;

    // The agent's file: failing (with the reason) before recovered (with the outage).
    let local = local_events(&agent_data);
    let pos = |kind: &str| {
        local
            .iter()
            .position(|e| e["type"] == kind)
            .unwrap_or_else(|| panic!("no {kind} in {local:?}"))
    };
    assert!(
        pos("flusher_failing") < pos("flusher_recovered"),
        "{local:?}"
    );
    let failing = &local[pos("flusher_failing")];
    assert_eq!(failing["fields"]["flusher"], "central");
    assert!(
        !failing["fields"]["reason"]
            .as_str()
            .unwrap_or("")
            .is_empty(),
        "{failing}"
    );
    let recovered = &local[pos("flusher_recovered")];
    let outage: u64 = recovered["fields"]["outage_ms"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("outage_ms");
    let retries: u64 = recovered["fields"]["retries"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("retries");
    assert!(outage > 0 && retries >= 1, "{recovered}");

    // The collector has the same events, each once, with the agent's own times.
    for kind in ["flusher_failing", "flusher_recovered"] {
        // (An event written just now may still be on its way.)
        wait_for("the collector to have what the file has", || async {
            collector_events(&serve, kind).await.len() == local_of(&agent_data, kind).len()
        })
        .await;
        let remote = collector_events(&serve, kind).await;
        let mine = local_of(&agent_data, kind);
        assert_eq!(remote.len(), mine.len(), "{kind}: {remote:?} vs {mine:?}");
        for (r, l) in remote.iter().zip(&mine) {
            assert_eq!(r["timestamp_ns"], l["timestamp_ns"], "{kind}");
            assert_eq!(r["message"], l["message"], "{kind}");
        }
    }
    // The agent's event stream is there under its reserved path.
    let stream = format!("weir/agent/{MEMBER}/+/events");
    assert!(stored(&serve, &stream).await >= 4, "{stream}");

    // `weir events` lists them.
    let out = Command::new(weir_bin())
        .args([
            "events",
            "--type",
            "flusher_recovered",
            "--http-addr",
            &http,
        ])
        .output()
        .expect("weir events");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            " flusher_recovered {MEMBER} flusher central recovered"
        )),
        "{text}"
    );

    // The agent counts them.
    let text = agent.metrics_text().await;
    let stored_events = common::metric_value(&text, "weir_agent_events_total", "\"stored\"");
    let shipped = common::metric_value(&text, "weir_agent_events_total", "\"shipped\"");
    assert!(stored_events >= 4.0, "{text}");
    assert!(shipped >= 4.0 && shipped <= stored_events, "{text}");

    // A clean stop ships `agent_stopping` too.
    assert!(agent.terminate(Duration::from_secs(30)), "agent exits 0");
    assert_eq!(local_of(&agent_data, "agent_stopping").len(), 1);
    wait_for("agent_stopping on the collector", || async {
        !collector_events(&serve, "agent_stopping").await.is_empty()
    })
    .await;
    assert!(
        serve.terminate(Duration::from_secs(30)),
        "collector exits 0"
    );
}
