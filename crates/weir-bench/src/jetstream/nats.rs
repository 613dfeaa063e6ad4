//! Starting `nats-server` for a benchmark: one node, or a three-node JetStream cluster,
//! on 127.0.0.1 with temporary store dirs; killed on drop.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tempfile::TempDir;

/// How long the servers may take to be ready (and, in a cluster, to elect a leader).
const READY: Duration = Duration::from_secs(60);

/// What a node's log told.
enum Seen {
    Port(usize, u16),
    Ready,
    Leader,
}

/// Running `nats-server` processes. See the module docs.
pub struct Nats {
    children: Vec<Child>,
    ports: Vec<u16>,
    _dir: TempDir,
}

/// A port free now on 127.0.0.1 (bound and released: a cluster's routes need ports
/// known before its nodes start).
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Nats {
    /// Starts `nodes` servers with JetStream (a cluster named `weir-bench` when more
    /// than one) and waits until each is ready and, in a cluster, a metadata leader is
    /// elected.
    pub fn start(bin: &Path, nodes: usize) -> anyhow::Result<Nats> {
        anyhow::ensure!(nodes >= 1, "at least one NATS node");
        let dir = tempfile::tempdir()?;
        let routes: Vec<u16> = if nodes > 1 {
            (0..nodes).map(|_| free_port()).collect::<Result<_, _>>()?
        } else {
            Vec::new()
        };
        let (tx, rx) = mpsc::channel();
        let mut nats = Nats {
            children: Vec::new(),
            ports: vec![0; nodes],
            _dir: dir,
        };
        for i in 0..nodes {
            let store = nats._dir.path().join(format!("n{i}"));
            let mut cmd = Command::new(bin);
            cmd.args(["-a", "127.0.0.1", "-p", "-1", "-js", "-n"])
                .arg(format!("n{i}"))
                .arg("-sd")
                .arg(&store);
            if nodes > 1 {
                let others: Vec<String> = routes
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, p)| format!("nats://127.0.0.1:{p}"))
                    .collect();
                cmd.args(["--cluster_name", "weir-bench", "--cluster"])
                    .arg(format!("nats://127.0.0.1:{}", routes[i]))
                    .arg("--routes")
                    .arg(others.join(","));
            }
            let mut child = cmd
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .with_context(|| format!("cannot start {}", bin.display()))?;
            let stderr = child.stderr.take().context("no stderr")?;
            nats.children.push(child);
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    let port = line
                        .split("Listening for client connections on ")
                        .nth(1)
                        .and_then(|rest| rest.trim().rsplit(':').next())
                        .and_then(|p| p.parse().ok());
                    if let Some(p) = port {
                        let _ = tx.send(Seen::Port(i, p));
                    }
                    if line.contains("Server is ready") {
                        let _ = tx.send(Seen::Ready);
                    }
                    if line.contains("metadata leader") {
                        let _ = tx.send(Seen::Leader);
                    }
                }
            });
        }
        drop(tx);
        let deadline = Instant::now() + READY;
        let mut ready = 0;
        let mut leader = nodes == 1;
        while ready < nodes || !leader {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(Seen::Port(i, p)) => nats.ports[i] = p,
                Ok(Seen::Ready) => ready += 1,
                Ok(Seen::Leader) => leader = true,
                Err(_) => anyhow::bail!(
                    "NATS not ready in {READY:?}: {ready} of {nodes} nodes ready, leader: {leader}"
                ),
            }
        }
        anyhow::ensure!(
            nats.ports.iter().all(|p| *p != 0),
            "a NATS node did not name its client port"
        );
        Ok(nats)
    }

    /// Every node's client URL, separated by commas.
    pub fn urls(&self) -> String {
        self.ports
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The servers' process ids.
    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().map(Child::id).collect()
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
        }
        for c in &mut self.children {
            let _ = c.wait();
        }
    }
}
