//! The embedded backend on fjall (an LSM tree in pure Rust). Design notes are filled in
//! with the implementation.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// When the store makes writes durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FsyncPolicy {
    /// fsync before every acknowledgement: nothing acknowledged is lost even if the
    /// machine loses power.
    Always,
    /// Writes reach the OS before the acknowledgement (so `kill -9` of the process loses
    /// nothing acknowledged); the journal is fsynced every `fsync_interval_ms`, so a power
    /// loss can lose at most that window.
    #[default]
    Interval,
    /// Writes reach the OS before the acknowledgement; fsync is left to the OS.
    Never,
}

/// Settings of the embedded store (the `[store]` table of the collector's config).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FjallConfig {
    /// Where the data lives.
    pub data_dir: PathBuf,
    /// Durability of acknowledged writes.
    pub fsync: FsyncPolicy,
    /// Period of the background fsync with `fsync = "interval"`.
    pub fsync_interval_ms: u64,
    /// Width of a time partition in seconds: retention drops whole partitions.
    pub partition_secs: u64,
    /// Block cache size, MiB.
    pub cache_mib: u64,
}

impl Default for FjallConfig {
    fn default() -> Self {
        FjallConfig {
            data_dir: PathBuf::from("./weir-data"),
            fsync: FsyncPolicy::Interval,
            fsync_interval_ms: 1000,
            partition_secs: 3600,
            cache_mib: 32,
        }
    }
}

/// The fjall-backed [`crate::Store`].
pub struct FjallStore {
    _config: FjallConfig,
}
