//! [`NatsStore`]: the [`Store`] operations on top of [`Js`]. The design is in the crate
//! docs.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::broadcast;
use weir_core::Envelope;
use weir_core::payload::same_payload;
use weir_store::{
    AppendOutcome, AppendRequest, Appended, Clock, OpenHandle, Owner, PartitionUsage, ReadBatch,
    RegisterOutcome, Registration, RetentionReport, Store, StoreError, StoredEntry, StreamState,
    TerminateOutcome,
};

use crate::NatsConfig;
use crate::js::{CAS_ATTEMPTS, Js, Published};
use crate::names;
use crate::record::{self, RecordHead, RegRecord};

/// Capacity of the notification channel of [`Store::subscribe`].
const NOTIFY_CAPACITY: usize = 4096;
/// Registry records kept in memory for owner checks (owners never change).
const REG_CACHE: usize = 100_000;
/// Headroom left under the server's max payload for headers.
const HEADER_ROOM: usize = 4096;
/// Meta key: entries ingested before this (Unix ns, decimal) have expired.
const META_EXPIRED: &str = "expired";
/// Meta key prefix of a live partition (`p.<start_ns>`).
const META_PART: &str = "p.";
/// Streams whose state is loaded at once when listing.
const LIST_CONCURRENCY: usize = 16;

/// Where a stream's subject ends: its last record, or the registry's memory of it when
/// every record aged out.
#[derive(Debug, Clone, Copy)]
struct Tail {
    /// Stream sequence of the last record (0: none on the subject).
    seq: u64,
    /// First index of the last record.
    first: u64,
    next: u64,
    terminal: Option<u64>,
    ingest_ns: i64,
}

/// The open part of the store.
struct Inner {
    js: Js,
    config: NatsConfig,
    clock: Clock,
    /// Registry records by path, for owner checks.
    regs: Mutex<HashMap<String, Arc<RegRecord>>>,
    /// Partitions known to be recorded in meta.
    parts: Mutex<HashSet<i64>>,
    notifier: tokio::task::JoinHandle<()>,
}

/// The JetStream-backed [`Store`]. See the crate docs for its design.
pub struct NatsStore {
    inner: OpenHandle<Inner>,
    notify: broadcast::Sender<Appended>,
}

impl std::fmt::Debug for NatsStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsStore").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

impl NatsStore {
    /// Connects to JetStream and creates the stream and buckets if needed, with the
    /// system clock.
    pub async fn connect(config: NatsConfig) -> Result<NatsStore, StoreError> {
        Self::connect_with_clock(config, Arc::new(weir_core::now_ns)).await
    }

    /// Connects with `clock` as the source of ingest time (for tests).
    pub async fn connect_with_clock(
        config: NatsConfig,
        clock: Clock,
    ) -> Result<NatsStore, StoreError> {
        let js = Js::connect(&config).await?;
        let (notify, _) = broadcast::channel(NOTIFY_CAPACITY);
        let notifier = crate::notify::start(&js, notify.clone()).await?;
        let inner = Inner {
            js,
            config,
            clock,
            regs: Mutex::new(HashMap::new()),
            parts: Mutex::new(HashSet::new()),
            notifier,
        };
        Ok(NatsStore {
            inner: OpenHandle::new(inner),
            notify,
        })
    }

    fn inner(&self) -> Result<Arc<Inner>, StoreError> {
        self.inner.get()
    }
}

impl Inner {
    fn subject(&self, path: &str) -> String {
        names::entry_subject(&self.js.prefix, &names::token(path))
    }

