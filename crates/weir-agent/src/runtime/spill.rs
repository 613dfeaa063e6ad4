//! Per-flusher spill: a flusher that lags behind the others fed by the same file source
//! gets its batches through its own spool, so it holds neither the source's checkpoint
//! nor the other flushers back (DESIGN.md, Agent).
//!
//! One [`SpillLane`] sits between a file source's fan-out and one flusher's input
//! channel, when the source feeds two flushers or more. Its spool is
//! `<data_dir>/spill/<source>/<flusher>/` (a [`Spool`] with one reader, the flusher).
//!
//! # States
//!
//! - **direct**: batches go to the flusher's channel, as without a lane. The lane keeps
//!   a reference to every batch handed over and not yet acknowledged ("outstanding"; at
//!   most the channel's bound plus the batch in hand).
//! - **spilling**: entered when the channel stayed full for `[spill] after_ms` ([`SpillConfig`]). The
//!   outstanding batches, then this one and every following one, are appended to the
//!   lane's spool. Once an append is durable (see below) it counts as that flusher's
//!   acknowledgement for the checkpoint ([`AckSink::delivered`] on the source's book):
//!   from then on the spool holds those lines for that flusher.
//!
//! The lane's feeder task reads the spool and hands its records to the flusher (as
//! fast as the flusher takes them). It starts only when no direct batch is in flight,
//! so it hands records after everything already queued, and it trims from each record
//! the entries the flusher already acknowledged through the direct path (the
//! outstanding batches that were copied to the spool): every entry reaches the flusher
//! once. When the feeder has read everything (under the lane's lock, so no append can
//! slip in between), the lane goes back to **direct**.
//!
//! A record leaves the spool when the flusher acknowledged it (acknowledgements are
//! made in read order, see [`OrderedAcks`]). After a crash the lane starts in
//! **spilling**: the feeder first delivers what the spool still holds, then the
//! re-read lines follow. What was in flight at the crash may come twice (the weir
//! flusher's receiver drops the duplicates by stream index; others are at-least-once).
//!
//! Durability of a spill: under `fsync = "interval"` the lane syncs the spool before
//! acknowledging the checkpoint (so a power loss cannot lose what the checkpoint moved
//! past); `always` is durable at append; `never` gives no guarantee beyond `kill -9`.
//! The lane's spool takes the `[spool]` settings except its size, which is
//! `[spill] max_bytes` per lane; with `when_full = "block"` a full lane stops the
//! source (as a lagging flusher did before lanes existed), with `drop_oldest` the
//! lagging flusher loses its oldest batches (counted by the spool).
//!
//! ```toml
//! [spill]
//! after_ms = 200          # a full flusher channel holds the source this long, then spills
//! max_bytes = 268435456   # each lane's spool (one per file source and flusher)
//! ```
//!
//! # Lanes left over
//!
//! At start, a lane spool that still holds records for a flusher that still reads the
//! source is drained through a lane even when the source now feeds that flusher alone;
//! an empty one is removed. A lane spool of a flusher or source no longer in the
//! configuration is removed when empty, and otherwise kept and reported (its records
//! can reach no one; [`clean_stale_lanes`] says where they are).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;

use super::delivery::{AckSink, Delivery, Phase};
use super::spool_pipeline::decode;
use crate::flusher::{Batch, Entries, StreamBatch};
use crate::spool::{RecordId, Spool, SpoolAcker, SpoolConfig, SpoolError};

/// `[spill]`: when a lagging flusher spills, and how much each lane may hold.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpillConfig {
    /// How long a full flusher channel may hold the source's fan-out before that
    /// flusher's batches go to its lane spool, milliseconds. Default 200: longer than a
    /// healthy flusher's hiccup, short enough that the other flushers barely notice.
    pub after_ms: u64,
    /// Most bytes each lane spool holds (one per file source and flusher). Default
    /// 256 MiB: a lagging flusher's backlog beyond it blocks the source (or drops the
    /// oldest, per `[spool] when_full`) instead of filling the disk.
    pub max_bytes: u64,
}

