//! The agent's Prometheus metrics, served on `--metrics-addr` at `GET /metrics`.
//!
//! | metric | labels | meaning |
//! | --- | --- | --- |
//! | `weir_agent_read_lines_total` | `source` | lines (entries) taken from a source |
//! | `weir_agent_read_bytes_total` | `source` | bytes of those lines |
//! | `weir_agent_batched_entries_total` | `source` | entries put into batches |
//! | `weir_agent_batches_total` | `source` | batches cut |
//! | `weir_agent_flushed_entries_total` | `flusher` | entries a flusher acknowledged (its meaning of acknowledged) |
//! | `weir_agent_acked_entries_total` | `source` | entries every flusher acknowledged, handed back to the source (checkpoint or spool) |
//! | `weir_agent_retries_total` | `flusher` | flush attempts that failed or were answered "retry", each followed by a backoff |
//! | `weir_agent_dropped_entries_total` | `reason` | entries that will not be delivered: `dead_letter` (refused permanently), `dead_letter_full` (refused and the dead-letter file was full), `spool_full` (removed by `drop_oldest`), `spool_error` (the spool refused an append), `spool_full` (records removed by `when_full = "drop_oldest"`), `spool_damaged` (records lost to damage found in the spool) |
//! | `weir_agent_spool_bytes` | | bytes of the spool's segment files |
//! | `weir_agent_spool_records` | | records in the spool's segment files |
//! | `weir_agent_flusher_ready` | `flusher` | 1 when the flusher says it can take a batch, 0 while it backs off |
//! | `weir_agent_events_total` | `outcome` | the agent's own events: `stored` (written to `events.ndjson`), `discarded_full` (queue buffer full), `discarded_paused` (the file could not be written), `dropped_bound` (removed by the file's bound), `shipped` (acknowledged by the collector), `unshipped` (refused by the collector for good) |
//!
//! Counters with labels are resolved once per component, so the hot path only adds to
//! atomics. Gauges that mirror other parts (the spool) are refreshed when scraped.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

/// A refresher run before each scrape (copies other parts' state into gauges).
type Refresh = Box<dyn Fn(&AgentMetrics) + Send + Sync>;

/// Every metric of one agent.
pub struct AgentMetrics {
    registry: Registry,
    read_lines: Family<Labels, Counter>,
    read_bytes: Family<Labels, Counter>,
    batched: Family<Labels, Counter>,
    batches: Family<Labels, Counter>,
    flushed: Family<Labels, Counter>,
    acked: Family<Labels, Counter>,
    retries: Family<Labels, Counter>,
    dropped: Family<Labels, Counter>,
    /// Bytes of the spool's segment files.
    pub spool_bytes: Gauge,
    /// Records in the spool's segment files.
    pub spool_records: Gauge,
    /// Threads of the runtime that runs the pipelines (`weir agent --threads`).
    pub runtime_workers: Gauge,
    ready: Family<Labels, Gauge>,
    events: Family<Labels, Counter>,
    refreshers: Mutex<Vec<Refresh>>,
}

impl std::fmt::Debug for AgentMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentMetrics").finish_non_exhaustive()
    }
}

/// The counters one source bumps.
#[derive(Debug, Clone)]
pub struct SourceCounters {
    pub read_lines: Counter,
    pub read_bytes: Counter,
    pub batched: Counter,
    pub batches: Counter,
    pub acked: Counter,
    /// Entries lost because the spool refused an append (`spool_error`).
    pub dropped_spool_error: Counter,
}

/// The counters one flusher bumps.
#[derive(Debug, Clone)]
pub struct FlusherCounters {
    pub flushed: Counter,
    pub retries: Counter,
    pub ready: Gauge,
    pub dead_letter: Counter,
    pub dead_letter_full: Counter,
}

