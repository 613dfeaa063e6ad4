//! A real `weir agent` whose spool was damaged while it was stopped — a torn tail in
//! the last segment and a flipped byte in the middle of another — starts, reports what
//! it skipped (its log and `weir_agent_dropped_entries_total{reason="spool_damaged"}`)
//! and delivers the rest, each line once and in order.

mod agent_support;
mod common;

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agent_support::{AgentProc, lit};
use common::{metric_value, weir_bin};
use tokio::io::AsyncBufReadExt;

const LINES: usize = 2_000;
const BATCH: usize = 20;

/// A file source copied to the spool (`spool = true`), small batches and segments, and
/// a tcp flusher towards `port`.
fn config(data: &Path, logs: &Path, port: u16) -> String {
    format!(
        "data_dir = {}\nshutdown_timeout_ms = 500\n[batch]\nmax_entries = {BATCH}\n\
         [retry]\ninitial_backoff_ms = 10\nmax_backoff_ms = 100\n\
         [spool]\nsegment_bytes = 8192\nfsync = \"always\"\n\
         [sources.app]\ntype = \"file\"\ninclude = [{}]\nstream = \"test/+/{{file_name}}\"\npoll_interval_ms = 20\nspool = true\n\
         [flushers.side]\ntype = \"tcp\"\naddr = \"127.0.0.1:{port}\"\nencoding = \"raw\"\nconnect_timeout_ms = 200\n",
        lit(data),
        lit(&logs.join("*.log"))
    )
}

async fn wait_metric(agent: &AgentProc, what: &str, cond: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = agent.metrics_text().await;
        if cond(&text) {
            return;
        }
        assert!(Instant::now() < deadline, "timed out: {what}\n{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut segs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segs.sort();
    segs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_spool_is_reported_and_the_rest_delivered() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, logs) = (tmp.path().join("agent"), tmp.path().join("logs"));
    std::fs::create_dir_all(&logs).unwrap();
    let file = logs.join("app.log");
    let text: String = (0..LINES).map(|i| format!("line {i}\n")).collect();
    std::fs::write(&file, text).unwrap();
    // A free port, nobody listening yet: everything stays in the spool.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = tmp.path().join("agent.toml");
    std::fs::write(&cfg, config(&data, &logs, port)).unwrap();

    let agent = AgentProc::start(&weir_bin(), &cfg);
    wait_metric(&agent, "every line spooled and acknowledged", |t| {
        metric_value(t, "weir_agent_acked_entries_total", "app") == LINES as f64
    })
    .await;
    assert!(agent.terminate(Duration::from_secs(20)), "clean exit");

    // The damage: a flipped byte in the middle of a middle segment, a torn tail.
    let segs = segments(&data.join("spool"));
    assert!(segs.len() >= 4, "several segments: {segs:?}");
    let middle = &segs[segs.len() / 2];
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(middle)
        .unwrap();
    let at = f.metadata().unwrap().len() / 2;
    let mut byte = [0u8];
    f.read_exact_at(&mut byte, at).unwrap();
    f.write_all_at(&[byte[0] ^ 0x5a], at).unwrap();
    let last = segs.last().unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(last).unwrap();
    let len = f.metadata().unwrap().len();
    f.set_len(len - 5).unwrap();
    drop(f);

    // The receiver is up; the agent starts on the damaged spool.
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
    let log = tmp.path().join("agent.log");
    let agent = AgentProc::start_with_stderr(
        &weir_bin(),
        &cfg,
        Stdio::from(std::fs::File::create(&log).unwrap()),
    );
    // Lines written now come after the damaged records: once the last one arrived,
    // everything before it was handed over.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&file)
        .unwrap();
    for i in 0..10 {
        writeln!(f, "after {i}").unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.lock().unwrap().last().map(String::as_str) != Some("after 9") {
        assert!(
            Instant::now() < deadline,
            "timed out; got {} lines",
            got.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let text = agent.metrics_text().await;
    let skipped = metric_value(
        &text,
        "weir_agent_dropped_entries_total",
        "reason=\"spool_damaged\"",
    );
    assert!(skipped >= 1.0, "the skipped records are counted: {text}");
    assert!(agent.terminate(Duration::from_secs(20)), "clean exit");
    receiver.abort();

    let got = got.lock().unwrap().clone();
    let (old, new) = got.split_at(got.len() - 10);
    assert_eq!(
        new,
        (0..10).map(|i| format!("after {i}")).collect::<Vec<_>>()
    );
    let numbers: Vec<usize> = old
        .iter()
        .map(|l| l.strip_prefix("line ").unwrap().parse().unwrap())
        .collect();
    assert!(
        numbers.windows(2).all(|w| w[0] < w[1]),
        "in order, none twice"
    );
    let lost = LINES - numbers.len();
    assert!(lost > 0, "the damaged records are not delivered");
    // Only whole records (batches) are lost: the damaged one and the torn one, at most
    // a few more if the damage hid a frame boundary.
    assert!(lost <= 4 * BATCH, "lost {lost} lines");
    assert!(
        numbers[0] == 0,
        "the records before the damage are delivered"
    );
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(
        log.contains("recovered from damage"),
        "the log reports what was skipped:\n{log}"
    );
}
