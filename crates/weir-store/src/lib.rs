//! Storage for weir streams.
//!
//! [`Store`] is what the collector writes to and readers read from: a registry of
//! streams (descriptor, secret hash, next index, low-water mark, terminal count) and
//! their entries, addressed by (stream, index). Backends:
//!
//! - [`fjall_store::FjallStore`]: embedded, on local disk (the default).
//! - NATS JetStream (scale-out): `weir_store_nats::NatsStore`, in the `weir-store-nats`
//!   crate (collectors sharing one JetStream act as one).
//!
//! Every backend must pass the suite in `conformance` (feature `conformance`),
//! which is how the contracts below are checked.
//!
//! # Contracts (DESIGN.md)
//!
//! - Entries of a stream are numbered 0, 1, 2, … with no gap: an append that starts past
//!   the next index is refused with [`AppendOutcome::Gap`].
//! - An append is idempotent per (stream, index): an entry whose payload equals the stored
//!   one is acknowledged and counted as a duplicate; a different payload is a
//!   [`AppendOutcome::Conflict`] and nothing of that append is written.
//! - Only the owner writes: a stream registered with a secret accepts appends and
//!   termination only with that secret. The store keeps only a hash of it.
//! - Termination is by count and is checked at write time.
//! - Retention moves a stream's low-water mark; the registry outlives expired entries so
//!   numbering never restarts. Entries below the mark cannot be compared any more: a
//!   resend reaching below it is acknowledged and those entries counted as duplicates.
//! - Every acknowledged write survives `kill -9` of the process; what survives a power
//!   loss is the backend's fsync policy (see [`FsyncPolicy`] for fjall).

use std::sync::Arc;

use async_trait::async_trait;
use weir_core::{Descriptor, Envelope};

#[cfg(feature = "conformance")]
pub mod conformance;
pub mod fjall_store;
pub mod hooked;
pub mod open_handle;
pub mod secret;

pub use fjall_store::{Clock, FjallConfig, FjallStore, FsyncPolicy};
pub use open_handle::OpenHandle;
pub use secret::SecretHash;

/// Errors of a store operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store cannot serve now (disk full, backend down): retry with backoff.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Stored data could not be decoded.
    #[error("store data corrupt: {0}")]
    Corrupt(String),
    /// The store has been closed.
    #[error("store is closed")]
    Closed,
}

impl StoreError {
    /// Whether a retry may succeed (the producer should back off and resend).
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_) | StoreError::Closed)
    }
}

/// Who may write a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// A weir producer holding this secret.
    Producer(Vec<u8>),
    /// The collector itself (streams of Loggregator and other outside clients).
    Collector,
}

/// A stream's registry record as readers see it (never the secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamState {
    /// The full path.
    pub path: String,
    /// What the producer registered.
    pub descriptor: Descriptor,
    /// When the store registered it, Unix nanoseconds.
    pub registered_ns: i64,
    /// Entries `0..next_index` have been written (some may have expired).
    pub next_index: u64,
    /// First retained index; entries below it have expired.
    pub low_water: u64,
    /// Set once the stream is complete with this many entries.
    pub terminal_count: Option<u64>,
    /// Whether the collector owns the stream (no producer secret).
    pub collector_owned: bool,
}

/// Registering a stream.
#[derive(Debug, Clone)]
pub struct Registration {
    pub path: String,
    pub owner: Owner,
    pub descriptor: Descriptor,
}

/// Result of [`Store::register`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterOutcome {
    /// The stream is new and now registered.
    Created(StreamState),
    /// The stream existed and the owner matches; the state is unchanged (the
    /// descriptor of the existing record is kept).
    Existing(StreamState),
    /// The stream exists with another owner.
    WrongSecret,
}

/// Appending a run of consecutive entries to one stream.
#[derive(Debug, Clone)]
pub struct AppendRequest {
    pub path: String,
    pub owner: Owner,
    /// Index of `entries[0]`; `None` numbers them at the stream's next index (the
    /// collector's sequencer for streams it owns).
    pub first_index: Option<u64>,
    pub entries: Vec<Envelope>,
}

/// Result of [`Store::append`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendOutcome {
    /// Every index below `next` is stored. `first` is the index of the first entry of
    /// this append (useful when the store numbered them); `duplicates` counts entries
    /// already stored with the same payload.
    Stored {
        first: u64,
        next: u64,
        duplicates: u64,
    },
    /// The append starts past the next expected index.
    Gap { expected: u64 },
    /// Different payload stored at this index; nothing of the append was written.
    Conflict { index: u64 },
    /// The stream is complete with `count` entries; the append reaches at or past it.
    Terminated { count: u64 },
    /// The owner does not match the registered one.
    WrongSecret,
    /// No stream is registered at that path.
    NotRegistered,
}

