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
    match count_streams(collector.store().as_ref()).await {
        Ok(n) => collector.metrics().set_streams(n),
        Err(e) => tracing::warn!("cannot count the streams for weir_streams: {e}"),
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

/// Streams in the store's registry (read a page at a time).
async fn count_streams(store: &dyn weir_store::Store) -> Result<u64, weir_store::StoreError> {
    const PAGE: usize = 10_000;
    let mut count = 0u64;
    let mut after: Option<String> = None;
    loop {
        let page = store.list("", after.as_deref(), PAGE).await?;
        count += page.len() as u64;
        match page.last() {
            Some(last) if page.len() == PAGE => after = Some(last.path.clone()),
            _ => return Ok(count),
        }
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
