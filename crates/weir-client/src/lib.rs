//! weir's client library, compatible with Cloud Foundry Loggregator v2: it behaves as
//! go-loggregator does (PROTOCOLS.md §4) except where weir promises more (bounded
//! memory, counted drops, exact accounting against a weir collector).
//!
//! - [`ingress`]: [`IngressClient`], the batching sender: `emit_log`, `emit_counter`,
//!   `emit_gauge`, `emit_timer`, `emit` never block; `emit_event` is a unary call;
//!   `close_send` flushes and waits. Its module docs explain how batches are
//!   acknowledged and resent.
//! - [`egress`]: readers: [`EnvelopeStreamConnector`] (gRPC `BatchedReceiver`, with an
//!   optional diode) and [`RlpGatewayClient`] (`/v2/read` Server-Sent Events). Both
//!   reconnect on their own.
//! - [`tls`]: mutual TLS from CA, certificate and key files, like upstream's
//!   `NewIngressTLSConfig` and `NewEgressTLSConfig`.
//! - [`backoff`]: the reconnect delays.
//!
//! Clients spawn tasks, so build them inside a Tokio runtime.

pub mod backoff;
pub mod egress;
mod error;
pub mod ingress;
pub mod tls;

pub use egress::{
    EnvelopeStream, EnvelopeStreamConnector, RlpError, RlpGatewayClient, RlpGatewayClientBuilder,
    RlpStream,
};
pub use error::ClientError;
pub use ingress::{
    ClientStats, CounterValue, Emitter, IngressClient, IngressClientBuilder, LogType, SourceInfo,
};
pub use weir_core::diode::Diode;
