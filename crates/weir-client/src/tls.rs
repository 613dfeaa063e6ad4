//! TLS for clients, like go-loggregator's `NewIngressTLSConfig` and
//! `NewEgressTLSConfig` (PROTOCOLS.md §4.7).
//!
//! Loggregator talks mutual TLS: the client trusts one CA (read from a file) and proves
//! itself with a certificate and key (read from files), and it checks the server's
//! certificate against a fixed name rather than the host it dials: `metron` for the
//! ingress (the Agent, [`INGRESS_SERVER_NAME`]) and `reverselogproxy` for the egress
//! (the RLP, [`EGRESS_SERVER_NAME`]).
//!
//! ```no_run
//! # fn f() -> Result<(), weir_client::tls::TlsError> {
//! let tls = weir_client::tls::ingress_tls_config("ca.crt", "client.crt", "client.key")?;
//! let client = weir_client::IngressClient::builder().tls(tls);
//! # Ok(()) }
//! ```
//!
//! Everything is checked when the files are loaded, so a bad setup fails at start-up
//! with an error that names the file, not at the first handshake: each file must hold
//! PEM, the CA file at least one certificate, the key file a private key, and the
//! client certificate must be valid now (an expired one is refused, as upstream does).
//!
//! The protocol versions are TLS 1.2 and 1.3, as upstream. The cipher suites are
//! rustls's defaults (all AEAD with forward secrecy), a superset of upstream's two
//! ECDHE-RSA-AES-GCM suites that also works with ECDSA keys.

use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, ClientTlsConfig, Identity};
use weir_core::pem::{self, PemError};

/// The name the Loggregator Agent's certificate is checked against.
pub const INGRESS_SERVER_NAME: &str = "metron";
/// The name the Reverse Log Proxy's certificate is checked against.
pub const EGRESS_SERVER_NAME: &str = "reverselogproxy";

/// Why TLS material could not be loaded. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read, or holds no usable PEM certificate or key.
    #[error(transparent)]
    Pem(#[from] PemError),
    /// A certificate that is not valid X.509.
    #[error("{}: not a valid X.509 certificate: {reason}", path.display())]
    BadCertificate { path: PathBuf, reason: String },
    /// The certificate's validity ended.
    #[error("{}: the certificate of {subject} expired at {not_after}", path.display())]
    Expired {
        path: PathBuf,
        subject: String,
        not_after: String,
    },
    /// The certificate is not valid yet.
    #[error("{}: the certificate of {subject} is not valid before {not_before}", path.display())]
    NotYetValid {
        path: PathBuf,
        subject: String,
        not_before: String,
    },
    /// The HTTP client refused the material.
    #[error("the HTTP client refused the TLS material: {0}")]
    Http(String),
}

/// Client TLS material read from PEM files and checked: a CA to trust and, for mutual
/// TLS, a certificate and key to present. Turn it into a gRPC config with
/// [`grpc_config`](Self::grpc_config).
#[derive(Clone)]
pub struct ClientTls {
    ca_pem: Vec<u8>,
    identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("mutual", &self.identity.is_some())
            .finish_non_exhaustive()
    }
}

