//! A slow flusher does not hold the others (per-flusher spill lanes), and `spool = true`
//! on a file source: its lines survive the file's deletion while the collector is down.

mod agent_support;

use std::sync::{Arc, Mutex};

use agent_support::*;
use tokio::io::AsyncBufReadExt;

fn file_source(glob: &std::path::Path, extra: &str) -> String {
    format!(
        "[sources.app]\ntype = \"file\"\ninclude = [{}]\nstream = \"test/+/{{file_name}}\"\npoll_interval_ms = 10\n{extra}",
        lit(glob)
    )
}

/// An HTTP receiver that takes requests but answers none until released; it keeps the
/// lines of every request it answered.
struct StalledHttp {
    addr: std::net::SocketAddr,
    release: tokio::sync::watch::Sender<bool>,
    answered: Arc<Mutex<Vec<String>>>,
    requests: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl StalledHttp {
    async fn start() -> StalledHttp {
        use std::sync::atomic::Ordering;
        let (release, released) = tokio::sync::watch::channel(false);
        let answered = Arc::new(Mutex::new(Vec::new()));
        let requests = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let app = {
            let (answered, requests) = (answered.clone(), requests.clone());
            axum::Router::new().route(
                "/in",
                axum::routing::post(move |body: String| {
                    let (answered, requests, mut released) =
                        (answered.clone(), requests.clone(), released.clone());
                    async move {
                        requests.fetch_add(1, Ordering::SeqCst);
                        let _ = released.wait_for(|r| *r).await;
                        answered
                            .lock()
                            .unwrap()
                            .extend(body.lines().map(str::to_string));
                        axum::http::StatusCode::OK
                    }
                }),
            )
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        StalledHttp {
            addr,
            release,
            answered,
            requests,
            task,
        }
    }
}

/// Reads newline-delimited lines from the first connection into `got`.
async fn tcp_receiver() -> (String, Arc<Mutex<Vec<String>>>, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    let task = tokio::spawn(async move {
        let (sock, _) = listener.accept().await.unwrap();
        let mut lines = tokio::io::BufReader::new(sock).lines();
        while let Ok(Some(l)) = lines.next_line().await {
            sink.lock().unwrap().push(l);
        }
    });
    (addr, got, task)
}

fn expected(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("line {i}")).collect()
}

/// One fast flusher (tcp) and one stalled one (http, its receiver answers nothing until
/// released), both fed by one file source whose bound of unacknowledged lines is far
/// below the file: without spilling, the stalled flusher would stop the source and the
/// tcp receiver would get at most that bound. With it, the tcp receiver gets every line
/// while the http one is stalled, the checkpoint reaches the end (the spill holds the
/// lines for the stalled flusher), and after release the http receiver gets every line
/// exactly once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_flusher_spills_and_does_not_hold_the_fast_one() {
    const LINES: usize = 20_000;
    let logs = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    append_lines(&logs.path().join("app.log"), "line", 0..LINES);
    let http = StalledHttp::start().await;
    let (tcp, fast, tcp_task) = tcp_receiver().await;
    let toml = format!(
        "data_dir = {}\n[batch]\nmax_entries = 100\n{}\
         [flushers.fast]\ntype = \"tcp\"\naddr = \"{tcp}\"\nencoding = \"raw\"\n\
         [flushers.slow]\ntype = \"http\"\nurl = \"http://{}/in\"\nencoding = \"raw\"\ntimeout_ms = 120000\n",
        lit(data.path()),
        file_source(
            &logs.path().join("*.log"),
            "max_unacknowledged_lines = 1000\n"
        ),
        http.addr,
    );
    let agent = agent(&toml).await;
    wait_for("the fast flusher got every line", || {
        fast.lock().unwrap().len() >= LINES
    })
    .await;
    assert_eq!(*fast.lock().unwrap(), expected(LINES));
    assert!(
        http.answered.lock().unwrap().is_empty(),
        "the slow receiver answered nothing yet"
    );
    assert_eq!(
        http.requests.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one request in flight, held"
    );
    let ck = agent.checkpoints("app").unwrap();
    wait_for("checkpoint at the end (the spill holds the rest)", || {
        ck.checkpoint("test/+/app.log")
            .is_some_and(|c| c.next_index == LINES as u64)
    })
    .await;
    let lane = data.path().join("spill").join("app").join("slow");
    assert!(lane.is_dir(), "the slow flusher's lane spool exists");

    // Released: the slow flusher catches up from its spill, every line once, in order.
    http.release.send(true).unwrap();
    wait_for("the slow flusher got every line", || {
        http.answered.lock().unwrap().len() >= LINES
    })
    .await;
    agent.shutdown().await.unwrap();
    assert_eq!(*http.answered.lock().unwrap(), expected(LINES));
    assert_eq!(
        fast.lock().unwrap().len(),
        LINES,
        "nothing more to the fast one"
    );
    http.task.abort();
    tcp_task.abort();
}