impl Default for SpillConfig {
    fn default() -> Self {
        SpillConfig {
            after_ms: 200,
            max_bytes: 256 << 20,
        }
    }
}

impl SpillConfig {
    /// Checks the ranges against the `[spool]` settings the lanes share; the message
    /// names the key.
    pub fn validate(&self, spool: &SpoolConfig) -> Result<(), String> {
        if !(1..=60_000).contains(&self.after_ms) {
            return Err(format!("after_ms = {} is outside 1..=60000", self.after_ms));
        }
        if self.max_bytes < spool.segment_bytes {
            return Err(format!(
                "max_bytes = {} is below [spool] segment_bytes = {} (a lane's spool holds at least one segment)",
                self.max_bytes, spool.segment_bytes
            ));
        }
        self.lane_spool(spool)
            .validate()
            .map_err(|e| format!("max_bytes: {e}"))
    }

    /// The spool settings of one lane: `[spool]` with this size.
    pub fn lane_spool(&self, spool: &SpoolConfig) -> SpoolConfig {
        SpoolConfig {
            max_bytes: self.max_bytes,
            ..spool.clone()
        }
    }

    /// [`SpillConfig::after_ms`] as a `Duration`.
    pub fn after(&self) -> Duration {
        Duration::from_millis(self.after_ms)
    }
}

/// The directory of the lane spool of (`source`, `flusher`).
pub fn lane_dir(data_dir: &Path, source: &str, flusher: &str) -> PathBuf {
    data_dir.join("spill").join(source).join(flusher)
}

/// Records of the lane spool in `dir` not yet acknowledged by its flusher, without
/// keeping it open; 0 when there is no such spool. An empty one is removed.
pub async fn leftover(dir: &Path, config: &SpoolConfig) -> Result<u64, SpoolError> {
    if !dir.exists() {
        return Ok(0);
    }
    let pending = {
        let spool = Spool::open(dir, config.clone()).await?;
        let stats = spool.stats();
        let acked = stats
            .cursors
            .iter()
            .find(|c| c.name == READER)
            .map_or(stats.first_retained, |c| c.acked_next);
        let pending = stats.next_id.0.saturating_sub(acked.0);
        spool.close().await?;
        pending
    };
    if pending == 0
        && let Err(e) = std::fs::remove_dir_all(dir)
    {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot remove an empty lane spool");
    }
    Ok(pending)
}

/// Removes the empty lane spools under `<data_dir>/spill/` that belong to no lane in
/// `live` (source, flusher); reports those that still hold records. Returns their
/// directories and pending record counts.
pub async fn clean_stale_lanes(
    data_dir: &Path,
    live: &BTreeSet<(String, String)>,
    config: &SpoolConfig,
) -> Vec<(PathBuf, u64)> {
    let mut kept = Vec::new();
    let Ok(sources) = std::fs::read_dir(data_dir.join("spill")) else {
        return kept;
    };
    for source in sources.flatten() {
        let Ok(flushers) = std::fs::read_dir(source.path()) else {
            continue;
        };
        let source_name = source.file_name().to_string_lossy().into_owned();
        for flusher in flushers.flatten() {
            let key = (
                source_name.clone(),
                flusher.file_name().to_string_lossy().into_owned(),
            );
            if live.contains(&key) {
                continue;
            }
            let dir = flusher.path();
            match leftover(&dir, config).await {
                Ok(0) => {
                    tracing::info!(dir = %dir.display(), "removed the empty lane spool of a flusher or source no longer configured")
                }
                Ok(pending) => {
                    tracing::warn!(
                        dir = %dir.display(),
                        source = %key.0,
                        flusher = %key.1,
                        pending,
                        "a lane spool of a flusher or source no longer configured holds records no one will read; configure that flusher again to deliver them, or delete the directory"
                    );
                    kept.push((dir, pending));
                }
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot open a left-over lane spool")
                }
            }
        }
        // a source directory left with no lane
        let _ = std::fs::remove_dir(source.path());
    }
    kept
}

/// Name of the lane spool's one reader.
const READER: &str = "flusher";

struct LaneState {
    spilling: bool,
    /// Mark of the next direct delivery.
    next_tag: u64,
}

