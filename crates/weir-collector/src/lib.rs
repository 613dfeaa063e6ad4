//! The weir collector: ingests bundles (weir.v1) and Loggregator v2 envelopes, registers
//! streams through a cached coordinator, stores entries idempotently, and serves them
//! over gRPC and HTTP.

pub mod config;

pub use config::CollectorConfig;
