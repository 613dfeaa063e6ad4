//! The spool's state in memory — segments, cursors, counters — and the operations that
//! change it under the spool's lock: appending a frame, rolling, making room, finding
//! where a reader goes next. The slow, lock-free half (fsync, cursor files, unlinking)
//! is in [`shared`](super::shared).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;

use super::config::{SpoolConfig, WhenFull};
use super::error::io_err;
use super::format::{
    FRAME_HEADER_LEN, FrameHeader, SEGMENT_HEADER_LEN, SEGMENT_MAGIC, segment_file_name,
};
use super::io::{SpoolFile, SpoolFs};
use super::stats::{CursorStats, SpoolStats};
use super::{RecordId, SpoolError};

/// Payloads up to this size are copied behind their header and written with one
/// `pwrite`; larger ones are written with two, saving the copy.
const COPY_LIMIT: usize = 64 << 10;

/// One segment file.
#[derive(Debug)]
pub(crate) struct Segment {
    /// Id of its first record, also its name.
    pub(crate) first_id: u64,
    /// One past the id of its last good record (`first_id` if it has none).
    pub(crate) end_id: u64,
    /// Readable end: good frames lie in `SEGMENT_HEADER_LEN..len`.
    pub(crate) len: u64,
    /// Size of the file, counted against `max_bytes`.
    pub(crate) disk_bytes: u64,
    /// Good records in it.
    pub(crate) records: u64,
    pub(crate) file: Arc<dyn SpoolFile>,
    pub(crate) path: PathBuf,
    /// Offsets where damage starts, so that it is counted once however many readers
    /// step over it.
    pub(crate) holes: BTreeSet<u64>,
}

impl Segment {
    /// Creates the file of a new, empty segment whose first record will be `first_id`.
    pub(crate) fn create(
        fs: &dyn SpoolFs,
        dir: &std::path::Path,
        first_id: u64,
    ) -> Result<Segment, SpoolError> {
        let path = dir.join(segment_file_name(first_id));
        let file = fs.create(&path).map_err(io_err("create segment", &path))?;
        file.write_all_at(&SEGMENT_MAGIC, 0)
            .map_err(io_err("write header of", &path))?;
        Ok(Segment {
            first_id,
            end_id: first_id,
            len: SEGMENT_HEADER_LEN,
            disk_bytes: SEGMENT_HEADER_LEN,
            records: 0,
            file,
            path,
            holes: BTreeSet::new(),
        })
    }
}

/// A reader's acknowledged position.
#[derive(Debug, Clone)]
pub(crate) struct Cursor {
    /// Every record below this is acknowledged (in memory).
    pub(crate) acked_next: u64,
    /// The value last written to the cursor file (with the OS; survives `kill -9`).
    pub(crate) written: Option<u64>,
    /// The value last made durable in the cursor file (survives a power loss).
    pub(crate) durable: Option<u64>,
    /// A `SpoolReader` of this name exists.
    pub(crate) reader_open: bool,
    /// Records it had not acknowledged when `drop_oldest` removed them.
    pub(crate) dropped: u64,
}

impl Cursor {
    /// A cursor at `acked_next`, whose file holds `written` (not known to be durable).
    pub(crate) fn new(acked_next: u64, written: Option<u64>) -> Cursor {
        Cursor {
            acked_next,
            written,
            durable: None,
            reader_open: false,
            dropped: 0,
        }
    }
}

impl Cursor {
    /// Whether its file lags its position (`durably`: on disk, else with the OS).
    pub(crate) fn behind(&self, durably: bool) -> bool {
        let on_file = if durably { self.durable } else { self.written };
        on_file != Some(self.acked_next)
    }
}

/// Counters that only grow (since open).
#[derive(Debug, Clone, Default)]
pub(crate) struct Counters {
    pub(crate) appended_records: u64,
    pub(crate) appended_bytes: u64,
    pub(crate) blocked_appends: u64,
    pub(crate) dropped_records: u64,
    pub(crate) dropped_bytes: u64,
    pub(crate) skipped_records: u64,
    pub(crate) skipped_bytes: u64,
    pub(crate) truncated_bytes: u64,
    pub(crate) corrupt_cursors: u64,
    pub(crate) sync_errors: u64,
}

/// Where a reader is: the next frame to look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pos {
    pub(crate) seg_first: u64,
    pub(crate) offset: u64,
    /// Id the frame at `offset` should have.
    pub(crate) expected: u64,
}

