//! Resuming a stream from its checkpoint after a restart.
//!
//! The checkpoint names a file by identity, an offset and the next index, and the files
//! the stream went on to read (its successors). Each of them is looked for by identity:
//! first at the stream's path, then among the other files of the same directory (where
//! rotation leaves `app.log.1`, `app.log-20250101`, …). The files found are read in the
//! checkpoint's order — the checkpoint's file from its offset, successors from 0 — and
//! then the file now at the path, when it is none of them, from 0. Numbering continues
//! from the checkpoint's `next_index` across all of them.
//!
//! What this means in each case:
//! - **Same file at the path** (same device, inode and first bytes): it is read from the
//!   offset; the unacknowledged lines come again with the same indices.
//! - **Rotated while the agent was down**: the old file is found under its new name in
//!   the directory and drained from the offset, then the new file is read from 0.
//! - **Old file gone** (deleted, moved to another directory, or its content replaced by
//!   copytruncate — same inode, other first bytes — or a new file on a reused inode):
//!   the file at the path is read from 0, numbered from `next_index`. Lines of the old
//!   file past the checkpoint are lost; when some of them had reached the collector
//!   before the crash, the new file's lines at those indices are reported there as
//!   conflicts — visible, never silent. Numbering never skips ahead, because a gap would
//!   stall the stream for good. `spool = true` closes this window.
//! - An offset past the end of the found file (it shrank) is read from 0.

use std::fs::{self, File};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::checkpoint::StreamCheckpoint;
use super::identity::FileIdentity;
use super::tail::TailedFile;

/// Most directory entries looked at when searching for rotated files.
const MAX_DIR_ENTRIES: usize = 10_000;

/// Finds the files of `checkpoint` (stream at `path`) and returns them in reading order,
/// each positioned where reading resumes.
pub(crate) fn resume(
    checkpoint: &StreamCheckpoint,
    path: &Path,
    fingerprint_bytes: usize,
    max_line: usize,
) -> Vec<TailedFile> {
    let mut dir: Option<Vec<(PathBuf, (u64, u64))>> = None;
    let mut found: Vec<TailedFile> = Vec::new();
    let chain = std::iter::once((checkpoint.file, checkpoint.offset))
        .chain(checkpoint.successors.iter().map(|s| (s.file, 0)));
    for (identity, offset) in chain {
        if found.iter().any(|f| f.identity == identity) {
            continue;
        }
        let Some(file) = locate(&identity, path, &mut dir) else {
            continue;
        };
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let offset = if offset > size { 0 } else { offset };
        found.push(TailedFile::new(file, identity, offset, max_line));
    }
    if let Ok(current) = TailedFile::open(path, fingerprint_bytes, max_line)
        && !found.iter().any(|f| f.key() == current.key())
    {
        found.push(current);
    }
    found
}

/// Opens the file with `identity`: the one at `path`, or another in its directory.
fn locate(
    identity: &FileIdentity,
    path: &Path,
    dir: &mut Option<Vec<(PathBuf, (u64, u64))>>,
) -> Option<File> {
    let try_open = |p: &Path| -> Option<File> {
        let f = File::open(p).ok()?;
        identity.matches(&f).ok()?.then_some(f)
    };
    if let Some(f) = try_open(path) {
        return Some(f);
    }
    let entries = dir.get_or_insert_with(|| list_dir(path));
    entries
        .iter()
        .filter(|(_, key)| *key == identity.inode_key())
        .find_map(|(p, _)| try_open(p))
}

/// Regular files beside `path`, with their `(dev, inode)`.
fn list_dir(path: &Path) -> Vec<(PathBuf, (u64, u64))> {
    let Some(parent) = path.parent() else {
        return Vec::new();
    };
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    let Ok(rd) = fs::read_dir(parent) else {
        return Vec::new();
    };
    rd.take(MAX_DIR_ENTRIES)
        .filter_map(|e| {
            let e = e.ok()?;
            let m = fs::metadata(e.path()).ok()?;
            m.is_file().then(|| (e.path(), (m.dev(), m.ino())))
        })
        .collect()
}
