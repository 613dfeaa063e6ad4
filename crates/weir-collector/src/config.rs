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
    /// The NATS JetStream store (`[nats]`, or `weir serve --store nats://…`): when set,
    /// it is used instead of the embedded one, and collectors sharing it act as one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nats: Option<weir_store_nats::NatsConfig>,
    /// Live egress: the hub, `loggregator.v2.Egress`, `/v2/read` and follows.
    pub egress: EgressConfig,
    /// TLS (and mutual TLS) on both listeners; plain TCP when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<crate::tls::TlsConfig>,
    /// The collector's event queue.
    pub events: crate::events::EventsConfig,
    /// Expiry by age (per path prefix) and the store's size cap.
    pub retention: crate::retention::RetentionConfig,
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
            nats: None,
            egress: EgressConfig::default(),
            tls: None,
            events: crate::events::EventsConfig::default(),
            retention: crate::retention::RetentionConfig::default(),
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

/// The `[egress]` table: bounds and timings of every live reader (the hub's
/// subscribers behind `loggregator.v2.Egress` and `GET /v2/read`, and the store-driven
/// follows of `weir.v1` and `GET /v1/entries?follow=true`).
///
/// The defaults are upstream's (PROTOCOLS.md §2.2, §3.2): RLP's 10 000-envelope buffer
/// and 1 000 streams, Doppler's batches of 100 or 100 ms, the gateway's 15 s heartbeat
/// and 14 min stream timeout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EgressConfig {
    /// Envelopes each live subscriber may have waiting (its diode). When full, the
    /// oldest is overwritten and counted as dropped for that subscriber.
    pub diode_capacity: usize,
    /// Most egress streams open at once (gRPC `Receiver`/`BatchedReceiver`, `/v2/read`,
    /// follows). One more is refused: `RESOURCE_EXHAUSTED` or HTTP 503.
    pub max_streams: usize,
    /// Most envelopes in one batch toward a consumer.
    pub batch_size: usize,
    /// A batch that is not full is sent this many milliseconds after its first envelope.
    pub flush_interval_ms: u64,
    /// `/v2/read` writes a heartbeat event after this many milliseconds without data.
    pub heartbeat_interval_ms: u64,
    /// `/v2/read` writes its closing event and ends after this many milliseconds,
    /// however busy the stream is (an absolute limit, as upstream's gateway).
    pub stream_timeout_ms: u64,
    /// At most one drop warning per subscriber per this many milliseconds; also how
    /// often the per-subscriber drop metric catches up.
    pub drop_report_interval_ms: u64,
    /// The live relay across collectors: NATS server URLs (`nats://host:4222`, several
    /// separated by commas). Absent: in-process only, each collector's subscribers see
    /// what it ingests. `weir serve --store nats://…` sets it to the store's servers.
    /// See [`crate::relay`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relay: Option<String>,
    /// Subject prefix of the relay: envelopes on `<prefix>.env`, interest pings on
    /// `<prefix>.interest`. Collectors relay to each other only with the same prefix.
    pub relay_subject: String,
    /// Most envelopes waiting to be published to the relay; beyond that new ones are
    /// dropped and counted (`weir_relay_dropped_envelopes_total{reason="queue_full"}`).
    pub relay_queue: usize,
    /// Most envelopes in one relay message (messages are also cut below the server's
    /// `max_payload`).
    pub relay_batch: usize,
}

impl Default for EgressConfig {
    fn default() -> Self {
        EgressConfig {
            diode_capacity: 10_000,
            max_streams: 1_000,
            batch_size: 100,
            flush_interval_ms: 100,
            heartbeat_interval_ms: 15_000,
            stream_timeout_ms: 14 * 60 * 1_000,
            drop_report_interval_ms: 1_000,
            relay: None,
            relay_subject: "weir.live".to_string(),
            relay_queue: 100_000,
            relay_batch: 1_000,
        }
    }
}
