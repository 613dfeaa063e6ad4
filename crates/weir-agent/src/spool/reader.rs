//! `SpoolReader`: one named reader (one flusher) with its own cursor.
//!
//! A reader walks the segments in id order from its acknowledged position, reading a
//! batch of frames at a time on the blocking pool and handing them out one by one. It
//! re-checks every frame's CRC (damage that appears after open is skipped and counted
//! like damage found at open) and waits on the spool's `appended` signal when it has
//! caught up with the writer.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use super::core::{Plan, Pos, ReadPlan};
use super::scan::{Item, Scanner};
use super::shared::Shared;
use super::{RecordId, SpoolError, blocking};

/// Stop filling a batch past this many payload bytes …
const BATCH_BYTES: usize = 1 << 20;
/// … or this many records. Together they bound a reader's memory.
const BATCH_RECORDS: usize = 1024;

/// A record read from the spool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Its id: acknowledge it (or a later one) with [`SpoolReader::ack`].
    pub id: RecordId,
    /// The bytes given to `append`.
    pub payload: Bytes,
}

/// A named reader of the spool; see [`Spool::reader`](super::Spool::reader).
///
/// Records come out in id order, each once per reader instance, starting after the
/// acknowledged position. What is not acknowledged comes out again after a restart (or
/// after [`rewind`](SpoolReader::rewind)).
#[derive(Debug)]
pub struct SpoolReader {
    shared: Arc<Shared>,
    name: String,
    /// Next frame to look at; `None`: find it from `want`.
    pos: Option<Pos>,
    /// Deliver only ids at or above this.
    want: u64,
    buffer: VecDeque<Record>,
    acker: SpoolAcker,
}

/// A handle that acknowledges for a reader, so that a flusher can acknowledge from
/// another task while it reads. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SpoolAcker {
    shared: Arc<Shared>,
    name: Arc<str>,
    /// Ids below this may be acknowledged (they were given out, or were acknowledged
    /// before this reader opened).
    ackable: Arc<AtomicU64>,
}

enum Fill {
    Progress,
    Empty,
    Closed,
}

/// The outcome of one blocking batch read.
struct Batch {
    records: Vec<Record>,
    pos: Pos,
    /// (offset, ids, bytes) of damage stepped over.
    skips: Vec<(u64, u64, u64)>,
}

impl SpoolReader {
    pub(crate) fn new(shared: Arc<Shared>, name: String, acked_next: u64) -> SpoolReader {
        let acker = SpoolAcker {
            shared: shared.clone(),
            name: name.as_str().into(),
            ackable: Arc::new(AtomicU64::new(acked_next)),
        };
        SpoolReader {
            shared,
            name,
            pos: None,
            want: acked_next,
            buffer: VecDeque::new(),
            acker,
        }
    }

    /// The reader's name (its cursor file is `<name>.cursor`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The next record, waiting for one to be appended if need be; `None` once the spool
    /// is closed. Cancel-safe: dropping the future loses nothing.
    pub async fn next(&mut self) -> Option<Record> {
        loop {
            if let Some(record) = self.pop() {
                return Some(record);
            }
            let shared = self.shared.clone();
            let appended = shared.appended.notified();
            tokio::pin!(appended);
            appended.as_mut().enable();
            match self.fill().await {
                Fill::Progress => {}
                Fill::Empty => appended.await,
                Fill::Closed => return None,
            }
        }
    }

    /// The next record if one is in the spool now; `None` if the reader has caught up
    /// (or the spool is closed). Never waits for an append.
    pub async fn try_next(&mut self) -> Option<Record> {
        loop {
            if let Some(record) = self.pop() {
                return Some(record);
            }
            match self.fill().await {
                Fill::Progress => {}
                Fill::Empty | Fill::Closed => return None,
            }
        }
    }

    /// Acknowledges every record up to and including `up_to`: the receiver has it.
    ///
    /// Acknowledgements are cumulative and must come in order: `ack(5)` acknowledges
    /// 0..=5, and a later `ack(3)` is a no-op. A flusher with several batches in flight
    /// acknowledges the highest id below which everything is done. Acknowledging an id
    /// this reader was not given is an error. Returns once the cursor is where the
    /// fsync policy puts it: `always`: durable in the cursor file; `interval`: in memory,
    /// made durable by the next background sync; `never`: written to the OS (a cursor
    /// file write per ack).
    pub async fn ack(&self, up_to: RecordId) -> Result<(), SpoolError> {
        self.acker.ack(up_to).await
    }

