//! `weir serve`: the collector on its embedded store.

use super::signal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use weir_collector::tls::TlsConfig;
use weir_collector::{CollectorConfig, Server};
use weir_store::{FjallStore, Store};
use weir_store_nats::{NatsConfig, NatsStore};

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
    /// Where streams are stored: `fjall` (embedded, in --data-dir; the default) or
    /// `nats://HOST:PORT[,HOST:PORT…]` (NATS JetStream: every collector on the same
    /// JetStream serves every stream). Overrides the `[nats]` table's servers.
    #[arg(long, value_name = "STORE", env = "WEIR_STORE")]
    pub store: Option<String>,
    /// JetStream replicas of the entries stream and the buckets, when they are created
    /// (1, or 3 on a 3-node cluster). Overrides `[nats] replicas`.
    #[arg(long, value_name = "N")]
    pub nats_replicas: Option<usize>,
    /// JetStream's deduplication window in seconds. Overrides
    /// `[nats] duplicate_window_secs`.
    #[arg(long, value_name = "SECS")]
    pub nats_duplicate_window: Option<u64>,
    /// Prefix of the JetStream stream, buckets and subjects. Overrides `[nats] prefix`.
    #[arg(long, value_name = "PREFIX")]
    pub nats_prefix: Option<String>,
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
    apply_store_flags(args, &mut config)?;
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

/// `--store` and the `--nats-*` flags: `fjall` drops a `[nats]` table, a `nats://` URL
/// selects JetStream; with JetStream, the live relay defaults to the same servers.
fn apply_store_flags(args: &ServeArgs, config: &mut CollectorConfig) -> anyhow::Result<()> {
    match args.store.as_deref() {
        None => {}
        Some("fjall") => config.nats = None,
        Some(url) => {
            let servers = NatsConfig::parse_servers(url).context("--store")?;
            config.nats.get_or_insert_with(NatsConfig::default).servers = servers;
        }
    }
    let Some(nats) = config.nats.as_mut() else {
        anyhow::ensure!(
            args.nats_replicas.is_none()
                && args.nats_duplicate_window.is_none()
                && args.nats_prefix.is_none(),
            "--nats-* flags need a NATS store: --store nats://HOST:PORT or a [nats] table"
        );
        return Ok(());
    };
    if let Some(r) = args.nats_replicas {
        nats.replicas = r;
    }
    if let Some(w) = args.nats_duplicate_window {
        nats.duplicate_window_secs = w;
    }
    if let Some(p) = &args.nats_prefix {
        nats.prefix = p.clone();
    }
    if config.egress.relay.is_none() {
        config.egress.relay = Some(nats.servers.join(","));
    }
    Ok(())
}

/// Opens the configured store: JetStream when `[nats]` is set, else fjall.
async fn open_store(config: &CollectorConfig) -> anyhow::Result<(Arc<dyn Store>, String)> {
    if let Some(nats) = &config.nats {
        let servers = nats.servers.join(",");
        let store = NatsStore::connect(nats.clone())
            .await
            .with_context(|| format!("cannot open the JetStream store at {servers}"))?;
        return Ok((
            Arc::new(store),
            format!("nats {servers} prefix {}", nats.prefix),
        ));
    }
    let data_dir = config.store.data_dir.clone();
    let fjall = config.store.clone();
    let store = tokio::task::spawn_blocking(move || FjallStore::open(fjall))
        .await
        .context("store task")?
        .with_context(|| format!("cannot open the store in {}", data_dir.display()))?;
    Ok((Arc::new(store), data_dir.display().to_string()))
}

/// Runs the collector until SIGTERM or SIGINT, then shuts down cleanly: stops accepting,
/// finishes work under way, closes the store.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = effective_config(&args)?;
    let (store, where_) = open_store(&config).await?;
    let server = Server::bind(config, store)
        .await
        .context("cannot start the collector")?;
    // Listening for SIGTERM before saying it started: a stop requested right after is
    // a clean stop.
    let stop = signal::listen();
    // These two lines are the contract with scripts and tests that start
    // `weir serve` on port 0: they name the bound addresses.
    println!("grpc listening on {}", server.grpc_addr());
    println!("http listening on {}", server.http_addr());
    if let Some(tls) = server.tls() {
        tracing::info!(mutual = tls.mutual(), "both listeners serve TLS only");
    }
    tracing::info!(store = %where_, "weir collector started");
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
        .run(stop.requested())
        .await
        .context("collector failed")?;
    tracing::info!("weir collector stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(config: Option<PathBuf>) -> ServeArgs {
        ServeArgs {
            config,
            data_dir: None,
            store: None,
            nats_replicas: None,
            nats_duplicate_window: None,
            nats_prefix: None,
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

    #[test]
    fn store_flags_select_jetstream_and_override_the_nats_table() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("weir.toml");
        std::fs::write(
            &file,
            "[nats]\nservers = [\"nats://n1:4222\"]\nreplicas = 3\nduplicate_window_secs = 30\n",
        )
        .unwrap();
        let c = effective_config(&args(Some(file.clone()))).unwrap();
        let nats = c.nats.unwrap();
        assert_eq!((nats.replicas, nats.duplicate_window_secs), (3, 30));
        assert_eq!(c.egress.relay.as_deref(), Some("nats://n1:4222"));

        let mut a = args(Some(file.clone()));
        a.store = Some("nats://a:1,b:2".into());
        a.nats_replicas = Some(1);
        a.nats_duplicate_window = Some(1);
        let nats = effective_config(&a).unwrap().nats.unwrap();
        assert_eq!(nats.servers, ["nats://a:1", "nats://b:2"]);
        assert_eq!((nats.replicas, nats.duplicate_window_secs), (1, 1));

        a.store = Some("fjall".into());
        a.nats_replicas = None;
        a.nats_duplicate_window = None;
        assert_eq!(effective_config(&a).unwrap().nats, None);
        a.nats_replicas = Some(3);
        assert!(
            effective_config(&a).is_err(),
            "--nats-replicas without NATS"
        );
        a.store = Some("redis://x".into());
        assert!(effective_config(&a).is_err());
    }
}
