//! The JSON forms of envelopes, used by every HTTP and SSE endpoint.
//!
//! There are two forms, for two kinds of reader.
//!
//! # 1. Loggregator protojson (machines)
//!
//! What the Loggregator RLP gateway writes in its SSE `data:` events: Go `protojson` with
//! `EmitUnpopulated`, applied to an `EnvelopeBatch`. weir writes it byte for byte as Go
//! does (minus Go's deliberate random spaces), so any go-loggregator client reads it:
//!
//! ```json
//! {"batch":[{"timestamp":"1700000000000000000","source_id":"app","instance_id":"0",
//!   "deprecated_tags":{},"tags":{"origin":"rep"},
//!   "log":{"payload":"SGVsbG8sIHdvcmxkIQ==","type":"OUT"}}]}
//! ```
//!
//! (one line in real output). The rules:
//!
//! - keys in declaration order: `timestamp`, `source_id`, `instance_id`,
//!   `deprecated_tags`, `tags`, then the one message that is set (`log`, `counter`,
//!   `gauge`, `timer` or `event`);
//! - 64-bit integers (`timestamp`, `delta`, `total`, `start`, `stop`, `integer`) are JSON
//!   **strings**; doubles are numbers in Go's style (`12.5`, `104857600`, `1e+21`,
//!   `1e-7`), with `"NaN"`, `"Infinity"` and `"-Infinity"` as strings;
//! - the log payload is standard base64 with padding; the log type is `"OUT"` or
//!   `"ERR"` (an unknown number is written as that number);
//! - empty strings, zero numbers and empty maps are still written (`"instance_id":""`,
//!   `"tags":{}`, `"delta":"0"`); map keys are sorted by their UTF-8 bytes;
//! - strings escape only `"`, `\` and control characters.
//!
//! Writers: [`write_envelope`], [`write_batch`], [`envelope_to_json`], [`batch_to_json`].
//! Readers: [`batch_from_json`], [`envelope_from_json`] (and the `_slice` variants for
//! raw bodies), which accept what go-loggregator's `protojson.Unmarshal` accepts and
//! refuse what it refuses: unknown keys (so the outdated `sourceId` spelling), duplicate
//! keys, two members of one oneof, wrong value types. Every refusal is a [`JsonError`]
//! naming the place, as a path like `$.batch[0].log.payload`.
//!
//! # 2. People JSON (humans and scripts)
//!
//! What `GET /v1/entries`, `weir cat --json` and the agent's flushers print: one flat
//! object per entry, with readable times and no base64 unless needed:
//!
//! ```json
//! {"stream":"a/+/b","index":5,
//!  "ingest_time":"2026-11-23T08:00:00.123456789Z",
//!  "timestamp":"2026-11-23T07:59:59.000000001Z",
//!  "source_id":"app","instance_id":"0","tags":{"origin":"rep"},
//!  "type":"log","message":"hello","log_type":"OUT"}
//! ```
//!
//! - `stream`, `index` and `ingest_time` (when weir stored it) appear only for stored
//!   entries ([`people_entry`]); live views ([`people_envelope`]) leave them out.
//! - Times are RFC 3339 in UTC with all nine digits of nanoseconds.
//! - `tags` merges both kinds of tag: `deprecated_tags` become strings (text as is,
//!   integers in decimal, doubles as Go prints them) and win over a `tags` entry of the
//!   same key, as Loggregator's `use_preferred_tags` does.
//! - `type` is `log`, `counter`, `gauge`, `timer`, `event`, or `none` for an envelope
//!   without a message. The rest depends on it:
//!   - log: `"message"` (the payload, when it is valid UTF-8) or `"payload_base64"`
//!     (standard base64, when it is not), and `"log_type"`: `"OUT"` or `"ERR"`;
//!   - counter: `"counter":{"name":"requests","delta":5,"total":1024}`;
//!   - gauge: `"gauge":{"cpu":{"value":12.5,"unit":"percentage"}}`, one member per
//!     metric; a value that is not finite is the string `"NaN"`, `"Infinity"` or
//!     `"-Infinity"`;
//!   - timer: `"timer":{"name":"http","start":"<RFC 3339>","stop":"<RFC 3339>",
//!     "duration_ns":250000000}` (`duration_ns` is stop minus start);
//!   - event: `"event":{"title":"app crashed","body":"exit status 137"}`.
//! - Numbers are plain JSON numbers; counters above 2^53 lose precision in JavaScript.
//!
//! Keys come out in the order shown when serialised with `serde_json` (see
//! [`PeopleJson`]); a `serde_json::Value` from [`people_entry`] keeps the order only if
//! `serde_json`'s `preserve_order` feature is on.
//!
//! # Tags
//!
//! [`to_preferred_tags`] and [`to_legacy_tags`] convert between `tags` and
//! `deprecated_tags` exactly as the Loggregator RLP does for `use_preferred_tags` true
//! and false.

mod decode;
mod encode;
mod people;
mod tags;

pub use decode::{
    batch_from_json, batch_from_json_slice, envelope_from_json, envelope_from_json_slice,
};
pub use encode::{batch_to_json, envelope_to_json, write_batch, write_envelope};
pub use people::{
    PeopleJson, civil_from_days, format_rfc3339_nanos, people_entry, people_envelope,
};
pub use tags::{to_legacy_tags, to_preferred_tags};

/// Why a JSON text was refused by the protojson readers.
///
/// `path` is where the problem is, written from `$` (the whole document) with `.field`,
/// `[index]` and `["map key"]` steps, e.g. `$.batch[2].deprecated_tags["b"].integer`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    /// The text is not well-formed JSON (or is not UTF-8).
    #[error("{path}: invalid JSON at byte {offset}: {reason}")]
    Syntax {
        path: String,
        offset: usize,
        reason: String,
    },
    /// A key that the message at `path` does not have. Names are the protobuf JSON names,
    /// which for envelopes are snake_case (`source_id`, never `sourceId`).
    #[error("{path}: unknown field {name:?}")]
    UnknownField { path: String, name: String },
    /// The same field given twice in one object.
    #[error("{path}: duplicate field {name:?}")]
    DuplicateField { path: String, name: String },
    /// The same key given twice in one map (`tags`, `deprecated_tags`, `metrics`).
    #[error("{path}: duplicate map key {key:?}")]
    DuplicateMapKey { path: String, key: String },
    /// A second member of a oneof (e.g. both `log` and `counter` in one envelope).
    #[error("{path}: oneof {oneof} is already set by {first:?}")]
    OneofAlreadySet {
        path: String,
        oneof: &'static str,
        first: &'static str,
    },
    /// A value of the wrong type or form for its field, e.g. a number too large for
    /// int64, base64 that does not decode, or an object where a string belongs.
    #[error("{path}: invalid value for {kind} field: {found}")]
    InvalidValue {
        path: String,
        kind: &'static str,
        found: String,
    },
}
