//! The blocking core of the fjall backend: every operation of the [`crate::Store`] trait
//! as a synchronous function on [`Engine`]. [`super::FjallStore`] runs them on tokio's
//! blocking pool. The layout and invariants are described in the parent module.

use std::collections::{BTreeMap, HashSet};
use std::hash::{BuildHasher, RandomState};
use std::ops::Bound;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, KvSeparationOptions, PersistMode};
use prost::Message;
use weir_core::Envelope;
use weir_core::payload::same_payload;

use super::chunk::{self, Chunk};
use super::record::{PartitionStart, StreamRecord, chunk_first_index, chunk_key};
use super::{Clock, FjallConfig, FsyncPolicy};
use crate::{
    AppendOutcome, AppendRequest, Appended, PartitionUsage, ReadBatch, RegisterOutcome,
    Registration, RetentionReport, StoreError, StoredEntry, StreamState, TerminateOutcome,
};

/// Longest wait at close for the memtables to be flushed (see
/// `Engine::flush_and_sync`).
const FLUSH_WAIT: Duration = Duration::from_secs(5);

/// Number of per-stream write locks (a stream uses the one its path hashes to).
const STRIPES: usize = 256;
/// Keyspace of stream records, keyed by path.
const REGISTRY: &str = "registry";
/// Keyspace of the store's own state.
const META: &str = "meta";
/// Prefix of the entry keyspaces' names; the partition's start (Unix seconds) follows.
const ENTRIES_PREFIX: &str = "entries_";
/// Meta key: the next stream id to hand out (u64 little-endian).
const META_NEXT_ID: &[u8] = b"next_stream_id";
/// Meta key: partitions starting before this (Unix seconds, u64 LE) have expired.
const META_EXPIRED_THROUGH: &[u8] = b"expired_through";
/// Meta key prefix of the live-partition set: one key per partition (start, u64 BE).
const META_PARTITION_PREFIX: &[u8] = b"partition/";
/// Values at least this long go to blob files (key-value separation).
const KV_SEPARATION_THRESHOLD: u32 = 512;
const NS_PER_SEC: i128 = 1_000_000_000;
const MIB: u64 = 1024 * 1024;

/// A store operation's fjall failure as [`StoreError::Unavailable`], naming what failed.
fn unavailable(what: impl std::fmt::Display) -> impl FnOnce(fjall::Error) -> StoreError {
    move |e| StoreError::Unavailable(format!("{what}: {e}"))
}

/// Locks a mutex; its data is `()` or a counter kept consistent before any fallible
/// step, so a panic elsewhere does not make it unusable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The live time partitions, each an entry keyspace.
struct Partitions {
    /// Live partitions by start (Unix seconds).
    live: BTreeMap<u64, Keyspace>,
    /// Partitions starting before this have expired; nothing is written below it.
    expired_through: u64,
}

/// The part of one stream held by one live partition: entries `[first, end)`.
struct Segment {
    partition: u64,
    first: u64,
    end: u64,
    keyspace: Keyspace,
}

/// The open database and everything needed to serve the store's operations.
pub(super) struct Engine {
    db: Database,
    registry: Keyspace,
    meta: Keyspace,
    partitions: RwLock<Partitions>,
    stripes: Box<[Mutex<()>]>,
    stripe_hasher: RandomState,
    /// The next stream id; held while registering so ids are persisted in order.
    next_id: Mutex<u64>,
    clock: Clock,
    partition_secs: u64,
    memtable_bytes: u64,
    durability: PersistMode,
    /// Background fsync for [`FsyncPolicy::Interval`]; stopped when the engine drops.
    _syncer: Option<Syncer>,
}

