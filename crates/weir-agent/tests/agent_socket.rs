//! The `socket` source: declared metrics are acknowledged once spooled and delivered
//! (also after a collector outage); undeclared ones are refused with their name.

mod agent_support;

use agent_support::*;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use weir_proto::lv2::envelope::Message as Body;

#[tokio::test]
async fn declared_metrics_are_delivered_and_others_refused_by_name() {
    let c = Collector::start().await;
    let addr = c.addr.clone();
    c.stop().await; // down during ingest: the spool holds the metrics
    let data = tempfile::tempdir().unwrap();
    let sock = data.path().join("metrics.sock");
    let toml = format!(
        "data_dir = {}\n[retry]\ninitial_backoff_ms = 10\nmax_backoff_ms = 100\n\
         [sources.m]\ntype = \"socket\"\npath = {}\nmetrics = [\"requests\", \"memory\"]\nstream = \"test/+/metrics\"\n\
         [flushers.central]\ntype = \"weir\"\naddr = \"{addr}\"\ntimeout_ms = 1000\n",
        lit(data.path()),
        lit(&sock)
    );
    let agent = agent(&toml).await;
    let conn = tokio::net::UnixStream::connect(&sock).await.unwrap();
    let (read, mut write) = conn.into_split();
    let mut replies = BufReader::new(read).lines();
    let mut sent = String::new();
    for i in 0..50 {
        sent.push_str(&format!(
            "{{\"key\":\"requests\",\"value\":{i},\"time\":{},\"labels\":{{\"route\":\"/a\"}}}}\n",
            1_700_000_000_000_000_000i64 + i
        ));
    }
    sent.push_str("{\"key\":\"latency\",\"value\":1}\n");
    sent.push_str("{\"key\":\"memory\",\"value\":1024}\n");
    write.write_all(sent.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    for _ in 0..52 {
        let line = tokio::time::timeout(TIMEOUT, replies.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        got.push(line);
    }
    assert!(got[..50].iter().all(|l| l == "{\"ok\":true}"), "{got:?}");
    assert!(
        got[50].contains("error") && got[50].contains("\\\"latency\\\""),
        "{}",
        got[50]
    );
    assert_eq!(got[51], "{\"ok\":true}");
    let metrics = agent.metrics().clone();
    assert!(metric(&metrics.render(), "weir_agent_spool_bytes", "") > 0.0);

    let c = Collector::start_at(&addr).await;
    c.wait_lines("test/+/metrics", 51).await;
    let batch = c
        .store
        .read("test/+/metrics", 0, 100)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(batch.entries.len(), 51);
    let Some(Body::Gauge(g)) = &batch.entries[3].envelope.message else {
        panic!("a gauge")
    };
    assert_eq!(g.metrics["requests"].value, 3.0);
    assert_eq!(batch.entries[3].envelope.tags["route"], "/a");
    let Some(Body::Gauge(g)) = &batch.entries[50].envelope.message else {
        panic!("a gauge")
    };
    assert_eq!(g.metrics["memory"].value, 1024.0);
    drop(write);
    agent.shutdown().await.unwrap();
    c.stop().await;
}
