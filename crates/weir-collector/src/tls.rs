//! TLS on the collector's listeners: the `[tls]` table of the configuration (or
//! `weir serve --tls-cert FILE --tls-key FILE [--tls-client-ca FILE]`).
//!
//! With a certificate and key, both the gRPC and the HTTP listener speak TLS only
//! (TLS 1.2 and 1.3, rustls with the *ring* provider). With a client CA as well, both
//! require **mutual TLS**: a client must present a certificate that chains to that CA,
//! otherwise the handshake fails and nothing of the request is processed.
//!
//! Every file is read and checked by [`ServerTls::load`] before a listener is bound,
//! so a bad setup fails at start-up with an error naming the file: each must hold PEM,
//! the certificate file at least one certificate (the leaf first, then any
//! intermediates), the key file a private key matching it, the client CA file at least
//! one certificate.

mod listener;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_rustls::rustls;
use weir_core::pem::{self, PemError};

pub use listener::TlsListener;
pub(crate) use listener::serve_http;

/// A TLS handshake not finished after this long is abandoned (both listeners).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The `[tls]` table: where the server's certificate and key are, and optionally the CA
/// that client certificates must chain to. Relative paths are relative to the working
/// directory of `weir serve`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file: the server's certificate, then any intermediates.
    pub cert: PathBuf,
    /// PEM file: the server's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM file of CA certificates; when set, clients must present a certificate
    /// signed by one of them (mutual TLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ca: Option<PathBuf>,
}

/// Why the TLS material could not be loaded. Every variant about a file names it.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read, or holds no usable PEM certificate or key.
    #[error(transparent)]
    Pem(#[from] PemError),
    /// A client CA certificate rustls cannot use as a trust anchor.
    #[error("{}: not a usable CA certificate: {reason}", path.display())]
    BadCa { path: PathBuf, reason: String },
    /// rustls refused the certificate and key (e.g. the key does not match).
    #[error("TLS setup refused for {} and {}: {reason}", cert.display(), key.display())]
    Refused {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
}

/// Loaded and checked TLS material, ready for both listeners.
#[derive(Clone)]
pub struct ServerTls {
    grpc: tonic::transport::ServerTlsConfig,
    http: Arc<rustls::ServerConfig>,
    mutual: bool,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("mutual", &self.mutual)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Reads and checks the files of `config` (see the module docs).
    pub fn load(config: &TlsConfig) -> Result<ServerTls, TlsError> {
        let cert_pem = pem::read(&config.cert)?;
        let certs = pem::certificates(&config.cert, &cert_pem)?;
        let key_pem = pem::read(&config.key)?;
        let key = pem::private_key(&config.key, &key_pem)?;
        let refused = |reason: String| TlsError::Refused {
            cert: config.cert.clone(),
            key: config.key.clone(),
            reason,
        };

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| refused(e.to_string()))?;
        let mut grpc = tonic::transport::ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(&cert_pem, &key_pem))
            .timeout(HANDSHAKE_TIMEOUT);
        let builder = match &config.client_ca {
            None => builder.with_no_client_auth(),
            Some(ca_path) => {
                let ca_pem = pem::read(ca_path)?;
                let bad_ca = |reason: String| TlsError::BadCa {
                    path: ca_path.clone(),
                    reason,
                };
                let mut roots = rustls::RootCertStore::empty();
                for ca in pem::certificates(ca_path, &ca_pem)? {
                    roots.add(ca).map_err(|e| bad_ca(e.to_string()))?;
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .map_err(|e| bad_ca(e.to_string()))?;
                grpc = grpc.client_ca_root(tonic::transport::Certificate::from_pem(&ca_pem));
                builder.with_client_cert_verifier(verifier)
            }
        };
        // Let tonic build its acceptor now, so serving cannot fail on it later.
        tonic::transport::Server::builder()
            .tls_config(grpc.clone())
            .map_err(|e| refused(e.to_string()))?;
        let mut http = builder
            .with_single_cert(certs, key)
            .map_err(|e| refused(e.to_string()))?;
        http.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(ServerTls {
            grpc,
            http: Arc::new(http),
            mutual: config.client_ca.is_some(),
        })
    }

    /// Whether clients must present a certificate.
    pub fn mutual(&self) -> bool {
        self.mutual
    }

    /// The configuration of the gRPC (tonic) listener.
    pub fn grpc_config(&self) -> tonic::transport::ServerTlsConfig {
        self.grpc.clone()
    }

    /// The configuration of the HTTP listener (ALPN `h2` and `http/1.1`).
    pub fn http_config(&self) -> Arc<rustls::ServerConfig> {
        self.http.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = TlsConfig {
            cert: dir.path().join("missing.pem"),
            key: dir.path().join("key.pem"),
            client_ca: None,
        };
        let e = ServerTls::load(&missing).unwrap_err().to_string();
        assert!(e.contains("missing.pem"), "{e}");

        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not pem").unwrap();
        let e = ServerTls::load(&TlsConfig {
            cert: junk,
            ..missing
        })
        .unwrap_err();
        assert!(
            matches!(e, TlsError::Pem(PemError::NoCertificate { .. })),
            "{e}"
        );
        assert!(e.to_string().contains("junk.pem"), "{e}");
    }
}