impl Engine {
    /// Opens (or creates) the store in `config.data_dir` and finishes any retention step
    /// a crash interrupted.
    pub fn open(config: &FjallConfig, clock: Clock) -> Result<Engine, StoreError> {
        if config.partition_secs == 0 {
            return Err(StoreError::Unavailable(
                "store config: partition_secs must be at least 1".into(),
            ));
        }
        let dir = config.data_dir.display();
        let db = Database::builder(&config.data_dir)
            .cache_size(config.cache_mib.saturating_mul(MIB))
            .open()
            .map_err(unavailable(format_args!("opening the database in {dir}")))?;
        let registry = db
            .keyspace(REGISTRY, KeyspaceCreateOptions::default)
            .map_err(unavailable("opening the registry keyspace"))?;
        let meta = db
            .keyspace(META, KeyspaceCreateOptions::default)
            .map_err(unavailable("opening the meta keyspace"))?;
        let memtable_bytes = config.memtable_mib.max(1).saturating_mul(MIB);
        let next_id = read_u64(&meta, META_NEXT_ID)?.unwrap_or(1);
        let partitions = open_partitions(&db, &meta, memtable_bytes)?;
        let durability = match config.fsync {
            FsyncPolicy::Always => PersistMode::SyncData,
            FsyncPolicy::Interval | FsyncPolicy::Never => PersistMode::Buffer,
        };
        let syncer = (config.fsync == FsyncPolicy::Interval)
            .then(|| Syncer::start(db.clone(), config.fsync_interval_ms))
            .transpose()?;
        Ok(Engine {
            db,
            registry,
            meta,
            partitions: RwLock::new(partitions),
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            stripe_hasher: RandomState::new(),
            next_id: Mutex::new(next_id),
            clock,
            partition_secs: config.partition_secs,
            memtable_bytes,
            durability,
            _syncer: syncer,
        })
    }

    /// Fsyncs the journal, then flushes every memtable to disk: everything written so
    /// far is durable, and the next open has little journal to replay.
    ///
    /// The flush is waited for at most [`FLUSH_WAIT`]: fjall's own wait loops until no
    /// sealed memtable is left, and a memtable that its workers leave sealed (seen once
    /// in CI at close; fjall-rs/fjall#257 is of that kind) would make it loop forever,
    /// and `weir serve` never stop. The journal already holds every write, so giving up
    /// costs only a longer replay at the next open; the wait goes on in a thread of its
    /// own until the process exits.
    pub fn flush_and_sync(&self) -> Result<(), StoreError> {
        self.db
            .persist(PersistMode::SyncAll)
            .map_err(unavailable("syncing the journal"))?;
        let mut keyspaces = vec![self.registry.clone(), self.meta.clone()];
        keyspaces.extend(self.read_partitions().live.values().cloned());
        let (done, flushed) = mpsc::channel();
        std::thread::Builder::new()
            .name("weir-store-flush".into())
            .spawn(move || {
                let result = keyspaces
                    .iter()
                    .try_for_each(|k| k.rotate_memtable_and_wait());
                let _ = done.send(result);
            })
            .map_err(|e| StoreError::Unavailable(format!("starting the memtable flush: {e}")))?;
        match flushed.recv_timeout(FLUSH_WAIT) {
            Ok(result) => result.map_err(unavailable("flushing memtables"))?,
            Err(RecvTimeoutError::Timeout) => tracing::warn!(
                "store: memtables not flushed within {FLUSH_WAIT:?} at close; the journal \
                 holds every write and is replayed at the next open"
            ),
            Err(RecvTimeoutError::Disconnected) => {
                return Err(StoreError::Unavailable(
                    "flushing memtables: the flush thread ended without a result".into(),
                ));
            }
        }
        self.db
            .persist(PersistMode::SyncAll)
            .map_err(unavailable("syncing the journal"))
    }

    // ----- operations -------------------------------------------------------------

