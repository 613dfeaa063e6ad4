//! Starting a `weir agent` for a benchmark and reading its metrics.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;

/// A running agent.
pub struct AgentProcess {
    child: Child,
    metrics: SocketAddr,
}

impl AgentProcess {
    /// Writes `config` to `dir/agent.toml` and starts `weir agent` with metrics on an
    /// ephemeral loopback port; returns once it printed "agent started".
    pub fn start(bin: &Path, dir: &Path, config: &str) -> anyhow::Result<AgentProcess> {
        let path = dir.join("agent.toml");
        std::fs::write(&path, config)?;
        let mut child = Command::new(bin)
            .arg("agent")
            .arg("--config")
            .arg(&path)
            .args(["--metrics-addr", "127.0.0.1:0"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let mut metrics = None;
        for line in lines.by_ref() {
            let line = line?;
            if let Some(a) = line.strip_prefix("metrics listening on ") {
                metrics = Some(a.parse()?);
            }
            if line == "agent started" {
                break;
            }
        }
        std::thread::spawn(move || for _ in lines {});
        let metrics = metrics.context("weir agent did not print its metrics address")?;
        Ok(AgentProcess { child, metrics })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The value of the metric line starting with `name_and_labels` (e.g.
    /// `weir_agent_acked_entries_total{source="app"}`), 0 when absent.
    pub fn metric(&self, name_and_labels: &str) -> anyhow::Result<u64> {
        let text = http_get(self.metrics, "/metrics")?;
        Ok(text
            .lines()
            .find_map(|l| l.strip_prefix(name_and_labels))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(|v| v as u64)
            .unwrap_or(0))
    }

    /// Polls `name_and_labels` every `every` until it reaches `want`; fails after
    /// `stall` without progress.
    pub fn wait_for(
        &self,
        name_and_labels: &str,
        want: u64,
        every: Duration,
        stall: Duration,
    ) -> anyhow::Result<()> {
        let (mut last, mut since) = (0, std::time::Instant::now());
        loop {
            let now = self.metric(name_and_labels)?;
            if now >= want {
                return Ok(());
            }
            if now != last {
                (last, since) = (now, std::time::Instant::now());
            }
            anyhow::ensure!(
                since.elapsed() < stall,
                "agent stalled: {name_and_labels} = {now} of {want}"
            );
            std::thread::sleep(every);
        }
    }

    /// SIGTERM and wait.
    pub fn stop(mut self) -> anyhow::Result<()> {
        // SAFETY: kill with a valid pid and signal number.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        self.child.wait()?;
        Ok(())
    }
}

/// A plain HTTP/1.0 GET (the metrics endpoint is loopback and small).
fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    Ok(body)
}
