//! `weir serve`: the collector on its embedded store.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use weir_collector::tls::TlsConfig;
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
    /// Serve TLS on both listeners with this certificate (PEM, then any intermediates);
    /// needs --tls-key. Overrides `[tls] cert`.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The server certificate's private key (PEM). Overrides `[tls] key`.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Require client certificates signed by this CA (PEM): mutual TLS. Overrides
    /// `[tls] client_ca`.
    #[arg(long, value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,
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
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        let client_ca = config.tls.take().and_then(|t| t.client_ca);
        config.tls = Some(TlsConfig {
            cert: cert.clone(),
            key: key.clone(),
            client_ca,
        });
    }
    if let Some(ca) = &args.tls_client_ca {
        let tls = config.tls.as_mut().context(
            "--tls-client-ca needs a server certificate: --tls-cert and --tls-key (or a [tls] table)",
        )?;
        tls.client_ca = Some(ca.clone());
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
    if let Some(tls) = server.tls() {
        tracing::info!(mutual = tls.mutual(), "both listeners serve TLS only");
    }
    tracing::info!(data_dir = %data_dir.display(), "weir collector started");
    let file = args
        .config
        .as_ref()
        .map(|f| f.display().to_string())
        .unwrap_or_default();
    server.collector().events().add(
        weir_collector::events::kind::CONFIG_LOADED,
        if file.is_empty() {
            "configuration loaded: defaults and flags".to_string()
        } else {
            format!("configuration loaded from {file}")
        },
        weir_collector::events::fields([("file", file)]),
    );
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
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
        }
    }

    #[test]
    fn tls_flags_override_the_tls_table() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("weir.toml");
        std::fs::write(
            &file,
            "[tls]\ncert = \"s.pem\"\nkey = \"s-key.pem\"\nclient_ca = \"ca.pem\"\n",
        )
        .unwrap();
        let mut a = args(Some(file.clone()));
        let tls = effective_config(&a).unwrap().tls.unwrap();
        assert_eq!(tls.cert, PathBuf::from("s.pem"));
        assert_eq!(tls.client_ca, Some(PathBuf::from("ca.pem")));
        a.tls_cert = Some(PathBuf::from("other.pem"));
        a.tls_key = Some(PathBuf::from("other-key.pem"));
        a.tls_client_ca = Some(PathBuf::from("other-ca.pem"));
        let tls = effective_config(&a).unwrap().tls.unwrap();
        assert_eq!(tls.cert, PathBuf::from("other.pem"));
        assert_eq!(tls.key, PathBuf::from("other-key.pem"));
        assert_eq!(tls.client_ca, Some(PathBuf::from("other-ca.pem")));

        // A client CA alone is not enough.
        let mut a = args(None);
        a.tls_client_ca = Some(PathBuf::from("ca.pem"));
        let err = format!("{:#}", effective_config(&a).unwrap_err());
        assert!(err.contains("--tls-cert"), "{err}");

        // A [tls] table with an unknown key, or without a key file, names it and the line.
        std::fs::write(
            &file,
            "\n[tls]\ncert = \"s.pem\"\nkey = \"k.pem\"\nca = \"x\"\n",
        )
        .unwrap();
        let err = format!(
            "{:#}",
            effective_config(&args(Some(file.clone()))).unwrap_err()
        );
        assert!(err.contains("line 5") && err.contains("ca"), "{err}");
        std::fs::write(&file, "[tls]\ncert = \"s.pem\"\n").unwrap();
        let err = format!("{:#}", effective_config(&args(Some(file))).unwrap_err());
        assert!(err.contains("key"), "{err}");
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