impl Pos {
    fn start_of(seg: &Segment) -> Pos {
        Pos {
            seg_first: seg.first_id,
            offset: SEGMENT_HEADER_LEN,
            expected: seg.first_id,
        }
    }
}

/// What a reader should read next, taken under the lock and carried out without it.
#[derive(Debug)]
pub(crate) struct ReadPlan {
    pub(crate) file: Arc<dyn SpoolFile>,
    pub(crate) pos: Pos,
    /// Readable end of the segment when the plan was made.
    pub(crate) to: u64,
    /// `end_id` of the segment when the plan was made: ids lie below it.
    pub(crate) end_id: u64,
}

#[derive(Debug)]
pub(crate) enum Plan {
    Read(ReadPlan),
    /// Caught up with the writer.
    Wait,
    Closed,
}

/// What recovery found: the segments (the last one to append to), the next id, the
/// cursors, and what it counted.
#[derive(Debug)]
pub(crate) struct Recovered {
    pub(crate) sealed: VecDeque<Segment>,
    pub(crate) active: Segment,
    pub(crate) next_id: u64,
    pub(crate) cursors: BTreeMap<String, Cursor>,
    pub(crate) counters: Counters,
}

/// The spool's state. Lives behind the mutex in [`Shared`](super::shared::Shared).
#[derive(Debug)]
pub(crate) struct Core {
    pub(crate) fs: Arc<dyn SpoolFs>,
    pub(crate) dir: PathBuf,
    pub(crate) config: SpoolConfig,
    /// Sealed segments, oldest first.
    pub(crate) sealed: VecDeque<Segment>,
    /// The segment being appended to.
    pub(crate) active: Segment,
    /// Id of the next record appended.
    pub(crate) next_id: u64,
    /// Records below this were deleted (acknowledged by all) or dropped.
    pub(crate) first_retained: u64,
    /// Every record below this was synced (under `always` and `interval`).
    pub(crate) durable_next: u64,
    pub(crate) used_bytes: u64,
    pub(crate) cursors: BTreeMap<String, Cursor>,
    /// Sealed segments with writes not yet synced.
    pub(crate) unsynced_sealed: Vec<Arc<dyn SpoolFile>>,
    pub(crate) active_dirty: bool,
    /// A segment was created since the last directory sync.
    pub(crate) dir_dirty: bool,
    pub(crate) closed: bool,
    pub(crate) poisoned: Option<String>,
    pub(crate) counters: Counters,
    frame_buf: Vec<u8>,
}

impl Core {
    /// The state recovery found on disk, ready to append and read.
    pub(crate) fn new(
        fs: Arc<dyn SpoolFs>,
        dir: PathBuf,
        config: SpoolConfig,
        found: Recovered,
    ) -> Core {
        let Recovered {
            sealed,
            active,
            next_id,
            cursors,
            counters,
        } = found;
        let first_retained = sealed.front().map_or(active.first_id, |s| s.first_id);
        let unsynced_sealed = sealed.iter().map(|s| s.file.clone()).collect();
        let used_bytes = sealed.iter().map(|s| s.disk_bytes).sum::<u64>() + active.disk_bytes;
        Core {
            fs,
            dir,
            config,
            sealed,
            active,
            next_id,
            first_retained,
            // What is on disk at open may sit unsynced in the page cache (a process crash
            // under `interval` or `never`): the first sync covers all of it.
            durable_next: first_retained,
            used_bytes,
            cursors,
            unsynced_sealed,
            active_dirty: true,
            dir_dirty: true,
            closed: false,
            poisoned: None,
            counters,
            frame_buf: Vec::new(),
        }
    }

    /// Largest payload `append` takes with this config: room for it and the headers of
    /// two segments (the active one and the one it may roll to).
    pub(crate) fn max_payload(config: &SpoolConfig) -> u64 {
        let overhead = 2 * SEGMENT_HEADER_LEN + FRAME_HEADER_LEN as u64;
        (super::format::MAX_RECORD_BYTES as u64).min(config.max_bytes.saturating_sub(overhead))
    }

    pub(crate) fn check_writable(&self) -> Result<(), SpoolError> {
        if self.closed {
            return Err(SpoolError::Closed);
        }
        if let Some(reason) = &self.poisoned {
            return Err(SpoolError::Poisoned(reason.clone()));
        }
        Ok(())
    }

    /// Lowest acknowledged position over all cursors; `None` without cursors.
    pub(crate) fn min_acked(&self) -> Option<u64> {
        self.cursors.values().map(|c| c.acked_next).min()
    }

