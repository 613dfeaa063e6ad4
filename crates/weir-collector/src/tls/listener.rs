//! The HTTP listener over TLS: [`TlsListener`] accepts TCP connections and completes
//! their handshakes concurrently (a slow or silent client never holds up the others),
//! handing axum only finished TLS streams; [`serve_http`] serves the router on a plain
//! or a TLS listener with the same graceful shutdown.

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::{Listener, ListenerExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

use super::HANDSHAKE_TIMEOUT;

/// A TCP listener whose connections are TLS streams (see the module docs). Handshakes
/// that fail (no client certificate under mutual TLS, an unknown CA, garbage) or take
/// longer than [`HANDSHAKE_TIMEOUT`] are dropped and logged at debug level.
pub struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    handshakes: JoinSet<Option<(TlsStream<TcpStream>, SocketAddr)>>,
}

impl std::fmt::Debug for TlsListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsListener")
            .field("local_addr", &self.tcp.local_addr().ok())
            .field("handshakes", &self.handshakes.len())
            .finish_non_exhaustive()
    }
}

impl TlsListener {
    /// TLS with `config` over connections of `tcp`.
    pub fn new(tcp: TcpListener, config: Arc<rustls::ServerConfig>) -> Self {
        TlsListener {
            tcp,
            acceptor: TlsAcceptor::from(config),
            handshakes: JoinSet::new(),
        }
    }

    fn start_handshake(&mut self, stream: TcpStream, peer: SocketAddr) {
        let _ = stream.set_nodelay(true);
        let acceptor = self.acceptor.clone();
        self.handshakes.spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => Some((tls, peer)),
                Ok(Err(e)) => {
                    tracing::debug!(%peer, "TLS handshake failed: {e}");
                    None
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    None
                }
            }
        });
    }
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    /// Cancel-safe: a connection accepted or a handshake finished is never lost when
    /// the future is dropped (axum drops it at shutdown).
    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            tokio::select! {
                accepted = self.tcp.accept() => match accepted {
                    Ok((stream, peer)) => self.start_handshake(stream, peer),
                    Err(e) => accept_error(e).await,
                },
                Some(done) = self.handshakes.join_next(), if !self.handshakes.is_empty() => {
                    if let Ok(Some(conn)) = done {
                        return conn;
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// As axum's own listener: errors of one connection are ignored; others (such as
/// running out of file descriptors) are logged and accepting pauses for a second.
async fn accept_error(e: std::io::Error) {
    use std::io::ErrorKind::*;
    if matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    ) {
        return;
    }
    tracing::error!("HTTP accept error: {e}");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// The HTTP server future.
pub(crate) type HttpServer = Pin<Box<dyn Future<Output = std::io::Result<()>> + Send>>;

/// Serves `app` on `tcp`, over TLS when `tls` is given, until `stop` is cancelled
/// (then axum's graceful shutdown: no new connections, those open finish). Handlers see
/// the peer address as `ConnectInfo<SocketAddr>` either way.
pub(crate) fn serve_http(
    tcp: TcpListener,
    app: axum::Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    stop: CancellationToken,
) -> HttpServer {
    let make = app.into_make_service_with_connect_info::<SocketAddr>();
    match tls {
        None => Box::pin(
            axum::serve(tcp, make)
                .with_graceful_shutdown(stop.cancelled_owned())
                .into_future(),
        ),
        // `tap_io` makes axum hand the listener's address type to `ConnectInfo`.
        Some(config) => Box::pin(
            axum::serve(TlsListener::new(tcp, config).tap_io(|_| {}), make)
                .with_graceful_shutdown(stop.cancelled_owned())
                .into_future(),
        ),
    }
}
