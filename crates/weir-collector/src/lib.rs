//! The weir collector: ingests bundles (weir.v1) and Loggregator v2 envelopes, registers
//! streams through a cached coordinator, stores entries idempotently, and serves them
//! over gRPC and HTTP.
//!
//! - [`collector`]: the pipeline ([`Collector::process`], [`Collector::ingest_envelopes`]).
//! - [`state_cache`]: the stream-state cache in front of the registry.
//! - [`hub`]: the live hub: stored envelopes fanned out to subscribers, each behind its
//!   own diode, with Loggregator's selectors and shard groups.
//! - [`relay`]: the live relay: the hubs of every collector on one NATS fed with what
//!   any of them stored, shard groups split across collectors.
//! - [`follow`]: following a stream or a prefix from the store, history then live.
//! - [`metrics`]: Prometheus metrics.
//! - [`grpc`]: `loggregator.v2.Ingress`, `weir.v1.Ingest`, `weir.v1.Streams`.
//! - [`http`]: `/healthz`, `/v1/streams`, `/v1/stream`, `/v1/entries`, `/metrics`.
//! - [`server`]: both listeners over one collector, with orderly shutdown
//!   ([`Server::bind`], [`Server::run`]).
//! - [`config`]: `weir serve`'s configuration.
//! - [`events`]: the collector's own events (event queue on the store, `/v1/events`).
//! - [`retention`]: expiry by age per prefix and the store size cap.
//! - [`obs_metrics`]: histograms, retries, retention, queue and hub gauges.
//! - [`tls`]: TLS and mutual TLS on both listeners.

pub mod collector;
pub mod config;
pub mod events;
pub mod follow;
pub mod grpc;
pub mod http;
pub mod hub;
pub mod info;
pub mod lifecycle;
pub mod metrics;
pub mod obs_metrics;
pub mod relay;
pub mod retention;
pub mod server;
pub mod state_cache;
pub mod tls;

pub use collector::{Collector, IngestReport};
pub use config::{CollectorConfig, EgressConfig};
pub use hub::Hub;
pub use metrics::Metrics;
pub use server::{Server, ServerError};
