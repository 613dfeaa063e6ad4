//! Test harness for `weir agent` processes: started from a config file with metrics on
//! port 0, waited for until they print "agent started", killed when dropped.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running `weir agent`.
pub struct AgentProc {
    pub child: Child,
    pub metrics: SocketAddr,
}

impl AgentProc {
    /// Starts `weir agent --config CONFIG --metrics-addr 127.0.0.1:0` and waits until it
    /// says it started.
    pub fn start(weir: &Path, config: &Path) -> AgentProc {
        Self::start_with_stderr(weir, config, Stdio::inherit())
    }

    /// [`AgentProc::start`] with its stderr (its log) going to `stderr`.
    pub fn start_with_stderr(weir: &Path, config: &Path, stderr: Stdio) -> AgentProc {
        Self::start_with_args(weir, config, &[], stderr)
    }

    /// [`AgentProc::start_with_stderr`] with more flags for `weir agent`.
    pub fn start_with_args(weir: &Path, config: &Path, args: &[&str], stderr: Stdio) -> AgentProc {
        let mut child = Command::new(weir)
            .arg("agent")
            .arg("--config")
            .arg(config)
            .args(["--metrics-addr", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn weir agent");
        let stdout = child.stdout.take().expect("stdout piped");
        let mut lines = BufReader::new(stdout).lines();
        let mut metrics = None;
        loop {
            let line = lines
                .next()
                .expect("weir agent exited before it started")
                .expect("read stdout");
            if let Some(a) = line.strip_prefix("metrics listening on ") {
                metrics = Some(a.parse().expect("metrics addr"));
            } else if line == "agent started" {
                break;
            }
        }
        std::thread::spawn(move || for _ in lines {});
        AgentProc {
            child,
            metrics: metrics.expect("metrics address printed"),
        }
    }

    /// SIGKILL.
    pub fn kill9(mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("wait");
    }

    /// SIGTERM, then waits for the exit within `timeout`; returns whether it exited 0.
    pub fn terminate(mut self, timeout: Duration) -> bool {
        crate::common::terminate_child(&mut self.child, timeout)
    }

    /// The agent's Prometheus text.
    pub async fn metrics_text(&self) -> String {
        reqwest::get(format!("http://{}/metrics", self.metrics))
            .await
            .expect("agent metrics")
            .text()
            .await
            .expect("body")
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TOML string literal of a path.
pub fn lit(p: &Path) -> String {
    format!("{:?}", p.to_string_lossy())
}

/// An agent config reading `glob` (streams `test/+/<file name>`) into the collector at
/// `grpc`, plus `extra` TOML.
pub fn file_to_weir(data_dir: &Path, glob: &Path, grpc: SocketAddr, extra: &str) -> String {
    format!(
        "data_dir = {}\n{extra}\n[sources.app]\ntype = \"file\"\ninclude = [{}]\nstream = \"test/+/{{file_name}}\"\npoll_interval_ms = 20\n\
         [flushers.central]\ntype = \"weir\"\naddr = \"{grpc}\"\n",
        lit(data_dir),
        lit(glob)
    )
}