    fn fits(&self, frame: u64) -> bool {
        // a roll adds a segment header
        self.used_bytes + frame + SEGMENT_HEADER_LEN <= self.config.max_bytes
    }

    /// Makes room for a frame of `frame` bytes: deletes what every cursor acknowledged,
    /// then applies `when_full`. `false`: full, the caller waits (`block`). Files to
    /// unlink go to `deletions`.
    pub(crate) fn make_room(
        &mut self,
        frame: u64,
        deletions: &mut Vec<PathBuf>,
    ) -> Result<bool, SpoolError> {
        if self.fits(frame) {
            return Ok(true);
        }
        self.reclaim(deletions);
        if self.fits(frame) {
            return Ok(true);
        }
        // Everything acknowledged but the active segment holds it: seal it so it can go.
        if self.active.records > 0 && self.min_acked().is_some_and(|m| m >= self.next_id) {
            self.roll()?;
            self.reclaim(deletions);
            if self.fits(frame) {
                return Ok(true);
            }
        }
        match self.config.when_full {
            WhenFull::Block => Ok(false),
            WhenFull::DropOldest => {
                while !self.fits(frame) {
                    if !self.sealed.is_empty() {
                        self.drop_oldest(deletions);
                    } else if self.active.records > 0 {
                        self.roll()?;
                    } else {
                        break; // empty: the record fits, max_payload saw to it
                    }
                }
                Ok(true)
            }
        }
    }

    /// Deletes the sealed segments that every cursor has acknowledged past. Without
    /// cursors nothing is deleted: records wait for their first reader.
    pub(crate) fn reclaim(&mut self, deletions: &mut Vec<PathBuf>) {
        let Some(min) = self.min_acked() else {
            return;
        };
        while self.sealed.front().is_some_and(|s| s.end_id <= min) {
            if let Some(seg) = self.sealed.pop_front() {
                self.used_bytes -= seg.disk_bytes;
                self.first_retained = self.first_retained.max(seg.end_id);
                deletions.push(seg.path);
            }
        }
    }

    /// `drop_oldest`: deletes the oldest sealed segment whatever its cursors say,
    /// counting what they lose.
    fn drop_oldest(&mut self, deletions: &mut Vec<PathBuf>) {
        let Some(seg) = self.sealed.pop_front() else {
            return;
        };
        let unacked = |acked_next: u64| {
            let from = acked_next.clamp(seg.first_id, seg.end_id);
            (seg.end_id - from).min(seg.records)
        };
        let lost = match self.min_acked() {
            Some(min) => unacked(min),
            None => seg.records,
        };
        for cursor in self.cursors.values_mut() {
            cursor.dropped += unacked(cursor.acked_next);
        }
        self.counters.dropped_records += lost;
        self.counters.dropped_bytes += seg.disk_bytes;
        self.used_bytes -= seg.disk_bytes;
        self.first_retained = self.first_retained.max(seg.end_id);
        tracing::warn!(
            segment = %seg.path.display(),
            records = lost,
            "spool full: dropped the oldest segment (when_full = drop_oldest)"
        );
        deletions.push(seg.path);
    }

    /// Seals the active segment and starts a new one at `next_id`.
    pub(crate) fn roll(&mut self) -> Result<(), SpoolError> {
        let new = Segment::create(&*self.fs, &self.dir, self.next_id)?;
        self.used_bytes += new.disk_bytes;
        let old = std::mem::replace(&mut self.active, new);
        if self.active_dirty {
            self.unsynced_sealed.push(old.file.clone());
        }
        self.sealed.push_back(old);
        self.active_dirty = true;
        self.dir_dirty = true;
        Ok(())
    }

    /// Writes `payload` as the next record (rolling first if the active segment is
    /// full) and returns its id. The bytes are with the OS when this returns.
    pub(crate) fn write_record(&mut self, payload: &[u8]) -> Result<u64, SpoolError> {
        let frame = (FRAME_HEADER_LEN + payload.len()) as u64;
        if self.active.records > 0 && self.active.len + frame > self.config.segment_bytes {
            self.roll()?;
        }
        let id = self.next_id;
        let header = FrameHeader::for_payload(id, payload).encode();
        let seg = &mut self.active;
        let at = seg.len;
        let written = if payload.len() <= COPY_LIMIT {
            self.frame_buf.clear();
            self.frame_buf.extend_from_slice(&header);
            self.frame_buf.extend_from_slice(payload);
            seg.file.write_all_at(&self.frame_buf, at)
        } else {
            seg.file
                .write_all_at(&header, at)
                .and_then(|()| seg.file.write_all_at(payload, at + FRAME_HEADER_LEN as u64))
        };
        if self.frame_buf.capacity() > 4 * COPY_LIMIT {
            self.frame_buf = Vec::new();
        }
        written.map_err(io_err("write record to", &seg.path))?;
        seg.len += frame;
        seg.disk_bytes = seg.disk_bytes.max(seg.len);
        seg.end_id = id + 1;
        seg.records += 1;
        self.next_id = id + 1;
        self.used_bytes += frame;
        self.active_dirty = true;
        self.counters.appended_records += 1;
        self.counters.appended_bytes += payload.len() as u64;
        Ok(id)
    }