impl ClientTls {
    /// Mutual TLS: trust the CA in `ca`, present the certificate in `cert` with the key
    /// in `key`. Fails, naming the file, if one cannot be read or parsed, or if the
    /// certificate is expired or not yet valid.
    pub fn mutual(
        ca: impl AsRef<Path>,
        cert: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<Self, TlsError> {
        let ca_pem = read_certificates(ca.as_ref(), false)?;
        let cert_pem = read_certificates(cert.as_ref(), true)?;
        let key_pem = read_key(key.as_ref())?;
        Ok(ClientTls {
            ca_pem,
            identity: Some((cert_pem, key_pem)),
        })
    }

    /// Server-authenticated TLS only: trust the CA in `ca`, present no certificate.
    pub fn server_only(ca: impl AsRef<Path>) -> Result<Self, TlsError> {
        Ok(ClientTls {
            ca_pem: read_certificates(ca.as_ref(), false)?,
            identity: None,
        })
    }

    /// A gRPC (tonic) config checking the server's certificate against `server_name`.
    pub fn grpc_config(&self, server_name: &str) -> ClientTlsConfig {
        let mut config = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca_pem))
            .domain_name(server_name);
        if let Some((cert, key)) = &self.identity {
            config = config.identity(Identity::from_pem(cert, key));
        }
        config
    }

    /// Adds the CA (as the only trusted root) and the identity to an HTTP client. The
    /// server's certificate is checked against the host of the URL.
    pub fn apply_http(
        &self,
        builder: reqwest::ClientBuilder,
    ) -> Result<reqwest::ClientBuilder, TlsError> {
        let http = |e: reqwest::Error| TlsError::Http(e.to_string());
        let mut builder = builder.tls_built_in_root_certs(false).use_rustls_tls();
        for cert in reqwest::Certificate::from_pem_bundle(&self.ca_pem).map_err(http)? {
            builder = builder.add_root_certificate(cert);
        }
        if let Some((cert, key)) = &self.identity {
            let mut pem = key.clone();
            pem.push(b'\n');
            pem.extend_from_slice(cert);
            builder = builder.identity(reqwest::Identity::from_pem(&pem).map_err(http)?);
        }
        Ok(builder)
    }
}

/// Mutual TLS towards a Loggregator Agent (or weir's ingress): server name `metron`.
pub fn ingress_tls_config(
    ca: impl AsRef<Path>,
    cert: impl AsRef<Path>,
    key: impl AsRef<Path>,
) -> Result<ClientTlsConfig, TlsError> {
    Ok(ClientTls::mutual(ca, cert, key)?.grpc_config(INGRESS_SERVER_NAME))
}

/// Mutual TLS towards a Reverse Log Proxy (or weir's egress): server name
/// `reverselogproxy`.
pub fn egress_tls_config(
    ca: impl AsRef<Path>,
    cert: impl AsRef<Path>,
    key: impl AsRef<Path>,
) -> Result<ClientTlsConfig, TlsError> {
    Ok(ClientTls::mutual(ca, cert, key)?.grpc_config(EGRESS_SERVER_NAME))
}

/// Reads a PEM file of certificates, checking each parses; `check_validity` also
/// refuses an expired or not-yet-valid first certificate (the leaf of an identity).
fn read_certificates(path: &Path, check_validity: bool) -> Result<Vec<u8>, TlsError> {
    let pem = pem::read(path)?;
    for (i, der) in pem::certificates(path, &pem)?.iter().enumerate() {
        let (_, cert) =
            x509_parser::parse_x509_certificate(der).map_err(|e| TlsError::BadCertificate {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
        if check_validity && i == 0 {
            let validity = cert.validity();
            let now = x509_parser::time::ASN1Time::now();
            if validity.not_after < now {
                return Err(TlsError::Expired {
                    path: path.to_path_buf(),
                    subject: cert.subject().to_string(),
                    not_after: validity.not_after.to_string(),
                });
            }
            if validity.not_before > now {
                return Err(TlsError::NotYetValid {
                    path: path.to_path_buf(),
                    subject: cert.subject().to_string(),
                    not_before: validity.not_before.to_string(),
                });
            }
        }
    }
    Ok(pem)
}

/// Reads a PEM file holding a private key (PKCS#8, PKCS#1 or SEC1).
fn read_key(path: &Path) -> Result<Vec<u8>, TlsError> {
    let pem = pem::read(path)?;
    pem::private_key(path, &pem)?;
    Ok(pem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.crt");
        let e = ClientTls::server_only(&missing).unwrap_err();
        assert!(e.to_string().contains("missing.crt"), "{e}");

        let junk = dir.path().join("junk.crt");
        std::fs::write(&junk, "not pem").unwrap();
        let e = ClientTls::server_only(&junk).unwrap_err();
        assert!(
            matches!(e, TlsError::Pem(PemError::NoCertificate { .. })),
            "{e}"
        );
        assert!(e.to_string().contains("junk.crt"), "{e}");
    }
}