    /// [`crate::Store::register`].
    pub fn register(&self, reg: Registration) -> Result<RegisterOutcome, StoreError> {
        let _stream = self.stripe(&reg.path);
        if let Some(rec) = self.load(&reg.path)? {
            if !rec.admits(&reg.owner) {
                return Ok(RegisterOutcome::WrongSecret);
            }
            return Ok(RegisterOutcome::Existing(self.state_of(&reg.path, &rec)));
        }
        let mut next_id = lock(&self.next_id);
        let id = *next_id;
        let rec = StreamRecord::new(id, &reg.owner, reg.descriptor, (self.clock)());
        let mut batch = self.batch();
        batch.insert(&self.registry, reg.path.as_str(), rec.encode_to_vec());
        batch.insert(&self.meta, META_NEXT_ID, (id + 1).to_le_bytes());
        batch
            .commit()
            .map_err(unavailable(format_args!("registering {}", reg.path)))?;
        *next_id = id + 1;
        Ok(RegisterOutcome::Created(rec.state(&reg.path, 0)))
    }

    /// [`crate::Store::append`]; also returns the notification to send, if any.
    pub fn append(
        &self,
        req: AppendRequest,
    ) -> Result<(AppendOutcome, Option<Appended>), StoreError> {
        let _stream = self.stripe(&req.path);
        let Some(mut rec) = self.load(&req.path)? else {
            return Ok((AppendOutcome::NotRegistered, None));
        };
        if !rec.admits(&req.owner) {
            return Ok((AppendOutcome::WrongSecret, None));
        }
        let next = rec.next_index;
        let first = req.first_index.unwrap_or(next);
        let len = req.entries.len() as u64;
        let end = first.saturating_add(len);
        if let Some(count) = rec.terminal_count.filter(|&c| len > 0 && end > c) {
            return Ok((AppendOutcome::Terminated { count }, None));
        }
        if first > next {
            return Ok((AppendOutcome::Gap { expected: next }, None));
        }
        let duplicates = end.min(next) - first;
        let (old, new) = req
            .entries
            .split_at(usize::try_from(duplicates).unwrap_or(0));
        if let Some(index) = self.find_conflict(&req.path, &rec, first, old)? {
            return Ok((AppendOutcome::Conflict { index }, None));
        }
        if new.is_empty() {
            let outcome = AppendOutcome::Stored {
                first,
                next,
                duplicates,
            };
            return Ok((outcome, None));
        }
        self.write_chunk(&req.path, &mut rec, new)?;
        let outcome = AppendOutcome::Stored {
            first,
            next: rec.next_index,
            duplicates,
        };
        Ok((outcome, Some(notice(&req.path, &rec))))
    }

    /// [`crate::Store::terminate`]; also returns the notification to send, if any.
    pub fn terminate(
        &self,
        path: &str,
        owner: &crate::Owner,
        count: u64,
    ) -> Result<(TerminateOutcome, Option<Appended>), StoreError> {
        let _stream = self.stripe(path);
        let Some(mut rec) = self.load(path)? else {
            return Ok((TerminateOutcome::NotRegistered, None));
        };
        if !rec.admits(owner) {
            return Ok((TerminateOutcome::WrongSecret, None));
        }
        match rec.terminal_count {
            Some(existing) if existing == count => {
                return Ok((TerminateOutcome::Terminated { count }, None));
            }
            Some(existing) => return Ok((TerminateOutcome::Incompatible { existing }, None)),
            None => {}
        }
        if count < rec.next_index {
            let next = rec.next_index;
            return Ok((TerminateOutcome::BelowWritten { next }, None));
        }
        rec.terminal_count = Some(count);
        let mut batch = self.batch();
        batch.insert(&self.registry, path, rec.encode_to_vec());
        batch
            .commit()
            .map_err(unavailable(format_args!("terminating {path}")))?;
        Ok((
            TerminateOutcome::Terminated { count },
            Some(notice(path, &rec)),
        ))
    }

    /// [`crate::Store::stream`].
    pub fn stream(&self, path: &str) -> Result<Option<StreamState>, StoreError> {
        Ok(self.load(path)?.map(|rec| self.state_of(path, &rec)))
    }

