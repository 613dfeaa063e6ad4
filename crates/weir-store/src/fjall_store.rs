//! The embedded backend of [`crate::Store`], on fjall (an LSM tree in pure Rust).
//!
//! # What it keeps
//!
//! A stream is a registry record plus its entries. The record says who owns the stream,
//! what the producer described, how far it has been written (`next_index`), whether it
//! is complete (`terminal_count`) and where its entries live. Entries are stored in
//! *chunks*: one chunk per append, holding only the part of that append that was new.
//!
//! # Invariants
//!
//! 1. **No gaps.** An append that starts past `next_index` is refused, so the entries a
//!    stream has ever stored are exactly `0..next_index`, and the retained ones exactly
//!    `low_water..next_index`. Chunks tile that range: the chunk at key
//!    (id, *f*) holds entries *f*..*f*+count, and the next chunk starts where it ends.
//! 2. **Written once.** A chunk is written once and never rewritten or deleted on its
//!    own. A resend overlapping `[first, next_index)` is compared with what is stored
//!    (payloads only, see `weir_core::payload::same_payload`); only `[next_index, end)`
//!    is written, as a new chunk at key (id, `next_index`). A differing payload refuses
//!    the whole append and writes nothing.
//! 3. **Chunk and record together.** A chunk and the record update that accounts for it
//!    (`next_index`, partition list) are committed in one atomic cross-keyspace batch.
//!    After a crash either both are there or neither is, so the record never points past
//!    the chunks and no chunk is stored beyond `next_index`.
//! 4. **One writer per stream.** Every read-modify-write of a stream (register, append,
//!    terminate) runs under that stream's lock, one of 256 mutexes chosen by the path's
//!    hash; different streams proceed in parallel.
//! 5. **Ids are never reused.** Stream ids come from a persistent counter advanced in
//!    the same batch as the new record; registrations hold the counter's lock so the
//!    persisted value only grows.
//! 6. **Registry records outlive their entries**, so retention never restarts a
//!    stream's numbering.
//!
//! # On-disk layout
//!
//! One fjall database in `data_dir` with these keyspaces:
//!
//! - `registry`: key = the stream path (UTF-8 bytes); value = a protobuf `StreamRecord`:
//!   stream id, secret hash (SHA-256; empty for collector-owned streams), the
//!   collector-owned flag, the descriptor (content type, tags, created time),
//!   `registered_ns`, `next_index`, `terminal_count` (optional), the list of
//!   (partition, first index written in it) in increasing order, and `low_water` as of
//!   the last write.
//! - `entries_<start>`: one keyspace per time partition, `<start>` being the partition's
//!   start in Unix seconds; a partition covers `partition_secs` of *ingest* time. Key =
//!   stream id (u64 big-endian) ++ first index (u64 big-endian), so a range scan reads
//!   one stream in index order. Value = a chunk:
//!   `version (1) | ingest_ns (i64 LE) | count (varint) | count × (varint length,
//!   Envelope protobuf)`. These keyspaces use key-value separation: chunk values go to
//!   blob files once and compaction only rewrites the small key index, which keeps disk
//!   bytes written per ingested byte near two (journal + blob file).
//! - `meta`: `next_stream_id` (u64 LE), `expired_through` (u64 LE, Unix seconds:
//!   partitions starting before it have expired), and one key `partition/<start BE>` per
//!   live partition. The meta partition set, not the list of keyspaces on disk, decides
//!   which partitions are live.
//!
//! # Reading
//!
//! Reading index *i*: find the partition holding it in the stream's partition list
//! (entries `[first, next partition's first)`), then the chunk with the greatest first
//! index ≤ *i* (a reverse range scan), then iterate forward across chunks and on into the
//! next partitions. Chunks are checked as they are read: a chunk that does not start
//! where the previous one ended, or whose framing does not add up, is
//! [`StoreError::Corrupt`], never a panic.
//!
//! A chunk goes to the partition of its ingest time, but never to a partition older than
//! the stream's newest one (so the partition list stays ordered by index even if the
//! clock steps back) and never to an expired one. So no chunk is ingested after the end
//! of its partition, which is what [`crate::Store::index_at_time`] relies on to skip
//! whole partitions.
//!
//! # Retention
//!
//! [`crate::Store::expire_before`] drops whole partition keyspaces whose time range ends
//! at or before the cutoff: it first records the new partition set and `expired_through`
//! in `meta` (synced), then deletes the keyspaces. It never touches registry records: a
//! stream's low-water mark is derived on every read as the first index of the oldest
//! *live* partition in its list (or `next_index` when none is live). The next append
//! prunes expired partitions from the list and stores the derived `low_water`.
//!
//! [`crate::Store::expire_stream`] expires one stream's entries below an index by
//! raising the record's `low_water` (the floor the derived mark never goes below); the
//! bytes stay in their partitions until those are dropped.
//!
//! # Recovery
//!
//! Opening replays fjall's journal, which restores every committed batch whole or not at
//! all. The store then reads the id counter and the live partition set from `meta`,
//! opens those partition keyspaces, and deletes any `entries_*` keyspace that is not in
//! the set: a crash between recording an expiry and deleting the keyspace, or between
//! creating a keyspace and recording it (it is empty then: its first chunk is written
//! only after it is recorded). Nothing else needs repair, because of invariant 3.
//!
//! # Durability
//!
//! Every write batch is flushed from fjall's journal buffer to the operating system
//! before the call returns, so `kill -9` of the process loses nothing acknowledged. What
//! survives the machine losing power depends on [`FsyncPolicy`].
//!
//! [`crate::Store::close`] flushes every memtable and fsyncs, so a store closed cleanly
//! reopens without replaying its journal.
//!
//! # Notifications
//!
//! [`crate::Store::subscribe`] is a bounded `tokio::sync::broadcast` channel. The store
//! sends on it after the batch is committed and before the append or terminate call
//! returns, so a subscriber that hears of index *n* can read it at once.
//!
//! # Threads
//!
//! fjall calls block, so every operation runs on tokio's blocking pool
//! (`spawn_blocking`); async callers are never stalled by disk I/O.

