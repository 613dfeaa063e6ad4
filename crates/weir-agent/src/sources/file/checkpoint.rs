//! Checkpoints on disk: where each stream resumes after a restart.
//!
//! One JSON file per source, `<data_dir>/checkpoints/file-<source>.json`:
//!
//! ```json
//! {"version": 1, "streams": {"host/h/+/file/var/log/app.log": {
//!     "path": "/var/log/app.log",
//!     "file": {"dev": 2049, "inode": 1234, "fingerprint": {"bytes": 256, "hash": 42}},
//!     "offset": 8192, "next_index": 97,
//!     "successors": [{"file": {...}, "first_index": 120}]}}}
//! ```
//!
//! A [`StreamCheckpoint`] says: every entry below `next_index` is acknowledged, and entry
//! `next_index` starts at byte `offset` of `file`. `successors` lists the files the
//! stream went on to read after `file` (rotation, copytruncate), in order, so that after
//! a restart they are found again by identity even when they have been renamed.
//!
//! **Atomic replacement.** The whole file is written to `file-<source>.json.tmp`, synced,
//! renamed over the old one, and the directory synced: after a crash at any point the
//! file holds either the old or the new checkpoints, never a mix. The file is small
//! (one record per stream), so rewriting it whole is cheap.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::CheckpointError;
use super::identity::FileIdentity;

/// Version of the checkpoint file format.
pub const CHECKPOINT_VERSION: u32 = 1;

/// Where one stream resumes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamCheckpoint {
    /// The path whose stream this is (lossy when the path is not UTF-8).
    pub path: String,
    /// The file holding the first unacknowledged byte.
    pub file: FileIdentity,
    /// Offset in `file` of the first unacknowledged byte.
    pub offset: u64,
    /// Stream index of the entry starting at `offset`.
    pub next_index: u64,
    /// Files read after `file`, in order, with the index of their first entry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub successors: Vec<Successor>,
}

/// A file a stream read after the checkpoint's file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Successor {
    pub file: FileIdentity,
    /// Stream index its first entry was given.
    pub first_index: u64,
}

/// The checkpoints of every stream of one source, by stream path.
pub type Checkpoints = BTreeMap<String, StreamCheckpoint>;

#[derive(Serialize, Deserialize)]
struct OnDisk {
    version: u32,
    streams: Checkpoints,
}

/// The checkpoint file of one source.
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    dir: PathBuf,
    path: PathBuf,
    tmp: PathBuf,
}

impl CheckpointStore {
    /// The store of `source_name` under `data_dir`, creating its directory.
    pub fn open(data_dir: &Path, source_name: &str) -> Result<Self, CheckpointError> {
        let dir = data_dir.join("checkpoints");
        fs::create_dir_all(&dir).map_err(|e| CheckpointError::io(&dir, e))?;
        let file = format!("file-{}.json", weir_core::path::to_segment(source_name));
        Ok(CheckpointStore {
            path: dir.join(&file),
            tmp: dir.join(format!("{file}.tmp")),
            dir,
        })
    }

    /// Path of the checkpoint file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the checkpoints; none when the file does not exist yet.
    pub fn load(&self) -> Result<Checkpoints, CheckpointError> {
        let bytes = match fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Checkpoints::new()),
            Err(e) => return Err(CheckpointError::io(&self.path, e)),
        };
        #[derive(Deserialize)]
        struct Version {
            version: u32,
        }
        let corrupt = |source| CheckpointError::Corrupt {
            path: self.path.clone(),
            source,
        };
        let v: Version = serde_json::from_slice(&bytes).map_err(corrupt)?;
        if v.version != CHECKPOINT_VERSION {
            return Err(CheckpointError::Version {
                path: self.path.clone(),
                found: v.version,
                expected: CHECKPOINT_VERSION,
            });
        }
        let on_disk: OnDisk = serde_json::from_slice(&bytes).map_err(corrupt)?;
        Ok(on_disk.streams)
    }

    /// Replaces the checkpoints atomically and durably (see the module docs).
    pub fn save(&self, streams: &Checkpoints) -> Result<(), CheckpointError> {
        let bytes = serde_json::to_vec(&OnDisk {
            version: CHECKPOINT_VERSION,
            streams: streams.clone(),
        })
        .map_err(CheckpointError::Encode)?;
        let io = |p: &Path| {
            let p = p.to_path_buf();
            move |e| CheckpointError::io(p, e)
        };
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&self.tmp)
            .map_err(io(&self.tmp))?;
        f.write_all(&bytes).map_err(io(&self.tmp))?;
        f.sync_all().map_err(io(&self.tmp))?;
        drop(f);
        fs::rename(&self.tmp, &self.path).map_err(io(&self.path))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&self.dir))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::file::identity::Fingerprint;

    fn sample() -> Checkpoints {
        let file = FileIdentity {
            dev: 1,
            inode: 2,
            fingerprint: Fingerprint { bytes: 3, hash: 4 },
        };
        let mut c = Checkpoints::new();
        c.insert(
            "h/+/a".into(),
            StreamCheckpoint {
                path: "/a".into(),
                file,
                offset: 10,
                next_index: 5,
                successors: vec![Successor {
                    file,
                    first_index: 7,
                }],
            },
        );
        c
    }

    #[test]
    fn round_trip_and_replace() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path(), "my source").unwrap();
        assert!(store.load().unwrap().is_empty());
        store.save(&sample()).unwrap();
        assert_eq!(store.load().unwrap(), sample());
        store.save(&Checkpoints::new()).unwrap();
        assert!(store.load().unwrap().is_empty());
        assert!(store.path().ends_with("checkpoints/file-my_source.json"));
    }

    #[test]
    fn damage_and_other_versions_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path(), "s").unwrap();
        fs::write(store.path(), b"{\"version\": 1, \"streams\": {").unwrap();
        assert!(matches!(store.load(), Err(CheckpointError::Corrupt { .. })));
        fs::write(store.path(), b"{\"version\": 9, \"streams\": {}}").unwrap();
        assert!(matches!(
            store.load(),
            Err(CheckpointError::Version { found: 9, .. })
        ));
    }
}
