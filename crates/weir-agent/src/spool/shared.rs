//! What the spool handle, its readers and the background sync share: the state behind
//! its lock, and the operations that do slow I/O outside that lock.
//!
//! Lock order: `sync_serial` or `cursor_serial` first, then `core`, never the other way.
//! `core` is held only for memory updates and `pwrite`s, never across an fsync, so
//! appends and reads go on while the disk syncs.
//!
//! Every fsync of the spool is in this file, four call sites (the crash-consistency
//! property test shows each one is needed):
//! 1. [`Shared::sync_segments`]: `fdatasync` of each segment with unsynced writes;
//! 2. [`Shared::sync_segments`]: fsync of the directory after a segment was created;
//! 3. [`Shared::write_cursor_file`]: `fdatasync` of the cursor's temporary file;
//! 4. [`Shared::write_cursor_file`]: fsync of the directory after the rename.

use std::any::Any;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

use super::SpoolError;
use super::config::{FsyncPolicy, SpoolConfig};
use super::core::Core;
use super::error::io_err;
use super::format::{FRAME_HEADER_LEN, TMP_SUFFIX, cursor_file_name, encode_cursor};
use super::io::SpoolFs;

/// Locks a mutex, carrying on past poisoning: the state is only ever changed in steps
/// that leave it consistent, and a spool that stopped on a panic elsewhere would be a
/// worse failure than the panic.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The state of one open spool.
pub(crate) struct Shared {
    pub(crate) fs: Arc<dyn SpoolFs>,
    pub(crate) dir: PathBuf,
    pub(crate) config: SpoolConfig,
    core: Mutex<Core>,
    /// Serialises segment syncs: a sync that returns covers every write before it began.
    sync_serial: Mutex<()>,
    /// Serialises cursor file writes: a cursor file never goes backwards.
    cursor_serial: Mutex<()>,
    /// Signalled when a record is appended or the spool closes (readers wait on it).
    pub(crate) appended: Notify,
    /// Signalled when an acknowledgement may have freed space (blocked appends wait).
    pub(crate) space: Notify,
    /// Signalled when a count of loss grew: an append found the spool full, or
    /// `drop_oldest` dropped records (the events watcher waits on it).
    pub(crate) loss: Notify,
    /// The directory lock, held while this lives.
    _dir_lock: Box<dyn Any + Send + Sync>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("dir", &self.dir)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Shared {
    pub(crate) fn new(core: Core, dir_lock: Box<dyn Any + Send + Sync>) -> Shared {
        Shared {
            fs: core.fs.clone(),
            dir: core.dir.clone(),
            config: core.config.clone(),
            core: Mutex::new(core),
            sync_serial: Mutex::new(()),
            cursor_serial: Mutex::new(()),
            appended: Notify::new(),
            space: Notify::new(),
            loss: Notify::new(),
            _dir_lock: dir_lock,
        }
    }

    pub(crate) fn core(&self) -> MutexGuard<'_, Core> {
        lock(&self.core)
    }

    /// Appends `payload`; `Ok(None)` when the spool is full under `block`. Under
    /// `always`, returns after the record is synced.
    pub(crate) fn append(&self, payload: &[u8]) -> Result<Option<u64>, SpoolError> {
        let mut deletions = Vec::new();
        let (appended, dropped) = {
            let mut core = self.core();
            let dropped_before = core.counters.dropped_records;
            let appended = core.check_writable().and_then(|()| {
                let frame = (FRAME_HEADER_LEN + payload.len()) as u64;
                if core.make_room(frame, &mut deletions)? {
                    core.write_record(payload).map(Some)
                } else {
                    Ok(None)
                }
            });
            (appended, core.counters.dropped_records > dropped_before)
        };
        if dropped {
            self.loss.notify_one();
        }
        self.remove_files(deletions);
        let appended = appended?;
        if appended.is_some() && self.config.fsync == FsyncPolicy::Always {
            self.sync_segments()?;
        }
        Ok(appended)
    }

    /// Moves reader `name`'s acknowledged position to `up_to + 1`, deletes what is now
    /// acknowledged by all, and persists the cursor as the fsync policy says.
    pub(crate) fn ack(&self, name: &str, up_to: u64) -> Result<(), SpoolError> {
        let mut deletions = Vec::new();
        {
            let mut core = self.core();
            let Some(cursor) = core.cursors.get_mut(name) else {
                return Err(SpoolError::Closed);
            };
            let next = up_to.saturating_add(1);
            if next <= cursor.acked_next {
                return Ok(());
            }
            cursor.acked_next = next;
            core.reclaim(&mut deletions);
        }
        self.remove_files(deletions);
        match self.config.fsync {
            FsyncPolicy::Always => self.persist_cursor(name, true),
            FsyncPolicy::Never => self.persist_cursor(name, false),
            FsyncPolicy::Interval => Ok(()),
        }
    }