    /// [`crate::Store::list`].
    pub fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StreamState>, StoreError> {
        let start = match after {
            Some(a) if a >= prefix => Bound::Excluded(a.as_bytes().to_vec()),
            _ => Bound::Included(prefix.as_bytes().to_vec()),
        };
        let parts = self.read_partitions();
        let mut out = Vec::new();
        for guard in self.registry.range((start, Bound::Unbounded)) {
            if out.len() >= limit {
                break;
            }
            let (key, value) = guard
                .into_inner()
                .map_err(unavailable("listing the registry"))?;
            if !key.starts_with(prefix.as_bytes()) {
                break;
            }
            let path = std::str::from_utf8(&key)
                .map_err(|e| StoreError::Corrupt(format!("registry key not UTF-8: {e}")))?;
            let rec = StreamRecord::decode_checked(&key, &value)?;
            let low = rec.low_water(|p| parts.live.contains_key(&p));
            out.push(rec.state(path, low));
        }
        Ok(out)
    }

    /// [`crate::Store::read`].
    pub fn read(
        &self,
        path: &str,
        from: u64,
        limit: usize,
    ) -> Result<Option<ReadBatch>, StoreError> {
        let Some(rec) = self.load(path)? else {
            return Ok(None);
        };
        let (low, segments) = self.segments(&rec);
        let started_at = from.max(low);
        let end = rec.next_index.min(started_at.saturating_add(limit as u64));
        let entries = self.collect(path, rec.id, &segments, started_at, end)?;
        Ok(Some(ReadBatch {
            state: rec.state(path, low),
            started_at,
            below_low_water: from < low,
            entries,
        }))
    }

    /// [`crate::Store::index_at_time`].
    pub fn index_at_time(&self, path: &str, time_ns: i64) -> Result<Option<u64>, StoreError> {
        let Some(rec) = self.load(path)? else {
            return Ok(None);
        };
        let (low, segments) = self.segments(&rec);
        // A chunk is never stored in a partition that ends before its ingest time, so
        // partitions ending at or before `time_ns` cannot hold what we look for.
        let candidates = segments
            .iter()
            .filter(|s| self.partition_end_ns(s.partition) > i128::from(time_ns));
        for seg in candidates {
            let range = chunk_key(rec.id, seg.first)..chunk_key(rec.id, seg.end);
            for guard in seg.keyspace.range(range) {
                let (key, value) = guard
                    .into_inner()
                    .map_err(unavailable(format_args!("reading entries of {path}")))?;
                if chunk::ingest_ns(&value)? >= time_ns {
                    return Ok(Some(chunk_first_index(&key)?.max(low)));
                }
            }
        }
        Ok(Some(rec.next_index))
    }

    /// [`crate::Store::expire_before`].
    pub fn expire_before(&self, cutoff_ns: i64) -> Result<RetentionReport, StoreError> {
        let doomed: HashSet<u64> = self.expired_partitions(&self.read_partitions(), cutoff_ns);
        if doomed.is_empty() {
            return Ok(RetentionReport::default());
        }
        // Counted before taking the write lock so appends are not held up by the scan.
        let entries_dropped = self.entries_in(&doomed)?;
        let mut parts = self.write_partitions();
        let doomed = self.expired_partitions(&parts, cutoff_ns);
        let through = doomed
            .iter()
            .map(|p| p.saturating_add(self.partition_secs))
            .fold(parts.expired_through, u64::max);
        let mut batch = self.db.batch().durability(Some(PersistMode::SyncData));
        for &p in &doomed {
            batch.remove(&self.meta, partition_meta_key(p));
        }
        batch.insert(&self.meta, META_EXPIRED_THROUGH, through.to_le_bytes());
        batch
            .commit()
            .map_err(unavailable("recording expired partitions"))?;
        parts.expired_through = through;
        let handles: Vec<Keyspace> = doomed.iter().filter_map(|p| parts.live.remove(p)).collect();
        drop(parts);
        for keyspace in handles {
            self.db
                .delete_keyspace(keyspace)
                .map_err(unavailable("dropping an expired partition"))?;
        }
        Ok(RetentionReport {
            partitions_dropped: doomed.len() as u64,
            entries_dropped,
        })
    }

