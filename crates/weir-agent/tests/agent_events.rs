//! The agent's own events (issue 5), provoked in an agent in this process: a full spool
//! (`block`: `spool_full`; `drop_oldest`: `spool_dropped` with the count), a flusher
//! that cannot reach its receiver (`flusher_failing`, once per rate-limit interval), and
//! a receiver that refuses for good (`dead_lettered`). Each is read back from the
//! agent's events file.

mod agent_support;

use std::sync::Arc;
use std::time::Duration;

use agent_support::{append_lines, lit, wait_for};
use serde_json::Value;
use weir_agent::config::AgentConfig;
use weir_agent::events::file_store::FileEventStore;
use weir_agent::metrics::AgentMetrics;
use weir_agent::runtime::Agent;

/// Lines of about 100 bytes, `n` of them, as one stdin input.
fn stdin_lines(n: usize) -> Box<std::io::Cursor<Vec<u8>>> {
    let text: String = (0..n)
        .map(|i| format!("{i:06} {}\n", "x".repeat(92)))
        .collect();
    Box::new(std::io::Cursor::new(text.into_bytes()))
}

/// An agent reading `n` stdin lines into a small spool with `when_full`, flushed to a
/// `weir` flusher whose collector is not there.
async fn spooled_agent(data: &std::path::Path, when_full: &str, n: usize) -> Agent {
    let toml = format!(
        "data_dir = {}\nshutdown_timeout_ms = 200\n\
         [batch]\nmax_entries = 16\nmax_bytes = 4096\nmax_wait_ms = 5\n\
         [retry]\ninitial_backoff_ms = 10\nmax_backoff_ms = 50\n\
         [spool]\nmax_bytes = 65536\nsegment_bytes = 16384\nwhen_full = \"{when_full}\"\n\
         [events]\nmember_id = \"node-a\"\nrate_limit = \"1h\"\n\
         [sources.in]\ntype = \"stdin\"\nstream = \"app/+/in\"\n\
         [flushers.central]\ntype = \"weir\"\naddr = \"127.0.0.1:1\"\ntimeout_ms = 500\n",
        lit(data)
    );
    let config = AgentConfig::parse(&toml).unwrap_or_else(|e| panic!("{e}\n{toml}"));
    Agent::start_with_stdin(config, Arc::new(AgentMetrics::new()), stdin_lines(n))
        .await
        .expect("agent starts")
}

fn events_of(agent: &Agent, kind: &str) -> Vec<Value> {
    agent
        .events_runtime()
        .store()
        .all()
        .into_iter()
        .filter(|e| e.kind == kind)
        .map(|e| serde_json::to_value(&e).expect("json"))
        .collect()
}

