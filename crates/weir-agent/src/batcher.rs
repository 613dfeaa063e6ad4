//! The batcher: gathers numbered entries into [`Batch`]es and decides when a batch is
//! cut (DESIGN.md, Agent: "cuts a batch at N entries, M bytes or T milliseconds").
//!
//! The batcher does not number entries itself: a file's lines come numbered from the
//! file source's checkpoints (so a re-read gives them the same indices), and sources
//! that cannot replay number theirs with [`crate::runtime::numbering`]. It only keeps, per
//! stream, a run of consecutive entries, and hands the whole batch out when any bound
//! is reached.
//!
//! ```toml
//! [batch]
//! max_entries = 4096
//! max_bytes = 1048576
//! max_wait_ms = 100
//! ```
//!
//! Why these defaults:
//! - `max_entries = 4096`: the collector takes up to 10,000 entries per append; at
//!   ~150–200 bytes per log line 4096 lines is ~700 KiB, so the byte bound usually cuts
//!   first and the entry bound only guards against floods of tiny lines.
//! - `max_bytes = 1 MiB`: far under the collector's 16 MiB request limit (a batch of
//!   several streams and the protobuf framing fit easily), one spool reader batch, and
//!   large enough that the per-bundle cost (one gRPC round trip, one store write) is
//!   amortised over thousands of lines: at 400 MiB/s that is 400 bundles per second.
//! - `max_wait_ms = 100`: a quiet source's line waits at most 100 ms in the agent, the
//!   same bound the Loggregator clients (and `weir-client`) use; a busy source fills
//!   batches long before.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use weir_core::Envelope;

use crate::flusher::{Batch, Entries, LogLine, StreamBatch};

/// Bytes counted per entry on top of its payload (envelope fields and framing), so that
/// floods of empty lines still reach the byte bound.
pub const ENTRY_OVERHEAD: usize = 32;

/// `[batch]`: when a batch is cut.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BatchConfig {
    /// Cut when the batch holds this many entries (all streams together).
    pub max_entries: usize,
    /// Cut when the batch holds this many bytes (payloads plus [`ENTRY_OVERHEAD`] each).
    pub max_bytes: usize,
    /// Cut when the oldest entry of the batch has waited this long, milliseconds.
    pub max_wait_ms: u64,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_entries: 4096,
            max_bytes: 1 << 20,
            max_wait_ms: 100,
        }
    }
}

impl BatchConfig {
    /// Checks the ranges; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=10_000).contains(&self.max_entries) {
            return Err(format!(
                "batch.max_entries = {} is outside 1..=10000 (the collector's limit per append)",
                self.max_entries
            ));
        }
        if !(1..=(8 << 20)).contains(&self.max_bytes) {
            return Err(format!(
                "batch.max_bytes = {} is outside 1..=8388608",
                self.max_bytes
            ));
        }
        if !(1..=60_000).contains(&self.max_wait_ms) {
            return Err(format!(
                "batch.max_wait_ms = {} is outside 1..=60000",
                self.max_wait_ms
            ));
        }
        Ok(())
    }
}

/// Gathers entries into a batch; see the [module docs](self).
#[derive(Debug)]
pub struct Batcher {
    config: BatchConfig,
    streams: Vec<StreamBatch>,
    /// Position in `streams` of each stream's open run.
    open: HashMap<Arc<str>, usize>,
    /// The run the last entry went to (most entries follow the one before them: no
    /// lookup by name for those).
    last: Option<usize>,
    entries: usize,
    bytes: usize,
    /// When the first entry of the current batch arrived.
    since: Option<Instant>,
    /// Entries of the first run of the last batch: the first run of the next one is
    /// allocated that large at once, so a busy stream's run does not grow by doubling
    /// (an entry is about 200 bytes; the copies cost as much as the lines themselves).
    first_run_hint: usize,
}

impl Batcher {
    /// An empty batcher.
    pub fn new(config: BatchConfig) -> Self {
        Batcher {
            config,
            streams: Vec::new(),
            open: HashMap::new(),
            last: None,
            entries: 0,
            bytes: 0,
            since: None,
            first_run_hint: 0,
        }
    }

