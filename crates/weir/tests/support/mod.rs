//! Helpers for tests of the client commands (`emit`, `tail`, TLS): `weir` processes
//! bounded in time, and long-running ones whose output lines arrive on a channel.

#![allow(dead_code)]

use std::process::{Output, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// The longest any single `weir` command of these tests may take.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// A `weir` command with no inherited client settings.
pub fn weir() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_weir"));
    for var in [
        "WEIR_ADDR",
        "WEIR_TLS_CA",
        "WEIR_TLS_CERT",
        "WEIR_TLS_KEY",
        "WEIR_TLS_SERVER_NAME",
        "WEIR_SOURCE_ID",
    ] {
        c.env_remove(var);
    }
    c.kill_on_drop(true);
    c
}

/// Runs `weir ARGS…` to completion (killed after [`COMMAND_TIMEOUT`]).
pub async fn run(args: &[&str]) -> Output {
    let child = weir().args(args).stdin(Stdio::null()).output();
    tokio::time::timeout(COMMAND_TIMEOUT, child)
        .await
        .unwrap_or_else(|_| panic!("weir {args:?} did not finish within {COMMAND_TIMEOUT:?}"))
        .expect("run weir")
}

/// Runs `weir ARGS…` and returns its stdout; panics with its stderr when it fails.
pub async fn run_ok(args: &[&str]) -> String {
    let out = run(args).await;
    assert!(
        out.status.success(),
        "weir {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 stdout")
}

/// Runs `weir ARGS…`, expecting it to fail; returns its stderr.
pub async fn run_err(args: &[&str]) -> String {
    let out = run(args).await;
    assert!(
        !out.status.success(),
        "weir {args:?} should have failed; stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A long-running `weir` process (killed when dropped) whose stdout lines arrive on
/// `lines`.
pub struct Running {
    pub child: Child,
    pub lines: mpsc::UnboundedReceiver<String>,
}

impl Running {
    /// Starts `weir ARGS…`.
    pub fn start(args: &[&str]) -> Running {
        let mut child = weir()
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn weir");
        let stdout = child.stdout.take().expect("stdout piped");
        let (tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running { child, lines }
    }

    /// The next line, or `None` when none came within `wait` (or stdout closed).
    pub async fn next_line(&mut self, wait: Duration) -> Option<String> {
        tokio::time::timeout(wait, self.lines.recv())
            .await
            .ok()
            .flatten()
    }

    /// The next line, within [`COMMAND_TIMEOUT`]; panics otherwise.
    pub async fn expect_line(&mut self) -> String {
        self.next_line(COMMAND_TIMEOUT)
            .await
            .expect("a line within the timeout")
    }

    /// Waits for the process to exit by itself; its exit status.
    pub async fn wait_exit(&mut self) -> std::process::ExitStatus {
        tokio::time::timeout(COMMAND_TIMEOUT, self.child.wait())
            .await
            .expect("the process exits within the timeout")
            .expect("wait")
    }
}
