//! Change events from the kernel, so that a quiet file is read as soon as it is written.
//!
//! The source asks inotify for two kinds of events:
//! - changes to every file it holds open: appended or truncated (`IN_MODIFY`), unlinked
//!   (`IN_ATTRIB`: the link count changed), moved or gone. Each file is watched through
//!   `/proc/self/fd/N`, so the watch is on exactly the file being read, whatever name it
//!   has now (a rotated file still being drained included);
//! - names created in, or moved into, the directories where matching paths appear (each
//!   `include` pattern's leading directories, and each followed path's directory). Only
//!   names that match the globs count, so a busy unrelated file beside a followed one
//!   wakes nothing.
//!
//! Events only bring the next look forward. The runner still looks every
//! `poll_interval_ms`, and polling alone finds everything events miss: network file
//! systems (no events for remote writes), a directory created after the start, a full
//! event queue. Where inotify cannot be set up, the source polls alone, with a warning.
//! Everything here is bounded: one watch per open file and per directory, and events are
//! read into one fixed buffer.

use std::collections::{HashMap, HashSet};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use inotify::{EventMask, WatchDescriptor, WatchMask};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use super::discover::Matcher;
use super::tail::TailedFile;

/// The source's change events; does nothing when disabled or unavailable.
pub(crate) struct Watcher {
    inner: Option<Inotify>,
}

impl Watcher {
    /// Sets up inotify when `enabled`. Must be called within a tokio runtime with I/O
    /// enabled.
    pub fn new(enabled: bool, source_name: &str) -> Watcher {
        let inner = enabled.then(Inotify::new).and_then(|made| {
            made.map_err(|e| {
                tracing::warn!(source = source_name, error = %e,
                    "file source: inotify is unavailable, so quiet files are read at the \
                     next poll only (raise fs.inotify.max_user_instances if that is the \
                     limit hit, or set inotify = false to say so)");
            })
            .ok()
        });
        Watcher { inner }
    }

    /// Whether events are being delivered.
    pub fn active(&self) -> bool {
        self.inner.is_some()
    }

    /// Watches `dirs` for new names (those already watched cost nothing; one that does
    /// not exist is tried again at the next call).
    pub fn watch_dirs<'a>(&mut self, dirs: impl Iterator<Item = &'a Path>) {
        if let Some(inner) = self.inner.as_mut() {
            for dir in dirs {
                inner.watch_dir(dir);
            }
        }
    }

    /// Watches exactly the files in `held`, dropping the watches of files let go.
    pub fn watch_files<'a>(&mut self, held: impl Iterator<Item = &'a TailedFile>) {
        if let Some(inner) = self.inner.as_mut() {
            inner.watch_files(held);
        }
    }

    /// Discards the events that arrived so far (a look is about to cover them).
    pub fn drain(&mut self) {
        if let Some(inner) = self.inner.as_mut()
            && let Err(e) = inner.drain()
        {
            self.give_up(&e);
        }
    }

    /// Waits for an event that calls for a look: a held file changed, a matching name
    /// appeared, or events were lost. Never returns when events are off. Safe to cancel:
    /// at worst an event is missed, and the next poll finds what it was about.
    pub async fn changed(&mut self, matcher: &Matcher) {
        if let Some(inner) = self.inner.as_mut() {
            match inner.changed(matcher).await {
                Ok(()) => return,
                Err(e) => self.give_up(&e),
            }
        }
        std::future::pending::<()>().await
    }

    fn give_up(&mut self, e: &io::Error) {
        tracing::warn!(error = %e, "file source: reading inotify events failed; polling only");
        self.inner = None;
    }
}

/// Bytes of events read at once (an event is 16 bytes plus its name).
const EVENT_BUFFER: usize = 8192;

/// What a watch is on.
enum Watched {
    Dir(PathBuf),
    File,
}

/// An inotify instance and what it watches.
struct Inotify {
    fd: AsyncFd<inotify::Inotify>,
    buf: Box<[u8; EVENT_BUFFER]>,
    /// Watched directories.
    dirs: HashMap<PathBuf, WatchDescriptor>,
    /// Watched open files, by `(dev, inode)`.
    files: HashMap<(u64, u64), WatchDescriptor>,
    /// Every watch, by its descriptor's number.
    by_wd: HashMap<i32, Watched>,
    /// Whether running out of watches was logged already.
    warned_full: bool,
}

