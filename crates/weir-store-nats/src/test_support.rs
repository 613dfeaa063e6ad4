//! Real `nats-server` processes for tests: one node or a cluster, on loopback with free
//! ports and temporary store directories, killed when dropped. Readiness is the
//! server's own "Server is ready" log line, not a sleep.
//!
//! The binary is `$NATS_SERVER` if set, else `nats-server` on `PATH`, else
//! `/usr/sbin/nats-server` (Debian's package).

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use crate::NatsConfig;

/// The `nats-server` binary to run.
pub fn nats_server_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("NATS_SERVER") {
        return PathBuf::from(p);
    }
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| d.join("nats-server").is_file()))
        .unwrap_or(false);
    if on_path {
        PathBuf::from("nats-server")
    } else {
        PathBuf::from("/usr/sbin/nats-server")
    }
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

/// One `nats-server -js` process (maybe a cluster node); stopped when dropped.
pub struct NatsServer {
    child: Option<Child>,
    args: Vec<String>,
    /// Client port.
    pub port: u16,
    /// The node's name.
    pub name: String,
    _dir: Option<tempfile::TempDir>,
}

impl NatsServer {
    /// A single JetStream server with its store in a new temporary directory.
    pub fn start() -> NatsServer {
        let dir = tempfile::tempdir().expect("temporary directory");
        let port = free_port();
        let args = base_args("n1", port, dir.path());
        let mut s = NatsServer {
            child: None,
            args,
            port,
            name: "n1".into(),
            _dir: Some(dir),
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "{} is running", self.name);
        let mut child = Command::new(nats_server_bin())
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn nats-server (apt-get install nats-server)");
        let stderr = child.stderr.take().expect("stderr piped");
        let mut lines = BufReader::new(stderr).lines();
        let mut seen = Vec::new();
        loop {
            match lines.next() {
                Some(Ok(line)) => {
                    let ready = line.contains("Server is ready");
                    seen.push(line);
                    if ready {
                        break;
                    }
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "nats-server {} exited before it was ready:\n{}",
                        self.name,
                        seen.join("\n")
                    );
                }
            }
        }
        // Keep draining so the server never blocks on a full pipe.
        let verbose = std::env::var_os("WEIR_TEST_NATS_LOG").is_some();
        let name = self.name.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if verbose {
                    eprintln!("[{name}] {line}");
                }
            }
        });
        self.child = Some(child);
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// A backend config for this server under `prefix`.
    pub fn config(&self, prefix: &str) -> NatsConfig {
        NatsConfig {
            servers: vec![self.url()],
            prefix: prefix.into(),
            ..NatsConfig::default()
        }
    }

    /// SIGKILL the process (its store stays for [`NatsServer::restart`]).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the process again on the same port and store.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Whether the process runs.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn base_args(name: &str, port: u16, dir: &Path) -> Vec<String> {
    vec![
        "-js".into(),
        "-a".into(),
        "127.0.0.1".into(),
        "-p".into(),
        port.to_string(),
        "-sd".into(),
        dir.display().to_string(),
        "-n".into(),
        name.into(),
    ]
}

/// A JetStream cluster of `n` nodes on loopback.
pub struct NatsCluster {
    pub nodes: Vec<NatsServer>,
    _dir: tempfile::TempDir,
}

