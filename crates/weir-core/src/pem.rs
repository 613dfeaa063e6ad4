//! Reading PEM files of certificates and private keys, with errors that name the file.
//!
//! Shared by the collector's server TLS and the client library's TLS helpers, so that a
//! bad setup reads the same on both sides: every file is read and parsed when the
//! configuration is loaded, not at the first handshake.

use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why a PEM file could not be used. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum PemError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// No PEM certificate in the file, or a block that is not valid PEM.
    #[error("{}: no PEM certificate: {reason}", path.display())]
    NoCertificate { path: PathBuf, reason: String },
    /// No PEM private key in the file.
    #[error("{}: no PEM private key: {reason}", path.display())]
    NoKey { path: PathBuf, reason: String },
}

/// Reads a whole file.
pub fn read(path: &Path) -> Result<Vec<u8>, PemError> {
    std::fs::read(path).map_err(|source| PemError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// The certificates of a PEM document read from `path`: at least one, each a valid
/// PEM block (their X.509 content is not checked here).
pub fn certificates(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let no_cert = |reason: String| PemError::NoCertificate {
        path: path.to_path_buf(),
        reason,
    };
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| no_cert(e.to_string()))?;
    if certs.is_empty() {
        return Err(no_cert("the file holds no CERTIFICATE block".into()));
    }
    Ok(certs)
}

/// The private key (PKCS#8, PKCS#1 or SEC1) of a PEM document read from `path`.
pub fn private_key(path: &Path, pem: &[u8]) -> Result<PrivateKeyDer<'static>, PemError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| PemError::NoKey {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_file() {
        let missing = std::env::temp_dir().join("weir-pem-test-no-such-dir/missing.pem");
        let e = read(&missing).unwrap_err();
        assert!(matches!(e, PemError::Read { .. }), "{e}");
        assert!(e.to_string().contains("missing.pem"), "{e}");

        let junk = Path::new("junk.pem");
        let e = certificates(junk, b"not pem").unwrap_err();
        assert!(matches!(e, PemError::NoCertificate { .. }), "{e}");
        assert!(e.to_string().contains("junk.pem"), "{e}");
        let e = private_key(junk, b"not pem").unwrap_err();
        assert!(matches!(e, PemError::NoKey { .. }), "{e}");
    }
}