impl Inotify {
    fn new() -> io::Result<Inotify> {
        let inotify = inotify::Inotify::init()?;
        // SAFETY: `inotify::Inotify` owns its descriptor and closes it only when
        // dropped (its `close` takes it by value, and it is never called here), so the
        // descriptor stays open and the same for as long as the `AsyncFd` holds it.
        let fd = unsafe { AsyncFd::register_with_interest(inotify, Interest::READABLE) }
            .map_err(io::Error::from)?;
        Ok(Inotify {
            fd,
            buf: Box::new([0; EVENT_BUFFER]),
            dirs: HashMap::new(),
            files: HashMap::new(),
            by_wd: HashMap::new(),
            warned_full: false,
        })
    }

    fn add(&mut self, path: &Path, mask: WatchMask) -> Option<WatchDescriptor> {
        match self.fd.get_mut().watches().add(path, mask) {
            Ok(wd) => Some(wd),
            Err(e) => {
                if e.raw_os_error() == Some(enospc()) && !self.warned_full {
                    self.warned_full = true;
                    tracing::warn!(path = %path.display(),
                        "file source: no inotify watch left (fs.inotify.max_user_watches); \
                         files beyond it are found by polling only");
                }
                None
            }
        }
    }

    fn watch_dir(&mut self, dir: &Path) {
        if self.dirs.contains_key(dir) {
            return;
        }
        let mask = WatchMask::CREATE | WatchMask::MOVED_TO | WatchMask::ONLYDIR;
        if let Some(wd) = self.add(dir, mask) {
            self.by_wd.insert(
                wd.get_watch_descriptor_id(),
                Watched::Dir(dir.to_path_buf()),
            );
            self.dirs.insert(dir.to_path_buf(), wd);
        }
    }

    fn watch_files<'a>(&mut self, held: impl Iterator<Item = &'a TailedFile>) {
        let mut seen = HashSet::new();
        for f in held {
            let key = f.key();
            seen.insert(key);
            if self.files.contains_key(&key) {
                continue;
            }
            let mask = WatchMask::MODIFY
                | WatchMask::ATTRIB
                | WatchMask::MOVE_SELF
                | WatchMask::DELETE_SELF;
            let path = PathBuf::from(format!("/proc/self/fd/{}", f.file.as_raw_fd()));
            if let Some(wd) = self.add(&path, mask) {
                self.by_wd
                    .insert(wd.get_watch_descriptor_id(), Watched::File);
                self.files.insert(key, wd);
            }
        }
        if self.files.len() == seen.len() {
            return;
        }
        let gone: Vec<(u64, u64)> = self
            .files
            .keys()
            .filter(|k| !seen.contains(k))
            .copied()
            .collect();
        for key in gone {
            if let Some(wd) = self.files.remove(&key) {
                self.by_wd.remove(&wd.get_watch_descriptor_id());
                // Fails when the kernel dropped the watch already (file freed).
                let _ = self.fd.get_mut().watches().remove(wd);
            }
        }
    }

    /// Reads the pending events (`WouldBlock` when there were none) and keeps the
    /// bookkeeping of dropped watches; returns whether one calls for a look, judging
    /// new names by `matcher` (none: discarding).
    fn read(&mut self, matcher: Option<&Matcher>) -> io::Result<bool> {
        let Inotify {
            fd,
            buf,
            dirs,
            files,
            by_wd,
            ..
        } = self;
        let mut look = false;
        for event in fd.get_mut().read_events(&mut buf[..])? {
            if event.mask.contains(EventMask::Q_OVERFLOW) {
                look = true;
                continue;
            }
            let id = event.wd.get_watch_descriptor_id();
            if event.mask.contains(EventMask::IGNORED) {
                // The kernel dropped the watch (file freed, directory removed).
                match by_wd.remove(&id) {
                    Some(Watched::Dir(dir)) => {
                        dirs.remove(&dir);
                    }
                    Some(Watched::File) => files.retain(|_, wd| *wd != event.wd),
                    None => {}
                }
                continue;
            }
            look |= match (by_wd.get(&id), matcher) {
                (Some(Watched::File), _) => true,
                (Some(Watched::Dir(dir)), Some(m)) => {
                    event.name.is_some_and(|name| m.matches(&dir.join(name)))
                }
                _ => false,
            };
        }
        Ok(look)
    }

    fn drain(&mut self) -> io::Result<()> {
        loop {
            match self.read(None) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }

    async fn changed(&mut self, matcher: &Matcher) -> io::Result<()> {
        loop {
            let mut guard = self.fd.readable().await?;
            guard.clear_ready();
            drop(guard);
            loop {
                match self.read(Some(matcher)) {
                    Ok(true) => return Ok(()),
                    Ok(false) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
        }
    }
}

/// `ENOSPC`: what `inotify_add_watch` fails with when no watch is left.
fn enospc() -> i32 {
    rustix::io::Errno::NOSPC.raw_os_error()
}