impl NatsCluster {
    /// Starts `n` nodes routed to each other (cluster name `weir`).
    pub fn start(n: usize) -> NatsCluster {
        let dir = tempfile::tempdir().expect("temporary directory");
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let routes = ports
            .iter()
            .map(|(_, c)| format!("nats://127.0.0.1:{c}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut nodes: Vec<NatsServer> = ports
            .iter()
            .enumerate()
            .map(|(i, &(port, cport))| {
                let name = format!("n{}", i + 1);
                let sd = dir.path().join(&name);
                std::fs::create_dir_all(&sd).expect("node dir");
                let mut args = base_args(&name, port, &sd);
                args.extend([
                    "--cluster_name".into(),
                    "weir".into(),
                    "--cluster".into(),
                    format!("nats://127.0.0.1:{cport}"),
                    "--routes".into(),
                    routes.clone(),
                ]);
                NatsServer {
                    child: None,
                    args,
                    port,
                    name,
                    _dir: None,
                }
            })
            .collect();
        // Start them from threads: a node may wait for its peers before it is ready.
        std::thread::scope(|s| {
            for node in nodes.iter_mut() {
                s.spawn(move || node.spawn());
            }
        });
        NatsCluster { nodes, _dir: dir }
    }

    /// Every node's URL, comma-joined for `--store`.
    pub fn store_url(&self) -> String {
        let hosts: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        format!("nats://{}", hosts.join(","))
    }

    /// A backend config for the cluster under `prefix` with `replicas`.
    pub fn config(&self, prefix: &str, replicas: usize) -> NatsConfig {
        NatsConfig {
            servers: self.nodes.iter().map(NatsServer::url).collect(),
            prefix: prefix.into(),
            replicas,
            ..NatsConfig::default()
        }
    }
}

/// A settable ingest clock, Unix ns.
#[derive(Clone)]
pub struct TestClock(pub Arc<AtomicI64>);

impl TestClock {
    /// A clock at `ns`.
    pub fn at(ns: i64) -> TestClock {
        TestClock(Arc::new(AtomicI64::new(ns)))
    }

    /// The clock as the store takes it.
    pub fn clock(&self) -> weir_store::Clock {
        let c = self.0.clone();
        Arc::new(move || c.load(Ordering::SeqCst))
    }
}

/// The conformance suite's backend: a fresh server per backend, a settable clock.
#[cfg(feature = "conformance")]
pub mod conformance {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;

    use weir_store::Store;
    use weir_store::conformance::{Backend, BoxFuture};

    use super::{NatsServer, TestClock};
    use crate::NatsStore;

    /// [`NatsStore`] on its own `nats-server`, one-hour partitions.
    pub struct NatsBackend {
        server: NatsServer,
        clock: TestClock,
        duplicate_window_secs: u64,
    }

    impl NatsBackend {
        /// A new server, the default dedupe window.
        pub fn new() -> NatsBackend {
            Self::with_duplicate_window(120)
        }

        /// A new server and a dedupe window of `secs`.
        pub fn with_duplicate_window(secs: u64) -> NatsBackend {
            NatsBackend {
                server: NatsServer::start(),
                clock: TestClock::at(1_700_000_000_000_000_000),
                duplicate_window_secs: secs,
            }
        }

        /// The server.
        pub fn server(&self) -> &NatsServer {
            &self.server
        }
    }

    impl Default for NatsBackend {
        fn default() -> Self {
            Self::new()
        }
    }

    impl Backend for NatsBackend {
        fn open(&self) -> BoxFuture<'_, Arc<dyn Store>> {
            Box::pin(async move {
                let mut config = self.server.config("conf");
                config.duplicate_window_secs = self.duplicate_window_secs;
                let store = NatsStore::connect_with_clock(config, self.clock.clock())
                    .await
                    .expect("connect the JetStream store");
                Arc::new(store) as Arc<dyn Store>
            })
        }

        fn set_time(&self, ns: i64) {
            self.clock.0.store(ns, Ordering::SeqCst);
        }

        fn partition_ns(&self) -> i64 {
            3600 * 1_000_000_000
        }
    }
}

/// How many records the weir stream `path` has in the entries stream of deployment
/// `prefix` on the server at `url` (each append that stored something is one record).
pub async fn stream_records(url: &str, prefix: &str, path: &str) -> u64 {
    use futures::TryStreamExt;
    let client = async_nats::connect(url).await.expect("connect to nats");
    let js = async_nats::jetstream::new(client);
    let stream = js
        .get_stream(format!("{prefix}_entries"))
        .await
        .expect("get the stream");
    let subject = crate::names::entry_subject(prefix, &crate::names::token(path));
    let counts: Vec<(String, usize)> = stream
        .info_with_subjects(&subject)
        .await
        .expect("stream info")
        .try_collect()
        .await
        .expect("subject counts");
    counts.iter().map(|(_, n)| *n as u64).sum()
}
