//! `weir serve`: the collector on its embedded store.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use weir_collector::{CollectorConfig, Server};
use weir_store::FjallStore;

use crate::config_file;

/// Flags of `weir serve`; each overrides the same setting of the config file.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// TOML config file (see README: every key is optional).
    #[arg(long, short = 'c', env = "WEIR_CONFIG")]
    pub config: Option<PathBuf>,
    /// Where the embedded store keeps its data [default: ./weir-data].
    #[arg(long, env = "WEIR_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// gRPC listen address [default: 127.0.0.1:3458].
    #[arg(long)]
    pub grpc_addr: Option<SocketAddr>,
    /// HTTP listen address [default: 127.0.0.1:8088].
    #[arg(long)]
    pub http_addr: Option<SocketAddr>,
}

/// Builds the effective configuration: defaults, then the file, then the flags.
pub fn effective_config(args: &ServeArgs) -> anyhow::Result<CollectorConfig> {
    let mut config: CollectorConfig = match &args.config {
        Some(path) => config_file::load(path)?,
        None => CollectorConfig::default(),
    };
    if let Some(dir) = &args.data_dir {
        config.store.data_dir = dir.clone();
    }
    if let Some(addr) = args.grpc_addr {
        config.grpc_addr = addr;
    }
    if let Some(addr) = args.http_addr {
        config.http_addr = addr;
    }
    Ok(config)
}

/// Runs the collector until SIGTERM or SIGINT, then shuts down cleanly: stops accepting,
/// finishes work under way, closes the store.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = effective_config(&args)?;
    let data_dir = config.store.data_dir.clone();
    let store = FjallStore::open(config.store.clone())
        .with_context(|| format!("cannot open the store in {}", data_dir.display()))?;
    let server = Server::bind(config, Arc::new(store))
        .await
        .context("cannot start the collector")?;
    // These two lines are the contract with scripts and tests that start
    // `weir serve` on port 0: they name the bound addresses.
    println!("grpc listening on {}", server.grpc_addr());
    println!("http listening on {}", server.http_addr());
    tracing::info!(data_dir = %data_dir.display(), "weir collector started");
    server
        .run(shutdown_signal())
        .await
        .context("collector failed")?;
    tracing::info!("weir collector stopped");
    Ok(())
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!("cannot listen for SIGTERM ({e}); only SIGINT stops the collector");
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    tracing::info!("shutdown requested");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(config: Option<PathBuf>) -> ServeArgs {
        ServeArgs {
            config,
            data_dir: None,
            grpc_addr: None,
            http_addr: None,
        }
    }

    #[test]
    fn flags_override_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("weir.toml");
        std::fs::write(
            &file,
            "grpc_addr = \"127.0.0.1:9000\"\n[store]\ndata_dir = \"/srv/weir\"\n",
        )
        .unwrap();
        let mut a = args(Some(file));
        let c = effective_config(&a).unwrap();
        assert_eq!(c.grpc_addr.port(), 9000);
        assert_eq!(c.store.data_dir, PathBuf::from("/srv/weir"));
        a.data_dir = Some(PathBuf::from("/tmp/x"));
        a.grpc_addr = Some("127.0.0.1:9001".parse().unwrap());
        let c = effective_config(&a).unwrap();
        assert_eq!(c.grpc_addr.port(), 9001);
        assert_eq!(c.store.data_dir, PathBuf::from("/tmp/x"));
    }

    #[test]
    fn config_errors_name_key_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("weir.toml");
        std::fs::write(
            &file,
            "max_message_workers = 4\n[limits]\nmax_tags = \"many\"\n",
        )
        .unwrap();
        let err = format!(
            "{:#}",
            effective_config(&args(Some(file.clone()))).unwrap_err()
        );
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("max_tags"), "{err}");
        std::fs::write(&file, "\ngrpc_adr = \"127.0.0.1:1\"\n").unwrap();
        let err = format!("{:#}", effective_config(&args(Some(file))).unwrap_err());
        assert!(err.contains("line 2") && err.contains("grpc_adr"), "{err}");
    }
}