    /// Adds entry `index` of `stream`; returns the batch when this entry filled it.
    ///
    /// Entries of one stream must come in index order; an entry that does not follow
    /// the stream's run (a gap or a repeat, which the sources never produce) starts a new
    /// run of its own, so a batch never claims indices it does not hold.
    pub fn push(&mut self, stream: &Arc<str>, index: u64, entry: Envelope) -> Option<Batch> {
        let size = payload_len(&entry) + ENTRY_OVERHEAD;
        let slot = self.slot(stream, index, |capacity| {
            Entries::Envelopes(Vec::with_capacity(capacity))
        });
        self.streams[slot].entries.push_envelope(entry);
        self.added(size)
    }

    /// Adds log line `index` of `stream`, read by source `source_id`, as [`push`] adds an
    /// envelope; the run keeps it as a line (no envelope made for it).
    ///
    /// [`push`]: Batcher::push
    pub fn push_line(
        &mut self,
        stream: &Arc<str>,
        index: u64,
        source_id: &Arc<str>,
        line: LogLine,
    ) -> Option<Batch> {
        let size = line.payload.len() + ENTRY_OVERHEAD;
        let slot = self.slot(stream, index, |capacity| {
            Entries::lines(source_id.clone(), capacity)
        });
        self.streams[slot].entries.push_line(source_id, line);
        self.added(size)
    }

    /// Adds log lines of `stream` numbered from `*index` on (moving `*index` past each),
    /// until `lines` runs out or the batch is full: then returns the batch, and the
    /// lines not taken stay in `lines` (call again with them).
    ///
    /// The same batches as [`Batcher::push_line`] line by line, with the run found once
    /// per call instead of once per line (a file source hands lines out by the hundred).
    pub fn push_lines(
        &mut self,
        stream: &Arc<str>,
        index: &mut u64,
        source_id: &Arc<str>,
        lines: &mut impl Iterator<Item = LogLine>,
    ) -> Option<Batch> {
        let first = lines.next()?;
        *index += 1;
        if let Some(batch) = self.push_line(stream, *index - 1, source_id, first) {
            return Some(batch);
        }
        let slot = self.last?;
        let Batcher {
            config,
            streams,
            entries,
            bytes,
            ..
        } = self;
        let run = match &mut streams[slot].entries {
            Entries::Lines(run) if Arc::ptr_eq(&run.source_id, source_id) => run,
            // lines among other entries: one at a time
            _ => {
                for line in lines.by_ref() {
                    *index += 1;
                    if let Some(batch) = self.push_line(stream, *index - 1, source_id, line) {
                        return Some(batch);
                    }
                }
                return None;
            }
        };
        for line in lines.by_ref() {
            *entries += 1;
            *bytes += line.payload.len() + ENTRY_OVERHEAD;
            *index += 1;
            run.lines.push(line);
            if *entries >= config.max_entries || *bytes >= config.max_bytes {
                return self.take();
            }
        }
        None
    }

    /// The position of the run that entry `index` of `stream` goes to (a new run, made
    /// by `new_run` with room for that many entries, when it follows none).
    fn slot(
        &mut self,
        stream: &Arc<str>,
        index: u64,
        new_run: impl FnOnce(usize) -> Entries,
    ) -> usize {
        let follows_last = self.last.filter(|&i| {
            let run = &self.streams[i];
            Arc::ptr_eq(&run.stream, stream) && run.end_index() == index
        });
        let slot = match follows_last.or_else(|| self.open.get(stream).copied()) {
            Some(i) if self.streams[i].end_index() == index => i,
            _ => {
                let capacity = if self.streams.is_empty() {
                    self.first_run_hint.min(self.config.max_entries)
                } else {
                    0
                };
                self.streams.push(StreamBatch {
                    stream: stream.clone(),
                    first_index: index,
                    entries: new_run(capacity),
                    terminal_count: None,
                });
                let i = self.streams.len() - 1;
                self.open.insert(stream.clone(), i);
                i
            }
        };
        self.last = Some(slot);
        slot
    }

    /// Counts an entry of `size` bytes just added; the batch when it is now full.
    fn added(&mut self, size: usize) -> Option<Batch> {
        self.entries += 1;
        self.bytes += size;
        if self.since.is_none() {
            self.since = Some(Instant::now());
        }
        if self.entries >= self.config.max_entries || self.bytes >= self.config.max_bytes {
            self.take()
        } else {
            None
        }
    }

