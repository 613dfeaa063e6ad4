//! Stream numbering of the sources that cannot replay (stdin, socket, `weir run`): the
//! next index of each stream, continued across restarts and never reused.
//!
//! `<data_dir>/numbering.json` maps stream → next index. It is rewritten atomically
//! (temp file, fsync, rename) after every batch is appended to the spool. A crash
//! between the append and the rewrite leaves the file behind the spool; so at start
//! the agent also reads every record still in the spool ([`Numbering::reconcile`]) and
//! takes the higher of the two. A record that already left the spool cannot be read
//! back, so no record may leave before the file covers it: a record leaves only once
//! every reader acknowledged it, and every acknowledgement first advances the numbering
//! by the record's streams and writes the file if that changed it
//! ([`super::spool_pipeline::SpoolAcks`], [`Numbering::save_if_changed`]). The window is
//! closed: after any crash, the file is past every record gone from the spool, and
//! `reconcile` is past every record still in it.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use super::spool_pipeline::decode;
use crate::spool::{Spool, SpoolError};

/// Name of the temporary spool reader used by [`Numbering::reconcile`].
const SCAN_READER: &str = "numbering-scan";

/// The next index of each stream.
#[derive(Debug)]
pub struct Numbering {
    path: PathBuf,
    next: Mutex<BTreeMap<String, u64>>,
    /// Raised by every [`advance`](Numbering::advance) that changed a value.
    changes: AtomicU64,
    /// The value of `changes` the file on disk reflects.
    saved: AtomicU64,
    /// Held while the file is written: writers share one temporary file.
    writing: Mutex<()>,
}

impl Numbering {
    /// Loads `<data_dir>/numbering.json` (empty when missing).
    pub fn open(data_dir: &Path) -> std::io::Result<Numbering> {
        let path = data_dir.join("numbering.json");
        let next = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                std::io::Error::other(format!(
                    "{} is not valid ({e}); it is written atomically, so this is outside damage",
                    path.display()
                ))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e),
        };
        Ok(Numbering {
            path,
            next: Mutex::new(next),
            changes: AtomicU64::new(0),
            saved: AtomicU64::new(0),
            writing: Mutex::new(()),
        })
    }

    /// The next index of `stream`.
    pub fn next(&self, stream: &str) -> u64 {
        let map = self.next.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(stream).copied().unwrap_or(0)
    }

    /// Entries below `to` of `stream` are taken.
    pub fn advance(&self, stream: &str, to: u64) {
        let mut map = self.next.lock().unwrap_or_else(PoisonError::into_inner);
        let n = map.entry(stream.to_string()).or_insert(0);
        if to > *n {
            *n = to;
            self.changes.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Writes the file if an [`advance`](Numbering::advance) changed something since
    /// the last write.
    pub fn save_if_changed(&self) -> std::io::Result<()> {
        if self.changes.load(Ordering::SeqCst) > self.saved.load(Ordering::SeqCst) {
            self.save()?;
        }
        Ok(())
    }

    /// Writes the file atomically.
    pub fn save(&self) -> std::io::Result<()> {
        let _writing = self.writing.lock().unwrap_or_else(PoisonError::into_inner);
        let (bytes, changes) = {
            let map = self.next.lock().unwrap_or_else(PoisonError::into_inner);
            let changes = self.changes.load(Ordering::SeqCst);
            (
                serde_json::to_vec_pretty(&*map).map_err(std::io::Error::other)?,
                changes,
            )
        };
        let tmp = self.path.with_extension("json.tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_data()?;
        std::fs::rename(&tmp, &self.path)?;
        self.saved.fetch_max(changes, Ordering::SeqCst);
        Ok(())
    }

    /// Takes into account every record still in the spool.
    pub async fn reconcile(&self, spool: &Spool) -> Result<(), SpoolError> {
        {
            let mut reader = spool.reader(SCAN_READER).await?;
            while let Some(record) = reader.try_next().await {
                if let Some((_, batch)) = decode(&record.payload) {
                    for s in &batch.streams {
                        self.advance(&s.stream, s.end_index());
                    }
                }
            }
        }
        spool.remove_reader(SCAN_READER).await?;
        Ok(())
    }
}