/// What direct deliveries the flusher has not acknowledged yet.
#[derive(Default)]
struct Direct {
    outstanding: VecDeque<(u64, Arc<Batch>)>,
    /// Per stream, the end of what the flusher acknowledged through the direct path.
    done: HashMap<Arc<str>, u64>,
}

/// One flusher's lane of one file source (see the [module docs](self)).
pub struct SpillLane {
    source: String,
    flusher: String,
    spool: Spool,
    out: mpsc::Sender<Delivery>,
    slot: usize,
    /// The source's book: where "this flusher is done" goes.
    book: Arc<dyn AckSink>,
    state: tokio::sync::Mutex<LaneState>,
    direct: Mutex<Direct>,
    /// Direct deliveries in flight.
    in_flight: watch::Sender<usize>,
    /// Wakes the feeder: spilling began, or the fan-out is gone.
    wake: Notify,
    /// How long a full channel holds a batch before the lane spills.
    after: Duration,
    closed: std::sync::atomic::AtomicBool,
}

/// A lane's tasks and spool, for the shutdown.
pub struct LaneHandle {
    pub lane: Arc<SpillLane>,
    pub feeder: JoinHandle<()>,
    pub acks: JoinHandle<()>,
}

/// Acknowledges direct deliveries of a lane: updates the lane, then the source's book.
struct DirectSink {
    lane: Arc<SpillLane>,
}

impl AckSink for DirectSink {
    fn delivered(&self, slot: usize, tag: u64, batch: &Batch) {
        {
            let mut d = self
                .lane
                .direct
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            d.outstanding.retain(|(t, _)| *t != tag);
            for s in &batch.streams {
                let e = d.done.entry(s.stream.clone()).or_insert(0);
                *e = (*e).max(s.end_index());
            }
        }
        self.lane
            .in_flight
            .send_modify(|n| *n = n.saturating_sub(1));
        self.lane.book.delivered(slot, tag, batch);
    }
}

impl SpillLane {
    /// Opens the lane spool of (`source`, `flusher`) and starts its feeder. `slot` is
    /// the flusher's place in the source's book.
    #[allow(clippy::too_many_arguments)]
    pub async fn start(
        data_dir: &Path,
        source: &str,
        flusher: &str,
        slot: usize,
        out: mpsc::Sender<Delivery>,
        book: Arc<dyn AckSink>,
        config: &SpillConfig,
        spool: &SpoolConfig,
        phase: watch::Receiver<Phase>,
    ) -> Result<LaneHandle, SpoolError> {
        let dir = lane_dir(data_dir, source, flusher);
        let spool = Spool::open(&dir, config.lane_spool(spool)).await?;
        let reader = spool.reader(READER).await?;
        let (acks, acks_task) = OrderedAcks::start(reader.acker());
        let lane = Arc::new(SpillLane {
            source: source.to_string(),
            flusher: flusher.to_string(),
            spool,
            out,
            slot,
            book,
            // Start spilling: the feeder first hands over what a previous run left.
            state: tokio::sync::Mutex::new(LaneState {
                spilling: true,
                next_tag: 0,
            }),
            direct: Mutex::new(Direct::default()),
            in_flight: watch::channel(0).0,
            wake: Notify::new(),
            after: config.after(),
            closed: std::sync::atomic::AtomicBool::new(false),
        });
        let feeder = tokio::spawn(run_feeder(lane.clone(), reader, acks, phase));
        Ok(LaneHandle {
            lane,
            feeder,
            acks: acks_task,
        })
    }

    /// The lane's spool.
    pub fn spool(&self) -> &Spool {
        &self.spool
    }

    /// The name of the flusher the lane feeds.
    pub fn flusher(&self) -> &str {
        &self.flusher
    }

    /// No more batches will come (the source's batcher ended).
    pub fn close(&self) {
        self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
        self.wake.notify_one();
    }

