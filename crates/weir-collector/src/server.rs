//! The collector as a server: gRPC and HTTP listeners over one [`Collector`].
//!
//! ```no_run
//! # async fn serve(config: weir_collector::CollectorConfig,
//! #                store: std::sync::Arc<dyn weir_store::Store>)
//! #                -> Result<(), weir_collector::ServerError> {
//! let server = weir_collector::Server::bind(config, store).await?;
//! println!("gRPC on {}, HTTP on {}", server.grpc_addr(), server.http_addr());
//! server.run(async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```
//!
//! [`Server::bind`] binds both listeners at once, so port 0 works and the caller learns
//! the real ports before serving. With `config.tls` set, both listeners speak TLS only
//! (and require client certificates when a client CA is given): see [`crate::tls`].
//! [`Server::run`] serves until its `shutdown` future
//! completes, then shuts down in this order:
//!
//! 1. stop accepting connections; client streams (`Sender`, `BatchSender`), egress
//!    streams (`Receiver`, `BatchedReceiver`, `/v2/read`) and follows end (gRPC ones
//!    with `Unavailable`), and new calls are answered `unavailable`;
//! 2. wait for the work under way to finish ([`Collector::close`]);
//! 3. wait up to [`SHUTDOWN_GRACE`] for the servers to finish their connections;
//! 4. stop retention and the event queue, which writes what it buffered
//!    ([`crate::lifecycle`]; both start before serving);
//! 5. close the store.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;
use weir_store::{Store, StoreError};

use crate::collector::Collector;
use crate::config::CollectorConfig;
use crate::grpc::malformed::MalformedRequestLayer;
use crate::metrics::Metrics;
use crate::tls::ServerTls;