    /// [`crate::Store::expire_stream`]: raises the record's low-water floor.
    pub fn expire_stream(&self, path: &str, low_water: u64) -> Result<Option<u64>, StoreError> {
        let _stream = self.stripe(path);
        let Some(mut rec) = self.load(path)? else {
            return Ok(None);
        };
        let current = {
            let parts = self.read_partitions();
            rec.low_water(|p| parts.live.contains_key(&p))
        };
        let target = low_water.min(rec.next_index);
        if target <= current {
            return Ok(Some(0));
        }
        rec.low_water = target;
        let mut batch = self.batch();
        batch.insert(&self.registry, path, rec.encode_to_vec());
        batch
            .commit()
            .map_err(unavailable(format_args!("expiring entries of {path}")))?;
        Ok(Some(target - current))
    }

    /// [`crate::Store::partitions`].
    pub fn partitions(&self) -> Vec<PartitionUsage> {
        let ns = |secs: u64| i64::try_from(i128::from(secs) * NS_PER_SEC).unwrap_or(i64::MAX);
        self.read_partitions()
            .live
            .iter()
            .map(|(&start, keyspace)| PartitionUsage {
                start_ns: ns(start),
                end_ns: ns(start.saturating_add(self.partition_secs)),
                bytes: keyspace.disk_space(),
            })
            .collect()
    }

    // ----- helpers ----------------------------------------------------------------

