//! The weir agent: sources read logs and metrics, a batcher numbers them per stream, the
//! spool keeps them on disk, flushers send them on (DESIGN.md, Agent).
//!
//! - [`config`]: the agent's TOML (`weir agent --config agent.toml`).
//! - [`runtime`]: wires sources → batcher → flushers, acknowledgements, shutdown.
//! - [`batcher`]: when a batch is cut.
//! - [`spool`]: the durable store-and-forward queue.
//! - [`flusher`]: outputs with back-pressure (iLogtail's contract).
//! - [`sources`]: where data comes from.
//! - [`metrics`]: the agent's Prometheus metrics.
//! - [`events`]: the agent's own events (a bounded file, shipped to the collector).

pub mod batcher;
mod component_table;
pub mod config;
pub mod events;
pub mod flusher;
pub mod metrics;
pub mod resident;
pub mod runtime;
pub mod sources;
pub mod spool;
