//! The file source's typed errors: what the caller can get back and act on.
//!
//! Read errors on one file (permission denied, a file vanishing between a stat and an
//! open) are *not* errors of the source: they are logged, counted in
//! [`FileSourceStats`](super::FileSourceStats) and the file is tried again at the next poll.
//! Only what stops the whole source (bad config, an unreadable or corrupt checkpoint
//! file, failing to start its thread) comes back as a [`FileSourceError`].

use std::io;
use std::path::PathBuf;

/// Why a [`FileSourceConfig`](super::FileSourceConfig) was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("`include` is empty: name at least one glob of files to read")]
    NoInclude,
    #[error("glob {pattern:?} is invalid: {source}")]
    BadPattern {
        pattern: String,
        #[source]
        source: glob::PatternError,
    },
    #[error("`{key}` is {value}, outside the allowed range {min}..={max}")]
    OutOfRange {
        key: &'static str,
        value: u64,
        min: u64,
        max: u64,
    },
    #[error("`stream` template {template:?}: {reason}")]
    BadStreamTemplate { template: String, reason: String },
}

/// Why the checkpoint file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "checkpoint file {path} is not valid ({source}); it is written atomically, so this \
         means outside damage: move it away to start every stream afresh (indices restart at 0)"
    )]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("checkpoint file {path} has version {found}; this agent reads version {expected}")]
    Version {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
    #[error("encoding checkpoints: {0}")]
    Encode(#[source] serde_json::Error),
}

impl CheckpointError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        CheckpointError::Io {
            path: path.into(),
            source,
        }
    }
}

/// Why an acknowledgement was refused by
/// [`CheckpointHandle::acknowledge`](super::CheckpointHandle::acknowledge). Nothing changes
/// when one is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    #[error("stream {0:?} is not read by this file source")]
    UnknownStream(String),
    #[error(
        "acknowledgement of stream {stream:?} up to index {next_index} is past what was handed \
         out ({handed_out} entries)"
    )]
    BeyondHandedOut {
        stream: String,
        next_index: u64,
        handed_out: u64,
    },
}

/// What stops a file source as a whole.
#[derive(Debug, thiserror::Error)]
pub enum FileSourceError {
    #[error("file source {source_name:?}: {error}")]
    Config {
        source_name: String,
        #[source]
        error: ConfigError,
    },
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("starting file source {source_name:?}: {error}")]
    Start {
        source_name: String,
        #[source]
        error: io::Error,
    },
    #[error("file source {0:?} stopped abnormally (its thread panicked)")]
    Panicked(String),
}
