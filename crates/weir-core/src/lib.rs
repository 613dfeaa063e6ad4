//! weir's model of telemetry: envelopes (Loggregator v2), streams named by LogDog-style
//! paths, the limits that bound what a producer may send, and the JSON forms every HTTP
//! and SSE endpoint uses.
//!
//! - [`path`]: stream names and paths, the `loggregator/` prefix mapping.
//! - [`limits`] and [`validate`]: configurable bounds on envelopes and bundles.
//! - [`payload`]: what "the same entry" means (DESIGN.md, Contracts: duplicates).
//! - [`duration`]: human durations (`10m`, `24h`, `7d`) for config files and flags.
//! - [`diode`]: the drop-oldest ring between a fast writer and a slow reader.
//! - [`event_queue`]: components' own events, bounded, worker-served, pausing while its store fails.
//! - [`descriptor`]: what a producer says about a stream when registering it.
//! - [`json`]: protojson (Loggregator-compatible) and the people-friendly JSON form.

pub mod descriptor;
pub mod diode;
pub mod duration;
pub mod event_queue;
pub mod json;
pub mod limits;
pub mod path;
pub mod payload;
pub mod pem;
pub mod validate;

pub use descriptor::Descriptor;
pub use limits::Limits;
pub use path::{PathError, StreamPath};
pub use weir_proto::lv2::Envelope;

/// The current time as Unix nanoseconds.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}