fn field_u64(event: &Value, name: &str) -> u64 {
    event["fields"][name]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no number {name} in {event}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spool_that_drops_reports_how_many_and_the_failing_flusher_once() {
    let data = tempfile::tempdir().unwrap();
    let agent = spooled_agent(data.path(), "drop_oldest", 5000).await;
    wait_for("spool_dropped", || {
        !events_of(&agent, "spool_dropped").is_empty()
    })
    .await;
    let dropped = &events_of(&agent, "spool_dropped")[0];
    assert!(field_u64(dropped, "count") > 0, "{dropped}");
    assert_eq!(dropped["member"], "node-a");
    assert_eq!(dropped["fields"]["spool"], "spool", "{dropped}");
    // The spool's own count is at least what the event reported.
    let stats = agent.spool().expect("spool").stats();
    assert!(stats.dropped_records >= field_u64(dropped, "count"));

    // The flusher that cannot connect: reported once (the rate limit is an hour).
    let failing = events_of(&agent, "flusher_failing");
    assert_eq!(failing.len(), 1, "{failing:?}");
    assert_eq!(failing[0]["fields"]["flusher"], "central");
    assert!(events_of(&agent, "flusher_recovered").is_empty());
    agent.shutdown().await.expect("shutdown");

    // What was written is in the file, in order, and stays across a reopen.
    let store = FileEventStore::open(
        data.path(),
        weir_agent::events::file_store::FileBounds {
            max_bytes: 1 << 20,
            max_lines: 10_000,
        },
    )
    .unwrap();
    let kinds: Vec<String> = store.all().into_iter().map(|e| e.kind).collect();
    assert_eq!(kinds.first().map(String::as_str), Some("config_loaded"));
    assert!(kinds.contains(&"agent_started".to_string()), "{kinds:?}");
    assert_eq!(kinds.last().map(String::as_str), Some("agent_stopping"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spool_that_blocks_reports_spool_full() {
    let data = tempfile::tempdir().unwrap();
    let agent = spooled_agent(data.path(), "block", 5000).await;
    wait_for("spool_full", || !events_of(&agent, "spool_full").is_empty()).await;
    let full = &events_of(&agent, "spool_full")[0];
    assert!(field_u64(full, "blocked_appends") >= 1, "{full}");
    assert_eq!(field_u64(full, "max_bytes"), 65536);
    assert_eq!(full["fields"]["spool"], "spool", "{full}");
    assert!(events_of(&agent, "spool_dropped").is_empty());
    agent.shutdown().await.expect("shutdown");
}

/// An http receiver that refuses every batch with 400: `dead_lettered`, once per
/// interval however many batches are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_batches_are_reported_as_dead_lettered() {
    let app = axum::Router::new().route(
        "/in",
        axum::routing::post(|| async { axum::http::StatusCode::BAD_REQUEST }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let logs = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    append_lines(&logs.path().join("app.log"), "line", 0..200);
    let toml = format!(
        "data_dir = {}\n[batch]\nmax_entries = 10\n\
         [events]\nrate_limit = \"1h\"\n\
         [sources.app]\ntype = \"file\"\ninclude = [{}]\npoll_interval_ms = 10\n\
         [flushers.web]\ntype = \"http\"\nurl = \"http://{http}/in\"\n",
        lit(data.path()),
        lit(&logs.path().join("*.log")),
    );
    let config = AgentConfig::parse(&toml).unwrap();
    let metrics = Arc::new(AgentMetrics::new());
    let agent = Agent::start(config, metrics.clone()).await.unwrap();
    wait_for("every line dead-lettered", || {
        agent_support::metric(
            &metrics.render(),
            "weir_agent_dropped_entries_total",
            "reason=\"dead_letter\"",
        ) >= 200.0
    })
    .await;
    wait_for("dead_lettered", || {
        !events_of(&agent, "dead_lettered").is_empty()
    })
    .await;
    let letters = events_of(&agent, "dead_lettered");
    assert_eq!(letters.len(), 1, "rate-limited: {letters:?}");
    assert_eq!(letters[0]["fields"]["flusher"], "web");
    assert_eq!(letters[0]["fields"]["written"], "true");
    assert!(
        letters[0]["fields"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("400")),
        "{}",
        letters[0]
    );
    // No weir flusher: nothing is shipped.
    assert!(!weir_agent::events::ship_dir(data.path()).exists());
    agent.shutdown().await.unwrap();
    server.abort();
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
}

/// A flusher's spill spool is watched too: a file source feeds a fast flusher and one
/// whose collector is not there; the slow one spills into its own small `drop_oldest`
/// spool, and its drops are reported naming that spool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spill_spool_reports_its_drops_by_name() {
    let logs = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let line = "y".repeat(92);
    append_lines(&logs.path().join("app.log"), &line, 0..5000);
    let toml = format!(
        "data_dir = {}\nshutdown_timeout_ms = 200\n\
         [batch]\nmax_entries = 16\nmax_bytes = 4096\nmax_wait_ms = 5\n\
         [retry]\ninitial_backoff_ms = 10\nmax_backoff_ms = 50\n\
         [spool]\nmax_bytes = 65536\nsegment_bytes = 16384\nwhen_full = \"drop_oldest\"\n\
         [spill]\nmax_bytes = 65536\n\
         [events]\nmember_id = \"node-a\"\nrate_limit = \"1h\"\n\
         [sources.app]\ntype = \"file\"\ninclude = [{}]\nstream = \"test/+/{{file_name}}\"\npoll_interval_ms = 10\n\
         [flushers.fast]\ntype = \"blackhole\"\n\
         [flushers.slow]\ntype = \"weir\"\naddr = \"127.0.0.1:1\"\ntimeout_ms = 500\n",
        lit(data.path()),
        lit(&logs.path().join("*.log")),
    );
    let config = AgentConfig::parse(&toml).unwrap_or_else(|e| panic!("{e}\n{toml}"));
    let agent = Agent::start(config, Arc::new(AgentMetrics::new()))
        .await
        .expect("agent starts");
    wait_for("spool_dropped of the spill spool", || {
        !events_of(&agent, "spool_dropped").is_empty()
    })
    .await;
    let dropped = &events_of(&agent, "spool_dropped")[0];
    assert_eq!(dropped["fields"]["spool"], "spill/app/slow", "{dropped}");
    assert!(field_u64(dropped, "count") > 0, "{dropped}");
    agent.shutdown().await.expect("shutdown");
}