    /// Marks `stream` as ending with `count` entries: the run of the stream in the batch
    /// carries the terminal count (an empty run is added for a stream with no entries
    /// pending). The batch should be taken next.
    pub fn terminate(&mut self, stream: &Arc<str>, count: u64) {
        self.last = None;
        match self.open.get(stream) {
            Some(&i) if self.streams[i].end_index() == count => {
                self.streams[i].terminal_count = Some(count);
            }
            _ => {
                self.streams.push(StreamBatch {
                    stream: stream.clone(),
                    first_index: count,
                    entries: Entries::default(),
                    terminal_count: Some(count),
                });
                self.open.insert(stream.clone(), self.streams.len() - 1);
            }
        }
        if self.since.is_none() {
            self.since = Some(Instant::now());
        }
    }

    /// When the current batch must be cut by time; `None` when it is empty.
    pub fn deadline(&self) -> Option<Instant> {
        self.since
            .map(|s| s + Duration::from_millis(self.config.max_wait_ms))
    }

    /// Entries waiting in the current batch.
    pub fn len(&self) -> usize {
        self.entries
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    /// Hands out the current batch (`None` when empty) and starts a new one.
    pub fn take(&mut self) -> Option<Batch> {
        if self.streams.is_empty() {
            return None;
        }
        self.open.clear();
        self.last = None;
        self.entries = 0;
        self.bytes = 0;
        self.since = None;
        self.first_run_hint = self.streams[0].entries.len();
        Some(Batch {
            streams: std::mem::take(&mut self.streams),
        })
    }
}

/// Bytes of the entry's payload (log bytes; 0 for other kinds).
pub fn payload_len(entry: &Envelope) -> usize {
    use weir_proto::lv2::envelope::Message as Body;
    match &entry.message {
        Some(Body::Log(l)) => l.payload.len(),
        Some(_) => prost::Message::encoded_len(entry),
        None => 0,
    }
}

/// A log envelope holding `payload` (stdout type), stamped now, with `source_id`.
pub fn log_envelope(source_id: &str, payload: bytes::Bytes, stderr: bool) -> Envelope {
    log_envelope_at(source_id, payload, stderr, weir_core::now_ns())
}

/// A log envelope holding `payload`, stamped `timestamp` (Unix nanoseconds).
pub fn log_envelope_at(
    source_id: &str,
    payload: bytes::Bytes,
    stderr: bool,
    timestamp: i64,
) -> Envelope {
    use weir_proto::lv2::{Log, envelope::Message as Body};
    Envelope {
        timestamp,
        source_id: source_id.to_string(),
        message: Some(Body::Log(Log {
            payload,
            r#type: i32::from(stderr),
        })),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(n: usize) -> Envelope {
        log_envelope("t", vec![b'x'; n].into(), false)
    }

    /// Feeds the same entries to two batchers, lines one at a time to the first and by
    /// the chunk to the second; both must cut the same batches.
    #[test]
    fn lines_by_the_chunk_are_batched_as_lines_one_by_one() {
        let config = BatchConfig {
            max_entries: 7,
            max_bytes: 400,
            ..BatchConfig::default()
        };
        let (mut one, mut many) = (Batcher::new(config.clone()), Batcher::new(config));
        let (mut from_one, mut from_many) = (Vec::new(), Vec::new());
        let streams: [Arc<str>; 2] = ["a/+/x".into(), "a/+/y".into()];
        let sources: [Arc<str>; 2] = ["app".into(), "other".into()];
        let mut next = [0u64, 100];
        for round in 0..40usize {
            let s = round % 3 % 2;
            if round % 5 == 4 {
                // an envelope amid the lines: the run is no longer lines only
                let index = next[s];
                next[s] += 1;
                let entry = env(3);
                from_one.extend(one.push(&streams[s], index, entry.clone()));
                from_many.extend(many.push(&streams[s], index, entry));
            }
            let source = &sources[round % 7 % 2];
            let lines: Vec<LogLine> = (0..round % 11)
                .map(|k| LogLine {
                    payload: vec![b'x'; (round * 13 + k * 29) % 90].into(),
                    timestamp: round as i64,
                })
                .collect();
            for (i, line) in lines.iter().enumerate() {
                let index = next[s] + i as u64;
                from_one.extend(one.push_line(&streams[s], index, source, line.clone()));
            }
            let mut index = next[s];
            let mut rest = lines.clone().into_iter();
            while let Some(b) = many.push_lines(&streams[s], &mut index, source, &mut rest) {
                from_many.push(b);
            }
            next[s] += lines.len() as u64;
            assert_eq!(
                index, next[s],
                "round {round}: the index moved past every line"
            );
        }
        from_one.extend(one.take());
        from_many.extend(many.take());
        assert!(from_one.len() > 10, "the bounds were reached many times");
        assert_eq!(from_one.len(), from_many.len());
        for (k, (a, b)) in from_one.iter().zip(&from_many).enumerate() {
            assert!(a == b, "batch {k} differs:\n{a:?}\n{b:?}");
        }
    }

    #[test]
    fn cuts_at_entries_and_keeps_runs_per_stream() {
        let mut b = Batcher::new(BatchConfig {
            max_entries: 3,
            ..BatchConfig::default()
        });
        let a: Arc<str> = "a/+/x".into();
        let c: Arc<str> = "a/+/y".into();
        assert!(b.push(&a, 5, env(1)).is_none());
        assert!(b.push(&c, 0, env(1)).is_none());
        let batch = b.push(&a, 6, env(1)).expect("full at 3");
        assert_eq!(batch.streams.len(), 2);
        assert_eq!(
            (batch.streams[0].first_index, batch.streams[0].end_index()),
            (5, 7)
        );
        assert_eq!(batch.streams[1].end_index(), 1);
        assert!(b.is_empty() && b.deadline().is_none());
    }

    #[test]
    fn cuts_at_bytes_and_splits_non_consecutive_runs() {
        let mut b = Batcher::new(BatchConfig {
            max_bytes: 200,
            ..BatchConfig::default()
        });
        let a: Arc<str> = "a/+/x".into();
        assert!(b.push(&a, 0, env(10)).is_none());
        assert!(b.push(&a, 7, env(10)).is_none(), "a gap starts a new run");
        assert!(b.deadline().is_some());
        let batch = b.push(&a, 8, env(200)).expect("full by bytes");
        let runs: Vec<_> = batch
            .streams
            .iter()
            .map(|s| (s.first_index, s.end_index()))
            .collect();
        assert_eq!(runs, vec![(0, 1), (7, 9)]);
    }

    #[test]
    fn lines_stay_lines_and_cut_at_the_same_bounds() {
        let mut b = Batcher::new(BatchConfig {
            max_entries: 3,
            ..BatchConfig::default()
        });
        let a: Arc<str> = "a/+/x".into();
        let app: Arc<str> = "app".into();
        let line = |t: i64| LogLine {
            payload: "l".into(),
            timestamp: t,
        };
        assert!(b.push_line(&a, 0, &app, line(1)).is_none());
        assert!(b.push_line(&a, 1, &app, line(2)).is_none());
        let batch = b.push_line(&a, 2, &app, line(3)).expect("full at 3");
        let Entries::Lines(lines) = &batch.streams[0].entries else {
            panic!("a run of lines: {:?}", batch.streams[0].entries);
        };
        assert_eq!(lines.lines.len(), 3);
        assert_eq!(batch.streams[0].end_index(), 3);
        assert!(b.push_line(&a, 3, &app, line(4)).is_none());
        let next = b.take().unwrap();
        assert!(next.streams[0].entries.len() == 1 && next.streams[0].first_index == 3);
    }

    #[test]
    fn termination_rides_on_the_run_or_stands_alone() {
        let mut b = Batcher::new(BatchConfig::default());
        let a: Arc<str> = "a/+/x".into();
        let e: Arc<str> = "a/+/empty".into();
        b.push(&a, 0, env(1));
        b.terminate(&a, 1);
        b.terminate(&e, 0);
        let batch = b.take().unwrap();
        assert_eq!(batch.streams[0].terminal_count, Some(1));
        assert_eq!(batch.streams[1].terminal_count, Some(0));
        assert!(batch.streams[1].entries.is_empty());
        assert!(b.take().is_none());
    }

    #[test]
    fn defaults_are_valid_and_ranges_name_the_key() {
        BatchConfig::default().validate().unwrap();
        let e = BatchConfig {
            max_entries: 0,
            ..BatchConfig::default()
        }
        .validate()
        .unwrap_err();
        assert!(e.contains("batch.max_entries"), "{e}");
    }
}
