//! `weir agent --config agent.toml [--metrics-addr HOST:PORT] [--threads N]`: runs the
//! agent until SIGTERM or SIGINT, then shuts it down gracefully (see
//! `weir_agent::runtime`).

use super::signal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use weir_agent::config::AgentConfig;
use weir_agent::metrics::{self, AgentMetrics};
use weir_agent::runtime::Agent;

/// Flags of `weir agent`.
#[derive(Args, Debug)]
pub struct AgentArgs {
    /// The agent's TOML config (sources, flushers; see README, Agent).
    #[arg(long, short = 'c', env = "WEIR_AGENT_CONFIG")]
    pub config: PathBuf,
    /// Serve Prometheus metrics on this address (`GET /metrics`); off when not given.
    #[arg(long)]
    pub metrics_addr: Option<SocketAddr>,
    /// Threads that run the pipelines (batchers, flushers, spool feeders); each file
    /// source reads on a thread of its own besides. One by default: a batch is then
    /// encoded and sent on the core that batched it, which measured about 15 % less
    /// CPU per GiB than two (README, The agent). Raise it when many busy sources
    /// and flushers need more than one core.
    #[arg(long, env = "WEIR_AGENT_THREADS", default_value = "1")]
    pub threads: std::num::NonZeroUsize,
}

/// Loads the config file; errors name the file and the key.
pub fn load_config(path: &std::path::Path) -> anyhow::Result<AgentConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    AgentConfig::parse(&text).with_context(|| format!("in config file {}", path.display()))
}

/// Runs the agent until a signal.
pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    let config = load_config(&args.config)?;
    let metrics = Arc::new(AgentMetrics::new());
    let workers = tokio::runtime::Handle::current().metrics().num_workers();
    metrics.runtime_workers.set(workers as i64);
    let (stop_metrics, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
    let metrics_task = match args.metrics_addr {
        Some(addr) => {
            let (bound, task) = metrics::serve(addr, metrics.clone(), async {
                let _ = metrics_stopped.await;
            })
            .await
            .with_context(|| format!("cannot serve metrics on {addr}"))?;
            // The contract with scripts and tests that use port 0.
            println!("metrics listening on {bound}");
            Some(task)
        }
        None => None,
    };
    let data_dir = config.data_dir.clone();
    let stop = signal::listen();
    let agent = Agent::start(config, metrics)
        .await
        .context("cannot start the agent")?;
    println!("agent started");
    tracing::info!(data_dir = %data_dir.display(), "weir agent started");
    weir_agent::resident::release_start_up_code();
    stop.requested().await;
    tracing::info!("weir agent stopping");
    let result = agent.shutdown().await;
    let _ = stop_metrics.send(());
    if let Some(task) = metrics_task {
        let _ = task.await;
    }
    result.context("agent shutdown")?;
    tracing::info!("weir agent stopped");
    Ok(())
}

/// Flags of `weir replay-dead-letters`.
#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// The agent's TOML config (its data dir holds `dead-letters.ndjson`).
    #[arg(long, short = 'c', env = "WEIR_AGENT_CONFIG")]
    pub config: PathBuf,
    /// Only the dead letters of this flusher.
    #[arg(long)]
    pub flusher: Option<String>,
}

/// Sends the dead letters again through the flushers that refused them; run it while the
/// agent is stopped.
pub async fn replay(args: ReplayArgs) -> anyhow::Result<()> {
    let config = load_config(&args.config)?;
    let report = weir_agent::runtime::dead_letter::replay(&config, args.flusher.as_deref())
        .await
        .context("replaying dead letters")?;
    println!(
        "delivered {} stream runs; {} kept in the dead-letter file; {} unreadable lines kept",
        report.delivered, report.kept, report.unreadable
    );
    Ok(())
}
