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
//! A second inotify instance watches the held files for being opened by another
//! program (`IN_OPEN`). That is how copytruncate rotation starts: its copier opens the
//! file, copies it, and truncates it, and whatever the source has not read by the
//! truncation exists only in the copy. So an open calls for a read of the held files at
//! once, even while a busy file's change events are set aside, and the window of loss
//! shrinks from up to `poll_interval_ms` to about the time the copy takes (if the
//! source reads before the copier truncates). It is a separate instance so
//! that waiting for opens never reads (and wakes for) a busy file's change events.
//! The source's own opens (at a look, of paths it checks) are drained after each look.
//!
//! Events only bring looks and reads forward. The runner still looks every
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
    opens: Option<Opens>,
}

/// Why [`Watcher::changed`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wake {
    /// A held file changed, a matching name appeared, or events were lost.
    Changed,
    /// Another program opened a held file (copytruncate's copier does).
    Opened,
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
        let opens = inner.as_ref().and_then(|_| {
            Opens::new()
                .map_err(|e| {
                    tracing::warn!(source = source_name, error = %e,
                        "file source: no second inotify instance for the opens of held \
                         files, so copytruncate rotation of a busy file can lose up to \
                         poll_interval_ms of lines (raise fs.inotify.max_user_instances)");
                })
                .ok()
        });
        Watcher { inner, opens }
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
    pub fn watch_files<'a>(&mut self, held: impl Iterator<Item = &'a TailedFile> + Clone) {
        if let Some(inner) = self.inner.as_mut() {
            inner.watch_files(held.clone());
        }
        if let Some(opens) = self.opens.as_mut() {
            opens.watches.sync(&mut opens.fd, held, WatchMask::OPEN);
        }
    }

    /// Discards the change events that arrived so far (a look is about to cover them).
    pub fn drain_changes(&mut self) {
        if let Some(inner) = self.inner.as_mut()
            && let Err(e) = drain(inner)
        {
            self.give_up(&e);
        }
    }

    /// Discards the opens seen so far: after a look, they are the look's own (it opens
    /// the paths it checks).
    pub fn drain_opens(&mut self) {
        if let Some(opens) = self.opens.as_mut()
            && let Err(e) = drain(opens)
        {
            self.give_up(&e);
        }
    }

    /// Waits for an event that calls for a look (a held file changed, a matching name
    /// appeared, or events were lost; not while `busy`: those are left to the next
    /// poll) or for a read (another program opened a held file; also while `busy`).
    /// Never returns when events are off. Safe to cancel: at worst an event is missed,
    /// and the next poll finds what it was about.
    pub async fn changed(&mut self, matcher: &Matcher, busy: bool) -> Wake {
        let Watcher { inner, opens } = self;
        let changes = async {
            match inner.as_mut() {
                Some(inner) if !busy => next_look(inner, matcher).await,
                _ => std::future::pending().await,
            }
        };
        let opened = async {
            match opens.as_mut() {
                Some(opens) => next_look(opens, matcher).await,
                None => std::future::pending().await,
            }
        };
        let (wake, result) = tokio::select! {
            r = changes => (Wake::Changed, r),
            r = opened => (Wake::Opened, r),
        };
        match result {
            Ok(()) => wake,
            Err(e) => {
                self.give_up(&e);
                std::future::pending().await
            }
        }
    }

    fn give_up(&mut self, e: &io::Error) {
        tracing::warn!(error = %e, "file source: reading inotify events failed; polling only");
        self.inner = None;
        self.opens = None;
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
    /// Watched open files.
    files: FileWatches,
    /// Every watch, by its descriptor's number.
    by_wd: HashMap<i32, Watched>,
    /// Whether running out of watches was logged already.
    warned_full: bool,
}

