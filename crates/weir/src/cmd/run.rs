//! `weir run [--prefix P] -- CMD ARGS…`: runs a command and streams its stdout and
//! stderr to the collector as two streams, `<prefix>/+/stdout` and `<prefix>/+/stderr`,
//! terminated when the command exits (an empty stream with count 0); exits with the
//! command's exit code (128 + N when a signal N ended it).
//!
//! The prefix defaults to `run/<hostname>/<unix-ms>-<pid>`, unique to this run, so
//! running the same command twice never collides. The lines go through the agent's
//! spool (they cannot be read again) in `<data-dir>/<run id>`; the directory is removed
//! once everything is acknowledged, and kept (with a message) otherwise, so that
//! nothing the command printed is lost silently.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use weir_agent::config::{AgentConfig, FlusherSpec};
use weir_agent::flusher::registry::FlusherConfig;
use weir_agent::flusher::weir::WeirConfig;
use weir_agent::metrics::AgentMetrics;
use weir_agent::runtime::{Agent, StdinInput};
use weir_agent::sources::registry::SourceConfig;
use weir_agent::sources::stdin::StdinConfig;
use weir_agent::spool::Spool;

/// Flags of `weir run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Stream prefix [default: run/<hostname>/<unix-ms>-<pid>, unique to this run].
    #[arg(long)]
    pub prefix: Option<String>,
    /// The collector's gRPC address.
    #[arg(long, env = "WEIR_ADDR", default_value = "127.0.0.1:3458")]
    pub addr: String,
    /// Where the run spools its lines until the collector has them (a folder per run).
    #[arg(long, default_value = "weir-run-data")]
    pub data_dir: PathBuf,
    /// Time allowed after the command exits to deliver what is left, seconds.
    #[arg(long, default_value_t = 30)]
    pub deliver_timeout_secs: u64,
    /// The command and its arguments (after `--`).
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// Runs the command; exits the process with its exit code.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let pid = std::process::id();
    let ms = weir_core::now_ns() / 1_000_000;
    let run_id = format!("{ms}-{pid}");
    let prefix = match &args.prefix {
        Some(p) => p.clone(),
        None => format!(
            "run/{}/{run_id}",
            weir_core::path::to_segment(&weir_agent::sources::file::hostname())
        ),
    };
    let dir = args.data_dir.join(&run_id);
    let mut config = AgentConfig::empty(dir.clone());
    // A run's directory goes when it ends: its events (and the secret of an events stream)
    // would not outlive it, so they stay local rather than open a stream per run.
    config.events.ship = false;
    config.shutdown_timeout_ms = args.deliver_timeout_secs.max(1) * 1000;
    for (name, stderr) in [("stdout", false), ("stderr", true)] {
        let source = StdinConfig {
            stream: format!("{prefix}/+/{name}"),
            terminate: true,
            stderr,
            ..StdinConfig::default()
        };
        source
            .stream_path(name)
            .map_err(|e| anyhow::anyhow!("--prefix {prefix:?}: {e}"))?;
        config
            .sources
            .insert(name.to_string(), SourceConfig::Stdin(source));
    }
    config.flushers.insert(
        "collector".into(),
        FlusherSpec {
            inputs: vec!["stderr".into(), "stdout".into()],
            config: FlusherConfig::Weir(WeirConfig {
                addr: args.addr.clone(),
                ..WeirConfig::default()
            }),
        },
    );

    let (program, rest) = args
        .command
        .split_first()
        .context("no command given after --")?;
    let mut child = tokio::process::Command::new(program)
        .args(rest)
        .stdin(std::process::Stdio::inherit())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {program:?}"))?;
    let mut inputs: HashMap<String, StdinInput> = HashMap::new();
    if let Some(out) = child.stdout.take() {
        inputs.insert("stdout".into(), Box::new(out));
    }
    if let Some(err) = child.stderr.take() {
        inputs.insert("stderr".into(), Box::new(err));
    }
    eprintln!("weir run: streams {prefix}/+/stdout and {prefix}/+/stderr");
    let mut agent = Agent::start_with_inputs(config, Arc::new(AgentMetrics::new()), inputs)
        .await
        .context("cannot start the agent")?;
    let status = child.wait().await.context("waiting for the command")?;
    agent.wait_inputs().await;
    if let Err(e) = agent.shutdown().await {
        tracing::error!(error = %e, "weir run: shutdown");
    }
    match all_delivered(&dir).await {
        Ok(true) => {
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                eprintln!(
                    "weir run: everything was delivered, but {} could not be removed: {e}",
                    dir.display()
                );
            }
        }
        Ok(false) => eprintln!(
            "weir run: the collector did not acknowledge everything; the rest is kept in {} (run `weir agent` on it, or retry)",
            dir.display()
        ),
        Err(e) => eprintln!("weir run: cannot check {}: {e:#}", dir.display()),
    }
    let code = status.code().unwrap_or_else(|| {
        use std::os::unix::process::ExitStatusExt;
        128 + status.signal().unwrap_or(0)
    });
    std::process::exit(code);
}

/// Whether every record of the run's spool was acknowledged.
async fn all_delivered(dir: &std::path::Path) -> anyhow::Result<bool> {
    let spool = Spool::open(dir.join("spool"), Default::default()).await?;
    let stats = spool.stats();
    spool.close().await?;
    Ok(stats.cursors.iter().all(|c| c.lag_records == 0))
}
