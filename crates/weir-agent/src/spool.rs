//! The spool: a durable on-disk FIFO queue of records between the batcher and the
//! flushers (DESIGN.md, Guarantee 2: nothing acknowledged is lost).
//!
//! A record is an opaque byte payload (the agent puts an encoded batch of envelopes in
//! each). One writer appends; any number of named readers (one per flusher) read the
//! records in order, each from its own acknowledged position, so a slow flusher never
//! holds the others back. A record stays on disk until every reader has acknowledged
//! it; then the space is given back, a segment file at a time.
//!
//! # Invariants
//!
//! 1. **Ids are dense, increasing and never reused.** Every record gets the next `u64`
//!    id. Inside a segment the ids are consecutive from the segment's first id, which is
//!    also its file name. After a crash the next id is past every record, every segment
//!    name and every cursor on disk, so a new record can never hide behind a cursor that
//!    already moved past its id.
//! 2. **`append` returns only after the record is with the OS** (one `pwrite`; no
//!    buffering in the process). A process crash (`kill -9`) therefore loses nothing
//!    `append` returned, whatever the fsync policy. What a machine crash can lose is set
//!    by the policy (below).
//! 3. **A segment file is deleted only when every reader has acknowledged past its end**
//!    (or by `when_full = "drop_oldest"`, counted). With no reader at all, nothing is
//!    deleted: records wait for their first reader. A reader that is no longer wanted
//!    must be removed ([`Spool::remove_reader`]) or it holds data forever.
//! 4. **A cursor file never goes backwards and is replaced atomically**: written to
//!    `<name>.cursor.tmp`, synced, renamed over `<name>.cursor`, directory synced. A crash
//!    leaves the old value or the new one.
//! 5. **Damage is never fatal.** Opening a damaged spool cuts, skips and counts; it never
//!    panics and never needs the directory deleted by hand. The only refusal is the OS
//!    refusing (permissions, EIO on open). A segment of another format version (or
//!    whose header and first frame are both damaged) is renamed to
//!    `<name>.seg.version-<N>`, logged and counted as skipped, and kept for the version
//!    that wrote it; it no longer counts toward `max_bytes`.
//! 6. **Bounded.** Disk: `max_bytes`. Memory: a reader holds at most one batch (1 MiB or
//!    1024 records, or one larger record); recovery reads through a 256 KiB window.
//!
//! # On disk
//!
//! ```text
//! <dir>/LOCK                          held (flock) while a Spool has the directory open
//! <dir>/00000000000000000000.seg      segments, named by their first record id
//! <dir>/00000000000000001337.seg      (20 digits: names sort in id order)
//! <dir>/central.cursor                one cursor file per reader
//! ```
//!
//! A segment is an 8-byte header, `WEIRSPL` and the format version (1), then frames:
//!
//! ```text
//! +----------------+----------------+-----------------------+-------------------+
//! | len: u32 LE    | crc: u32 LE    | id: u64 LE            | payload: len bytes|
//! +----------------+----------------+-----------------------+-------------------+
//!   crc = CRC32C(len bytes ‖ id bytes ‖ payload)
//! ```
//!
//! The CRC covers the length and the id as well as the payload, so a frame is accepted
//! only whole and only at the id it was written with. `len` is at most
//! [`MAX_RECORD_BYTES`] (64 MiB); a larger one is "impossible" and marks damage. The
//! writer rolls to a new segment when the next frame would take the active one past
//! `segment_bytes` (a larger record gets a segment of its own).
//!
//! A cursor file is 20 bytes: `WEIRCUR` and the version, `next: u64 LE` (every record
//! below `next` is acknowledged), and the CRC32C of the first 16 bytes.
//!
//! # Recovery (what `open` does)
//!
//! 1. Take the lock; delete `*.tmp` (cursor writes cut short; the old cursor is intact).
//! 2. Read every cursor. A damaged cursor file is counted (`corrupt_cursors`) and its
//!    reader starts again from the oldest record: re-delivery, never loss.
//! 3. Scan every segment in id order, checking each frame (possible length, expected id,
//!    CRC). At a frame that fails, *resynchronise*: try each following byte offset for a
//!    frame that passes with a higher id (below the next segment's first id, and below
//!    what the remaining bytes could hold; those checks reject nearly every offset before
//!    a CRC is computed). Found: the region in between is skipped and counted
//!    (`skipped_records` from the id gap, `skipped_bytes`), and readers step over it the
//!    same way. Not found: the rest of the segment is a torn tail; the file is truncated
//!    to its last good frame (`truncated_bytes`; in a sealed segment the ids missing up to
//!    the next segment are also counted in `skipped_records`). A damaged segment header
//!    is rewritten and its frames scanned all the same.
//! 4. The next id is past everything on disk (invariant 1). Appending goes on at the end
//!    of the last segment if its ids lead exactly to the next id, in a new segment
//!    otherwise.
//! 5. Segments every cursor has acknowledged are deleted.
//!
//! Opening twice in a row is stable: the first open cut the tails, the second finds
//! the same records (and counts the same damage in the middle again, since it is still
//! there until its segment is deleted).
//!
//! # Fsync policies and what each guarantees
//!
//! Four fsync call sites make data durable (all in `shared.rs`): the data of segments
//! with unsynced writes, the directory after a segment is created, a cursor's temporary
//! file, the directory after the cursor's rename. [`FsyncPolicy`] says when they run:
//!
//! | policy | a record is durable when | an ack is durable when | a power loss loses |
//! | --- | --- | --- | --- |
//! | `always` | `append` returns | `ack` returns | nothing that returned |
//! | `interval` (default) | the next background sync completes (every `fsync_interval_ms`, 200 ms) | the same sync | appends of the last ~interval + sync time; acks of that window are re-delivered |
//! | `never` | the kernel writes it back | the kernel writes it back | anything not written back |
//!
//! Under every policy `kill -9` loses no returned append (invariant 2). Acks under
//! `interval` reach the cursor file only at the next sync, so after `kill -9` the
//! acknowledgements of the last interval come back as re-deliveries (at-least-once; the
//! collector drops the duplicates by stream index). [`Spool::sync`] makes everything
//! durable now, whatever the policy; [`Spool::close`] does it for `interval`.
//!
//! Readers may be given records before they are durable (they read what the OS has).
//! That is safe: a receiver that stored such a record and then saw it vanish in a power
//! loss has lost nothing, and invariant 1 keeps new records from hiding behind a cursor
//! that got ahead of the surviving ones.
//!
//! # When full
//!
//! `max_bytes` bounds the segment files. An append that would pass it first deletes what
//! is acknowledged (sealing the active segment if every reader has acknowledged all of
//! it), then: `block` waits until an acknowledgement frees space (the source awaits
//! `append`, so it stops reading); `drop_oldest` deletes the oldest segments until the
//! record fits, counting the records readers had not acknowledged (`dropped_records`,
//! and per cursor); readers jump past them.
//!
//! # Use
//!
//! ```no_run
//! # async fn demo() -> Result<(), weir_agent::spool::SpoolError> {
//! use weir_agent::spool::{Spool, SpoolConfig};
//!
//! let spool = Spool::open("/var/lib/weir/spool", SpoolConfig::default()).await?;
//! let mut reader = spool.reader("central").await?;
//! spool.append(b"a batch".to_vec()).await?;
//! if let Some(record) = reader.next().await {
//!     // … send record.payload; once the receiver has it:
//!     reader.ack(record.id).await?;
//! }
//! spool.close().await?;
//! # Ok(()) }
//! ```