/// A new inotify instance, registered with the runtime.
fn instance() -> io::Result<AsyncFd<inotify::Inotify>> {
    let inotify = inotify::Inotify::init()?;
    // SAFETY: `inotify::Inotify` owns its descriptor and closes it only when dropped
    // (its `close` takes it by value, and it is never called here), so the descriptor
    // stays open and the same for as long as the `AsyncFd` holds it.
    unsafe { AsyncFd::register_with_interest(inotify, Interest::READABLE) }.map_err(io::Error::from)
}

/// Adds a watch; `None` when that fails (running out of watches is logged once per
/// `warned_full`; a path gone meanwhile is found by the next poll).
fn add_watch(
    fd: &mut AsyncFd<inotify::Inotify>,
    path: &Path,
    mask: WatchMask,
    warned_full: &mut bool,
) -> Option<WatchDescriptor> {
    match fd.get_mut().watches().add(path, mask) {
        Ok(wd) => Some(wd),
        Err(e) => {
            if e.raw_os_error() == Some(enospc()) && !*warned_full {
                *warned_full = true;
                tracing::warn!(path = %path.display(),
                    "file source: no inotify watch left (fs.inotify.max_user_watches); \
                     files beyond it are found by polling only");
            }
            None
        }
    }
}

/// Watches on the files a source holds open, by `(dev, inode)`. Each is watched
/// through `/proc/self/fd/N`: exactly the file being read, whatever its name now.
#[derive(Default)]
struct FileWatches {
    by_key: HashMap<(u64, u64), WatchDescriptor>,
    warned_full: bool,
}

/// The watches a [`FileWatches::sync`] added and removed.
#[derive(Default)]
struct Synced {
    added: Vec<WatchDescriptor>,
    removed: Vec<WatchDescriptor>,
}

impl FileWatches {
    /// Watches exactly the files in `held` with `mask`, dropping the watches of files
    /// let go.
    fn sync<'a>(
        &mut self,
        fd: &mut AsyncFd<inotify::Inotify>,
        held: impl Iterator<Item = &'a TailedFile>,
        mask: WatchMask,
    ) -> Synced {
        let mut synced = Synced::default();
        let mut seen = HashSet::new();
        for f in held {
            let key = f.key();
            seen.insert(key);
            if self.by_key.contains_key(&key) {
                continue;
            }
            let path = PathBuf::from(format!("/proc/self/fd/{}", f.file.as_raw_fd()));
            if let Some(wd) = add_watch(fd, &path, mask, &mut self.warned_full) {
                synced.added.push(wd.clone());
                self.by_key.insert(key, wd);
            }
        }
        if self.by_key.len() == seen.len() {
            return synced;
        }
        let gone: Vec<(u64, u64)> = self
            .by_key
            .keys()
            .filter(|k| !seen.contains(k))
            .copied()
            .collect();
        for key in gone {
            if let Some(wd) = self.by_key.remove(&key) {
                // Fails when the kernel dropped the watch already (file freed).
                let _ = fd.get_mut().watches().remove(wd.clone());
                synced.removed.push(wd);
            }
        }
        synced
    }

    /// Forgets a watch the kernel dropped (`IN_IGNORED`).
    fn dropped(&mut self, wd: &WatchDescriptor) {
        self.by_key.retain(|_, w| w != wd);
    }
}

impl Inotify {
    fn new() -> io::Result<Inotify> {
        Ok(Inotify {
            fd: instance()?,
            buf: Box::new([0; EVENT_BUFFER]),
            dirs: HashMap::new(),
            files: FileWatches::default(),
            by_wd: HashMap::new(),
            warned_full: false,
        })
    }

    fn watch_dir(&mut self, dir: &Path) {
        if self.dirs.contains_key(dir) {
            return;
        }
        let mask = WatchMask::CREATE | WatchMask::MOVED_TO | WatchMask::ONLYDIR;
        if let Some(wd) = add_watch(&mut self.fd, dir, mask, &mut self.warned_full) {
            self.by_wd.insert(
                wd.get_watch_descriptor_id(),
                Watched::Dir(dir.to_path_buf()),
            );
            self.dirs.insert(dir.to_path_buf(), wd);
        }
    }

