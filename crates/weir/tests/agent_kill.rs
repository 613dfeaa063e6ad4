//! `weir serve` and `weir agent` as real processes: a file source and a `weir` flusher.
//! Lines appended to the file are readable from the collector; `kill -9` of the agent
//! ten times during ingest loses and duplicates nothing.

mod agent_support;
mod common;

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use agent_support::{AgentProc, file_to_weir};
use common::{Serve, weir_bin};

const STREAM: &str = "test/+/ingest.log";

/// Stored entries of `path` (its next index), 0 when it does not exist yet.
async fn stored(serve: &Serve, path: &str) -> u64 {
    let (status, body) = serve.http_get(&format!("/v1/stream?path={path}")).await;
    if status == 404 {
        return 0;
    }
    let v: serde_json::Value = serde_json::from_str(&body).expect("stream json");
    v["next_index"].as_u64().expect("next_index")
}

/// Waits until `path` holds `n` entries.
async fn wait_stored(serve: &Serve, path: &str, n: u64, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let s = stored(serve, path).await;
        if s >= n {
            return;
        }
        assert!(Instant::now() < deadline, "timed out: {s} of {n} stored");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every message of `path`, in index order (checking the indices).
async fn messages(serve: &Serve, path: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    loop {
        let (status, body) = serve
            .http_get(&format!(
                "/v1/entries?path={path}&from={}&limit=10000",
                out.len()
            ))
            .await;
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("entries json");
        let entries = v["entries"].as_array().expect("entries");
        if entries.is_empty() {
            return out;
        }
        for e in entries {
            assert_eq!(
                e["index"].as_u64(),
                Some(out.len() as u64),
                "indices in order"
            );
            out.push(e["message"].as_str().expect("message").to_string());
        }
    }
}

/// The text of line `i`: ~120 bytes, the number first so a mix-up shows.
fn line(i: usize) -> String {
    format!(
        "{i:07} GET /api/v1/items/{i} HTTP/1.1 200 {} \"Mozilla/5.0 (X11; Linux x86_64)\" rt=0.{:03}",
        i * 7 % 10_000,
        i % 1000
    )
}

fn append(path: &Path, range: std::ops::Range<usize>) {
    let text: String = range.map(|i| line(i) + "\n").collect();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open log");
    f.write_all(text.as_bytes()).expect("append");
}

#[tokio::test(flavor = "multi_thread")]
async fn lines_appended_are_readable_and_sigterm_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(&dir.path().join("store"), &[]);
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let file = logs.join("ingest.log");
    append(&file, 0..100);
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        file_to_weir(
            &dir.path().join("agent"),
            &logs.join("*.log"),
            serve.grpc,
            "",
        ),
    )
    .unwrap();
    let agent = AgentProc::start(&weir_bin(), &config);
    wait_stored(&serve, STREAM, 100, Duration::from_secs(30)).await;
    append(&file, 100..250);
    wait_stored(&serve, STREAM, 250, Duration::from_secs(30)).await;
    let got = messages(&serve, STREAM).await;
    assert_eq!(got, (0..250).map(line).collect::<Vec<_>>());
    let text = agent.metrics_text().await;
    assert_eq!(
        common::metric_value(&text, "weir_agent_read_lines_total", "app"),
        250.0,
        "{text}"
    );
    assert!(
        agent.terminate(Duration::from_secs(20)),
        "agent exits 0 on SIGTERM"
    );
    // The checkpoint was written at shutdown: a restart sends nothing again.
    let agent = AgentProc::start(&weir_bin(), &config);
    append(&file, 250..260);
    wait_stored(&serve, STREAM, 260, Duration::from_secs(30)).await;
    let text = agent.metrics_text().await;
    assert_eq!(
        common::metric_value(&text, "weir_agent_read_lines_total", "app"),
        10.0
    );
    assert_eq!(serve.metric("weir_duplicates_ignored_total", "").await, 0.0);
    assert!(agent.terminate(Duration::from_secs(20)));
}

/// Issue 4: `kill -9` of the agent at least 10 times during a 200,000-line ingest, the
/// writer throttled so that every kill lands while the stored count is strictly between
/// 0 and 200,000, restarting each time: the stored stream equals the file line by line,
/// no conflict, and duplicates were really dropped by the collector.
#[tokio::test(flavor = "multi_thread")]
async fn kill_9_ten_times_during_ingest_loses_and_duplicates_nothing() {
    const TOTAL: usize = 200_000;
    const BEFORE_KILLS_END: usize = 180_000;
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(&dir.path().join("store"), &[]);
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let file = logs.join("ingest.log");
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        file_to_weir(
            &dir.path().join("agent"),
            &logs.join("*.log"),
            serve.grpc,
            "[batch]\nmax_entries = 500\n",
        ),
    )
    .unwrap();

    // The writer: 180,000 lines at ~25,000 lines/s, then the rest once the kills are done,
    // so the file never holds all 200,000 lines while the agent is being killed.
    let kills_done = Arc::new(AtomicBool::new(false));
    let writer = {
        let file = file.clone();
        let kills_done = kills_done.clone();
        std::thread::spawn(move || {
            let start = Instant::now();
            let mut written = 0;
            while written < BEFORE_KILLS_END {
                let n = 500.min(BEFORE_KILLS_END - written);
                append(&file, written..written + n);
                written += n;
                let due = Duration::from_micros(written as u64 * 40);
                if let Some(wait) = due.checked_sub(start.elapsed()) {
                    std::thread::sleep(wait); // throttling the writer, not synchronising
                }
            }
            while !kills_done.load(Ordering::Acquire) {
                std::thread::park_timeout(Duration::from_millis(10));
            }
            append(&file, BEFORE_KILLS_END..TOTAL);
        })
    };

    let mut seed = std::process::id() as u64 ^ 0x9E37_79B9_7F4A_7C15;
    let mut random = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut last = 0;
    for kill in 0..10 {
        let agent = AgentProc::start(&weir_bin(), &config);
        // Progress since the last kill proves ingest is under way; then a random moment.
        wait_stored(&serve, STREAM, last + 1, Duration::from_secs(60)).await;
        tokio::time::sleep(Duration::from_millis(random(200))).await;
        agent.kill9();
        let at = stored(&serve, STREAM).await;
        assert!(
            at > 0 && at < TOTAL as u64,
            "kill {kill} landed at {at} stored"
        );
        eprintln!("kill {kill}: {at} stored");
        last = at;
    }
    kills_done.store(true, Ordering::Release);
    writer.thread().unpark();

    let agent = AgentProc::start(&weir_bin(), &config);
    writer.join().expect("writer");
    wait_stored(&serve, STREAM, TOTAL as u64, Duration::from_secs(120)).await;
    let got = messages(&serve, STREAM).await;
    assert_eq!(got.len(), TOTAL);
    for (i, m) in got.iter().enumerate() {
        assert_eq!(*m, line(i), "entry {i}");
    }
    assert_eq!(serve.metric("weir_conflicts_total", "").await, 0.0);
    let dups = serve.metric("weir_duplicates_ignored_total", "").await;
    assert!(dups > 0.0, "the dedupe path ran ({dups} duplicates)");
    eprintln!("duplicates dropped by the collector: {dups}");
    assert!(agent.terminate(Duration::from_secs(30)));
}