    /// A handle that acknowledges for this reader from elsewhere.
    pub fn acker(&self) -> SpoolAcker {
        self.acker.clone()
    }

    /// Forgets what was read but not acknowledged: the next record is again the first
    /// one after the acknowledged position (for a flusher that gave up on a send).
    pub fn rewind(&mut self) {
        self.buffer.clear();
        self.pos = None;
        self.want = self
            .shared
            .core()
            .cursors
            .get(&self.name)
            .map_or(0, |c| c.acked_next);
    }

    fn pop(&mut self) -> Option<Record> {
        while let Some(record) = self.buffer.pop_front() {
            if record.id.0 >= self.want {
                self.want = record.id.0 + 1;
                self.acker.ackable.fetch_max(self.want, Ordering::AcqRel);
                return Some(record);
            }
        }
        None
    }

    /// Reads the next batch into the buffer.
    async fn fill(&mut self) -> Fill {
        let plan = self.shared.core().read_plan(self.pos, self.want);
        let plan = match plan {
            Plan::Read(plan) => plan,
            Plan::Wait => return Fill::Empty,
            Plan::Closed => return Fill::Closed,
        };
        let seg_first = plan.pos.seg_first;
        let batch = match blocking(move || Ok(read_batch(&plan))).await {
            Ok(batch) => batch,
            Err(e) => {
                tracing::error!(error = %e, "spool: reader task failed");
                return Fill::Closed;
            }
        };
        if !batch.skips.is_empty() {
            let mut core = self.shared.core();
            for (offset, ids, bytes) in batch.skips {
                core.note_skip(seg_first, offset, ids, bytes);
            }
        }
        self.pos = Some(batch.pos);
        let want = self.want;
        self.buffer
            .extend(batch.records.into_iter().filter(|r| r.id.0 >= want));
        Fill::Progress
    }
}

impl Drop for SpoolReader {
    fn drop(&mut self) {
        if let Some(cursor) = self.shared.core().cursors.get_mut(&self.name) {
            cursor.reader_open = false;
        }
    }
}

impl SpoolAcker {
    /// See [`SpoolReader::ack`].
    pub async fn ack(&self, up_to: RecordId) -> Result<(), SpoolError> {
        if up_to.0 >= self.ackable.load(Ordering::Acquire) {
            return Err(SpoolError::AckBeyondDelivered {
                name: self.name.to_string(),
                up_to,
            });
        }
        let shared = self.shared.clone();
        let name = self.name.clone();
        let result = blocking(move || shared.ack(&name, up_to.0)).await;
        // an ack may free space, or let a full active segment be sealed
        self.shared.space.notify_waiters();
        result
    }
}

/// Reads frames from `plan.pos` towards `plan.to`, at most one batch. Damage is
/// stepped over and reported; a read error skips the rest of the segment (as far as
/// this plan sees it) and is reported the same way.
fn read_batch(plan: &ReadPlan) -> Batch {
    let mut scanner = Scanner::new(&*plan.file, plan.to, plan.end_id);
    let mut pos = plan.pos;
    let mut records = Vec::new();
    let mut skips = Vec::new();
    let mut bytes = 0;
    while bytes < BATCH_BYTES && records.len() < BATCH_RECORDS {
        match scanner.next(pos.offset, pos.expected) {
            Ok(None) => break,
            Ok(Some(Item::Record {
                id,
                payload,
                next_offset,
            })) => {
                bytes += payload.len();
                records.push(Record {
                    id: RecordId(id),
                    payload,
                });
                pos.offset = next_offset;
                pos.expected = id + 1;
            }
            Ok(Some(Item::Skip {
                resume_offset,
                resume_id,
            })) => {
                skips.push((
                    pos.offset,
                    resume_id - pos.expected,
                    resume_offset - pos.offset,
                ));
                pos.offset = resume_offset;
                pos.expected = resume_id;
            }
            Ok(Some(Item::Tail)) => {
                skips.push((
                    pos.offset,
                    plan.end_id.saturating_sub(pos.expected),
                    plan.to - pos.offset,
                ));
                pos.offset = plan.to;
                pos.expected = plan.end_id;
            }
            Err(e) => {
                tracing::warn!(error = %e, offset = pos.offset, "spool: read error; skipping the rest of the segment");
                skips.push((
                    pos.offset,
                    plan.end_id.saturating_sub(pos.expected),
                    plan.to - pos.offset,
                ));
                pos.offset = plan.to;
                pos.expected = plan.end_id;
            }
        }
    }
    Batch {
        records,
        pos,
        skips,
    }
}
