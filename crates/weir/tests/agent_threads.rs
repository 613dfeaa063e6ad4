//! `weir agent --threads N`: the number of threads that run the pipelines (one by
//! default), and a clear refusal of zero.

mod agent_support;
mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use agent_support::{AgentProc, lit};
use common::{metric_value, weir_bin};

/// A file source with nothing to read and a blackhole flusher.
fn config(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("agent.toml");
    let text = format!(
        "data_dir = {data}\n\
         [sources.app]\ntype = \"file\"\ninclude = [{glob}]\n\
         [flushers.out]\ntype = \"blackhole\"\n",
        data = lit(&dir.join("data")),
        glob = lit(&dir.join("logs").join("*.log")),
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// The runtime's worker threads, as the agent reports them (`weir_agent_runtime_workers`,
/// read from the runtime itself: counting threads by name races with their start and
/// counts the blocking pool's threads too).
async fn workers(agent: &AgentProc) -> f64 {
    metric_value(
        &agent.metrics_text().await,
        "weir_agent_runtime_workers",
        "",
    )
}

#[tokio::test]
async fn the_pipelines_run_on_one_thread_unless_told_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let one = AgentProc::start_with_args(&weir_bin(), &config, &[], Stdio::inherit());
    assert_eq!(workers(&one).await, 1.0);
    assert!(one.terminate(Duration::from_secs(20)), "stops cleanly");

    let three =
        AgentProc::start_with_args(&weir_bin(), &config, &["--threads", "3"], Stdio::inherit());
    assert_eq!(workers(&three).await, 3.0);
    assert!(three.terminate(Duration::from_secs(20)), "stops cleanly");
}

#[test]
fn zero_threads_is_refused_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(weir_bin())
        .arg("agent")
        .arg("--config")
        .arg(config(dir.path()))
        .args(["--threads", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "a usage error");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--threads"), "{stderr}");
}
