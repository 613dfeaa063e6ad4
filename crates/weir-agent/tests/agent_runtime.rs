//! The agent runtime in-process: a file source feeding flushers, end-to-end
//! acknowledgement into the checkpoints, retries, back-pressure and shutdown.

mod agent_support;

use std::net::TcpListener;

use agent_support::*;
use tokio::io::AsyncBufReadExt;

fn stream_of(file_name: &str) -> String {
    format!("test/+/{file_name}")
}

fn file_source(glob: &std::path::Path) -> String {
    format!(
        "[sources.app]\ntype = \"file\"\ninclude = [{}]\nstream = \"test/+/{{file_name}}\"\npoll_interval_ms = 10\n",
        lit(glob)
    )
}

#[tokio::test]
async fn file_lines_reach_the_collector_and_the_checkpoint_follows() {
    let c = Collector::start().await;
    let logs = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let file = logs.path().join("app.log");
    append_lines(&file, "line", 0..1000);
    let toml = format!(
        "data_dir = {}\n[batch]\nmax_entries = 64\n{}[flushers.central]\ntype = \"weir\"\naddr = \"{}\"\n",
        lit(data.path()),
        file_source(&logs.path().join("*.log")),
        c.addr
    );
    let agent = agent(&toml).await;
    let lines = c.wait_lines(&stream_of("app.log"), 1000).await;
    assert_eq!(lines.len(), 1000);
    assert_eq!(lines[999], "line 999");
    let ck = agent.checkpoints("app").unwrap();
    wait_for("checkpoint at 1000", || {
        ck.checkpoint(&stream_of("app.log"))
            .is_some_and(|c| c.next_index == 1000)
    })
    .await;
    let text = agent.metrics().render();
    assert_eq!(metric(&text, "weir_agent_read_lines_total", "app"), 1000.0);
    let line_bytes: usize = lines.iter().map(|l| l.len()).sum();
    assert_eq!(
        metric(&text, "weir_agent_read_bytes_total", "app"),
        line_bytes as f64,
        "the lines' bytes, newlines excluded"
    );
    assert_eq!(
        metric(&text, "weir_agent_flushed_entries_total", "central"),
        1000.0
    );
    assert_eq!(
        metric(&text, "weir_agent_acked_entries_total", "app"),
        1000.0
    );
    agent.shutdown().await.unwrap();

    // A restart resumes at the checkpoint: new lines continue the numbering, nothing
    // is sent twice.
    append_lines(&file, "line", 1000..1100);
    let agent = agent_support::agent(&toml).await;
    let lines = c.wait_lines(&stream_of("app.log"), 1100).await;
    assert_eq!(lines.len(), 1100);
    assert_eq!(lines[1000], "line 1000");
    let text = agent.metrics().render();
    assert_eq!(metric(&text, "weir_agent_read_lines_total", "app"), 100.0);
    agent.shutdown().await.unwrap();
    c.stop().await;
}

/// The checkpoint moves only when the flusher acknowledged: a flusher that cannot
/// deliver (its TCP peer is down) holds it, and the source stops reading at its bound;
/// once the peer is up, everything arrives and the checkpoint moves. (With several
/// flushers, one that lags spills instead: see `agent_spill.rs`.)
#[tokio::test]
async fn checkpoint_waits_for_the_flusher_and_backpressure_bounds_reading() {
    let logs = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let file = logs.path().join("app.log");
    append_lines(&file, "line", 0..5000);
    // A free port, nobody listening yet.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let toml = format!(
        "data_dir = {}\n[batch]\nmax_entries = 50\n[retry]\ninitial_backoff_ms = 10\nmax_backoff_ms = 50\n{}max_unacknowledged_lines = 500\n\
         [flushers.side]\ntype = \"tcp\"\naddr = \"127.0.0.1:{port}\"\nencoding = \"raw\"\nconnect_timeout_ms = 200\n",
        lit(data.path()),
        file_source(&logs.path().join("*.log")),
    );
    let agent = agent(&toml).await;
    let stream = stream_of("app.log");
    // The flusher's channel fills, the batcher waits on it, and the source on the
    // batcher.
    let metrics = agent.metrics().clone();
    wait_for("retries of the tcp flusher", || {
        metric(&metrics.render(), "weir_agent_retries_total", "side") >= 3.0
    })
    .await;
    let text = metrics.render();
    let read = metric(&text, "weir_agent_read_lines_total", "app");
    assert!(
        read <= 500.0,
        "the source stopped at its bound, read {read}"
    );
    let ck = agent.checkpoints("app").unwrap();
    assert_eq!(
        ck.checkpoint(&stream).unwrap().next_index,
        0,
        "held by the tcp flusher"
    );
    assert_eq!(metric(&text, "weir_agent_flusher_ready", "side"), 0.0);

    // The peer comes up: everything is delivered, the checkpoint moves.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let reader = tokio::spawn(async move {
        let (sock, _) = listener.accept().await.unwrap();
        let mut lines = tokio::io::BufReader::new(sock).lines();
        let mut got = Vec::new();
        while got.len() < 5000 {
            match lines.next_line().await.unwrap() {
                Some(l) => got.push(l),
                None => break,
            }
        }
        got
    });
    let got = tokio::time::timeout(TIMEOUT, reader)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.len(), 5000);
    assert_eq!(got[4999], "line 4999");
    wait_for("checkpoint at 5000", || {
        ck.checkpoint(&stream).is_some_and(|c| c.next_index == 5000)
    })
    .await;
    agent.shutdown().await.unwrap();
}