mod config;
mod core;
mod error;
mod format;
pub mod io;
mod reader;
mod recovery;
mod scan;
mod shared;
mod stats;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

pub use config::{FsyncPolicy, SpoolConfig, WhenFull};
pub use error::SpoolError;
pub use format::MAX_RECORD_BYTES;
pub use reader::{Record, SpoolAcker, SpoolReader};
pub use stats::{CursorStats, SpoolStats};

use self::core::Cursor;
use self::format::valid_reader_name;
use self::io::{SpoolFs, StdFs};
use self::shared::Shared;

/// The id of a record: dense, increasing, never reused within a spool directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RecordId(pub u64);

impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An open spool. Cheap to clone; every clone is the same spool.
///
/// Disk work runs on tokio's blocking pool, so every method that may touch the disk is
/// `async` and needs a tokio runtime.
#[derive(Clone)]
pub struct Spool {
    shared: Arc<Shared>,
}

impl fmt::Debug for Spool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Spool")
            .field("dir", &self.shared.dir)
            .finish_non_exhaustive()
    }
}

/// Runs `f` on the blocking pool.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, SpoolError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, SpoolError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| SpoolError::Task(e.to_string()))?
}

impl Spool {
    /// Opens the spool in `dir` (created if missing), recovering from whatever a crash
    /// left (see the module docs), and starts the background sync under `interval`.
    pub async fn open(dir: impl AsRef<Path>, config: SpoolConfig) -> Result<Spool, SpoolError> {
        Spool::open_with(Arc::new(StdFs), dir, config).await
    }