/// `spool = true`: with the collector down, the file's lines go to the spool and the
/// checkpoint moves once they are durable there; the file is then deleted (rotation
/// during an outage); the collector comes back and gets every line exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spooled_file_lines_survive_deletion_while_the_collector_is_down() {
    const LINES: usize = 3_000;
    let c = Collector::start().await;
    let addr = c.addr.clone();
    c.stop().await;
    let logs = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let file = logs.path().join("app.log");
    append_lines(&file, "line", 0..LINES);
    let toml = format!(
        "data_dir = {}\n[batch]\nmax_entries = 200\n[retry]\ninitial_backoff_ms = 10\nmax_backoff_ms = 100\n{}\
         [flushers.central]\ntype = \"weir\"\naddr = \"{addr}\"\ntimeout_ms = 1000\n",
        lit(data.path()),
        file_source(&logs.path().join("*.log"), "spool = true\n"),
    );
    let agent = agent(&toml).await;
    let ck = agent.checkpoints("app").unwrap();
    wait_for("checkpoint at the end: the spool holds the lines", || {
        ck.checkpoint("test/+/app.log")
            .is_some_and(|c| c.next_index == LINES as u64)
    })
    .await;
    let text = agent.metrics().render();
    assert!(metric(&text, "weir_agent_spool_bytes", "") > 0.0, "{text}");
    std::fs::remove_file(&file).unwrap();

    let c = Collector::start_at(&addr).await;
    let lines = c.wait_lines("test/+/app.log", LINES).await;
    assert_eq!(lines, expected(LINES));
    let spool = agent.spool().unwrap().clone();
    wait_for("every spool record acknowledged", || {
        spool.stats().cursors.iter().all(|c| c.lag_records == 0)
    })
    .await;
    agent.shutdown().await.unwrap();
    drop(spool); // it holds the spool's lock

    // Nothing is sent again after a restart: the stream holds exactly the lines.
    let agent = agent_support::agent(&toml).await;
    agent.shutdown().await.unwrap();
    assert_eq!(c.lines("test/+/app.log").await, expected(LINES));
    c.stop().await;
}

/// Lanes that outlive their configuration. A slow flusher spills everything, then is
/// removed from the configuration: its lane spool, still holding records, is kept (and
/// reported), while the lane of the flusher left alone is removed once empty. When the
/// slow flusher is configured again, alone on the source, its lane is drained through
/// a lane anyway: its receiver gets every line exactly once, in order. `[spill]`
/// settings apply (`after_ms`, `max_bytes`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lanes_left_over_are_kept_while_they_hold_records_and_drained_when_their_flusher_returns() {
    const LINES: usize = 3_000;
    let logs = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    append_lines(&logs.path().join("app.log"), "line", 0..LINES);
    let source = file_source(&logs.path().join("*.log"), "");
    let head = format!(
        "data_dir = {}\nshutdown_timeout_ms = 300\n[batch]\nmax_entries = 100\n\
         [spill]\nafter_ms = 50\nmax_bytes = 33554432\n{source}",
        lit(data.path()),
    );
    let lane = |flusher: &str| data.path().join("spill").join("app").join(flusher);

    // 1. Both flushers; the slow one is held and spills every line to its lane.
    let held = StalledHttp::start().await;
    let (tcp, fast, tcp_task) = tcp_receiver().await;
    let fast_flusher =
        format!("[flushers.fast]\ntype = \"tcp\"\naddr = \"{tcp}\"\nencoding = \"raw\"\n");
    let slow_flusher = |addr: std::net::SocketAddr| {
        format!(
            "[flushers.slow]\ntype = \"http\"\nurl = \"http://{addr}/in\"\nencoding = \"raw\"\ntimeout_ms = 120000\n"
        )
    };
    let agent =
        agent_support::agent(&format!("{head}{fast_flusher}{}", slow_flusher(held.addr))).await;
    let ck = agent.checkpoints("app").unwrap();
    wait_for(
        "checkpoint at the end (the slow lane holds the lines)",
        || {
            ck.checkpoint("test/+/app.log")
                .is_some_and(|c| c.next_index == LINES as u64)
        },
    )
    .await;
    wait_for("the fast flusher got every line", || {
        fast.lock().unwrap().len() >= LINES
    })
    .await;
    agent.shutdown().await.unwrap();
    held.task.abort(); // its held request is never answered
    tcp_task.abort();
    assert!(lane("slow").is_dir() && lane("fast").is_dir());

    // 2. The slow flusher is removed: its lane still holds records and stays; the fast
    //    flusher, now alone, had an empty lane: removed.
    let (tcp, _fast, tcp_task) = tcp_receiver().await;
    let fast_flusher =
        format!("[flushers.fast]\ntype = \"tcp\"\naddr = \"{tcp}\"\nencoding = \"raw\"\n");
    let agent = agent_support::agent(&format!("{head}{fast_flusher}")).await;
    agent.shutdown().await.unwrap();
    tcp_task.abort();
    assert!(
        !lane("fast").exists(),
        "an empty lane of a lone flusher is removed"
    );
    let segments = std::fs::read_dir(lane("slow"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".seg"))
        })
        .count();
    assert!(segments > 0, "the removed flusher's lane keeps its records");

    // 3. The slow flusher returns, alone on the source: its lane is drained to it.
    let http = StalledHttp::start().await;
    http.release.send(true).unwrap();
    let agent = agent_support::agent(&format!("{head}{}", slow_flusher(http.addr))).await;
    wait_for("the returning flusher got every line", || {
        http.answered.lock().unwrap().len() >= LINES
    })
    .await;
    agent.shutdown().await.unwrap();
    assert_eq!(*http.answered.lock().unwrap(), expected(LINES));
    http.task.abort();
}

#[test]
fn spill_settings_are_checked_and_named() {
    let base = "[sources.a]\ntype = \"stdin\"\n[flushers.b]\ntype = \"blackhole\"\n";
    for (spill, key) in [
        ("[spill]\nafter_ms = 0\n", "spill"),
        ("[spill]\nmax_bytes = 10\n", "spill"),
        ("[spill]\nafter = 5\n", "after"),
    ] {
        let e = weir_agent::config::AgentConfig::parse(&format!("{spill}{base}"))
            .unwrap_err()
            .to_string();
        assert!(e.contains(key), "{spill}: {e}");
    }
    let ok = weir_agent::config::AgentConfig::parse(&format!(
        "[spill]\nafter_ms = 1000\nmax_bytes = 1073741824\n{base}"
    ))
    .unwrap();
    assert_eq!(ok.spill.after_ms, 1000);
}
