//! What runs beside the servers while the collector serves: its event queue
//! ([`crate::events`]) and the retention task ([`crate::retention`]).
//! [`crate::Server::run`] starts them before serving and stops them after the work
//! under way has finished, before the store closes, so the last events
//! (`collector_stopping`) are written.

use std::net::SocketAddr;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::collector::Collector;
use crate::events::{fields, kind};
use crate::retention::{Retention, RetentionConfig};

/// The running background tasks; stop them with [`Background::stop`].
pub struct Background {
    collector: Collector,
    stop: CancellationToken,
    retention: JoinHandle<()>,
}

/// Starts the event queue (writing `collector_started`) and the retention task.
pub async fn start(
    collector: &Collector,
    retention: RetentionConfig,
    grpc_addr: SocketAddr,
    http_addr: SocketAddr,
) -> Background {
    let events = collector.events();
    if let Err(e) = events.start().await {
        tracing::warn!("event queue: {e}");
    }
    events.add(
        kind::COLLECTOR_STARTED,
        format!("collector started: gRPC on {grpc_addr}, HTTP on {http_addr}"),
        fields([
            ("grpc_addr", grpc_addr.to_string()),
            ("http_addr", http_addr.to_string()),
        ]),
    );
    let stop = CancellationToken::new();
    let task = Retention::new(
        collector.store().clone(),
        retention,
        collector.metrics().obs().clone(),
        events.clone(),
    );
    let retention = tokio::spawn(task.run(stop.clone()));
    Background {
        collector: collector.clone(),
        stop,
        retention,
    }
}

impl Background {
    /// Records that shutdown has begun (`collector_stopping`).
    pub fn stopping(&self) {
        self.collector.events().add(
            kind::COLLECTOR_STOPPING,
            "collector stopping",
            Default::default(),
        );
    }

    /// Stops retention (a round under way finishes first) and the event queue (what is
    /// buffered is written first).
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.retention.await;
        self.collector.events().stop().await;
    }
}
