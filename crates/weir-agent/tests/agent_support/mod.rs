//! Shared helpers of the agent runtime tests: an in-process collector on loopback with a
//! real store in a temp dir, agents built from TOML text, bounded waits.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use weir_agent::config::AgentConfig;
use weir_agent::metrics::AgentMetrics;
use weir_agent::runtime::Agent;
use weir_collector::{CollectorConfig, Server};
use weir_proto::lv2::envelope::Message as Body;
use weir_store::{FjallConfig, FjallStore, Store};

/// Upper bound of every wait.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// A collector in this process.
pub struct Collector {
    pub addr: String,
    pub store: Arc<dyn Store>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Collector {
    pub async fn start() -> Collector {
        Self::start_at("127.0.0.1:0").await
    }

    /// On a given address (to come back on the same port after a stop).
    pub async fn start_at(addr: &str) -> Collector {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(
            FjallStore::open(FjallConfig {
                data_dir: dir.path().join("data"),
                ..FjallConfig::default()
            })
            .unwrap(),
        );
        let config = CollectorConfig {
            grpc_addr: addr.parse().unwrap(),
            http_addr: "127.0.0.1:0".parse().unwrap(),
            ..CollectorConfig::default()
        };
        let server = Server::bind(config, store.clone()).await.unwrap();
        let addr = server.grpc_addr().to_string();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let _ = server
                .run(async {
                    let _ = rx.await;
                })
                .await;
        });
        Collector {
            addr,
            store,
            stop: Some(tx),
            task,
            _dir: dir,
        }
    }

    /// The log payloads of `path` (empty when the stream does not exist).
    pub async fn lines(&self, path: &str) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            let Some(batch) = self
                .store
                .read(path, out.len() as u64, 10_000)
                .await
                .unwrap()
            else {
                return out;
            };
            if batch.entries.is_empty() {
                return out;
            }
            out.extend(batch.entries.iter().map(|e| match &e.envelope.message {
                Some(Body::Log(l)) => String::from_utf8_lossy(&l.payload).into_owned(),
                _ => String::new(),
            }));
        }
    }

    /// Waits until `path` holds `n` entries and returns them.
    pub async fn wait_lines(&self, path: &str, n: usize) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            let lines = self.lines(path).await;
            if lines.len() >= n {
                return lines;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out: {path} has {} of {n} entries",
                lines.len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let _ = self.task.await;
    }
}

/// Starts an agent from TOML text.
pub async fn agent(toml: &str) -> Agent {
    let config = AgentConfig::parse(toml).unwrap_or_else(|e| panic!("config: {e}\n{toml}"));
    Agent::start(config, Arc::new(AgentMetrics::new()))
        .await
        .expect("agent starts")
}

/// A TOML string literal of a path.
pub fn lit(p: &std::path::Path) -> String {
    format!("{:?}", p.to_string_lossy())
}

/// Waits until `cond` holds, failing with `what` after [`TIMEOUT`].
pub async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The value of a metric line of `text` (sum over label sets containing `labels`).
pub fn metric(text: &str, name: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            let (m, rest) = match key.find('{') {
                Some(i) => (&key[..i], &key[i..]),
                None => (key, ""),
            };
            (m == name && rest.contains(labels)).then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

/// Appends `"{prefix} {i}\n"` for i in `range` to `path`.
pub fn append_lines(path: &std::path::Path, prefix: &str, range: std::ops::Range<usize>) {
    use std::io::Write;
    let text: String = range.map(|i| format!("{prefix} {i}\n")).collect();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}