    /// Makes every record appended before this call durable: syncs the segments with
    /// unsynced writes, then the directory if a segment was created.
    pub(crate) fn sync_segments(&self) -> Result<(), SpoolError> {
        let _serial = lock(&self.sync_serial);
        let (mut files, sync_dir, watermark) = {
            let mut core = self.core();
            let mut files = std::mem::take(&mut core.unsynced_sealed);
            if std::mem::replace(&mut core.active_dirty, false) {
                files.push(core.active.file.clone());
            }
            let sync_dir = std::mem::replace(&mut core.dir_dirty, false);
            (files, sync_dir, core.next_id)
        };
        let mut result = Ok(());
        for file in &files {
            // fsync site 1
            if let Err(e) = file.sync_data() {
                result = Err(io_err("fsync segment in", &self.dir)(e));
                break;
            }
        }
        if result.is_ok() && sync_dir {
            // fsync site 2
            result = self
                .fs
                .sync_dir(&self.dir)
                .map_err(io_err("fsync directory", &self.dir));
        }
        let mut core = self.core();
        match &result {
            Ok(()) => core.durable_next = core.durable_next.max(watermark),
            Err(e) => {
                // The kernel may have dropped the dirty pages and will not report it
                // again: stop taking records (see SpoolError::Poisoned).
                tracing::error!(error = %e, "spool: fsync failed; refusing further appends");
                core.counters.sync_errors += 1;
                core.poisoned = Some(e.to_string());
                core.unsynced_sealed.append(&mut files);
                core.active_dirty = true;
                core.dir_dirty |= sync_dir;
            }
        }
        result
    }

    /// Writes reader `name`'s acknowledged position to its cursor file if the file is
    /// behind; with `fsync`, durably (also when it was written before without).
    pub(crate) fn persist_cursor(&self, name: &str, fsync: bool) -> Result<(), SpoolError> {
        let _serial = lock(&self.cursor_serial);
        let next = {
            let core = self.core();
            match core.cursors.get(name) {
                Some(c) if c.behind(fsync) => c.acked_next,
                _ => return Ok(()),
            }
        };
        self.write_cursor_file(name, next, fsync)?;
        if let Some(c) = self.core().cursors.get_mut(name) {
            c.written = Some(next);
            if fsync {
                c.durable = Some(next);
            }
        }
        Ok(())
    }

    /// Persists every cursor whose file is behind.
    pub(crate) fn persist_cursors(&self, fsync: bool) -> Result<(), SpoolError> {
        let behind: Vec<String> = self
            .core()
            .cursors
            .iter()
            .filter(|(_, c)| c.behind(fsync))
            .map(|(name, _)| name.clone())
            .collect();
        for name in behind {
            self.persist_cursor(&name, fsync)?;
        }
        Ok(())
    }

    /// Everything appended and acknowledged so far, durable.
    pub(crate) fn sync_all(&self) -> Result<(), SpoolError> {
        self.sync_segments()?;
        self.persist_cursors(true)
    }

    /// The cursor file, replaced atomically: write a temporary file, sync it, rename it
    /// over the old one, sync the directory. A crash at any point leaves the old value
    /// or the new one, never a mix.
    fn write_cursor_file(&self, name: &str, next: u64, fsync: bool) -> Result<(), SpoolError> {
        let path = self.dir.join(cursor_file_name(name));
        let tmp = self
            .dir
            .join(format!("{}{TMP_SUFFIX}", cursor_file_name(name)));
        let file = self.fs.create(&tmp).map_err(io_err("create", &tmp))?;
        file.write_all_at(&encode_cursor(next), 0)
            .map_err(io_err("write cursor to", &tmp))?;
        if fsync {
            // fsync site 3
            file.sync_data().map_err(io_err("fsync", &tmp))?;
        }
        drop(file);
        self.fs
            .rename(&tmp, &path)
            .map_err(io_err("rename cursor to", &path))?;
        if fsync {
            // fsync site 4
            self.fs
                .sync_dir(&self.dir)
                .map_err(io_err("fsync directory", &self.dir))?;
        }
        Ok(())
    }

    /// Forgets reader `name`: its cursor stops holding segments.
    pub(crate) fn remove_cursor(&self, name: &str) -> Result<bool, SpoolError> {
        let _serial = lock(&self.cursor_serial);
        let mut deletions = Vec::new();
        {
            let mut core = self.core();
            match core.cursors.get(name) {
                None => return Ok(false),
                Some(c) if c.reader_open => return Err(SpoolError::ReaderInUse(name.into())),
                Some(_) => {}
            }
            core.cursors.remove(name);
            core.reclaim(&mut deletions);
        }
        let path = self.dir.join(cursor_file_name(name));
        match self.fs.remove(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("remove", &path)(e)),
        }
        self.remove_files(deletions);
        Ok(true)
    }

    /// Unlinks deleted segments. A failure leaves a file that the next open finds
    /// acknowledged and deletes again, so it is logged, not returned.
    pub(crate) fn remove_files(&self, paths: Vec<PathBuf>) {
        for path in paths {
            remove_logged(&*self.fs, &path);
        }
    }
}

pub(crate) fn remove_logged(fs: &dyn SpoolFs, path: &Path) {
    match fs.remove(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(path = %path.display(), error = %e, "spool: cannot remove file"),
    }
}