mod chunk;
mod engine;
mod record;

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::{
    AppendOutcome, AppendRequest, Appended, Owner, PartitionUsage, ReadBatch, RegisterOutcome,
    Registration, RetentionReport, Store, StoreError, StreamState, TerminateOutcome,
};
use engine::Engine;

use crate::open_handle::OpenHandle;

/// The store's source of ingest time, Unix nanoseconds. Tests pass their own to control
/// time instead of sleeping.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// Capacity of the notification channel of [`Store::subscribe`].
const NOTIFY_CAPACITY: usize = 4096;

/// When the store makes writes durable.
///
/// With every policy an acknowledged write has reached the operating system, so killing
/// the process (`kill -9`) loses nothing acknowledged; the policies differ only in what a
/// power loss or kernel crash can take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FsyncPolicy {
    /// The journal is fsynced (`fdatasync`) before every acknowledgement: nothing
    /// acknowledged is lost even if the machine loses power. The slowest policy: each
    /// append waits for the disk.
    Always,
    /// Writes reach the OS before the acknowledgement; a background thread fsyncs the
    /// journal every `fsync_interval_ms`, so a power loss can lose at most about that
    /// window of acknowledged writes.
    #[default]
    Interval,
    /// Writes reach the OS before the acknowledgement; fsync is left to the OS (and to
    /// [`Store::close`]), so a power loss can lose whatever the OS had not written back.
    Never,
}

