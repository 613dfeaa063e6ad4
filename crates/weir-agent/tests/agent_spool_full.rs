//! A full spool, through the agent: with `when_full = "block"` the source stops reading
//! and resumes once the collector is back (nothing lost, nothing twice); with
//! `drop_oldest` the oldest batches are dropped, counted in the agent's metrics, and
//! the newest are delivered.

mod agent_support;

use std::sync::{Arc, Mutex};

use agent_support::*;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use weir_agent::config::AgentConfig;
use weir_agent::metrics::AgentMetrics;
use weir_agent::runtime::Agent;

const STREAM: &str = "test/+/stdin";
const LINES: usize = 20_000;

fn text() -> String {
    (0..LINES).map(|i| format!("in {i}\n")).collect()
}

/// A small spool: 64 KiB in 16 KiB segments (far less than the input's batches).
fn config(data: &std::path::Path, when_full: &str, flusher: &str) -> String {
    format!(
        "data_dir = {}\nshutdown_timeout_ms = 500\n[batch]\nmax_entries = 50\n\
         [retry]\ninitial_backoff_ms = 10\nmax_backoff_ms = 50\n\
         [spool]\nmax_bytes = 65536\nsegment_bytes = 16384\nwhen_full = \"{when_full}\"\n\
         [sources.input]\ntype = \"stdin\"\nstream = \"{STREAM}\"\n{flusher}",
        lit(data)
    )
}

async fn start(toml: &str) -> (Agent, tokio::io::DuplexStream) {
    let (writer, reader) = tokio::io::duplex(4096);
    let agent = Agent::start_with_stdin(
        AgentConfig::parse(toml).unwrap(),
        Arc::new(AgentMetrics::new()),
        Box::new(reader),
    )
    .await
    .unwrap();
    (agent, writer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_pauses_reading_until_the_collector_takes_the_spool() {
    let c = Collector::start().await;
    let addr = c.addr.clone();
    c.stop().await;
    let data = tempfile::tempdir().unwrap();
    let toml = config(
        data.path(),
        "block",
        &format!("[flushers.central]\ntype = \"weir\"\naddr = \"{addr}\"\ntimeout_ms = 1000\n"),
    );
    let (agent, mut writer) = start(&toml).await;
    let write = tokio::spawn(async move {
        writer.write_all(text().as_bytes()).await.unwrap();
        writer.shutdown().await.unwrap();
    });
    let spool = agent.spool().unwrap().clone();
    let metrics = agent.metrics().clone();
    wait_for("an append waits for room", || {
        spool.stats().blocked_appends >= 1
    })
    .await;
    // Paused: while the flusher keeps failing, the source reads nothing more and the
    // writer cannot finish.
    let read = metric(&metrics.render(), "weir_agent_read_lines_total", "input");
    let retries = metric(&metrics.render(), "weir_agent_retries_total", "central");
    wait_for("more retries", || {
        metric(&metrics.render(), "weir_agent_retries_total", "central") >= retries + 3.0
    })
    .await;
    assert_eq!(
        metric(&metrics.render(), "weir_agent_read_lines_total", "input"),
        read,
        "reading paused"
    );
    assert!(read < LINES as f64, "read {read}");
    assert!(!write.is_finished(), "the writer is held back");
    assert!(spool.stats().bytes <= 65536);

    // The collector returns: reading resumes, everything arrives once, in order.
    let c = Collector::start_at(&addr).await;
    let lines = c.wait_lines(STREAM, LINES).await;
    assert_eq!(lines.len(), LINES);
    assert!(
        lines
            .iter()
            .enumerate()
            .all(|(i, l)| *l == format!("in {i}")),
        "every line once, in order"
    );
    tokio::time::timeout(TIMEOUT, write).await.unwrap().unwrap();
    let text = metrics.render();
    assert_eq!(
        metric(&text, "weir_agent_dropped_entries_total", "spool_full"),
        0.0
    );
    agent.shutdown().await.unwrap();
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_oldest_counts_the_drops_and_delivers_the_newest() {
    // A free port, nobody listening yet: the tcp flusher fails until it listens.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let data = tempfile::tempdir().unwrap();
    let toml = config(
        data.path(),
        "drop_oldest",
        &format!(
            "[flushers.side]\ntype = \"tcp\"\naddr = \"127.0.0.1:{port}\"\nencoding = \"raw\"\nconnect_timeout_ms = 200\n"
        ),
    );
    let (agent, mut writer) = start(&toml).await;
    // Nothing holds the source back: the whole input is read while the receiver is down.
    tokio::time::timeout(TIMEOUT, writer.write_all(text().as_bytes()))
        .await
        .unwrap()
        .unwrap();
    let metrics = agent.metrics().clone();
    wait_for("every line batched", || {
        metric(
            &metrics.render(),
            "weir_agent_batched_entries_total",
            "input",
        ) == LINES as f64
    })
    .await;
    let dropped = metric(
        &metrics.render(),
        "weir_agent_dropped_entries_total",
        "spool_full",
    );
    assert!(dropped > 0.0, "drops counted: {}", metrics.render());
    let spool = agent.spool().unwrap().clone();
    assert!(spool.stats().dropped_records > 0);
    assert!(spool.stats().bytes <= 65536);

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let got = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = got.clone();
    let receiver = tokio::spawn(async move {
        let (sock, _) = listener.accept().await.unwrap();
        let mut lines = tokio::io::BufReader::new(sock).lines();
        while let Ok(Some(l)) = lines.next_line().await {
            sink.lock().unwrap().push(l);
        }
    });
    let last = format!("in {}", LINES - 1);
    wait_for("the newest line delivered", || {
        got.lock().unwrap().last() == Some(&last)
    })
    .await;
    let got = got.lock().unwrap().clone();
    let numbers: Vec<usize> = got
        .iter()
        .map(|l| l.strip_prefix("in ").unwrap().parse().unwrap())
        .collect();
    assert!(
        numbers.windows(2).all(|w| w[0] < w[1]),
        "in order, none twice"
    );
    assert!(
        numbers.len() < LINES,
        "the oldest were dropped ({} delivered)",
        numbers.len()
    );
    drop(writer);
    agent.shutdown().await.unwrap();
    receiver.abort();
}