    /// The write lock of the stream at `path`.
    fn stripe(&self, path: &str) -> MutexGuard<'_, ()> {
        let i = self.stripe_hasher.hash_one(path) as usize % self.stripes.len();
        lock(&self.stripes[i])
    }

    fn read_partitions(&self) -> RwLockReadGuard<'_, Partitions> {
        self.partitions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write_partitions(&self) -> RwLockWriteGuard<'_, Partitions> {
        self.partitions
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A write batch with the configured durability.
    fn batch(&self) -> fjall::OwnedWriteBatch {
        self.db.batch().durability(Some(self.durability))
    }

    /// The stream record at `path`.
    fn load(&self, path: &str) -> Result<Option<StreamRecord>, StoreError> {
        let value = self.registry.get(path).map_err(unavailable(format_args!(
            "reading the registry record of {path}"
        )))?;
        value
            .map(|v| StreamRecord::decode_checked(path.as_bytes(), &v))
            .transpose()
    }

    /// The state of a stream with its current low-water mark.
    fn state_of(&self, path: &str, rec: &StreamRecord) -> StreamState {
        let parts = self.read_partitions();
        rec.state(path, rec.low_water(|p| parts.live.contains_key(&p)))
    }

    /// The low-water mark and the live partitions holding the stream's entries.
    fn segments(&self, rec: &StreamRecord) -> (u64, Vec<Segment>) {
        let parts = self.read_partitions();
        let low = rec.low_water(|p| parts.live.contains_key(&p));
        let segments = rec
            .partition_ranges()
            .filter(|&(_, _, end)| end > low)
            .filter_map(|(partition, first, end)| {
                let keyspace = parts.live.get(&partition)?.clone();
                Some(Segment {
                    partition,
                    first: first.max(low),
                    end,
                    keyspace,
                })
            })
            .collect();
        (low, segments)
    }

    /// Entries `[from, to)` of the stream, which must all be retained.
    fn collect(
        &self,
        path: &str,
        id: u64,
        segments: &[Segment],
        from: u64,
        to: u64,
    ) -> Result<Vec<StoredEntry>, StoreError> {
        let mut out = Vec::with_capacity(usize::try_from(to.saturating_sub(from)).unwrap_or(0));
        let mut next = from;
        for seg in segments {
            if next >= to {
                break;
            }
            if seg.end <= next {
                continue;
            }
            collect_segment(path, id, seg, &mut next, to, &mut out)?;
        }
        if next < to {
            return Err(StoreError::Corrupt(format!(
                "{path}: entries {next}..{to} are missing"
            )));
        }
        Ok(out)
    }

    /// The first index in `old` (numbered from `first`) whose payload differs from the
    /// stored entry. Entries below the low-water mark have expired and are taken as
    /// duplicates: they were stored once.
    fn find_conflict(
        &self,
        path: &str,
        rec: &StreamRecord,
        first: u64,
        old: &[Envelope],
    ) -> Result<Option<u64>, StoreError> {
        if old.is_empty() {
            return Ok(None);
        }
        let (low, segments) = self.segments(rec);
        let end = first + old.len() as u64;
        let from = first.max(low);
        if from >= end {
            return Ok(None);
        }
        let stored = self.collect(path, rec.id, &segments, from, end)?;
        let sent = old.iter().skip(usize::try_from(from - first).unwrap_or(0));
        Ok(stored
            .iter()
            .zip(sent)
            .find(|(s, e)| !same_payload(&s.envelope, e))
            .map(|(s, _)| s.index))
    }

    /// Writes `new` as one chunk at the stream's next index and the updated record, in
    /// one atomic batch.
    fn write_chunk(
        &self,
        path: &str,
        rec: &mut StreamRecord,
        new: &[Envelope],
    ) -> Result<(), StoreError> {
        let now = (self.clock)();
        let value = chunk::encode(now, new);
        let first = rec.next_index;
        let (parts, partition) = self.partition_for_write(now, rec)?;
        let Some(keyspace) = parts.live.get(&partition) else {
            return Err(StoreError::Unavailable(format!(
                "partition {partition} vanished while writing {path}"
            )));
        };
        rec.partitions
            .retain(|p| parts.live.contains_key(&p.partition));
        if rec.partitions.last().map(|p| p.partition) != Some(partition) {
            rec.partitions.push(PartitionStart {
                partition,
                first_index: first,
            });
        }
        rec.next_index = first + new.len() as u64;
        rec.low_water = rec.low_water(|p| parts.live.contains_key(&p));
        let mut batch = self.batch();
        batch.insert(keyspace, chunk_key(rec.id, first), value);
        batch.insert(&self.registry, path, rec.encode_to_vec());
        batch
            .commit()
            .map_err(unavailable(format_args!("appending to {path}")))?;
        drop(parts);
        Ok(())
    }

    /// The partition a chunk ingested at `now` goes to, created if needed, with the
    /// partitions read-locked so it cannot be dropped before the chunk is written.
    ///
    /// It is the partition of `now`, but never older than the stream's newest partition
    /// (so a stream's partitions stay in index order even if the clock steps back) and
    /// never an expired one.
    fn partition_for_write(
        &self,
        now: i64,
        rec: &StreamRecord,
    ) -> Result<(RwLockReadGuard<'_, Partitions>, u64), StoreError> {
        let newest = rec.partitions.last().map_or(0, |p| p.partition);
        loop {
            let parts = self.read_partitions();
            let target = self
                .partition_of(now)
                .max(newest)
                .max(parts.expired_through);
            if parts.live.contains_key(&target) {
                return Ok((parts, target));
            }
            drop(parts);
            self.create_partition(target)?;
        }
    }

    /// Creates the entry keyspace of partition `id` and records it as live.
    fn create_partition(&self, id: u64) -> Result<(), StoreError> {
        let mut parts = self.write_partitions();
        if id < parts.expired_through || parts.live.contains_key(&id) {
            return Ok(());
        }
        let keyspace = self
            .db
            .keyspace(&partition_name(id), || entry_options(self.memtable_bytes))
            .map_err(unavailable(format_args!("creating partition {id}")))?;
        let mut batch = self.batch();
        batch.insert(&self.meta, partition_meta_key(id), b"");
        batch
            .commit()
            .map_err(unavailable(format_args!("recording partition {id}")))?;
        parts.live.insert(id, keyspace);
        Ok(())
    }

    /// Live partitions whose time range ends at or before `cutoff_ns`.
    fn expired_partitions(&self, parts: &Partitions, cutoff_ns: i64) -> HashSet<u64> {
        parts
            .live
            .keys()
            .copied()
            .filter(|&p| self.partition_end_ns(p) <= i128::from(cutoff_ns))
            .collect()
    }

    /// How many entries the registry says the partitions in `doomed` hold.
    fn entries_in(&self, doomed: &HashSet<u64>) -> Result<u64, StoreError> {
        let mut total = 0u64;
        for guard in self.registry.iter() {
            let (key, value) = guard
                .into_inner()
                .map_err(unavailable("scanning the registry"))?;
            let rec = StreamRecord::decode_checked(&key, &value)?;
            total += rec
                .partition_ranges()
                .filter(|(p, _, _)| doomed.contains(p))
                .map(|(_, first, end)| end - first)
                .sum::<u64>();
        }
        Ok(total)
    }

    /// The start (Unix seconds) of the partition holding ingest time `now_ns`.
    fn partition_of(&self, now_ns: i64) -> u64 {
        let secs = u64::try_from(now_ns / 1_000_000_000).unwrap_or(0);
        secs - secs % self.partition_secs
    }

    /// The end of partition `start`, Unix nanoseconds.
    fn partition_end_ns(&self, start: u64) -> i128 {
        (i128::from(start) + i128::from(self.partition_secs)) * NS_PER_SEC
    }
}