/// Settings of the embedded store (the `[store]` table of the collector's config).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FjallConfig {
    /// Where the data lives.
    pub data_dir: PathBuf,
    /// Durability of acknowledged writes.
    pub fsync: FsyncPolicy,
    /// Period of the background fsync with `fsync = "interval"`.
    pub fsync_interval_ms: u64,
    /// Width of a time partition in seconds: retention drops whole partitions. Must be
    /// at least 1; changing it for an existing store only affects new partitions.
    pub partition_secs: u64,
    /// Block cache size, MiB.
    pub cache_mib: u64,
    /// Memtable size of each entry partition, MiB: the unit fjall flushes to disk. A
    /// larger one means fewer, larger files; memory use is about this much per
    /// partition being written.
    pub memtable_mib: u64,
}

impl Default for FjallConfig {
    fn default() -> Self {
        FjallConfig {
            data_dir: PathBuf::from("./weir-data"),
            fsync: FsyncPolicy::Interval,
            fsync_interval_ms: 1000,
            partition_secs: 3600,
            cache_mib: 32,
            memtable_mib: 32,
        }
    }
}

/// The fjall-backed [`crate::Store`]. See the module docs for its design.
pub struct FjallStore {
    /// `None` once closed.
    engine: OpenHandle<Engine>,
    notify: broadcast::Sender<Appended>,
}

impl std::fmt::Debug for FjallStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FjallStore").finish_non_exhaustive()
    }
}

impl FjallStore {
    /// Opens (or creates) the store in `config.data_dir`, with the system clock.
    ///
    /// This blocks on disk I/O (journal replay); from async code, call it inside
    /// `tokio::task::spawn_blocking`.
    pub fn open(config: FjallConfig) -> Result<FjallStore, StoreError> {
        Self::open_with_clock(config, Arc::new(weir_core::now_ns))
    }

    /// Opens the store with `clock` as the source of ingest time (for tests).
    pub fn open_with_clock(config: FjallConfig, clock: Clock) -> Result<FjallStore, StoreError> {
        let engine = Engine::open(&config, clock)?;
        let (notify, _) = broadcast::channel(NOTIFY_CAPACITY);
        Ok(FjallStore {
            engine: OpenHandle::new(engine),
            notify,
        })
    }

    /// The engine, or [`StoreError::Closed`].
    fn engine(&self) -> Result<Arc<Engine>, StoreError> {
        self.engine.get()
    }

    /// Runs `op` on the blocking pool.
    async fn run<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Engine) -> Result<T, StoreError> + Send + 'static,
    {
        let engine = self.engine()?;
        tokio::task::spawn_blocking(move || op(&engine))
            .await
            .map_err(|e| StoreError::Unavailable(format!("store task failed: {e}")))?
    }

    /// Sends a notification; having no subscriber is fine.
    fn announce(&self, notice: Option<Appended>) {
        if let Some(n) = notice {
            let _ = self.notify.send(n);
        }
    }
}

#[async_trait]
impl Store for FjallStore {
    async fn register(&self, reg: Registration) -> Result<RegisterOutcome, StoreError> {
        self.run(move |e| e.register(reg)).await
    }

    async fn append(&self, req: AppendRequest) -> Result<AppendOutcome, StoreError> {
        let (outcome, notice) = self.run(move |e| e.append(req)).await?;
        self.announce(notice);
        Ok(outcome)
    }

    async fn terminate(
        &self,
        path: &str,
        owner: &Owner,
        count: u64,
    ) -> Result<TerminateOutcome, StoreError> {
        let (path, owner) = (path.to_owned(), owner.clone());
        let (outcome, notice) = self.run(move |e| e.terminate(&path, &owner, count)).await?;
        self.announce(notice);
        Ok(outcome)
    }

    async fn stream(&self, path: &str) -> Result<Option<StreamState>, StoreError> {
        let path = path.to_owned();
        self.run(move |e| e.stream(&path)).await
    }

    async fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StreamState>, StoreError> {
        let (prefix, after) = (prefix.to_owned(), after.map(str::to_owned));
        self.run(move |e| e.list(&prefix, after.as_deref(), limit))
            .await
    }

    async fn read(
        &self,
        path: &str,
        from: u64,
        limit: usize,
    ) -> Result<Option<ReadBatch>, StoreError> {
        let path = path.to_owned();
        self.run(move |e| e.read(&path, from, limit)).await
    }

