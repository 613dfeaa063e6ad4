//! Counters of one file source, cheap to bump from its thread and to read from anywhere
//! (the agent exports them to Prometheus). All are monotonic totals since the start.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of one file source. Read them with [`snapshot`](Self::snapshot).
#[derive(Debug, Default)]
pub struct FileSourceStats {
    pub(crate) lines_read: AtomicU64,
    pub(crate) bytes_read: AtomicU64,
    pub(crate) lines_split: AtomicU64,
    pub(crate) files_opened: AtomicU64,
    pub(crate) files_released: AtomicU64,
    pub(crate) truncations: AtomicU64,
    pub(crate) read_errors: AtomicU64,
    pub(crate) paths_skipped: AtomicU64,
    pub(crate) checkpoint_writes: AtomicU64,
    pub(crate) checkpoint_errors: AtomicU64,
    pub(crate) backpressure_waits: AtomicU64,
    pub(crate) polls: AtomicU64,
    pub(crate) event_looks: AtomicU64,
    pub(crate) open_reads: AtomicU64,
}

/// A copy of [`FileSourceStats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileSourceStatsSnapshot {
    /// Lines (and pieces of long lines) handed to the channel.
    pub lines_read: u64,
    /// Bytes of those lines (newlines not counted).
    pub bytes_read: u64,
    /// Pieces cut because a line reached `max_line_bytes`.
    pub lines_split: u64,
    /// Files opened for reading (a rotated successor counts once more).
    pub files_opened: u64,
    /// Files read to their end and let go (rotated away, or deleted).
    pub files_released: u64,
    /// Files found shorter than what was read of them, or with new first bytes
    /// (copytruncate): read again from 0.
    pub truncations: u64,
    /// Failed opens, stats and reads (each retried at the next poll).
    pub read_errors: u64,
    /// Matching paths not followed: over `max_streams`, a stream name taken by another
    /// path, or an invalid stream name.
    pub paths_skipped: u64,
    /// Checkpoint files written.
    pub checkpoint_writes: u64,
    /// Checkpoint writes that failed (retried).
    pub checkpoint_errors: u64,
    /// Times reading paused because the channel was full or too many lines awaited
    /// acknowledgement.
    pub backpressure_waits: u64,
    /// Poll rounds completed (globs re-run, files stat'ed). A round that ends after a
    /// write began was followed by reading everything readable then, unless the source
    /// was held back.
    pub polls: u64,
    /// Of those rounds, the ones a change event (inotify) brought forward: a file that
    /// had been quiet changed, or a matching path appeared.
    pub event_looks: u64,
    /// Reads brought forward because another program opened a held file (as
    /// copytruncate's copier does), also while the file was busy.
    pub open_reads: u64,
}

impl FileSourceStats {
    /// Reads every counter.
    pub fn snapshot(&self) -> FileSourceStatsSnapshot {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        FileSourceStatsSnapshot {
            lines_read: g(&self.lines_read),
            bytes_read: g(&self.bytes_read),
            lines_split: g(&self.lines_split),
            files_opened: g(&self.files_opened),
            files_released: g(&self.files_released),
            truncations: g(&self.truncations),
            read_errors: g(&self.read_errors),
            paths_skipped: g(&self.paths_skipped),
            checkpoint_writes: g(&self.checkpoint_writes),
            checkpoint_errors: g(&self.checkpoint_errors),
            backpressure_waits: g(&self.backpressure_waits),
            polls: g(&self.polls),
            event_looks: g(&self.event_looks),
            open_reads: g(&self.open_reads),
        }
    }
}

/// Adds `n` to a counter.
pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}
