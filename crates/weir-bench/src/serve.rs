//! Starting and stopping a `weir serve` process for a benchmark.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use anyhow::Context;

/// A running collector.
pub struct Collector {
    pub child: Child,
    pub grpc: SocketAddr,
    pub http: SocketAddr,
}

impl Collector {
    /// Starts `weir serve` on ephemeral loopback ports.
    pub fn start(bin: &Path, data_dir: &Path) -> anyhow::Result<Collector> {
        Self::start_with_config(bin, data_dir, None)
    }

    /// Starts `weir serve --config FILE` (when given) on ephemeral loopback ports.
    pub fn start_with_config(
        bin: &Path,
        data_dir: &Path,
        config: Option<&Path>,
    ) -> anyhow::Result<Collector> {
        let extra: Vec<String> = match config {
            Some(c) => vec!["--config".into(), c.display().to_string()],
            None => Vec::new(),
        };
        Self::start_with_args(bin, data_dir, &extra)
    }

    /// Starts `weir serve` with these extra arguments (e.g. `--store nats://…`) on
    /// ephemeral loopback ports.
    pub fn start_with_args(
        bin: &Path,
        data_dir: &Path,
        extra: &[String],
    ) -> anyhow::Result<Collector> {
        let mut command = Command::new(bin);
        command
            .args([
                "serve",
                "--grpc-addr",
                "127.0.0.1:0",
                "--http-addr",
                "127.0.0.1:0",
            ])
            .arg("--data-dir")
            .arg(data_dir);
        command.args(extra);
        let mut child = command
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let (mut grpc, mut http) = (None, None);
        for line in lines.by_ref() {
            let line = line?;
            if let Some(a) = line.strip_prefix("grpc listening on ") {
                grpc = Some(a.parse()?);
            }
            if let Some(a) = line.strip_prefix("http listening on ") {
                http = Some(a.parse()?);
                break;
            }
        }
        std::thread::spawn(move || for _ in lines {});
        let grpc = grpc.context("weir serve did not print its gRPC address")?;
        let http = http.context("weir serve did not print its HTTP address")?;
        Ok(Collector { child, grpc, http })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
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

impl Drop for Collector {
    /// Kills a collector that was not stopped (a benchmark that failed half-way).
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