    fn path_header<'a>(&self, path: &'a str) -> Option<&'a str> {
        names::is_hashed(&names::token(path)).then_some(path)
    }

    /// The registry record (cached: owners and descriptors never change).
    async fn reg(&self, path: &str) -> Result<Option<Arc<RegRecord>>, StoreError> {
        if let Some(r) = lock(&self.regs).get(path) {
            return Ok(Some(r.clone()));
        }
        let Some((_, rec)) = self.js.reg_get(&names::token(path)).await? else {
            return Ok(None);
        };
        let rec = Arc::new(rec);
        let mut regs = lock(&self.regs);
        if regs.len() >= REG_CACHE {
            regs.clear();
        }
        regs.insert(path.to_string(), rec.clone());
        Ok(Some(rec))
    }

    /// The stream's tail.
    async fn tail(&self, path: &str, subject: &str) -> Result<Tail, StoreError> {
        if let Some(h) = self.js.last(subject).await? {
            return Ok(Tail {
                seq: h.seq,
                first: h.first,
                next: h.end(),
                terminal: h.terminal,
                ingest_ns: h.ingest_ns,
            });
        }
        // No record on the subject: new, or every record aged out (max_age).
        let fresh = self.js.reg_get(&names::token(path)).await?;
        let (next, terminal) = fresh
            .map(|(_, r)| (r.next_hint, r.terminal))
            .unwrap_or((0, None));
        Ok(Tail {
            seq: 0,
            first: next,
            next,
            terminal,
            ingest_ns: i64::MIN,
        })
    }

    /// Entries ingested before this have expired (`expire_before`).
    async fn expired_through(&self) -> Result<i64, StoreError> {
        Ok(self.expired_meta().await?.1)
    }

    async fn expired_meta(&self) -> Result<(u64, i64), StoreError> {
        match self.js.meta_get(META_EXPIRED).await? {
            None => Ok((0, i64::MIN)),
            Some((rev, bytes)) => {
                let text = std::str::from_utf8(&bytes).map_err(|e| corrupt(e.to_string()))?;
                let ns = text
                    .parse::<i64>()
                    .map_err(|e| corrupt(format!("meta {META_EXPIRED}: {e}")))?;
                Ok((rev, ns))
            }
        }
    }

    /// The low-water mark: the first record ingested at or after the expiry cut-off
    /// (the first record when none expired), raised to the `expire_stream` floor.
    async fn low_water(
        &self,
        subject: &str,
        reg: &RegRecord,
        tail: &Tail,
        expired: i64,
    ) -> Result<u64, StoreError> {
        let derived = if tail.seq == 0 {
            tail.next
        } else {
            match self.js.next_from(subject, 1).await? {
                Some((first, _)) if first.ingest_ns >= expired => first.first,
                Some((first, _)) => self
                    .js
                    .search(subject, first.seq + 1, tail.seq, |h| h.ingest_ns >= expired)
                    .await?
                    .map(|(h, _)| h.first)
                    .unwrap_or(tail.next),
                None => tail.next,
            }
        };
        Ok(derived.max(reg.low_floor).min(tail.next))
    }

    async fn state(&self, path: &str) -> Result<Option<StreamState>, StoreError> {
        let Some(reg) = self.reg(path).await? else {
            return Ok(None);
        };
        let expired = self.expired_through().await?;
        self.state_with(path, &reg, expired).await.map(Some)
    }

    async fn state_with(
        &self,
        path: &str,
        reg: &RegRecord,
        expired: i64,
    ) -> Result<StreamState, StoreError> {
        let subject = self.subject(path);
        let tail = self.tail(path, &subject).await?;
        // The floor may have moved (expire_stream by any collector): read it fresh.
        let floor = match self.js.reg_get(&names::token(path)).await? {
            Some((_, r)) => r.low_floor,
            None => reg.low_floor,
        };
        let reg = RegRecord {
            low_floor: floor,
            ..reg.clone()
        };
        let low = self.low_water(&subject, &reg, &tail, expired).await?;
        Ok(make_state(path, &reg, &tail, low))
    }

    /// Entries `[from, to)` of a stream whose tail is `tail`.
    async fn collect(
        &self,
        subject: &str,
        tail: &Tail,
        from: u64,
        to: u64,
    ) -> Result<Vec<StoredEntry>, StoreError> {
        let mut out = Vec::new();
        if from >= to || tail.seq == 0 {
            return Ok(out);
        }
        // Live readers mostly want the last record: fetch it directly. Below the tail,
        // reads from the start (the low-water mark) are the common case: the subject's
        // first record, then a search only from there when it ends before `from`.
        let mut cur = if from >= tail.first {
            self.js.next_from(subject, tail.seq).await?
        } else {
            match self.js.next_from(subject, 1).await? {
                Some((first, _)) if first.seq > tail.seq => None,
                Some((first, msg)) if first.end() > from => Some((first, msg)),
                Some((first, _)) => {
                    self.js
                        .search(subject, first.seq + 1, tail.seq, |h| h.end() > from)
                        .await?
                }
                None => None,
            }
        };
        let mut index = from;
        while let Some((head, msg)) = cur {
            if head.first > index {
                return Err(corrupt(format!(
                    "{subject}: record {} starts at {}, expected {index}",
                    head.seq, head.first
                )));
            }
            let entries = record::decode_entries(msg.payload, head.count)?;
            let skip = usize::try_from(index - head.first).unwrap_or(usize::MAX);
            for envelope in entries.into_iter().skip(skip) {
                if index >= to {
                    break;
                }
                out.push(StoredEntry {
                    index,
                    ingest_ns: head.ingest_ns,
                    envelope,
                });
                index += 1;
            }
            if index >= to || head.seq >= tail.seq {
                break;
            }
            cur = self.js.next_from(subject, head.seq + 1).await?;
        }
        Ok(out)
    }

    /// Records the partition of `ingest_ns` in meta before anything is written in it.
    async fn ensure_partition(&self, ingest_ns: i64) -> Result<(), StoreError> {
        let width = self.config.partition_ns();
        let start = ingest_ns.div_euclid(width) * width;
        if lock(&self.parts).contains(&start) {
            return Ok(());
        }
        self.js
            .meta_create(&format!("{META_PART}{start}"), Bytes::new())
            .await?;
        lock(&self.parts).insert(start);
        Ok(())
    }

    /// Raises the registry's memory of the stream (next index, terminal count) by
    /// compare-and-set, so it survives every record aging out.
    async fn remember(
        &self,
        path: &str,
        next: u64,
        terminal: Option<u64>,
    ) -> Result<(), StoreError> {
        let key = names::token(path);
        for _ in 0..CAS_ATTEMPTS {
            let Some((rev, mut rec)) = self.js.reg_get(&key).await? else {
                return Ok(());
            };
            if rec.next_hint >= next && (terminal.is_none() || rec.terminal == terminal) {
                return Ok(());
            }
            rec.next_hint = rec.next_hint.max(next);
            if terminal.is_some() {
                rec.terminal = terminal;
            }
            if self.js.reg_update(&key, &rec, rev).await? {
                return Ok(());
            }
        }
        Err(StoreError::Unavailable(format!(
            "updating the registry of {path}: too many concurrent writers"
        )))
    }

    /// Splits `entries` into runs that fit one message.
    fn split<'a>(&self, entries: &'a [Envelope]) -> Vec<&'a [Envelope]> {
        let limit = self.js.max_payload.saturating_sub(HEADER_ROOM).max(1024);
        let mut runs = Vec::new();
        let (mut start, mut size) = (0, 0);
        for (i, e) in entries.iter().enumerate() {
            let len = record::framed_len(e);
            if i > start && size + len > limit {
                runs.push(&entries[start..i]);
                (start, size) = (i, 0);
            }
            size += len;
        }
        if start < entries.len() {
            runs.push(&entries[start..]);
        }
        runs
    }

    async fn append(&self, req: AppendRequest) -> Result<AppendOutcome, StoreError> {
        let Some(reg) = self.reg(&req.path).await? else {
            return Ok(AppendOutcome::NotRegistered);
        };
        if !reg.admits(&req.owner) {
            return Ok(AppendOutcome::WrongSecret);
        }
        let subject = self.subject(&req.path);
        let len = req.entries.len() as u64;
        let mut fixed_first = req.first_index;
        // Entries this call itself stored (a retry sees them as already there).
        let mut ours = 0u64;
        let mut last_race = String::new();
        for _ in 0..CAS_ATTEMPTS {
            let tail = self.tail(&req.path, &subject).await?;
            let next = tail.next;
            let first = fixed_first.unwrap_or(next);
            let end = first.saturating_add(len);
            if let Some(count) = tail.terminal.filter(|&c| len > 0 && end > c) {
                return Ok(AppendOutcome::Terminated { count });
            }
            if first > next {
                return Ok(AppendOutcome::Gap { expected: next });
            }
            let overlap = end.min(next) - first;
            if overlap > 0 {
                let expired = self.expired_through().await?;
                let low = self.low_water(&subject, &reg, &tail, expired).await?;
                let from = low.max(first).min(end.min(next));
                let stored = self.collect(&subject, &tail, from, end.min(next)).await?;
                if stored.len() as u64 != end.min(next) - from {
                    return Err(corrupt(format!(
                        "{}: read {} stored entries from {from}, expected {}",
                        req.path,
                        stored.len(),
                        end.min(next) - from
                    )));
                }
                for s in &stored {
                    let sent = &req.entries[usize::try_from(s.index - first).unwrap_or(0)];
                    if !same_payload(sent, &s.envelope) {
                        return Ok(AppendOutcome::Conflict { index: s.index });
                    }
                }
            }
            let duplicates = overlap.saturating_sub(ours);
            let new = &req.entries[usize::try_from(overlap).unwrap_or(0)..];
            if new.is_empty() {
                return Ok(AppendOutcome::Stored {
                    first,
                    next,
                    duplicates,
                });
            }
            let mut expected = tail.seq;
            let mut cur = next;
            let mut ingest = (self.clock)().max(tail.ingest_ns);
            let mut raced = false;
            for run in self.split(new) {
                self.ensure_partition(ingest).await?;
                let head = RecordHead {
                    seq: 0,
                    first: cur,
                    count: run.len() as u64,
                    ingest_ns: ingest,
                    terminal: tail.terminal,
                };
                let published = self
                    .js
                    .publish_cas(
                        &subject,
                        head.headers(self.path_header(&req.path)),
                        record::encode_entries(run),
                        expected,
                        &names::append_msg_id(&req.path, cur),
                    )
                    .await?;
                match published {
                    Published::Stored(seq) => {
                        expected = seq;
                        cur = head.end();
                        ours += head.count;
                        fixed_first = Some(first);
                        ingest = ingest.max((self.clock)());
                    }
                    Published::Raced => {
                        last_race = "another writer got there first".into();
                        raced = true;
                        break;
                    }
                    Published::Unknown(e) => {
                        last_race = e;
                        raced = true;
                        break;
                    }
                }
            }
            if raced {
                continue;
            }
            if self.config.max_age_secs > 0 {
                self.remember(&req.path, cur, None).await?;
            }
            return Ok(AppendOutcome::Stored {
                first,
                next: cur,
                duplicates,
            });
        }
        Err(StoreError::Unavailable(format!(
            "appending to {}: no stable tail after {CAS_ATTEMPTS} attempts ({last_race})",
            req.path
        )))
    }

    async fn terminate(
        &self,
        path: &str,
        owner: &Owner,
        count: u64,
    ) -> Result<TerminateOutcome, StoreError> {
        let Some(reg) = self.reg(path).await? else {
            return Ok(TerminateOutcome::NotRegistered);
        };
        if !reg.admits(owner) {
            return Ok(TerminateOutcome::WrongSecret);
        }
        let subject = self.subject(path);
        for _ in 0..CAS_ATTEMPTS {
            let tail = self.tail(path, &subject).await?;
            match tail.terminal {
                Some(existing) if existing == count => {
                    self.remember(path, tail.next, Some(count)).await?;
                    return Ok(TerminateOutcome::Terminated { count });
                }
                Some(existing) => return Ok(TerminateOutcome::Incompatible { existing }),
                None => {}
            }
            if count < tail.next {
                return Ok(TerminateOutcome::BelowWritten { next: tail.next });
            }
            let ingest = (self.clock)().max(tail.ingest_ns);
            self.ensure_partition(ingest).await?;
            let head = RecordHead {
                seq: 0,
                first: tail.next,
                count: 0,
                ingest_ns: ingest,
                terminal: Some(count),
            };
            let published = self
                .js
                .publish_cas(
                    &subject,
                    head.headers(self.path_header(path)),
                    Bytes::new(),
                    tail.seq,
                    &names::terminate_msg_id(path, tail.next, count),
                )
                .await?;
            if let Published::Stored(_) = published {
                self.remember(path, tail.next, Some(count)).await?;
                return Ok(TerminateOutcome::Terminated { count });
            }
        }
        Err(StoreError::Unavailable(format!(
            "terminating {path}: no stable tail after {CAS_ATTEMPTS} attempts"
        )))
    }

    async fn register(&self, reg: Registration) -> Result<RegisterOutcome, StoreError> {
        let key = names::token(&reg.path);
        let rec = RegRecord::new(&reg.path, &reg.owner, reg.descriptor, (self.clock)());
        if self.js.reg_create(&key, &rec).await? {
            let tail = Tail {
                seq: 0,
                first: 0,
                next: 0,
                terminal: None,
                ingest_ns: i64::MIN,
            };
            return Ok(RegisterOutcome::Created(make_state(
                &reg.path, &rec, &tail, 0,
            )));
        }
        // Someone registered it first (maybe another collector this very moment).
        let Some(existing) = self.reg(&reg.path).await? else {
            return Err(StoreError::Unavailable(format!(
                "{}: registered but not readable yet",
                reg.path
            )));
        };
        if !existing.admits(&reg.owner) {
            return Ok(RegisterOutcome::WrongSecret);
        }
        let expired = self.expired_through().await?;
        let state = self.state_with(&reg.path, &existing, expired).await?;
        Ok(RegisterOutcome::Existing(state))
    }

    async fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StreamState>, StoreError> {
        let mut paths = Vec::new();
        for key in self.js.reg_keys().await? {
            let path = match names::inline_path(&key) {
                Some(p) => p,
                None => match self.js.reg_get(&key).await? {
                    Some((_, r)) => r.path,
                    None => continue,
                },
            };
            if path.starts_with(prefix) && after.is_none_or(|a| path.as_str() > a) {
                paths.push(path);
            }
        }
        paths.sort();
        paths.truncate(limit);
        let expired = self.expired_through().await?;
        let states: Vec<Result<Option<StreamState>, StoreError>> = futures::stream::iter(paths)
            .map(|path| async move {
                match self.reg(&path).await? {
                    Some(reg) => self.state_with(&path, &reg, expired).await.map(Some),
                    None => Ok(None),
                }
            })
            .buffered(LIST_CONCURRENCY)
            .collect()
            .await;
        let mut out = Vec::with_capacity(states.len());
        for s in states {
            out.extend(s?);
        }
        Ok(out)
    }

    async fn read(
        &self,
        path: &str,
        from: u64,
        limit: usize,
    ) -> Result<Option<ReadBatch>, StoreError> {
        let Some(reg) = self.reg(path).await? else {
            return Ok(None);
        };
        let expired = self.expired_through().await?;
        let state = self.state_with(path, &reg, expired).await?;
        let subject = self.subject(path);
        // The tail as of the state (re-read: the state does not keep its sequence).
        let tail = self.tail(path, &subject).await?;
        let low = state.low_water;
        let started_at = from.max(low);
        let end = state
            .next_index
            .min(started_at.saturating_add(limit as u64));
        let entries = self.collect(&subject, &tail, started_at, end).await?;
        Ok(Some(ReadBatch {
            state,
            started_at,
            below_low_water: from < low,
            entries,
        }))
    }

    async fn index_at_time(&self, path: &str, time_ns: i64) -> Result<Option<u64>, StoreError> {
        let Some(reg) = self.reg(path).await? else {
            return Ok(None);
        };
        let subject = self.subject(path);
        let tail = self.tail(path, &subject).await?;
        let expired = self.expired_through().await?;
        let low = self.low_water(&subject, &reg, &tail, expired).await?;
        if tail.seq == 0 {
            return Ok(Some(tail.next));
        }
        let found = self
            .js
            .search(&subject, 1, tail.seq, |h| h.ingest_ns >= time_ns)
            .await?;
        Ok(Some(match found {
            Some((h, _)) => h.first.max(low).min(tail.next),
            None => tail.next,
        }))
    }

    async fn live_partitions(&self) -> Result<Vec<i64>, StoreError> {
        let mut starts: Vec<i64> = self
            .js
            .meta_keys()
            .await?
            .iter()
            .filter_map(|k| k.strip_prefix(META_PART)?.parse().ok())
            .collect();
        starts.sort_unstable();
        Ok(starts)
    }

    async fn expire_before(&self, cutoff_ns: i64) -> Result<RetentionReport, StoreError> {
        let width = self.config.partition_ns();
        let doomed: Vec<i64> = self
            .live_partitions()
            .await?
            .into_iter()
            .filter(|&s| s.saturating_add(width) <= cutoff_ns)
            .collect();
        let Some(through) = doomed.iter().map(|s| s.saturating_add(width)).max() else {
            return Ok(RetentionReport::default());
        };
        // 1. Record the cut-off (only ever raised): from now on reads derive low-water
        //    marks from it.
        let mut through = through;
        let mut recorded = false;
        for _ in 0..CAS_ATTEMPTS {
            let (rev, current) = self.expired_meta().await?;
            if current >= through {
                through = current;
                recorded = true;
                break;
            }
            let value = Bytes::from(through.to_string());
            if self.js.meta_cas(META_EXPIRED, value, rev).await? {
                recorded = true;
                break;
            }
        }
        if !recorded {
            return Err(StoreError::Unavailable(
                "recording expiry: too many concurrent writers".into(),
            ));
        }
        // 2. Forget the partitions.
        for start in &doomed {
            self.js.meta_delete(&format!("{META_PART}{start}")).await?;
            lock(&self.parts).remove(start);
        }
        // 3. Free the bytes: purge each stream's records ingested before the cut-off,
        //    always keeping its last record (it carries the next index and terminal).
        let mut entries_dropped = 0;
        for key in self.js.reg_keys().await? {
            let subject = names::entry_subject(&self.js.prefix, &key);
            let Some(last) = self.js.last(&subject).await? else {
                continue;
            };
            let Some((first, _)) = self.js.next_from(&subject, 1).await? else {
                continue;
            };
            if first.ingest_ns >= through || first.seq == last.seq {
                continue;
            }
            let keep = self
                .js
                .search(&subject, first.seq + 1, last.seq, |h| {
                    h.ingest_ns >= through
                })
                .await?
                .map(|(h, _)| h)
                .unwrap_or(last);
            if keep.seq > first.seq {
                self.js.purge_below(&subject, keep.seq).await?;
                entries_dropped += keep.first.saturating_sub(first.first);
            }
        }
        Ok(RetentionReport {
            partitions_dropped: doomed.len() as u64,
            entries_dropped,
        })
    }

    async fn expire_stream(&self, path: &str, low_water: u64) -> Result<Option<u64>, StoreError> {
        let key = names::token(path);
        let subject = self.subject(path);
        for _ in 0..CAS_ATTEMPTS {
            let Some((rev, mut rec)) = self.js.reg_get(&key).await? else {
                return Ok(None);
            };
            let tail = self.tail(path, &subject).await?;
            let expired = self.expired_through().await?;
            let current = self.low_water(&subject, &rec, &tail, expired).await?;
            let target = low_water.min(tail.next);
            if target <= current {
                return Ok(Some(0));
            }
            rec.low_floor = target;
            if self.js.reg_update(&key, &rec, rev).await? {
                return Ok(Some(target - current));
            }
        }
        Err(StoreError::Unavailable(format!(
            "expiring {path}: too many concurrent writers"
        )))
    }

    async fn partitions(&self) -> Result<Vec<PartitionUsage>, StoreError> {
        let width = self.config.partition_ns();
        Ok(self
            .live_partitions()
            .await?
            .into_iter()
            .map(|start| PartitionUsage {
                start_ns: start,
                end_ns: start.saturating_add(width),
                bytes: 0,
            })
            .collect())
    }
}