/// Reads the chunks of one segment into `out`, advancing `next` up to `to`.
fn collect_segment(
    path: &str,
    id: u64,
    seg: &Segment,
    next: &mut u64,
    to: u64,
    out: &mut Vec<StoredEntry>,
) -> Result<(), StoreError> {
    let io = || unavailable(format!("reading entries of {path}"));
    // The chunk holding `next`: the one with the greatest first index at or below it.
    let Some(holder) = seg
        .keyspace
        .range(chunk_key(id, 0)..=chunk_key(id, *next))
        .next_back()
    else {
        return Err(StoreError::Corrupt(format!(
            "{path}: no chunk holds entry {next}"
        )));
    };
    let start = chunk_first_index(&holder.key().map_err(io())?)?;
    let stop = to.min(seg.end);
    for guard in seg
        .keyspace
        .range(chunk_key(id, start)..chunk_key(id, seg.end))
    {
        if *next >= stop {
            break;
        }
        let (key, value) = guard.into_inner().map_err(io())?;
        let chunk_first = chunk_first_index(&key)?;
        let chunk = Chunk::parse(Bytes::copy_from_slice(&value))
            .map_err(|e| StoreError::Corrupt(format!("{path}: chunk at {chunk_first}: {e}")))?;
        if chunk_first > *next || chunk_first + chunk.count <= *next {
            return Err(StoreError::Corrupt(format!(
                "{path}: entry {next} missing (chunk at {chunk_first} holds {})",
                chunk.count
            )));
        }
        for envelope in chunk.envelopes(*next - chunk_first, stop - *next)? {
            out.push(StoredEntry {
                index: *next,
                ingest_ns: chunk.ingest_ns,
                envelope,
            });
            *next += 1;
        }
    }
    Ok(())
}

/// The notification of a write to the stream with record `rec`.
fn notice(path: &str, rec: &StreamRecord) -> Appended {
    Appended {
        path: Arc::from(path),
        next: rec.next_index,
        terminal_count: rec.terminal_count,
    }
}

/// Options of an entry keyspace: chunks are large and written once, so they go to blob
/// files (key-value separation) and compaction only rewrites the small index tree.
fn entry_options(memtable_bytes: u64) -> KeyspaceCreateOptions {
    KeyspaceCreateOptions::default()
        .max_memtable_size(memtable_bytes)
        .with_kv_separation(Some(
            KvSeparationOptions::default().separation_threshold(KV_SEPARATION_THRESHOLD),
        ))
}

/// The keyspace name of partition `start`.
fn partition_name(start: u64) -> String {
    format!("{ENTRIES_PREFIX}{start}")
}

/// The partition start encoded in a keyspace name, if it is an entry keyspace.
fn parse_partition_name(name: &str) -> Option<u64> {
    name.strip_prefix(ENTRIES_PREFIX)?.parse().ok()
}