    /// Number of segments, sealed and active.
    fn segment_count(&self) -> usize {
        self.sealed.len() + 1
    }

    /// Segment `i` in id order; the active one for `i >= sealed.len()`.
    fn segment_at(&self, i: usize) -> &Segment {
        self.sealed.get(i).unwrap_or(&self.active)
    }

    fn index_of(&self, first_id: u64) -> Option<usize> {
        if self.active.first_id == first_id {
            return Some(self.sealed.len());
        }
        self.sealed
            .binary_search_by_key(&first_id, |s| s.first_id)
            .ok()
    }

    /// Where a reader at `pos` (or nowhere yet) that wants ids `>= want` reads next.
    pub(crate) fn read_plan(&self, pos: Option<Pos>, want: u64) -> Plan {
        if self.closed {
            return Plan::Closed;
        }
        let want = want.max(self.first_retained);
        let found = pos.and_then(|p| self.index_of(p.seg_first).map(|i| (i, p)));
        let (mut i, mut pos) = found.unwrap_or_else(|| {
            // first read, or the segment is gone (deleted, dropped): start at the
            // first segment holding ids >= want
            let i = self
                .sealed
                .iter()
                .position(|s| s.end_id > want)
                .unwrap_or(self.sealed.len());
            (i, Pos::start_of(self.segment_at(i)))
        });
        loop {
            let seg = self.segment_at(i);
            if pos.offset < seg.len {
                return Plan::Read(ReadPlan {
                    file: seg.file.clone(),
                    pos,
                    to: seg.len,
                    end_id: seg.end_id,
                });
            }
            if i + 1 < self.segment_count() {
                i += 1;
                pos = Pos::start_of(self.segment_at(i));
            } else {
                return Plan::Wait;
            }
        }
    }

    /// A reader found damage at `offset` of segment `seg_first`; counted once.
    pub(crate) fn note_skip(&mut self, seg_first: u64, offset: u64, records: u64, bytes: u64) {
        let Some(i) = self.index_of(seg_first) else {
            return;
        };
        let seg = if i < self.sealed.len() {
            &mut self.sealed[i]
        } else {
            &mut self.active
        };
        if seg.holes.insert(offset) {
            self.counters.skipped_records += records;
            self.counters.skipped_bytes += bytes;
            tracing::warn!(
                segment = %seg.path.display(),
                offset,
                records,
                bytes,
                "spool: damaged records skipped"
            );
        }
    }

    pub(crate) fn stats(&self) -> SpoolStats {
        let segments = self.sealed.iter().chain(std::iter::once(&self.active));
        let records = segments.map(|s| s.records).sum();
        let c = &self.counters;
        SpoolStats {
            records,
            bytes: self.used_bytes,
            max_bytes: self.config.max_bytes,
            segments: self.segment_count(),
            next_id: RecordId(self.next_id),
            first_retained: RecordId(self.first_retained),
            durable_next: RecordId(self.durable_next),
            appended_records: c.appended_records,
            appended_bytes: c.appended_bytes,
            blocked_appends: c.blocked_appends,
            dropped_records: c.dropped_records,
            dropped_bytes: c.dropped_bytes,
            skipped_records: c.skipped_records,
            skipped_bytes: c.skipped_bytes,
            truncated_bytes: c.truncated_bytes,
            corrupt_cursors: c.corrupt_cursors,
            sync_errors: c.sync_errors,
            cursors: self
                .cursors
                .iter()
                .map(|(name, cur)| CursorStats {
                    name: name.clone(),
                    acked_next: RecordId(cur.acked_next),
                    persisted_next: cur.written.map(RecordId),
                    lag_records: self
                        .next_id
                        .saturating_sub(cur.acked_next.max(self.first_retained)),
                    dropped_records: cur.dropped,
                    reader_open: cur.reader_open,
                })
                .collect(),
        }
    }
}
