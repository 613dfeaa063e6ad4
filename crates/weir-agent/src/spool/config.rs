//! `SpoolConfig`: what a user writes under `[spool]`, with the defaults and why.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::SpoolError;
use super::format::{FRAME_HEADER_LEN, SEGMENT_HEADER_LEN};

/// How the spool behaves and how much disk it may use.
///
/// ```toml
/// [spool]
/// max_bytes = 1073741824      # 1 GiB of segment files at most
/// segment_bytes = 16777216    # roll to a new segment file at 16 MiB
/// when_full = "block"         # or "drop_oldest"
/// fsync = "interval"          # or "always", "never"
/// fsync_interval_ms = 200
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolConfig {
    /// Upper bound on the bytes of all segment files together (headers and frames
    /// included). Default 1 GiB: an hour-long outage of a host sending ~300 KB/s.
    pub max_bytes: u64,
    /// A segment file is closed ("sealed") and a new one started when the next record
    /// would take it past this size. Disk space is given back a whole segment at a time,
    /// so this is also the granularity of deletion and of `drop_oldest`. Default 16 MiB.
    pub segment_bytes: u64,
    /// What `append` does when the next record would pass `max_bytes`.
    pub when_full: WhenFull,
    /// When written data is forced to the disk; see [`FsyncPolicy`].
    pub fsync: FsyncPolicy,
    /// Period of the background fsync under [`FsyncPolicy::Interval`], in milliseconds.
    /// This is the window of appends (and acknowledgements) that a power loss can undo.
    /// Default 200 ms.
    pub fsync_interval_ms: u64,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            max_bytes: 1 << 30,
            segment_bytes: 16 << 20,
            when_full: WhenFull::Block,
            fsync: FsyncPolicy::Interval,
            fsync_interval_ms: 200,
        }
    }
}

impl SpoolConfig {
    /// Checks the values that serde cannot: sizes that leave room for a record, a period
    /// above zero.
    pub fn validate(&self) -> Result<(), SpoolError> {
        let smallest = SEGMENT_HEADER_LEN + FRAME_HEADER_LEN as u64 + 1;
        if self.segment_bytes < smallest {
            return Err(SpoolError::Config(format!(
                "segment_bytes = {} is below the smallest useful segment ({smallest} bytes)",
                self.segment_bytes
            )));
        }
        if self.max_bytes < self.segment_bytes {
            return Err(SpoolError::Config(format!(
                "max_bytes = {} is below segment_bytes = {}",
                self.max_bytes, self.segment_bytes
            )));
        }
        if self.fsync_interval_ms == 0 {
            return Err(SpoolError::Config(
                "fsync_interval_ms must be above 0".into(),
            ));
        }
        Ok(())
    }

    /// [`SpoolConfig::fsync_interval_ms`] as a `Duration`.
    pub fn fsync_interval(&self) -> Duration {
        Duration::from_millis(self.fsync_interval_ms)
    }
}

/// What `append` does at `max_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Wait until acknowledgements free space (default). Sources await `append`, so they
    /// stop reading: back-pressure reaches the input, nothing is lost.
    Block,
    /// Delete the oldest segment, acknowledged or not, to make room. The records lost
    /// are counted (`dropped_records`, per cursor too) and logged; cursors jump past
    /// them. Space is freed a whole segment at a time.
    DropOldest,
}

/// When the spool forces written data to the disk (fdatasync).
///
/// Every policy writes each record to the operating system (`pwrite`) before `append`
/// returns, so a crash of the process alone (`kill -9`, a panic, OOM kill) loses
/// nothing that `append` returned. The policies differ on a crash of the machine
/// (power loss, kernel panic):
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FsyncPolicy {
    /// `append` returns after the record is on the disk, and `ack` after the cursor is.
    /// Nothing that returned is lost by a power loss. Costs an fdatasync per append.
    Always,
    /// A background task syncs every `fsync_interval_ms` (default). A power loss loses
    /// at most the appends of the last interval plus the time the sync takes, and
    /// acknowledgements of that window come back (re-delivered: at-least-once).
    /// `Spool::sync` closes the window on demand.
    Interval,
    /// Never sync; the kernel writes back when it likes (typically within 30 s). A power
    /// loss can lose any record not yet written back, and cursors are written without
    /// sync (their rename survives `kill -9`, not a power loss).
    Never,
}
