//! How client commands (`ls`, `cat`, `emit`, `tail`) reach the collector: its gRPC
//! address and, for a collector serving TLS, the CA to trust and the certificate and key
//! to present.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use weir_client::tls::ClientTls;

/// How long a client command waits for the TCP (and TLS) connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The collector's address and TLS material.
#[derive(Args, Debug, Clone)]
pub struct ConnArgs {
    /// Collector gRPC address, HOST:PORT.
    #[arg(long, env = "WEIR_ADDR", default_value = "127.0.0.1:3458")]
    pub addr: String,
    /// CA certificate (PEM) that the collector's certificate must chain to; turns TLS on.
    #[arg(long, env = "WEIR_TLS_CA", value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate (PEM), for a collector that requires mutual TLS.
    #[arg(
        long,
        env = "WEIR_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key",
        requires = "tls_ca"
    )]
    pub tls_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, env = "WEIR_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Name the collector's certificate is checked against [default: the host of
    /// --addr].
    #[arg(long, env = "WEIR_TLS_SERVER_NAME", value_name = "NAME")]
    pub tls_server_name: Option<String>,
}

impl ConnArgs {
    /// The host part of `--addr` (without brackets for IPv6), for checking the server's
    /// certificate.
    fn host(&self) -> &str {
        let rest = match self.addr.split_once("://") {
            Some((_, rest)) => rest,
            None => &self.addr,
        };
        let authority = rest.split('/').next().unwrap_or(rest);
        if let Some(v6) = authority.strip_prefix('[') {
            return v6.split(']').next().unwrap_or(v6);
        }
        match authority.rsplit_once(':') {
            Some((host, _port)) => host,
            None => authority,
        }
    }

    /// The TLS configuration for gRPC, when `--tls-ca` is set. Files are read and checked
    /// now, so a bad one is named before anything is sent.
    pub fn client_tls(&self) -> anyhow::Result<Option<ClientTlsConfig>> {
        let Some(ca) = &self.tls_ca else {
            return Ok(None);
        };
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => ClientTls::mutual(ca, cert, key)?,
            _ => ClientTls::server_only(ca)?,
        };
        let name = self
            .tls_server_name
            .as_deref()
            .unwrap_or_else(|| self.host());
        Ok(Some(tls.grpc_config(name)))
    }

    /// A connected gRPC channel to the collector (`https` with TLS).
    pub async fn channel(&self) -> anyhow::Result<Channel> {
        let tls = self.client_tls()?;
        let uri = if self.addr.contains("://") {
            self.addr.clone()
        } else if tls.is_some() {
            format!("https://{}", self.addr)
        } else {
            format!("http://{}", self.addr)
        };
        let mut endpoint = Endpoint::from_shared(uri)
            .with_context(|| format!("bad collector address {:?} (want HOST:PORT)", self.addr))?
            .connect_timeout(CONNECT_TIMEOUT);
        if let Some(tls) = tls {
            endpoint = endpoint
                .tls_config(tls)
                .context("the TLS configuration was refused")?;
        }
        endpoint.connect().await.with_context(|| {
            format!(
                "cannot reach the collector at {} (is `weir serve` running? set --addr or \
                 WEIR_ADDR; for a TLS collector --tls-ca, and --tls-cert/--tls-key for mutual TLS)",
                self.addr
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(addr: &str) -> ConnArgs {
        ConnArgs {
            addr: addr.into(),
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            tls_server_name: None,
        }
    }

    #[test]
    fn host_of_the_address() {
        assert_eq!(conn("127.0.0.1:3458").host(), "127.0.0.1");
        assert_eq!(conn("localhost").host(), "localhost");
        assert_eq!(conn("[::1]:3458").host(), "::1");
        assert_eq!(conn("https://weir.example:443/").host(), "weir.example");
    }

    #[test]
    fn no_tls_without_a_ca() {
        assert!(conn("127.0.0.1:1").client_tls().unwrap().is_none());
        let mut c = conn("127.0.0.1:1");
        c.tls_ca = Some(PathBuf::from("does-not-exist.pem"));
        let e = format!("{:#}", c.client_tls().unwrap_err());
        assert!(e.contains("does-not-exist.pem"), "{e}");
    }
}
