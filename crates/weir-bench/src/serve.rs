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
}

impl Collector {
    /// Starts `weir serve` on ephemeral loopback ports.
    pub fn start(bin: &Path, data_dir: &Path) -> anyhow::Result<Collector> {
        let mut child = Command::new(bin)
            .args([
                "serve",
                "--grpc-addr",
                "127.0.0.1:0",
                "--http-addr",
                "127.0.0.1:0",
            ])
            .arg("--data-dir")
            .arg(data_dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let mut grpc = None;
        for line in lines.by_ref() {
            let line = line?;
            if let Some(a) = line.strip_prefix("grpc listening on ") {
                grpc = Some(a.parse()?);
            }
            if line.starts_with("http listening on ") {
                break;
            }
        }
        std::thread::spawn(move || for _ in lines {});
        let grpc = grpc.context("weir serve did not print its gRPC address")?;
        Ok(Collector { child, grpc })
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