    /// [`Spool::open`] on another file system, e.g. [`io::SimFs`] in tests.
    pub async fn open_with(
        fs: Arc<dyn SpoolFs>,
        dir: impl AsRef<Path>,
        config: SpoolConfig,
    ) -> Result<Spool, SpoolError> {
        config.validate()?;
        let dir: PathBuf = dir.as_ref().to_path_buf();
        let (core, dir_lock) = {
            let config = config.clone();
            let dir = dir.clone();
            blocking(move || recovery::recover(fs, &dir, &config)).await?
        };
        let stats = core.stats();
        if stats.skipped_records
            + stats.skipped_bytes
            + stats.truncated_bytes
            + stats.corrupt_cursors
            > 0
        {
            tracing::warn!(
                dir = %dir.display(),
                skipped_records = stats.skipped_records,
                skipped_bytes = stats.skipped_bytes,
                truncated_bytes = stats.truncated_bytes,
                corrupt_cursors = stats.corrupt_cursors,
                "spool: recovered from damage"
            );
        }
        let shared = Arc::new(Shared::new(core, dir_lock));
        if config.fsync == FsyncPolicy::Interval {
            tokio::spawn(sync_periodically(
                Arc::downgrade(&shared),
                config.fsync_interval(),
            ));
        }
        Ok(Spool { shared })
    }

    /// The directory of this spool.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Its config.
    pub fn config(&self) -> &SpoolConfig {
        &self.shared.config
    }

    /// Largest payload [`append`](Spool::append) takes: [`MAX_RECORD_BYTES`], or less
    /// when `max_bytes` is small.
    pub fn max_payload(&self) -> u64 {
        core::Core::max_payload(&self.shared.config)
    }

    /// Appends a record and returns its id.
    ///
    /// Returns once the payload is with the OS (and, under `always`, on disk). When the
    /// spool is full: under `block`, waits until acknowledgements free space; under
    /// `drop_oldest`, drops the oldest segments (counted). Dropping the future while it
    /// waits for space appends nothing; dropping it after the write began may still
    /// append the record.
    pub async fn append(&self, payload: impl Into<Bytes>) -> Result<RecordId, SpoolError> {
        let payload: Bytes = payload.into();
        let limit = self.max_payload();
        if payload.len() as u64 > limit {
            return Err(SpoolError::RecordTooLarge {
                size: payload.len(),
                limit,
            });
        }
        let mut waited = false;
        loop {
            let space = self.shared.space.notified();
            tokio::pin!(space);
            space.as_mut().enable();
            let shared = self.shared.clone();
            let bytes = payload.clone();
            match blocking(move || shared.append(&bytes)).await? {
                Some(id) => {
                    self.shared.appended.notify_waiters();
                    return Ok(RecordId(id));
                }
                None => {
                    if !waited {
                        waited = true;
                        self.shared.core().counters.blocked_appends += 1;
                        self.shared.loss.notify_one();
                        tracing::debug!("spool full: append waits for acknowledgements");
                    }
                    space.await;
                }
            }
        }
    }

