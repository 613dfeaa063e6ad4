//! The source's loop, on its own thread: discover paths, poll files, read, hand out.
//!
//! File reads are blocking system calls, so the source runs on a thread of its own with
//! a single-threaded tokio runtime: reads happen inline, and the awaits are only where
//! the source must wait — for room in the channel, for acknowledgements to free room in
//! the book, for the next poll, or for shutdown. While any stream has data, the loop
//! reads one chunk per stream in turn (so one busy file cannot starve the others); when
//! none has, it sleeps until the next poll.
//!
//! Each round of polling (a *look*) re-runs the globs (new paths become streams) and
//! stats every followed file (rotation, truncation, deletion: see
//! [`stream`](super::stream)). Looks come every `poll_interval_ms`. When no line was
//! handed out since the last look, a change event ([`changes`](super::changes)) brings
//! the next one forward, so a quiet file's new line is read at once; while files keep
//! growing, events are left aside and the files are read once per interval, in big
//! batches. Another program opening a held file (copytruncate's copier) calls for a
//! read of the held files at once, busy or not.

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::changes::{Wake, Watcher};
use super::config::{FileSourceConfig, ReadFrom};
use super::discover::Matcher;
use super::resume::resume;
use super::stats::{FileSourceStats, add};
use super::stream::{Ctx, Step, StreamTail};
use super::tail::{TailedFile, end_offset};
use super::template::StreamTemplate;
use super::{ChunkLine, Line, LineChunk};

/// Most skipped paths remembered (so each is logged and counted once).
const MAX_SKIPPED: usize = 10_000;
/// Most bytes looked at backwards for the last `\n` with `read_from = "end"`.
const END_WINDOW: usize = 1024 * 1024;

/// The shortest time between two reads that opens of held files bring forward. An open
/// by another program may be copytruncate's copier, which truncates the file once it
/// has copied it; this bounds what a script that opens the file for every line (`>>`)
/// costs, and two sources that see each other's opens.
const OPEN_READ_GAP: std::time::Duration = std::time::Duration::from_millis(100);

/// What is due when [`Runner::wait`] returns.
enum Due {
    /// A look (poll): its time came, or a change event brought it forward.
    Look,
    /// A read of the files held, without a look: another program opened one.
    Read,
    Stop,
}

/// The reads that opens of held files bring forward, at most one per `OPEN_READ_GAP`.
#[derive(Default)]
struct OpenReads {
    last: Option<Instant>,
    /// A read asked for within the gap: it is done when the gap has passed.
    deferred: Option<Instant>,
}

impl OpenReads {
    /// An open was seen: returns whether to read now; otherwise the read is deferred.
    fn ask(&mut self) -> bool {
        let now = Instant::now();
        match self.last {
            Some(last) if now < last + OPEN_READ_GAP => {
                self.deferred.get_or_insert(last + OPEN_READ_GAP);
                false
            }
            _ => {
                self.read_now();
                true
            }
        }
    }

    /// A read brought forward by opens is done now.
    fn read_now(&mut self) {
        self.last = Some(Instant::now());
        self.deferred = None;
    }
}

/// Whether the loop goes on.
enum Flow {
    Continue,
    Stop,
}

/// Lines handed out and not yet added to the counters.
#[derive(Default)]
struct Sent {
    lines: u64,
    bytes: u64,
    split: u64,
}

impl Sent {
    fn add(&mut self, (bytes, split): (u64, u64)) {
        self.lines += 1;
        self.bytes += bytes;
        self.split += split;
    }

    fn flush(&mut self, stats: &FileSourceStats) {
        add(&stats.lines_read, self.lines);
        add(&stats.bytes_read, self.bytes);
        add(&stats.lines_split, self.split);
        *self = Sent::default();
    }
}

/// Where the source hands its lines: one at a time, or in chunks (all the lines of one
/// stream that are ready at once: one channel hand-off for hundreds of lines).
pub(crate) enum LineTx {
    One(mpsc::Sender<Line>),
    Chunks(mpsc::Sender<LineChunk>),
}

pub(crate) struct Runner {
    pub config: FileSourceConfig,
    pub matcher: Matcher,
    /// Where new matching paths appear (watched for new names).
    pub base_dirs: Vec<PathBuf>,
    pub source_name: String,
    pub template: StreamTemplate,
    pub ctx: Ctx,
    pub streams: Vec<StreamTail>,
    pub by_name: HashMap<Arc<str>, usize>,
    pub by_path: HashMap<PathBuf, usize>,
    pub skipped: HashSet<PathBuf>,
    pub tx: LineTx,
    pub shutdown: watch::Receiver<bool>,
}