/// Shutdown while the collector is down gives up after the timeout, keeps the checkpoint
/// where the acknowledgements were, and a later start delivers everything.
#[tokio::test]
async fn collector_down_holds_the_checkpoint_then_everything_arrives() {
    let c = Collector::start().await;
    let addr = c.addr.clone();
    c.stop().await;
    let logs = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let file = logs.path().join("app.log");
    append_lines(&file, "line", 0..300);
    let toml = format!(
        "data_dir = {}\nshutdown_timeout_ms = 500\n[retry]\ninitial_backoff_ms = 10\nmax_backoff_ms = 100\n{}\
         [flushers.central]\ntype = \"weir\"\naddr = \"{addr}\"\ntimeout_ms = 1000\n",
        lit(data.path()),
        file_source(&logs.path().join("*.log")),
    );
    let agent = agent(&toml).await;
    let metrics = agent.metrics().clone();
    wait_for("retries while the collector is down", || {
        metric(&metrics.render(), "weir_agent_retries_total", "central") >= 2.0
    })
    .await;
    let ck = agent.checkpoints("app").unwrap();
    agent.shutdown().await.unwrap();
    assert_eq!(ck.checkpoint(&stream_of("app.log")).unwrap().next_index, 0);

    let c = Collector::start_at(&addr).await;
    let agent = agent_support::agent(&toml).await;
    let lines = c.wait_lines(&stream_of("app.log"), 300).await;
    assert_eq!(
        lines,
        (0..300).map(|i| format!("line {i}")).collect::<Vec<_>>()
    );
    agent.shutdown().await.unwrap();
    c.stop().await;
}

/// An http receiver that refuses with 400 until told otherwise: the refused batches go
/// to the dead-letter file (counted), the checkpoint moves on, and
/// `replay` delivers them once the receiver accepts.
#[tokio::test]
async fn refused_batches_become_dead_letters_and_replay_delivers_them() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let accept = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicUsize::new(0));
    let app = {
        let (accept, received) = (accept.clone(), received.clone());
        axum::Router::new().route(
            "/in",
            axum::routing::post(move |body: String| {
                let (accept, received) = (accept.clone(), received.clone());
                async move {
                    if accept.load(Ordering::SeqCst) {
                        received.fetch_add(body.lines().count(), Ordering::SeqCst);
                        axum::http::StatusCode::OK
                    } else {
                        axum::http::StatusCode::BAD_REQUEST
                    }
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let logs = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    append_lines(&logs.path().join("app.log"), "line", 0..100);
    let toml = format!(
        "data_dir = {}\n{}[flushers.web]\ntype = \"http\"\nurl = \"http://{http}/in\"\n",
        lit(data.path()),
        file_source(&logs.path().join("*.log")),
    );
    let config = weir_agent::config::AgentConfig::parse(&toml).unwrap();
    let agent = agent(&toml).await;
    let ck = agent.checkpoints("app").unwrap();
    wait_for("checkpoint past the refused lines", || {
        ck.checkpoint(&stream_of("app.log"))
            .is_some_and(|c| c.next_index == 100)
    })
    .await;
    let text = agent.metrics().render();
    assert_eq!(
        metric(
            &text,
            "weir_agent_dropped_entries_total",
            "reason=\"dead_letter\""
        ),
        100.0
    );
    agent.shutdown().await.unwrap();
    let (letters, bad) = weir_agent::runtime::dead_letter::read_all(
        &weir_agent::runtime::DeadLetters::path_in(data.path()),
    )
    .unwrap();
    assert_eq!(bad, 0);
    assert_eq!(letters.iter().map(|l| l.entries.len()).sum::<usize>(), 100);
    assert!(letters[0].reason.contains("400"), "{}", letters[0].reason);

    // Still refused: kept. Then accepted: delivered and removed.
    let r = weir_agent::runtime::dead_letter::replay(&config, None)
        .await
        .unwrap();
    assert_eq!((r.delivered, r.kept), (0, letters.len()));
    accept.store(true, Ordering::SeqCst);
    let r = weir_agent::runtime::dead_letter::replay(&config, Some("web"))
        .await
        .unwrap();
    assert_eq!((r.delivered, r.kept), (letters.len(), 0));
    assert_eq!(received.load(Ordering::SeqCst), 100);
    let r = weir_agent::runtime::dead_letter::replay(&config, None)
        .await
        .unwrap();
    assert_eq!(r, Default::default());
    server.abort();
}