    async fn index_at_time(&self, path: &str, time_ns: i64) -> Result<Option<u64>, StoreError> {
        let path = path.to_owned();
        self.run(move |e| e.index_at_time(&path, time_ns)).await
    }

    fn subscribe(&self) -> broadcast::Receiver<Appended> {
        self.notify.subscribe()
    }

    async fn expire_before(&self, cutoff_ns: i64) -> Result<RetentionReport, StoreError> {
        self.run(move |e| e.expire_before(cutoff_ns)).await
    }

    async fn expire_stream(&self, path: &str, low_water: u64) -> Result<Option<u64>, StoreError> {
        let path = path.to_owned();
        self.run(move |e| e.expire_stream(&path, low_water)).await
    }

    async fn partitions(&self) -> Result<Vec<PartitionUsage>, StoreError> {
        self.run(|e| Ok(e.partitions())).await
    }

    /// Flushes the memtables, syncs everything to disk and releases the database (once
    /// operations still in flight finish). Later calls fail with [`StoreError::Closed`]; closing again does
    /// nothing.
    async fn close(&self) -> Result<(), StoreError> {
        let Some(engine) = self.engine.close() else {
            return Ok(());
        };
        tokio::task::spawn_blocking(move || engine.flush_and_sync())
            .await
            .map_err(|e| StoreError::Unavailable(format!("store task failed: {e}")))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_core::{Descriptor, Envelope};
    use weir_proto::lv2::{Log, envelope::Message as Body};

    fn config(dir: &std::path::Path) -> FjallConfig {
        FjallConfig {
            data_dir: dir.to_path_buf(),
            fsync: FsyncPolicy::Never,
            ..FjallConfig::default()
        }
    }

    fn log(payload: &str) -> Envelope {
        Envelope {
            message: Some(Body::Log(Log {
                payload: payload.as_bytes().to_vec().into(),
                r#type: 0,
            })),
            ..Default::default()
        }
    }

    async fn stream_with_entries(store: &FjallStore, path: &str, n: usize) {
        let reg = Registration {
            path: path.into(),
            owner: Owner::Collector,
            descriptor: Descriptor::default(),
        };
        store.register(reg).await.unwrap();
        let req = AppendRequest {
            path: path.into(),
            owner: Owner::Collector,
            first_index: None,
            entries: (0..n).map(|i| log(&i.to_string())).collect(),
        };
        store.append(req).await.unwrap();
    }

    #[tokio::test]
    async fn undecodable_record_is_corrupt_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let store = FjallStore::open(config(dir.path())).unwrap();
        stream_with_entries(&store, "a/+/b", 3).await;
        let engine = store.engine().unwrap();
        engine.put_raw_record("a/+/b", &[0xff, 0xff, 0xff]);
        assert!(matches!(
            store.stream("a/+/b").await,
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(
            store.read("a/+/b", 0, 10).await,
            Err(StoreError::Corrupt(_))
        ));
        let req = AppendRequest {
            path: "a/+/b".into(),
            owner: Owner::Collector,
            first_index: None,
            entries: vec![log("x")],
        };
        assert!(matches!(
            store.append(req).await,
            Err(StoreError::Corrupt(_))
        ));
    }

    #[tokio::test]
    async fn undecodable_chunk_is_corrupt_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let store = FjallStore::open(config(dir.path())).unwrap();
        stream_with_entries(&store, "a/+/b", 3).await;
        let engine = store.engine().unwrap();
        engine.put_raw_chunk("a/+/b", 0, &[1, 2, 3]);
        let err = store.read("a/+/b", 0, 10).await.unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    }

    #[tokio::test]
    async fn zero_partition_width_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = FjallConfig {
            partition_secs: 0,
            ..config(dir.path())
        };
        assert!(matches!(
            FjallStore::open(cfg),
            Err(StoreError::Unavailable(_))
        ));
    }
}