    fn is_closed(&self) -> bool {
        self.closed.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Hands `batch` to the flusher, directly or through the spool.
    pub async fn send(self: &Arc<Self>, batch: Arc<Batch>) {
        let mut state = self.state.lock().await;
        if !state.spilling {
            let tag = state.next_tag;
            state.next_tag += 1;
            self.direct
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .outstanding
                .push_back((tag, batch.clone()));
            self.in_flight.send_modify(|n| *n += 1);
            let d = Delivery {
                batch: batch.clone(),
                sink: Arc::new(DirectSink { lane: self.clone() }),
                slot: self.slot,
                tag,
            };
            let sent = match self.out.try_send(d) {
                Ok(()) => Ok(()),
                Err(mpsc::error::TrySendError::Closed(_)) => Err(false),
                Err(mpsc::error::TrySendError::Full(d)) => {
                    // `send` is cancel-safe: on timeout nothing was sent.
                    match tokio::time::timeout(self.after, self.out.send(d)).await {
                        Ok(Ok(())) => Ok(()),
                        Ok(Err(_)) => Err(false),
                        Err(_) => Err(true),
                    }
                }
            };
            let spill = match sent {
                Ok(()) => return,
                Err(spill) => spill,
            };
            // Not handed over: not outstanding either.
            self.direct
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .outstanding
                .retain(|(t, _)| *t != tag);
            self.in_flight.send_modify(|n| *n = n.saturating_sub(1));
            if !spill {
                tracing::debug!(flusher = %self.flusher, "flusher gone; batch not handed over");
                return;
            }
            tracing::info!(source = %self.source, flusher = %self.flusher, "flusher lags: spilling its batches to its own spool");
            state.spilling = true;
            let outstanding: Vec<Arc<Batch>> = self
                .direct
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .outstanding
                .iter()
                .map(|(_, b)| b.clone())
                .collect();
            for b in outstanding {
                self.spill(&b).await;
            }
            self.wake.notify_one();
        }
        self.spill(&batch).await;
    }

    /// Appends `batch` to the lane spool durably, then tells the book the flusher is
    /// done with it. A failed append leaves the lines behind the checkpoint.
    async fn spill(&self, batch: &Batch) {
        if super::file_pipeline::append_durably(&self.spool, &self.source, batch).await {
            self.book.delivered(self.slot, 0, batch);
        }
    }
}

/// The lane's feeder: whenever the lane spills, waits until no direct delivery is in
/// flight, then hands the flusher every record of the spool (trimmed of what it
/// already has), and switches the lane back to direct once it has read them all.
async fn run_feeder(
    lane: Arc<SpillLane>,
    mut reader: crate::spool::SpoolReader,
    acks: Arc<OrderedAcks>,
    mut phase: watch::Receiver<Phase>,
) {
    let mut in_flight = lane.in_flight.subscribe();
    loop {
        let wake = lane.wake.notified();
        tokio::pin!(wake);
        wake.as_mut().enable();
        if lane.state.lock().await.spilling {
            tokio::select! {
                r = in_flight.wait_for(|n| *n == 0) => if r.is_err() { return },
                _ = super::delivery::reached(&mut phase, Phase::Abandon) => return,
            }
            loop {
                // Read without the lock (an append waiting for room holds it, and
                // only what this loop hands over frees room); take it only to make
                // sure nothing is left before going direct.
                let record = match reader.try_next().await {
                    Some(r) => r,
                    None => {
                        let mut state = lane.state.lock().await;
                        match reader.try_next().await {
                            Some(r) => r,
                            None => {
                                state.spilling = false;
                                break;
                            }
                        }
                    }
                };
                acks.given(record.id);
                let batch = decode(&record.payload)
                    .map(|(_, b)| trim(b, &lane))
                    .unwrap_or_default();
                if batch.streams.is_empty() {
                    acks.done(record.id);
                    continue;
                }
                let d = Delivery {
                    batch: Arc::new(batch),
                    sink: acks.clone(),
                    slot: lane.slot,
                    tag: record.id.0,
                };
                tokio::select! {
                    sent = lane.out.send(d) => if sent.is_err() { return },
                    _ = super::delivery::reached(&mut phase, Phase::Abandon) => return,
                }
            }
            tracing::info!(source = %lane.source, flusher = %lane.flusher, "flusher caught up: direct again");
        }
        if lane.is_closed() {
            return;
        }
        tokio::select! {
            _ = wake => {}
            _ = super::delivery::reached(&mut phase, Phase::Abandon) => return,
        }
    }
}

/// `batch` without the entries the flusher acknowledged through the direct path.
fn trim(batch: Batch, lane: &SpillLane) -> Batch {
    let direct = lane.direct.lock().unwrap_or_else(PoisonError::into_inner);
    let streams = batch
        .streams
        .into_iter()
        .filter_map(|s| match direct.done.get(&s.stream) {
            Some(&done) if done > s.first_index => from(s, done),
            _ => Some(s),
        })
        .collect();
    Batch { streams }
}

/// The part of `s` from index `at` on; `None` when nothing is left to send.
fn from(mut s: StreamBatch, at: u64) -> Option<StreamBatch> {
    if at >= s.end_index() {
        return s.terminal_count.map(|count| StreamBatch {
            stream: s.stream,
            first_index: at,
            entries: Entries::default(),
            terminal_count: Some(count),
        });
    }
    let skip = (at - s.first_index) as usize;
    s.entries.drop_front(skip);
    s.first_index = at;
    Some(s)
}

/// Acknowledges spool records of one reader in the order they were read: a record is
/// acknowledged (cumulatively) only once it and every record read before it are done,
/// whatever order the flusher finishes them in.
pub struct OrderedAcks {
    given: Mutex<VecDeque<(u64, bool)>>,
    tx: mpsc::UnboundedSender<RecordId>,
}

impl OrderedAcks {
    /// The acknowledger and its task (it ends when every clone is gone).
    pub fn start(acker: SpoolAcker) -> (Arc<OrderedAcks>, JoinHandle<()>) {
        let (tx, mut rx) = mpsc::unbounded_channel::<RecordId>();
        let task = tokio::spawn(async move {
            while let Some(id) = rx.recv().await {
                if let Err(e) = acker.ack(id).await {
                    tracing::error!(error = %e, "spool acknowledgement failed");
                }
            }
        });
        let acks = OrderedAcks {
            given: Mutex::new(VecDeque::new()),
            tx,
        };
        (Arc::new(acks), task)
    }

