//! Helpers shared by the integration tests: a real `FjallStore` in a temporary
//! directory, a collector server on 127.0.0.1:0, envelope builders.
#![allow(dead_code)]

pub mod live;

use std::net::SocketAddr;
use std::sync::Arc;

use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use weir_collector::{Collector, CollectorConfig, Metrics, Server, ServerError};
use weir_core::Envelope;
use weir_proto::lv2::{Log, envelope::Message as Body};
use weir_proto::wv1;
use weir_store::{FjallConfig, FjallStore, FsyncPolicy, Store, StoredEntry};

/// A store in a fresh temporary directory (kept alive by the returned guard).
pub fn open_store() -> (TempDir, Arc<dyn Store>) {
    open_store_with(FjallConfig::default())
}

/// A store with this configuration (its data dir and fsync policy replaced) in a fresh
/// temporary directory.
pub fn open_store_with(config: FjallConfig) -> (TempDir, Arc<dyn Store>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = FjallStore::open(FjallConfig {
        data_dir: dir.path().to_path_buf(),
        fsync: FsyncPolicy::Never,
        ..config
    })
    .expect("open store");
    (dir, Arc::new(store))
}

/// A collector (no server) over a fresh store.
pub fn collector_with(config: CollectorConfig) -> (TempDir, Collector) {
    let (dir, store) = open_store();
    (dir, Collector::new(store, &config, Metrics::new()))
}

pub fn collector() -> (TempDir, Collector) {
    collector_with(CollectorConfig::default())
}

/// A log envelope with this payload.
pub fn log(payload: impl AsRef<[u8]>) -> Envelope {
    Envelope {
        timestamp: 1_700_000_000_000_000_000,
        source_id: "app".into(),
        instance_id: "0".into(),
        message: Some(Body::Log(Log {
            payload: payload.as_ref().to_vec().into(),
            r#type: 0,
        })),
        ..Default::default()
    }
}

/// A log envelope of a Loggregator client.
pub fn lg_log(source: &str, instance: &str, payload: &str) -> Envelope {
    Envelope {
        source_id: source.into(),
        instance_id: instance.into(),
        ..log(payload)
    }
}

/// An append of log entries with these payloads from `first`.
pub fn append(path: &str, secret: &str, first: u64, payloads: &[&str]) -> wv1::StreamAppend {
    wv1::StreamAppend {
        path: path.into(),
        secret: secret.as_bytes().to_vec(),
        descriptor: None,
        first_index: first,
        entries: payloads.iter().map(log).collect(),
        terminal_count: None,
    }
}

/// The log payloads of entries, as text.
pub fn payloads(entries: &[StoredEntry]) -> Vec<String> {
    entries.iter().map(|e| payload_of(&e.envelope)).collect()
}

pub fn payload_of(env: &Envelope) -> String {
    match &env.message {
        Some(Body::Log(l)) => String::from_utf8_lossy(&l.payload).into_owned(),
        other => format!("{other:?}"),
    }
}

/// Everything stored in a stream, read in one go.
pub async fn read_all(store: &Arc<dyn Store>, path: &str) -> Vec<StoredEntry> {
    store
        .read(path, 0, 100_000)
        .await
        .expect("read")
        .unwrap_or_else(|| panic!("no stream {path}"))
        .entries
}

/// A collector server on 127.0.0.1:0 over a fresh store.
pub struct TestServer {
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    pub collector: Collector,
    pub metrics: Metrics,
    pub store: Arc<dyn Store>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), ServerError>>>,
    _dir: TempDir,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(CollectorConfig::default()).await
    }

    pub async fn start_with(config: CollectorConfig) -> Self {
        Self::start_with_store(config, open_store()).await
    }

    /// A server over a store of the caller's.
    pub async fn start_with_store(
        mut config: CollectorConfig,
        (dir, store): (TempDir, Arc<dyn Store>),
    ) -> Self {
        config.grpc_addr = "127.0.0.1:0".parse().expect("addr");
        config.http_addr = "127.0.0.1:0".parse().expect("addr");
        let server = Server::bind(config, store.clone()).await.expect("bind");
        let (stop, stopped) = oneshot::channel::<()>();
        let (grpc, http) = (server.grpc_addr(), server.http_addr());
        assert_ne!(grpc.port(), 0);
        assert_ne!(http.port(), 0);
        let collector = server.collector().clone();
        let metrics = server.metrics().clone();
        let task = tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        TestServer {
            grpc,
            http,
            collector,
            metrics,
            store,
            stop: Some(stop),
            task: Some(task),
            _dir: dir,
        }
    }

    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc)
    }

    pub fn http_url(&self, path_and_query: &str) -> String {
        format!("http://{}{}", self.http, path_and_query)
    }

    /// Shuts the server down and waits for it.
    pub async fn stop(mut self) -> Result<(), ServerError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => task.await.expect("server task"),
            None => Ok(()),
        }
    }
}