impl Runner {
    /// Runs until shutdown is signalled (or its sender dropped), or the channel closes.
    pub async fn run(mut self) {
        let interval = self.config.poll_interval();
        let mut watcher = Watcher::new(self.config.inotify, &self.source_name);
        self.discover(true);
        let mut next_poll = Instant::now();
        // Whether lines were handed out since the last look: then change events are
        // left aside until the next poll (the file is busy; batches stay big). Bytes
        // that make no whole line yet do not count: a writer that writes a line in
        // pieces sends its end with the next event, and that line goes out at once.
        let mut lines_since_look = false;
        let mut opens = OpenReads::default();
        loop {
            if self.stopping() {
                return;
            }
            if Instant::now() >= next_poll {
                watcher.drain_changes();
                self.discover(false);
                for st in &mut self.streams {
                    st.poll(&mut self.ctx);
                }
                self.watch(&mut watcher);
                // The look's own opens are no reason for another.
                watcher.drain_opens();
                add(&self.ctx.stats.polls, 1);
                next_poll = Instant::now() + interval;
                lines_since_look = false;
                // The reads after a look cover what a deferred open read was for.
                opens.deferred = None;
            }
            let mut progressed = false;
            for i in 0..self.streams.len() {
                match self.streams[i].step(&mut self.ctx) {
                    Step::Ready => {
                        progressed = true;
                        lines_since_look = true;
                        if let Flow::Stop = self.hand_out(i).await {
                            return;
                        }
                    }
                    Step::Progress => progressed = true,
                    Step::Idle => {}
                }
            }
            if !progressed {
                let due = self.wait(&mut watcher, next_poll, lines_since_look, &mut opens);
                match due.await {
                    Due::Look => next_poll = next_poll.min(Instant::now()),
                    Due::Read => {}
                    Due::Stop => return,
                }
            }
        }
    }

    /// Waits until the next look is due: at `next_poll`, or sooner for a change event
    /// (not while `busy`: lines were handed out since the last look). Another program
    /// opening a held file (copytruncate's copier does, before it copies and
    /// truncates) calls for a read of what is there, also while `busy`, but no sooner
    /// than `OPEN_READ_GAP` after the last such read.
    async fn wait(
        &self,
        watcher: &mut Watcher,
        next_poll: Instant,
        busy: bool,
        opens: &mut OpenReads,
    ) -> Due {
        let mut shutdown = self.shutdown.clone();
        loop {
            let deferred = opens.deferred;
            tokio::select! {
                _ = tokio::time::sleep_until(next_poll) => return Due::Look,
                _ = tokio::time::sleep_until(deferred.unwrap_or(next_poll)),
                    if deferred.is_some() => {
                    opens.read_now();
                    return Due::Read;
                }
                wake = watcher.changed(&self.matcher, busy) => match wake {
                    Wake::Changed => {
                        add(&self.ctx.stats.event_looks, 1);
                        return Due::Look;
                    }
                    Wake::Opened => {
                        if opens.deferred.is_none() {
                            add(&self.ctx.stats.open_reads, 1);
                        }
                        if opens.ask() {
                            return Due::Read;
                        }
                    }
                },
                _ = shutdown.wait_for(|stop| *stop) => return Due::Stop,
            }
        }
    }

    /// Watches the directories where paths appear and every file held open.
    fn watch(&self, watcher: &mut Watcher) {
        if !watcher.active() {
            return;
        }
        let parents = self
            .streams
            .iter()
            .filter_map(|s| s.path.parent())
            .filter(|dir| !dir.as_os_str().is_empty());
        watcher.watch_dirs(self.base_dirs.iter().map(PathBuf::as_path).chain(parents));
        watcher.watch_files(
            self.streams
                .iter()
                .flat_map(|s| s.current.iter().chain(s.queue.iter())),
        );
    }

    fn stopping(&self) -> bool {
        *self.shutdown.borrow() || self.shutdown.has_changed().is_err()
    }

    /// Waits for `d`, or less when stopping; says which.
    async fn pause(&self, d: std::time::Duration) -> Flow {
        let mut shutdown = self.shutdown.clone();
        tokio::select! {
            _ = tokio::time::sleep(d) => Flow::Continue,
            _ = shutdown.wait_for(|stop| *stop) => Flow::Stop,
        }
    }