    /// Record `id` was read (call in read order).
    pub fn given(&self, id: RecordId) {
        self.given
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push_back((id.0, false));
    }

    /// Record `id` is done.
    pub fn done(&self, id: RecordId) {
        let mut given = self.given.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(e) = given.iter_mut().find(|(i, _)| *i == id.0) {
            e.1 = true;
        }
        let mut last = None;
        while let Some(&(i, true)) = given.front() {
            last = Some(i);
            given.pop_front();
        }
        if let Some(i) = last {
            let _ = self.tx.send(RecordId(i));
        }
    }
}

impl AckSink for OrderedAcks {
    fn delivered(&self, _slot: usize, tag: u64, _batch: &Batch) {
        self.done(RecordId(tag));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn acknowledgements_follow_read_order() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), SpoolConfig::default())
            .await
            .unwrap();
        let mut reader = spool.reader("r").await.unwrap();
        for i in 0..3u8 {
            spool.append(vec![i]).await.unwrap();
        }
        let (acks, task) = OrderedAcks::start(reader.acker());
        for _ in 0..3 {
            acks.given(reader.try_next().await.unwrap().id);
        }
        acks.done(RecordId(2));
        acks.done(RecordId(1));
        // Nothing may be acknowledged while record 0 is not done.
        assert_eq!(acks.given.lock().unwrap().len(), 3);
        acks.done(RecordId(0));
        assert!(acks.given.lock().unwrap().is_empty());
        drop(acks);
        task.await.unwrap();
        assert_eq!(spool.stats().cursors[0].acked_next, RecordId(3));
    }

    #[test]
    fn trimming_keeps_what_is_past_the_mark() {
        let s = StreamBatch {
            stream: "a/+/b".into(),
            first_index: 10,
            entries: vec![Default::default(); 5].into(),
            terminal_count: None,
        };
        let t = from(s.clone(), 12).unwrap();
        assert_eq!((t.first_index, t.end_index()), (12, 15));
        assert!(from(s, 15).is_none());
    }
}
