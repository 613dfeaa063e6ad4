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