impl Default for AgentMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl AgentMetrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let m = AgentMetrics {
            read_lines: Family::default(),
            read_bytes: Family::default(),
            batched: Family::default(),
            batches: Family::default(),
            flushed: Family::default(),
            acked: Family::default(),
            retries: Family::default(),
            dropped: Family::default(),
            spool_bytes: Gauge::default(),
            spool_records: Gauge::default(),
            runtime_workers: Gauge::default(),
            ready: Family::default(),
            events: Family::default(),
            refreshers: Mutex::new(Vec::new()),
            registry: Registry::default(),
        };
        registry.register(
            "weir_agent_read_lines",
            "Lines taken from a source",
            m.read_lines.clone(),
        );
        registry.register(
            "weir_agent_read_bytes",
            "Bytes of the lines taken from a source",
            m.read_bytes.clone(),
        );
        registry.register(
            "weir_agent_batched_entries",
            "Entries put into batches",
            m.batched.clone(),
        );
        registry.register("weir_agent_batches", "Batches cut", m.batches.clone());
        registry.register(
            "weir_agent_flushed_entries",
            "Entries a flusher acknowledged",
            m.flushed.clone(),
        );
        registry.register(
            "weir_agent_acked_entries",
            "Entries every flusher acknowledged, handed back to their source",
            m.acked.clone(),
        );
        registry.register(
            "weir_agent_retries",
            "Flush attempts that failed or were answered retry",
            m.retries.clone(),
        );
        registry.register(
            "weir_agent_dropped_entries",
            "Entries that will not be delivered, by reason",
            m.dropped.clone(),
        );
        registry.register(
            "weir_agent_spool_bytes",
            "Bytes of the spool's segment files",
            m.spool_bytes.clone(),
        );
        registry.register(
            "weir_agent_spool_records",
            "Records in the spool's segment files",
            m.spool_records.clone(),
        );
        registry.register(
            "weir_agent_runtime_workers",
            "Threads of the runtime that runs the pipelines",
            m.runtime_workers.clone(),
        );
        registry.register(
            "weir_agent_flusher_ready",
            "1 when the flusher can take a batch",
            m.ready.clone(),
        );
        registry.register(
            "weir_agent_events",
            "The agent's own events, by outcome",
            m.events.clone(),
        );
        AgentMetrics { registry, ..m }
    }

    /// The counters of source `name`.
    pub fn source(&self, name: &str) -> SourceCounters {
        let l = || vec![("source", name.to_string())];
        SourceCounters {
            read_lines: self.read_lines.get_or_create(&l()).clone(),
            read_bytes: self.read_bytes.get_or_create(&l()).clone(),
            batched: self.batched.get_or_create(&l()).clone(),
            batches: self.batches.get_or_create(&l()).clone(),
            acked: self.acked.get_or_create(&l()).clone(),
            dropped_spool_error: self.dropped("spool_error"),
        }
    }

    /// The counters of flusher `name`.
    pub fn flusher(&self, name: &str) -> FlusherCounters {
        let l = vec![("flusher", name.to_string())];
        FlusherCounters {
            flushed: self.flushed.get_or_create(&l).clone(),
            retries: self.retries.get_or_create(&l).clone(),
            ready: self.ready.get_or_create(&l).clone(),
            dead_letter: self.dropped("dead_letter"),
            dead_letter_full: self.dropped("dead_letter_full"),
        }
    }

    /// The counter of the agent's events with `outcome` (see the module docs).
    pub fn events(&self, outcome: &str) -> Counter {
        self.events
            .get_or_create(&vec![("outcome", outcome.to_string())])
            .clone()
    }

    /// The drop counter of `reason`.
    pub fn dropped(&self, reason: &str) -> Counter {
        self.dropped
            .get_or_create(&vec![("reason", reason.to_string())])
            .clone()
    }

    /// Runs `f` before every scrape.
    pub fn on_scrape(&self, f: impl Fn(&AgentMetrics) + Send + Sync + 'static) {
        self.refreshers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Box::new(f));
    }

    /// The Prometheus text of every metric.
    pub fn render(&self) -> String {
        for f in self
            .refreshers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            f(self);
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// Serves `GET /metrics` on `addr` until `shutdown` resolves; returns the bound address
/// (useful with port 0) and the server task.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<AgentMetrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    use axum::routing::get;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let m = metrics.clone();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        m.render(),
                    )
                }
            }),
        )
        .route("/healthz", get(|| async { "ok" }));
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "agent metrics server failed");
        }
    });
    Ok((bound, task))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_with_labels() {
        let m = AgentMetrics::new();
        m.source("app").read_lines.inc_by(3);
        m.flusher("central").ready.set(1);
        m.on_scrape(|m| {
            m.spool_bytes.set(42);
        });
        let text = m.render();
        assert!(
            text.contains("weir_agent_read_lines_total{source=\"app\"} 3"),
            "{text}"
        );
        assert!(text.contains("weir_agent_flusher_ready{flusher=\"central\"} 1"));
        assert!(text.contains("weir_agent_spool_bytes 42"));
    }
}