    /// Hands the ready lines of stream `i` out, in order, registering each in the book
    /// first; waits (back-pressure) while the book or the channel is full.
    async fn hand_out(&mut self, i: usize) -> Flow {
        loop {
            if self.streams[i].ready.is_empty() {
                return Flow::Continue;
            }
            if self.ctx.needs_persist {
                match self.ctx.shared.persist() {
                    Ok(()) => self.ctx.needs_persist = false,
                    Err(e) => {
                        tracing::warn!(error = %e, "file source: writing checkpoints failed; \
                            holding lines back until it succeeds");
                        if let Flow::Stop = self.pause(self.config.poll_interval()).await {
                            return Flow::Stop;
                        }
                        continue;
                    }
                }
            }
            let room = self.ctx.shared.room();
            if room == 0 {
                add(&self.ctx.stats.backpressure_waits, 1);
                if let Some(cur) = self.streams[i].current.as_mut() {
                    cur.recheck = true;
                }
                let shared = self.ctx.shared.clone();
                let mut shutdown = self.shutdown.clone();
                tokio::select! {
                    _ = shared.room_freed() => {}
                    _ = shutdown.wait_for(|stop| *stop) => return Flow::Stop,
                }
                continue;
            }
            let st = &mut self.streams[i];
            // Lines are only read from the current file, and a file is let go only once
            // its lines are out, so there is always a current file here.
            let Some(identity) = st.current.as_ref().map(|c| c.identity) else {
                return Flow::Continue;
            };
            let n = room.min(st.ready.len());
            let first = self
                .ctx
                .shared
                .register(&st.name, st.ready.iter().take(n).map(|p| p.end_offset));
            if let LineTx::Chunks(tx) = &self.tx {
                let mut chunk = LineChunk {
                    stream: st.name.clone(),
                    first_index: first,
                    file_identity: identity,
                    lines: Vec::with_capacity(n),
                    bytes: 0,
                };
                let mut sent = Sent::default();
                for piece in st.ready.drain(..n) {
                    sent.add((piece.bytes.len() as u64, u64::from(piece.split)));
                    chunk.lines.push(ChunkLine {
                        bytes: piece.bytes,
                        file_offset_end: piece.end_offset,
                        split: piece.split,
                    });
                }
                chunk.bytes = sent.bytes;
                match tx.try_send(chunk) {
                    Ok(()) => sent.flush(&self.ctx.stats),
                    Err(mpsc::error::TrySendError::Full(chunk)) => {
                        add(&self.ctx.stats.backpressure_waits, 1);
                        if let Some(cur) = st.current.as_mut() {
                            cur.recheck = true;
                        }
                        let mut shutdown = self.shutdown.clone();
                        tokio::select! {
                            result = tx.send(chunk) => match result {
                                Ok(()) => sent.flush(&self.ctx.stats),
                                Err(_) => return Flow::Stop,
                            },
                            _ = shutdown.wait_for(|stop| *stop) => return Flow::Stop,
                        }
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => return Flow::Stop,
                }
                continue;
            }
            let LineTx::One(tx) = &self.tx else {
                return Flow::Stop;
            };
            // Counted in batches, and before any wait, so the counters are exact
            // whenever the source is held back.
            let mut sent = Sent::default();
            for index in first..first + n as u64 {
                let Some(piece) = st.ready.pop_front() else {
                    break;
                };
                let counts = (piece.bytes.len() as u64, u64::from(piece.split));
                let line = Line {
                    stream: st.name.clone(),
                    index,
                    bytes: piece.bytes,
                    file_offset_end: piece.end_offset,
                    file_identity: identity,
                    split: piece.split,
                };
                match tx.try_send(line) {
                    Ok(()) => sent.add(counts),
                    Err(mpsc::error::TrySendError::Full(line)) => {
                        sent.flush(&self.ctx.stats);
                        add(&self.ctx.stats.backpressure_waits, 1);
                        if let Some(cur) = st.current.as_mut() {
                            cur.recheck = true;
                        }
                        let mut shutdown = self.shutdown.clone();
                        tokio::select! {
                            result = tx.send(line) => match result {
                                Ok(()) => sent.add(counts),
                                Err(_) => return Flow::Stop,
                            },
                            _ = shutdown.wait_for(|stop| *stop) => return Flow::Stop,
                        }
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => {
                        sent.flush(&self.ctx.stats);
                        return Flow::Stop;
                    }
                }
            }
            sent.flush(&self.ctx.stats);
        }
    }

    /// Runs the globs and follows new paths. At the first run, paths with a stored
    /// checkpoint come first (so they claim their rotated files before any other path
    /// can), including paths that do not exist now but still match the globs.
    fn discover(&mut self, first: bool) {
        let scan = self.matcher.scan(self.config.max_streams + 1);
        for e in &scan.errors {
            add(&self.ctx.stats.read_errors, 1);
            tracing::debug!(error = %e, "file source: glob could not read an entry");
        }
        let mut fresh: Vec<PathBuf> = scan
            .paths
            .into_iter()
            .filter(|p| !self.by_path.contains_key(p) && !self.skipped.contains(p))
            .collect();
        if first {
            for (_, path) in self.ctx.shared.inactive_paths() {
                let path = PathBuf::from(path);
                if self.matcher.matches(&path) && !fresh.contains(&path) {
                    fresh.push(path);
                }
            }
            let has_checkpoint = |p: &PathBuf| {
                self.template
                    .render(p)
                    .is_ok_and(|s| self.ctx.shared.stored(s.as_str()).is_some())
            };
            fresh.sort_by_key(|p| !has_checkpoint(p));
        }
        for path in fresh {
            self.follow(path, first);
        }
    }

    /// Makes `path` a stream (or skips it, saying why).
    fn follow(&mut self, path: PathBuf, first: bool) {
        if self.streams.len() >= self.config.max_streams {
            return self.skip(path, "max_streams reached");
        }
        let name = match self.template.render(&path) {
            Ok(n) => n,
            Err(e) => return self.skip(path, &format!("its stream path is invalid: {e}")),
        };
        if self.by_name.contains_key(name.as_str()) {
            return self.skip(path, "another path has the same stream name");
        }
        let name: Arc<str> = name.as_str().into();
        let ctx = &mut self.ctx;
        let path_text = path.to_string_lossy().into_owned();
        let mut st = StreamTail::new(name.clone(), path.clone());
        if let Some(cp) = ctx.shared.stored(&name) {
            let mut files = resume(&cp, &path, ctx.fingerprint_bytes, ctx.max_line);
            files.retain(|f| !ctx.registry.is_taken(&f.file, &f.identity));
            let mut files = files.into_iter();
            match files.next() {
                Some(cur) => {
                    ctx.shared.begin_stream(
                        &name,
                        path_text,
                        cur.identity,
                        cur.offset(),
                        cp.next_index,
                    );
                    st.current = Some(cur);
                }
                None => {
                    ctx.shared
                        .begin_stream(&name, path_text, cp.file, cp.offset, cp.next_index)
                }
            }
            st.queue.extend(files);
            ctx.shared
                .set_queued(&name, st.queue.iter().map(|f| f.identity).collect());
            tracing::info!(stream = %name, path = %path.display(), next_index = cp.next_index,
                files = st.current.iter().count() + st.queue.len(),
                "file source: resuming from checkpoint");
        } else {
            let mut file = match TailedFile::open(&path, ctx.fingerprint_bytes, ctx.max_line) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return,
                Err(e) => return ctx.read_error("open", &path, &e),
            };
            if ctx.registry.is_taken(&file.file, &file.identity) {
                return;
            }
            if first && self.config.read_from == ReadFrom::End {
                match end_offset(&file.file, END_WINDOW) {
                    Ok(offset) => file.splitter.reset(offset),
                    Err(e) => return ctx.read_error("seeking to the end", &path, &e),
                }
            }
            ctx.shared
                .begin_stream(&name, path_text, file.identity, file.offset(), 0);
            st.current = Some(file);
        }
        for f in st.current.iter().chain(st.queue.iter()) {
            ctx.registry.claim(f.key(), &name);
            add(&ctx.stats.files_opened, 1);
        }
        ctx.needs_persist = true;
        let i = self.streams.len();
        self.streams.push(st);
        self.by_name.insert(name, i);
        self.by_path.insert(path, i);
    }

    fn skip(&mut self, path: PathBuf, why: &str) {
        add(&self.ctx.stats.paths_skipped, 1);
        tracing::warn!(path = %path.display(), "file source: not following this path: {why}");
        if self.skipped.len() < MAX_SKIPPED {
            self.skipped.insert(path);
        }
    }
}