/// How long [`Server::run`] waits for connections to finish after the work under way
/// has; then they are cut.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A listener could not be bound.
    #[error("cannot listen for {what} on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// The gRPC server failed.
    #[error("gRPC server failed: {0}")]
    Grpc(#[from] tonic::transport::Error),
    /// The HTTP server failed.
    #[error("HTTP server failed: {0}")]
    Http(std::io::Error),
    /// A server task panicked.
    #[error("{0} server task failed: {1}")]
    Task(&'static str, tokio::task::JoinError),
    /// Closing the store failed.
    #[error("closing the store failed: {0}")]
    Store(#[from] StoreError),
    /// The TLS material could not be loaded.
    #[error("TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
    /// The gRPC server refused the TLS configuration.
    #[error("gRPC TLS setup failed: {0}")]
    GrpcTls(tonic::transport::Error),
    /// The live relay (`egress.relay`) could not start.
    #[error("live relay: {0}")]
    Relay(#[from] crate::relay::RelayError),
}

/// A bound, not yet serving collector. See the module docs.
pub struct Server {
    grpc: TcpListener,
    http: TcpListener,
    grpc_addr: SocketAddr,
    http_addr: SocketAddr,
    collector: Collector,
    metrics: Metrics,
    tls: Option<ServerTls>,
    retention: crate::retention::RetentionConfig,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("grpc_addr", &self.grpc_addr)
            .field("http_addr", &self.http_addr)
            .finish_non_exhaustive()
    }
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { what, addr, source })
}

impl Server {
    /// Binds the gRPC (`config.grpc_addr`) and HTTP (`config.http_addr`) listeners and
    /// builds the collector over `store`. Does not serve yet: see [`Server::run`].
    pub async fn bind(
        config: CollectorConfig,
        store: Arc<dyn Store>,
    ) -> Result<Server, ServerError> {
        // TLS files are checked before anything is bound.
        let tls = config.tls.as_ref().map(ServerTls::load).transpose()?;
        let grpc = bind("gRPC", config.grpc_addr).await?;
        let http = bind("HTTP", config.http_addr).await?;
        let local = |l: &TcpListener, what, addr| {
            l.local_addr()
                .map_err(|source| ServerError::Bind { what, addr, source })
        };
        let grpc_addr = local(&grpc, "gRPC", config.grpc_addr)?;
        let http_addr = local(&http, "HTTP", config.http_addr)?;
        let metrics = Metrics::new();
        let collector = Collector::new(store, &config, metrics.clone());
        if let Some(urls) = &config.egress.relay {
            let relay = crate::relay::NatsRelay::connect(
                urls,
                &config.egress,
                collector.hub().clone(),
                metrics.clone(),
            )
            .await?;
            collector.attach_relay(crate::relay::LiveRelay::Nats(relay));
        }
        let retention = config.retention.clone();
        Ok(Server {
            grpc,
            http,
            grpc_addr,
            http_addr,
            collector,
            metrics,
            tls,
            retention,
        })
    }

    /// The TLS both listeners use, when configured.
    pub fn tls(&self) -> Option<&ServerTls> {
        self.tls.as_ref()
    }

    /// The address the gRPC listener is bound to (the real port when 0 was asked).
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// The address the HTTP listener is bound to.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The collector the servers feed (shared: usable while serving).
    pub fn collector(&self) -> &Collector {
        &self.collector
    }

    /// The collector's metrics (shared).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Serves gRPC and HTTP until `shutdown` completes (or a server fails), then shuts
    /// down as the module docs describe and closes the store.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
        let Server {
            grpc,
            http,
            collector,
            metrics,
            tls,
            retention,
            grpc_addr,
            http_addr,
        } = self;
        let stop = CancellationToken::new();
        let background = crate::lifecycle::start(&collector, retention, grpc_addr, http_addr).await;

        let services = crate::grpc::services(&collector);
        let mut grpc_builder = tonic::transport::Server::builder();
        if let Some(tls) = &tls {
            grpc_builder = grpc_builder
                .tls_config(tls.grpc_config())
                .map_err(ServerError::GrpcTls)?;
        }
        let grpc_server = grpc_builder
            // Bundles of many streams are large: bigger HTTP/2 windows keep them moving.
            .initial_stream_window_size(Some(4 << 20))
            .initial_connection_window_size(Some(8 << 20))
            .layer(MalformedRequestLayer::new(metrics))
            .add_service(services.ingress)
            .add_service(services.egress)
            .add_service(services.ingest)
            .add_service(services.streams)
            .serve_with_incoming_shutdown(
                TcpIncoming::from(grpc).with_nodelay(Some(true)),
                stop.clone().cancelled_owned(),
            );
        let mut grpc_task: JoinHandle<Result<(), ServerError>> =
            tokio::spawn(async move { grpc_server.await.map_err(ServerError::Grpc) });

        let http_server = crate::tls::serve_http(
            http,
            crate::http::router(collector.clone()),
            tls.as_ref().map(ServerTls::http_config),
            stop.clone(),
        );
        let mut http_task: JoinHandle<Result<(), ServerError>> =
            tokio::spawn(async move { http_server.await.map_err(ServerError::Http) });

        let mut first_error = None;
        let (mut grpc_done, mut http_done) = (false, false);
        tokio::select! {
            () = shutdown => {}
            r = &mut grpc_task => {
                grpc_done = true;
                first_error = flatten("gRPC", r).err();
            }
            r = &mut http_task => {
                http_done = true;
                first_error = flatten("HTTP", r).err();
            }
        }
        tracing::info!("collector shutting down");
        background.stopping();
        stop.cancel();
        collector.close().await;
        collector.close_relay().await;
        let servers = async {
            let g = if grpc_done {
                Ok(())
            } else {
                flatten("gRPC", (&mut grpc_task).await)
            };
            let h = if http_done {
                Ok(())
            } else {
                flatten("HTTP", (&mut http_task).await)
            };
            g.and(h)
        };
        match tokio::time::timeout(SHUTDOWN_GRACE, servers).await {
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Ok(Ok(())) => {}
            Err(_) => {
                tracing::warn!("connections still open after {SHUTDOWN_GRACE:?}; cutting them");
                grpc_task.abort();
                http_task.abort();
            }
        }
        background.stop().await;
        let closed = collector.store().close().await;
        match first_error {
            Some(e) => Err(e),
            None => closed.map_err(ServerError::Store),
        }
    }
}

fn flatten(
    what: &'static str,
    r: Result<Result<(), ServerError>, tokio::task::JoinError>,
) -> Result<(), ServerError> {
    r.map_err(|e| ServerError::Task(what, e))?
}
