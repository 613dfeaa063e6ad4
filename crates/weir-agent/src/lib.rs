//! The weir agent: sources read logs and metrics, a batcher numbers them per stream, the
//! spool keeps them on disk, flushers send them on (DESIGN.md, Agent).
//!
//! - [`spool`]: the durable store-and-forward queue.
//! - [`flusher`]: outputs with back-pressure (iLogtail's contract).
//! - [`sources`]: where data comes from.

pub mod flusher;
pub mod sources;
pub mod spool;