    /// Opens the reader `name`, creating its cursor if it is new.
    ///
    /// A new reader starts at the oldest record in the spool; an existing one right
    /// after its acknowledged position. A new cursor is persisted before this returns,
    /// so from then on it holds the records it has not acknowledged, across restarts.
    /// One reader per name at a time.
    pub async fn reader(&self, name: &str) -> Result<SpoolReader, SpoolError> {
        if !valid_reader_name(name) {
            return Err(SpoolError::InvalidReaderName(name.into()));
        }
        let acked_next = {
            let mut core = self.shared.core();
            if core.closed {
                return Err(SpoolError::Closed);
            }
            let first_retained = core.first_retained;
            let cursor = core
                .cursors
                .entry(name.to_owned())
                .or_insert_with(|| Cursor::new(first_retained, None));
            if cursor.reader_open {
                return Err(SpoolError::ReaderInUse(name.into()));
            }
            cursor.reader_open = true;
            cursor.acked_next
        };
        // from here the Drop of the reader clears `reader_open`, also on error
        let reader = SpoolReader::new(self.shared.clone(), name.to_owned(), acked_next);
        let shared = self.shared.clone();
        let fsync = self.shared.config.fsync != FsyncPolicy::Never;
        let owned = name.to_owned();
        blocking(move || shared.persist_cursor(&owned, fsync)).await?;
        Ok(reader)
    }

    /// Removes the cursor of a reader that is no longer configured, so that it stops
    /// holding records. `Ok(false)` if there was none; an error if its reader is open.
    pub async fn remove_reader(&self, name: &str) -> Result<bool, SpoolError> {
        let shared = self.shared.clone();
        let name = name.to_owned();
        let removed = blocking(move || shared.remove_cursor(&name)).await?;
        self.shared.space.notify_waiters();
        Ok(removed)
    }

    /// A snapshot of sizes, positions and loss counters.
    pub fn stats(&self) -> SpoolStats {
        self.shared.core().stats()
    }

    /// Returns once a count of loss may have grown (`blocked_appends`, or
    /// `dropped_records`) since the last time it returned; compare [`stats`](Self::stats)
    /// to see what. Meant for one waiter (the events watcher): a growth that comes while
    /// nobody waits is kept for the next call.
    pub async fn loss_grew(&self) {
        self.shared.loss.notified().await;
    }

    /// Makes every record appended and every acknowledgement made so far durable, now,
    /// whatever the fsync policy.
    pub async fn sync(&self) -> Result<(), SpoolError> {
        let shared = self.shared.clone();
        blocking(move || shared.sync_all()).await
    }

    /// Closes the spool: syncs what the policy has pending (`interval`: everything),
    /// then makes appends fail with [`SpoolError::Closed`] and readers' `next` return
    /// `None`. What was not acknowledged is delivered again after the next open.
    pub async fn close(&self) -> Result<(), SpoolError> {
        let result = match self.shared.config.fsync {
            FsyncPolicy::Interval => self.sync().await,
            FsyncPolicy::Always | FsyncPolicy::Never => Ok(()),
        };
        self.shared.core().closed = true;
        self.shared.appended.notify_waiters();
        self.shared.space.notify_waiters();
        result
    }
}

/// The background sync of `interval`: runs until the spool is dropped or closed.
async fn sync_periodically(shared: Weak<Shared>, period: std::time::Duration) {
    loop {
        tokio::time::sleep(period).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if shared.core().closed {
            return;
        }
        if let Err(e) = blocking(move || shared.sync_all()).await {
            tracing::error!(error = %e, "spool: background sync failed");
        }
    }
}
