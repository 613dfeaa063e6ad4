//! The collector's configuration: the TOML file of `weir serve --config FILE`, with
//! command-line flags overriding it.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use weir_core::Limits;
use weir_store::FjallConfig;

/// Everything `weir serve` needs. Every key is optional.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CollectorConfig {
    /// gRPC listen address: loggregator.v2.Ingress, weir.v1 Ingest and Streams.
    pub grpc_addr: SocketAddr,
    /// HTTP listen address: /healthz, /v1/streams, /v1/stream, /v1/entries, /metrics.
    pub http_addr: SocketAddr,
    /// Streams of one bundle processed concurrently (LogDog's MaxMessageWorkers).
    pub max_message_workers: usize,
    /// The stream-state cache in front of the registry.
    pub state_cache: StateCacheConfig,
    /// Bounds on what producers may send.
    pub limits: Limits,
    /// The embedded store.
    pub store: FjallConfig,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        CollectorConfig {
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 3458)),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 8088)),
            max_message_workers: 4,
            state_cache: StateCacheConfig::default(),
            limits: Limits::default(),
            store: FjallConfig::default(),
        }
    }
}

/// Bounds of the stream-state cache (LogDog: an LRU with entries expiring after 10 min).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StateCacheConfig {
    /// Most streams cached.
    pub max_entries: u64,
    /// Seconds after which a cached entry expires.
    pub expiry_secs: u64,
}

impl Default for StateCacheConfig {
    fn default() -> Self {
        StateCacheConfig {
            max_entries: 100_000,
            expiry_secs: 600,
        }
    }
}
