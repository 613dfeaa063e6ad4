//! Helpers shared by the integration tests: a real collector (`weir_collector::Server`
//! over a `FjallStore` in a temporary directory) on loopback, which can be shut down
//! gracefully and restarted on the same ports and data directory; waiting for events
//! with bounded timeouts.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use weir_collector::{CollectorConfig, Server, ServerError};
use weir_core::Envelope;
use weir_proto::lv2::envelope::Message as Body;
use weir_store::{FjallConfig, FjallStore, FsyncPolicy, Store};

/// The longest any wait in these tests lasts before failing.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// A running collector.
pub struct Collector {
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    pub store: Arc<dyn Store>,
    data_dir: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), ServerError>>>,
}

impl Collector {
    /// A collector on ephemeral loopback ports over a store in `data_dir`.
    pub async fn start(data_dir: &Path) -> Collector {
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        Self::start_on(data_dir, any, any).await
    }

    /// A collector on these addresses (retrying the bind for a while: the previous
    /// collector on them may still be letting go).
    pub async fn start_on(data_dir: &Path, grpc: SocketAddr, http: SocketAddr) -> Collector {
        let store: Arc<dyn Store> = Arc::new(
            FjallStore::open(FjallConfig {
                data_dir: data_dir.to_path_buf(),
                fsync: FsyncPolicy::Never,
                ..FjallConfig::default()
            })
            .expect("open the store"),
        );
        let config = CollectorConfig {
            grpc_addr: grpc,
            http_addr: http,
            ..CollectorConfig::default()
        };
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        let server = loop {
            match Server::bind(config.clone(), store.clone()).await {
                Ok(s) => break s,
                Err(e) if tokio::time::Instant::now() < deadline => {
                    eprintln!("bind failed, retrying: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("cannot bind: {e}"),
            }
        };
        let (grpc, http) = (server.grpc_addr(), server.http_addr());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));
        Collector {
            grpc,
            http,
            store,
            data_dir: data_dir.to_path_buf(),
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Graceful shutdown (as on SIGTERM), waiting until the store is closed.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(TIMEOUT, task)
                .await
                .expect("shutdown in time")
                .expect("server task")
                .expect("clean shutdown");
        }
    }

    /// Shuts down gracefully and starts again on the same ports and data directory.
    pub async fn restart(self) -> Collector {
        let (dir, grpc, http) = (self.data_dir.clone(), self.grpc, self.http);
        self.stop().await;
        Collector::start_on(&dir, grpc, http).await
    }

    /// The gRPC address as a client option.
    pub fn grpc_addr(&self) -> String {
        self.grpc.to_string()
    }

    /// Entries written to `path` so far.
    pub async fn count(&self, path: &str) -> u64 {
        self.store
            .stream(path)
            .await
            .expect("stream state")
            .map_or(0, |s| s.next_index)
    }

    /// Waits (bounded) until `path` has at least `n` entries; returns the count.
    pub async fn wait_for_count(&self, path: &str, n: u64) -> u64 {
        let mut notes = self.store.subscribe();
        within(async {
            loop {
                let c = self.count(path).await;
                if c >= n {
                    return c;
                }
                // A lagged receiver just re-checks.
                let _ = notes.recv().await;
            }
        })
        .await
    }

    /// Every envelope stored in `path`, in order.
    pub async fn read_all(&self, path: &str) -> Vec<Envelope> {
        let mut out = Vec::new();
        loop {
            let batch = self
                .store
                .read(path, out.len() as u64, 10_000)
                .await
                .expect("read")
                .unwrap_or_else(|| panic!("no stream {path}"));
            if batch.entries.is_empty() {
                return out;
            }
            out.extend(batch.entries.into_iter().map(|e| e.envelope));
        }
    }

    /// The log payloads stored in `path`, as text.
    pub async fn payloads(&self, path: &str) -> Vec<String> {
        self.read_all(path).await.iter().map(payload).collect()
    }
}

/// Runs `f`, failing the test if it takes longer than [`TIMEOUT`].
pub async fn within<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(TIMEOUT, f)
        .await
        .expect("timed out waiting for an event")
}

/// Waits (bounded) until `cond` holds, checking every few milliseconds.
pub async fn until(mut cond: impl FnMut() -> bool) {
    within(async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
}

/// The log payload of an envelope as text (or a description of the message).
pub fn payload(env: &Envelope) -> String {
    match &env.message {
        Some(Body::Log(l)) => String::from_utf8_lossy(&l.payload).into_owned(),
        other => format!("{other:?}"),
    }
}

/// A loopback address where nothing listens (the port was free a moment ago).
pub fn closed_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

/// The store path of a Loggregator source.
pub fn path_of(source_id: &str, instance_id: &str) -> String {
    weir_core::path::loggregator_path(source_id, instance_id)
}
