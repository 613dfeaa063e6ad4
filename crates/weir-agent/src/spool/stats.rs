//! `SpoolStats`: a snapshot of what the spool holds and every count of loss, for the
//! agent's metrics.

use serde::Serialize;

use super::RecordId;

/// A snapshot taken by [`Spool::stats`](super::Spool::stats). Counters count since open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpoolStats {
    /// Records in the segment files (acknowledged ones included until their segment
    /// is deleted).
    pub records: u64,
    /// Bytes of the segment files.
    pub bytes: u64,
    /// The configured bound on `bytes`.
    pub max_bytes: u64,
    /// Segment files, the active one included.
    pub segments: usize,
    /// Id the next append gets.
    pub next_id: RecordId,
    /// Lowest id still in the spool.
    pub first_retained: RecordId,
    /// Every record below this has been synced to disk (under `always` and `interval`).
    pub durable_next: RecordId,
    /// Records appended since open.
    pub appended_records: u64,
    /// Payload bytes appended since open.
    pub appended_bytes: u64,
    /// Appends that found the spool full and waited (`when_full = block`).
    pub blocked_appends: u64,
    /// Records removed by `when_full = drop_oldest` before every cursor acknowledged them.
    pub dropped_records: u64,
    /// Bytes of the segments removed by `drop_oldest`.
    pub dropped_bytes: u64,
    /// Records lost to damage found in the middle of segments (bad CRC, impossible
    /// length), counted from the gap in ids; each damaged region is counted once.
    pub skipped_records: u64,
    /// Bytes of those damaged regions.
    pub skipped_bytes: u64,
    /// Bytes cut from segment tails at open (torn writes).
    pub truncated_bytes: u64,
    /// Cursor files found damaged at open; their readers start again from the oldest
    /// record (re-delivery, never loss).
    pub corrupt_cursors: u64,
    /// Failed fsyncs (after one, appends fail with `Poisoned`).
    pub sync_errors: u64,
    /// One entry per cursor, by name.
    pub cursors: Vec<CursorStats>,
}

/// One reader's position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CursorStats {
    /// The reader's name.
    pub name: String,
    /// Every record below this is acknowledged.
    pub acked_next: RecordId,
    /// The value last written to its cursor file (what survives a process crash; a
    /// power loss too under `always`, or after the next sync under `interval`).
    pub persisted_next: Option<RecordId>,
    /// Ids appended but not acknowledged by this reader (ids of damaged records included).
    pub lag_records: u64,
    /// Records `drop_oldest` removed before this reader acknowledged them.
    pub dropped_records: u64,
    /// Whether a `SpoolReader` of this name is open.
    pub reader_open: bool,
}
