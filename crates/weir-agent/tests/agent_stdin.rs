//! The `stdin` source through the spool: the collector is down during ingest, the spool
//! grows, and everything arrives exactly once when it returns; the numbering continues
//! after a restart.

mod agent_support;

use std::sync::Arc;

use agent_support::*;
use tokio::io::AsyncWriteExt;
use weir_agent::config::AgentConfig;
use weir_agent::metrics::AgentMetrics;
use weir_agent::runtime::Agent;

const STREAM: &str = "test/+/stdin";

#[tokio::test]
async fn stdin_is_spooled_while_the_collector_is_down_then_delivered_once() {
    let c = Collector::start().await;
    let addr = c.addr.clone();
    c.stop().await;
    let data = tempfile::tempdir().unwrap();
    let toml = format!(
        "data_dir = {}\n[retry]\ninitial_backoff_ms = 10\nmax_backoff_ms = 100\n\
         [sources.input]\ntype = \"stdin\"\nstream = \"test/+/stdin\"\n\
         [flushers.central]\ntype = \"weir\"\naddr = \"{addr}\"\ntimeout_ms = 1000\n",
        lit(data.path())
    );
    let (mut writer, reader) = tokio::io::duplex(1 << 16);
    let agent = Agent::start_with_stdin(
        AgentConfig::parse(&toml).unwrap(),
        Arc::new(AgentMetrics::new()),
        Box::new(reader),
    )
    .await
    .unwrap();
    let text: String = (0..2000).map(|i| format!("in {i}\n")).collect();
    writer.write_all(text.as_bytes()).await.unwrap();
    let metrics = agent.metrics().clone();
    wait_for("the spool holds the lines", || {
        let t = metrics.render();
        metric(&t, "weir_agent_spool_bytes", "") > 0.0
            && metric(&t, "weir_agent_batched_entries_total", "input") == 2000.0
    })
    .await;
    wait_for("retries while the collector is down", || {
        metric(&metrics.render(), "weir_agent_retries_total", "central") >= 1.0
    })
    .await;

    let c = Collector::start_at(&addr).await;
    let lines = c.wait_lines(STREAM, 2000).await;
    assert_eq!(
        lines,
        (0..2000).map(|i| format!("in {i}")).collect::<Vec<_>>()
    );
    let spool = agent.spool().unwrap().clone();
    wait_for("every record acknowledged", || {
        spool.stats().cursors.iter().all(|c| c.lag_records == 0)
    })
    .await;
    drop(writer);
    agent.shutdown().await.unwrap();
    // The spool directory stays locked while any handle of it lives (the metrics hold
    // one for their gauges).
    drop((spool, metrics));

    // A restart: the numbering continues where it was, nothing is sent twice.
    let (mut writer, reader) = tokio::io::duplex(1 << 16);
    let agent = Agent::start_with_stdin(
        AgentConfig::parse(&toml).unwrap(),
        Arc::new(AgentMetrics::new()),
        Box::new(reader),
    )
    .await
    .unwrap();
    writer.write_all(b"after 0\nafter 1\n").await.unwrap();
    let lines = c.wait_lines(STREAM, 2002).await;
    assert_eq!(lines.len(), 2002);
    assert_eq!(&lines[2000..], ["after 0", "after 1"]);
    drop(writer);
    agent.shutdown().await.unwrap();
    c.stop().await;
}
