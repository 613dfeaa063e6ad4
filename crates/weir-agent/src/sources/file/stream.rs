//! One stream: the path it follows and its files, read one at a time in rotation order.
//!
//! A stream holds the file it reads (`current`) and the successors that appeared at its
//! path since (`queue`, opened at once so that a second rotation cannot hide them, at
//! most `MAX_QUEUED`, 8). The rules, applied at every poll and read:
//!
//! - **Rename rotation.** When the path names another file than the newest one held,
//!   that file is opened and queued. The current file keeps being read through its
//!   descriptor; it is *drained* — read to its end and released — once its successor
//!   holds data: a writer writes to the new file only after it stopped writing to the
//!   old one, so the old file's end is final by then. Only then does the successor start.
//!   A file is seen at its path only by a poll: one that is created and rotated away
//!   again within one poll interval is missed by the stream (when the globs match its
//!   rotated name, it becomes a stream of its own instead). Poll at least twice as often
//!   as the fastest rotation.
//! - **Deletion.** A file with no links left is drained and released; the stream waits
//!   for a new file at its path.
//! - **Copytruncate.** When the current file is shorter than what was read, or its first
//!   bytes changed, its content was replaced: the held bytes are handed out as a last
//!   line and reading restarts at 0. Lines written after the last read and before the
//!   truncation are lost: they exist only in the copy, which is another file. That
//!   window is inherent in copytruncate. A file that keeps growing is read once per
//!   poll interval, but the copier's open of the file brings a read forward
//!   (`changes.rs`), so the window is about the time the copy takes (up to the
//!   poll interval without inotify). When the writer was in the middle of a line at
//!   the last read, the held bytes are the start of a line whose rest is in the
//!   window: they are handed out all the same, as what was read.
//! - **Held last line.** Bytes after the last `\n` are handed out only when their file
//!   is released or replaced, so a line being written is never cut in two.
//!
//! Lines go into `ready` and leave it in order; a file switch waits until `ready` is
//! empty, so that every line is registered against the file it came from.

use std::collections::VecDeque;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;

use super::acks::Shared;
use super::lines::Piece;
use super::read_buffers::ReadBuffers;
use super::registry::Registry;
use super::stats::{FileSourceStats, add};
use super::tail::TailedFile;

/// Most successors a stream holds open while it drains its current file.
pub(crate) const MAX_QUEUED: usize = 8;

/// What the source shares between its streams.
pub(crate) struct Ctx {
    pub shared: Arc<Shared>,
    pub stats: Arc<FileSourceStats>,
    pub registry: Registry,
    pub fingerprint_bytes: usize,
    pub max_line: usize,
    /// A file was started or queued: write the checkpoints before handing out more.
    pub needs_persist: bool,
    /// The buffers files are read into.
    pub buffers: ReadBuffers,
}

impl Ctx {
    pub(crate) fn read_error(&self, what: &str, path: &std::path::Path, e: &io::Error) {
        add(&self.stats.read_errors, 1);
        tracing::warn!(path = %path.display(), error = %e, "file source: {what} failed");
    }
}

/// A change of file, done once the lines before it have been handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Switch {
    /// The current file was read to its end and is let go.
    Release,
    /// The current file's content was replaced: read it again from 0.
    Restart,
}

/// What [`StreamTail::step`] left to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Lines wait in `ready`.
    Ready,
    /// Bytes were read but make no complete line yet: read on.
    Progress,
    /// Nothing to read until the next poll.
    Idle,
}

/// One stream and its files.
#[derive(Debug)]
pub(crate) struct StreamTail {
    pub name: Arc<str>,
    pub path: PathBuf,
    pub current: Option<TailedFile>,
    pub queue: VecDeque<TailedFile>,
    /// Lines read and not yet handed out, in order.
    pub ready: VecDeque<Piece>,
    switch: Option<Switch>,
}

impl StreamTail {
    pub fn new(name: Arc<str>, path: PathBuf) -> Self {
        StreamTail {
            name,
            path,
            current: None,
            queue: VecDeque::new(),
            ready: VecDeque::new(),
            switch: None,
        }
    }