/// Result of [`Store::terminate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TerminateOutcome {
    /// The stream is (now, or already with the same count) terminated at `count`.
    Terminated { count: u64 },
    /// Already terminated with a different count.
    Incompatible { existing: u64 },
    /// Entries exist at or past the requested count (`next` is the next index).
    BelowWritten { next: u64 },
    /// The owner does not match.
    WrongSecret,
    /// No stream is registered at that path.
    NotRegistered,
}

/// One stored entry.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEntry {
    pub index: u64,
    /// When the store wrote it, Unix nanoseconds (ingest time).
    pub ingest_ns: i64,
    pub envelope: Envelope,
}

/// Result of [`Store::read`].
#[derive(Debug, Clone, PartialEq)]
pub struct ReadBatch {
    /// The stream's state at the time of the read.
    pub state: StreamState,
    /// The index reading started at (the low-water mark when the request was below it).
    pub started_at: u64,
    /// The requested start was below the low-water mark.
    pub below_low_water: bool,
    /// Entries `started_at..`, in order, at most the requested limit.
    pub entries: Vec<StoredEntry>,
}

/// What retention removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Time partitions dropped.
    pub partitions_dropped: u64,
    /// Entries dropped (as far as the backend knows).
    pub entries_dropped: u64,
}

/// One live time partition and the disk space it takes (see [`Store::partitions`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionUsage {
    /// Start of the partition's ingest-time range, Unix nanoseconds.
    pub start_ns: i64,
    /// End of the range (exclusive): `expire_before(end_ns)` drops this partition.
    pub end_ns: i64,
    /// Bytes the partition takes on disk, as far as the backend knows (the fjall
    /// backend counts flushed tables and blob files, not what is still in memory).
    pub bytes: u64,
}

/// A notification that a stream has new entries (or was terminated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    pub path: Arc<str>,
    /// The stream's next index after the write.
    pub next: u64,
    pub terminal_count: Option<u64>,
}

/// Storage of streams. See the crate docs for the contracts every backend keeps.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Registers a stream, or returns the existing one when the owner matches.
    async fn register(&self, reg: Registration) -> Result<RegisterOutcome, StoreError>;

    /// Appends consecutive entries, idempotently per (stream, index).
    async fn append(&self, req: AppendRequest) -> Result<AppendOutcome, StoreError>;

    /// Declares the stream complete with `count` entries (`0..count`).
    async fn terminate(
        &self,
        path: &str,
        owner: &Owner,
        count: u64,
    ) -> Result<TerminateOutcome, StoreError>;

    /// The state of one stream.
    async fn stream(&self, path: &str) -> Result<Option<StreamState>, StoreError>;

    /// Streams whose path starts with `prefix`, sorted by path, after `after` when given,
    /// at most `limit`.
    async fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StreamState>, StoreError>;

    /// Reads up to `limit` entries from index `from` (from the low-water mark when `from`
    /// is below it). `None` when the stream is not registered.
    async fn read(
        &self,
        path: &str,
        from: u64,
        limit: usize,
    ) -> Result<Option<ReadBatch>, StoreError>;

    /// The first retained index whose entry was ingested at or after `time_ns` (the next
    /// index when none was). `None` when the stream is not registered.
    async fn index_at_time(&self, path: &str, time_ns: i64) -> Result<Option<u64>, StoreError>;

    /// Notifications of every write: one after each append that stored new entries and
    /// one after each terminate that set the terminal count (resends and repeated
    /// terminations change nothing and announce nothing).
    /// A lagging receiver loses notifications (it is told so by the channel) and should
    /// re-read the streams it follows.
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Appended>;

    /// Drops whole time partitions whose entries were all ingested before `cutoff_ns`,
    /// moving the low-water marks of the streams they held.
    async fn expire_before(&self, cutoff_ns: i64) -> Result<RetentionReport, StoreError>;

    /// Expires the entries of one stream below `low_water`: its low-water mark moves up to
    /// `low_water` (at most to its next index; never down), exactly as if retention had
    /// dropped them. Returns how many entries were newly expired, `None` when the stream
    /// is not registered. Used for per-prefix retention and for purging old events; a
    /// backend may keep the bytes until their time partition is dropped.
    async fn expire_stream(&self, path: &str, low_water: u64) -> Result<Option<u64>, StoreError>;

    /// The live time partitions, oldest first, with their sizes (for the size cap, which
    /// drops the oldest first with [`Store::expire_before`]).
    async fn partitions(&self) -> Result<Vec<PartitionUsage>, StoreError>;

    /// Flushes and closes; later calls fail with [`StoreError::Closed`]. Closing again
    /// does nothing. Once the returned future completes and the store is dropped, the
    /// backend's persistent place can be opened again.
    async fn close(&self) -> Result<(), StoreError>;
}