    fn watch_files<'a>(&mut self, held: impl Iterator<Item = &'a TailedFile>) {
        let mask =
            WatchMask::MODIFY | WatchMask::ATTRIB | WatchMask::MOVE_SELF | WatchMask::DELETE_SELF;
        let synced = self.files.sync(&mut self.fd, held, mask);
        for wd in synced.added {
            self.by_wd
                .insert(wd.get_watch_descriptor_id(), Watched::File);
        }
        for wd in synced.removed {
            self.by_wd.remove(&wd.get_watch_descriptor_id());
        }
    }

    /// Reads the pending events (`WouldBlock` when there were none) and keeps the
    /// bookkeeping of dropped watches; returns whether one calls for a look, judging
    /// new names by `matcher` (none: discarding).
    fn read_judged(&mut self, matcher: Option<&Matcher>) -> io::Result<bool> {
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
                    Some(Watched::File) => files.dropped(&event.wd),
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
}

/// The second instance: held files opened by another program.
struct Opens {
    fd: AsyncFd<inotify::Inotify>,
    buf: Box<[u8; OPEN_EVENT_BUFFER]>,
    watches: FileWatches,
}

/// Bytes of open events read at once (they carry no name: 16 bytes each).
const OPEN_EVENT_BUFFER: usize = 1024;

impl Opens {
    fn new() -> io::Result<Opens> {
        Ok(Opens {
            fd: instance()?,
            buf: Box::new([0; OPEN_EVENT_BUFFER]),
            watches: FileWatches::default(),
        })
    }

    /// Reads the pending events (`WouldBlock` when there were none); returns whether
    /// one was an open of a held file (or events were lost).
    fn read_opened(&mut self) -> io::Result<bool> {
        let mut opened = false;
        for event in self.fd.get_mut().read_events(&mut self.buf[..])? {
            if event.mask.contains(EventMask::IGNORED) {
                self.watches.dropped(&event.wd);
            } else {
                opened |= event
                    .mask
                    .intersects(EventMask::OPEN | EventMask::Q_OVERFLOW);
            }
        }
        Ok(opened)
    }
}

/// An inotify instance whose pending events are read, and judged, in batches.
trait EventQueue {
    fn fd(&self) -> &AsyncFd<inotify::Inotify>;
    /// Reads the pending events (`WouldBlock` when there were none); returns whether
    /// one calls for a look, judged by `matcher` (none: discarding).
    fn read(&mut self, matcher: Option<&Matcher>) -> io::Result<bool>;
}

impl EventQueue for Inotify {
    fn fd(&self) -> &AsyncFd<inotify::Inotify> {
        &self.fd
    }
    fn read(&mut self, matcher: Option<&Matcher>) -> io::Result<bool> {
        self.read_judged(matcher)
    }
}

impl EventQueue for Opens {
    fn fd(&self) -> &AsyncFd<inotify::Inotify> {
        &self.fd
    }
    fn read(&mut self, matcher: Option<&Matcher>) -> io::Result<bool> {
        Ok(self.read_opened()? && matcher.is_some())
    }
}

/// Reads and discards the pending events.
fn drain(queue: &mut impl EventQueue) -> io::Result<()> {
    loop {
        match queue.read(None) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

/// Waits for an event that calls for a look (or a read).
async fn next_look(queue: &mut impl EventQueue, matcher: &Matcher) -> io::Result<()> {
    loop {
        let mut guard = queue.fd().readable().await?;
        guard.clear_ready();
        drop(guard);
        loop {
            match queue.read(Some(matcher)) {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
    }
}

/// `ENOSPC`: what `inotify_add_watch` fails with when no watch is left.
fn enospc() -> i32 {
    rustix::io::Errno::NOSPC.raw_os_error()
}