    /// Advances the stream by at most one read: returns [`Step::Ready`] when lines
    /// wait in `ready`.
    pub fn step(&mut self, ctx: &mut Ctx) -> Step {
        loop {
            if !self.ready.is_empty() {
                return Step::Ready;
            }
            if let Some(switch) = self.switch.take() {
                self.do_switch(switch, ctx);
                continue;
            }
            let Some(cur) = self.current.as_mut() else {
                let Some(next) = self.queue.pop_front() else {
                    return Step::Idle;
                };
                ctx.shared.start_file(&self.name, next.identity);
                ctx.shared.set_queued(&self.name, self.queued());
                ctx.needs_persist = true;
                self.current = Some(next);
                continue;
            };
            if cur.replaced {
                self.ready.extend(cur.splitter.take_held());
                self.switch = Some(Switch::Restart);
                continue;
            }
            let mut out = Vec::new();
            match cur.read_chunk(&ctx.buffers, &mut out) {
                Ok(0) if cur.replaced => {}
                Ok(0) if cur.draining => {
                    self.ready.extend(cur.splitter.take_held());
                    self.switch = Some(Switch::Release);
                }
                Ok(0) => return Step::Idle,
                Ok(_) => {
                    self.ready.extend(out);
                    return if self.ready.is_empty() {
                        Step::Progress
                    } else {
                        Step::Ready
                    };
                }
                Err(e) => {
                    ctx.read_error("reading", &self.path, &e);
                    return Step::Idle;
                }
            }
        }
    }

    fn do_switch(&mut self, switch: Switch, ctx: &mut Ctx) {
        let Some(cur) = self.current.as_mut() else {
            return;
        };
        match switch {
            Switch::Release => {
                let size = cur.offset();
                ctx.registry.release(cur.identity, size);
                add(&ctx.stats.files_released, 1);
                tracing::debug!(stream = %self.name, "file source: released a file");
                self.current = None;
            }
            Switch::Restart => match cur.restart(ctx.fingerprint_bytes) {
                Ok(()) => {
                    add(&ctx.stats.truncations, 1);
                    ctx.shared.start_file(&self.name, cur.identity);
                    ctx.needs_persist = true;
                    tracing::info!(stream = %self.name, path = %self.path.display(),
                        "file source: file truncated or replaced; reading it from the start");
                }
                Err(e) => {
                    ctx.read_error("restarting after truncation", &self.path, &e);
                    self.switch = Some(Switch::Restart);
                }
            },
        }
    }

    /// The queued successors' identities.
    fn queued(&self) -> Vec<super::identity::FileIdentity> {
        self.queue.iter().map(|f| f.identity).collect()
    }

    /// The poll: checks the current file (truncated? deleted? longer fingerprint?) and
    /// the path (a new file there?), and decides whether the current file is drained.
    pub fn poll(&mut self, ctx: &mut Ctx) {
        if let Some(cur) = self.current.as_mut()
            && self.switch.is_none()
            && !cur.replaced
        {
            match cur.check(ctx.fingerprint_bytes) {
                Ok(true) => ctx.shared.update_identity(&self.name, cur.identity),
                Ok(false) => {}
                Err(e) => ctx.read_error("stat of an open file", &self.path, &e),
            }
        }
        self.look_at_path(ctx);
        if let (Some(cur), Some(next)) = (self.current.as_mut(), self.queue.front())
            && !cur.draining
            && next.file.metadata().is_ok_and(|m| m.len() > 0)
        {
            cur.draining = true;
        }
    }

    /// Queues the file at the path when it is a new one.
    fn look_at_path(&mut self, ctx: &mut Ctx) {
        let meta = match fs::metadata(&self.path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return,
            Err(e) => return ctx.read_error("stat", &self.path, &e),
        };
        let key = (meta.dev(), meta.ino());
        let held = self.current.iter().chain(self.queue.iter());
        if held.into_iter().any(|f| f.key() == key) || !meta.is_file() {
            return;
        }
        if self.queue.len() >= MAX_QUEUED {
            return;
        }
        let file = match TailedFile::open(&self.path, ctx.fingerprint_bytes, ctx.max_line) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return,
            Err(e) => return ctx.read_error("open", &self.path, &e),
        };
        if ctx.registry.is_taken(&file.file, &file.identity) {
            return;
        }
        add(&ctx.stats.files_opened, 1);
        ctx.registry.claim(file.key(), &self.name);
        self.queue.push_back(file);
        ctx.shared.set_queued(&self.name, self.queued());
        ctx.needs_persist = true;
    }
}