/// The meta key recording partition `start` as live.
fn partition_meta_key(start: u64) -> Vec<u8> {
    let mut key = META_PARTITION_PREFIX.to_vec();
    key.extend_from_slice(&start.to_be_bytes());
    key
}

/// A u64 stored little-endian under `key` in the meta keyspace.
fn read_u64(meta: &Keyspace, key: &[u8]) -> Result<Option<u64>, StoreError> {
    let value = meta
        .get(key)
        .map_err(unavailable("reading the meta keyspace"))?;
    value
        .map(|v| {
            <[u8; 8]>::try_from(&*v)
                .map(u64::from_le_bytes)
                .map_err(|_| {
                    StoreError::Corrupt(format!(
                        "meta value {:?} of {} bytes",
                        String::from_utf8_lossy(key),
                        v.len()
                    ))
                })
        })
        .transpose()
}

/// Opens the live partitions recorded in the meta keyspace and deletes entry keyspaces
/// that are not among them (left by a crash while creating or expiring a partition).
fn open_partitions(
    db: &Database,
    meta: &Keyspace,
    memtable_bytes: u64,
) -> Result<Partitions, StoreError> {
    let expired_through = read_u64(meta, META_EXPIRED_THROUGH)?.unwrap_or(0);
    let mut live = BTreeMap::new();
    for guard in meta.prefix(META_PARTITION_PREFIX) {
        let key = guard
            .key()
            .map_err(unavailable("reading the partition set"))?;
        let start = key
            .get(META_PARTITION_PREFIX.len()..)
            .and_then(|s| <[u8; 8]>::try_from(s).ok())
            .map(u64::from_be_bytes)
            .ok_or_else(|| StoreError::Corrupt("partition set key".into()))?;
        let keyspace = db
            .keyspace(&partition_name(start), || entry_options(memtable_bytes))
            .map_err(unavailable(format_args!("opening partition {start}")))?;
        live.insert(start, keyspace);
    }
    for name in db.list_keyspace_names() {
        let Some(start) = parse_partition_name(&name) else {
            continue;
        };
        if live.contains_key(&start) {
            continue;
        }
        let orphan = db
            .keyspace(&name, || entry_options(memtable_bytes))
            .map_err(unavailable(format_args!("opening stray partition {start}")))?;
        db.delete_keyspace(orphan)
            .map_err(unavailable(format_args!(
                "deleting stray partition {start}"
            )))?;
        tracing::info!(
            partition = start,
            "deleted an entry partition left by a crash"
        );
    }
    Ok(Partitions {
        live,
        expired_through,
    })
}

/// The background fsync of [`FsyncPolicy::Interval`].
struct Syncer {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Syncer {
    fn start(db: Database, interval_ms: u64) -> Result<Syncer, StoreError> {
        let (stop, stopped) = mpsc::channel::<()>();
        let period = Duration::from_millis(interval_ms.max(1));
        let thread = std::thread::Builder::new()
            .name("weir-store-fsync".into())
            .spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(period) {
                    if let Err(e) = db.persist(PersistMode::SyncData) {
                        tracing::warn!(error = %e, "periodic fsync of the store journal failed");
                    }
                }
            })
            .map_err(|e| StoreError::Unavailable(format!("starting the fsync thread: {e}")))?;
        Ok(Syncer {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Hooks for the unit tests to damage stored data.
#[cfg(test)]
impl Engine {
    /// Overwrites the registry record of `path` with raw bytes.
    pub fn put_raw_record(&self, path: &str, bytes: &[u8]) {
        self.registry.insert(path, bytes).unwrap();
    }

    /// Overwrites the chunk of `path` at `first` with raw bytes.
    pub fn put_raw_chunk(&self, path: &str, first: u64, bytes: &[u8]) {
        let rec = self.load(path).unwrap().unwrap();
        let partition = rec.partitions.last().unwrap().partition;
        let parts = self.read_partitions();
        parts.live[&partition]
            .insert(chunk_key(rec.id, first), bytes)
            .unwrap();
    }
}
