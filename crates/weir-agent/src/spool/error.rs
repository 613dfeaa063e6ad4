//! `SpoolError`: everything the spool can refuse or fail at, each with what to do.

use std::io;
use std::path::PathBuf;

use super::RecordId;

/// An error from the spool. Corruption found on disk is *not* an error: it is skipped,
/// counted in [`SpoolStats`](super::SpoolStats) and logged.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpoolError {
    /// The operating system refused an operation (disk full, permissions, EIO).
    #[error("spool I/O: cannot {op} {path}: {source}")]
    Io {
        /// What the spool was doing, e.g. "write record to".
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The error from the OS.
        #[source]
        source: io::Error,
    },
    /// Another process (or another `Spool` in this one) has the directory open.
    #[error("spool directory {0} is in use by another spool (its LOCK file is held)")]
    Locked(PathBuf),
    /// A config value is out of range.
    #[error("invalid spool config: {0}")]
    Config(String),
    /// The payload can never fit: over the format's limit, or over `max_bytes`.
    #[error("record of {size} bytes is larger than this spool takes ({limit} bytes)")]
    RecordTooLarge {
        /// Payload bytes.
        size: usize,
        /// Largest payload this spool accepts.
        limit: u64,
    },
    /// Reader names become file names, so they are restricted.
    #[error("invalid reader name {0:?}: use 1 to 100 of A-Z a-z 0-9 _ - . (not starting with '.')")]
    InvalidReaderName(String),
    /// One reader per name at a time.
    #[error("reader {0:?} is already open")]
    ReaderInUse(String),
    /// An acknowledgement of a record the reader was never given.
    #[error("reader {name:?} acknowledged record {up_to}, past the last record it was given")]
    AckBeyondDelivered {
        /// The reader.
        name: String,
        /// The id it tried to acknowledge.
        up_to: RecordId,
    },
    /// `close` was called.
    #[error("the spool is closed")]
    Closed,
    /// An fsync failed. After a failed fsync the kernel may have dropped the dirty data
    /// and will not say so again, so the spool stops taking records rather than claim a
    /// durability it cannot know. Reopening re-reads what is really on disk.
    #[error("the spool stopped taking records after a failed fsync ({0}); reopen it")]
    Poisoned(String),
    /// A background task of the spool panicked (a bug).
    #[error("spool task failed: {0}")]
    Task(String),
}

/// `map_err` helper: `.map_err(io_err("write record to", &path))`.
pub(crate) fn io_err<'a>(
    op: &'static str,
    path: &'a std::path::Path,
) -> impl FnOnce(io::Error) -> SpoolError + 'a {
    move |source| SpoolError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}
