//! The errors of the client library.

/// Why building a client, sending or closing failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The address is not a valid URI or `host:port`.
    #[error("invalid address {addr:?}: {reason}")]
    InvalidAddress { addr: String, reason: String },
    /// The TLS material could not be loaded.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// The TLS configuration was refused by the transport.
    #[error("TLS configuration refused: {0}")]
    TlsConfig(String),
    /// A client must be built inside a Tokio runtime (it spawns its sender task).
    #[error("no Tokio runtime: build the client inside one")]
    NoRuntime,
    /// The client's cancellation token was cancelled.
    #[error("the client was cancelled")]
    Cancelled,
    /// A unary `Send` (`emit_event`) failed.
    #[error("Send failed: {0}")]
    Send(#[from] tonic::Status),
    /// Envelopes were dropped while closing: they could not be confirmed delivered.
    #[error("{count} envelopes were dropped while closing (last error: {last_error})")]
    DroppedOnClose { count: u64, last_error: String },
}

/// Turns an address (`host:port`, or a URI with a scheme) into a tonic endpoint:
/// `http://` without TLS, `https://` with it, no delay on the socket, a connect
/// timeout, and the TLS config when given.
pub(crate) fn endpoint(
    addr: &str,
    tls: Option<&tonic::transport::ClientTlsConfig>,
) -> Result<tonic::transport::Endpoint, ClientError> {
    let uri = if addr.contains("://") {
        addr.to_string()
    } else if tls.is_some() {
        format!("https://{addr}")
    } else {
        format!("http://{addr}")
    };
    let invalid = |reason: String| ClientError::InvalidAddress {
        addr: addr.to_string(),
        reason,
    };
    let mut ep = tonic::transport::Endpoint::from_shared(uri)
        .map_err(|e| invalid(e.to_string()))?
        .tcp_nodelay(true)
        .connect_timeout(std::time::Duration::from_secs(5))
        .initial_stream_window_size(Some(4 << 20))
        .initial_connection_window_size(Some(8 << 20));
    if let Some(tls) = tls {
        ep = ep
            .tls_config(tls.clone())
            .map_err(|e| ClientError::TlsConfig(e.to_string()))?;
    }
    Ok(ep)
}

/// Fails with [`ClientError::NoRuntime`] outside a Tokio runtime.
pub(crate) fn require_runtime() -> Result<(), ClientError> {
    tokio::runtime::Handle::try_current()
        .map(|_| ())
        .map_err(|_| ClientError::NoRuntime)
}