fn make_state(path: &str, reg: &RegRecord, tail: &Tail, low: u64) -> StreamState {
    StreamState {
        path: path.to_string(),
        descriptor: reg.descriptor(),
        registered_ns: reg.registered_ns,
        next_index: tail.next,
        low_water: low,
        terminal_count: tail.terminal,
        collector_owned: reg.collector_owned,
    }
}

#[async_trait]
impl Store for NatsStore {
    async fn register(&self, reg: Registration) -> Result<RegisterOutcome, StoreError> {
        self.inner()?.register(reg).await
    }

    async fn append(&self, req: AppendRequest) -> Result<AppendOutcome, StoreError> {
        self.inner()?.append(req).await
    }

    async fn terminate(
        &self,
        path: &str,
        owner: &Owner,
        count: u64,
    ) -> Result<TerminateOutcome, StoreError> {
        self.inner()?.terminate(path, owner, count).await
    }

    async fn stream(&self, path: &str) -> Result<Option<StreamState>, StoreError> {
        self.inner()?.state(path).await
    }

    async fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StreamState>, StoreError> {
        self.inner()?.list(prefix, after, limit).await
    }

    async fn read(
        &self,
        path: &str,
        from: u64,
        limit: usize,
    ) -> Result<Option<ReadBatch>, StoreError> {
        self.inner()?.read(path, from, limit).await
    }

    async fn index_at_time(&self, path: &str, time_ns: i64) -> Result<Option<u64>, StoreError> {
        self.inner()?.index_at_time(path, time_ns).await
    }

    fn subscribe(&self) -> broadcast::Receiver<Appended> {
        self.notify.subscribe()
    }

    async fn expire_before(&self, cutoff_ns: i64) -> Result<RetentionReport, StoreError> {
        self.inner()?.expire_before(cutoff_ns).await
    }

    async fn expire_stream(&self, path: &str, low_water: u64) -> Result<Option<u64>, StoreError> {
        self.inner()?.expire_stream(path, low_water).await
    }

    async fn partitions(&self) -> Result<Vec<PartitionUsage>, StoreError> {
        self.inner()?.partitions().await
    }

    /// Stops the notification consumer and flushes the connection. Nothing is buffered
    /// on this side: every write was acknowledged by JetStream before it returned.
    async fn close(&self) -> Result<(), StoreError> {
        let Some(inner) = self.inner.close() else {
            return Ok(());
        };
        inner.notifier.abort();
        inner
            .js
            .client
            .flush()
            .await
            .map_err(|e| StoreError::Unavailable(format!("flushing the NATS connection: {e}")))
    }
}
