//! The `file` source: tails files matched by globs, one stream per path, and keeps
//! checkpoints that move only when every flusher has acknowledged (DESIGN.md, Agent).
//!
//! # What it guarantees
//!
//! - **Fixed numbering.** Each matched path is its own stream. Its lines are numbered
//!   0, 1, 2, … and the numbering continues across the files the path names over time
//!   (rotation), because the files are read one at a time, in rotation order: a rotated
//!   file is read to its end, by its open descriptor, before its successor is started.
//!   Line boundaries depend on the bytes alone (see [`lines`]), so a re-read after a crash
//!   gives every line the index it had — and the collector drops the duplicates.
//! - **Nothing acknowledged is lost; nothing unacknowledged is skipped.** The source
//!   never moves its checkpoint by itself. The agent calls
//!   [`CheckpointHandle::acknowledge`] when every flusher has acknowledged a stream up to
//!   an index; only then does the stream's checkpoint (file identity, byte offset, next
//!   index) move, and it is written to disk atomically (see [`checkpoint`]). After a
//!   restart each stream resumes exactly at its checkpoint (see [`resume`]).
//! - **Bounded, with back-pressure.** Lines go into a bounded `tokio::sync::mpsc`
//!   channel; when it is full the source stops reading. The lines handed out but not yet
//!   acknowledged are bounded too (`max_unacknowledged_lines`); at the bound the source
//!   stops reading as well. Nothing is dropped. Line length is bounded by
//!   `max_line_bytes`: longer lines are cut into pieces, counted.
//!
//! # How files are followed
//!
//! Polling, every `poll_interval_ms`: the globs are re-run (new files become streams),
//! each followed file is stat'ed through its descriptor and its path, and what was
//! appended is read. After a poll that handed out no line, a change event (inotify)
//! brings the next poll forward, so a quiet file's line is read at once,
//! while a file that keeps growing is read once per interval, in big batches; another
//! program opening a held file (as copytruncate's copier does) calls for a read at
//! once even then (`changes.rs`). Rename
//! rotation, copytruncate, deletion and the held last line are described in [`stream`];
//! how a file is told from its successor (device, inode and a checksum of its first
//! bytes) in [`identity`]. A last line without a `\n` is handed out only when its file
//! is released (rotated away and drained, or deleted) or replaced (copytruncate).
//!
//! # Using it
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use weir_agent::sources::file::{FileSource, FileSourceConfig};
//! let config = FileSourceConfig::new(["/var/log/app/*.log"]);
//! let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
//! let source = FileSource::start("app", config, "./weir-agent-data".as_ref(), tx)?;
//! let checkpoints = source.checkpoints();
//! while let Some(line) = rx.recv().await {
//!     // … batch, spool, flush; once every flusher has acknowledged it:
//!     checkpoints.acknowledge(&line.stream, line.index + 1)?;
//! #   break;
//! }
//! source.stop().await?;
//! # Ok(()) }
//! ```

mod acks;
mod changes;
pub mod checkpoint;
mod config;
mod discover;
mod error;
pub mod identity;
pub mod lines;
mod read_buffers;
pub mod registry;
pub mod resume;
mod runner;
mod stats;
pub mod stream;
mod tail;
mod template;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};

pub use acks::CheckpointHandle;
pub use checkpoint::{CheckpointStore, Checkpoints, StreamCheckpoint, Successor};
pub use config::{FileSourceConfig, ReadFrom};
pub use error::{AckError, CheckpointError, ConfigError, FileSourceError};
pub use identity::{FileIdentity, Fingerprint};
pub use stats::{FileSourceStats, FileSourceStatsSnapshot};
pub use template::hostname;

use acks::Shared;
use read_buffers::ReadBuffers;
use registry::Registry;
use runner::{LineTx, Runner};
use stream::Ctx;

/// One line of a file (or one piece of a line longer than `max_line_bytes`): the
/// stream's entry `index`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The stream path (one per matched file path).
    pub stream: Arc<str>,
    /// The entry's index in its stream: 0, 1, 2, … continued across rotated files.
    pub index: u64,
    /// The line's bytes, without its `\n`.
    pub bytes: Bytes,
    /// File offset just past the line (past its `\n` when it had one).
    pub file_offset_end: u64,
    /// The file the line was read from.
    pub file_identity: FileIdentity,
    /// Whether this is a piece cut at `max_line_bytes` (not the end of a line).
    pub split: bool,
}

/// Lines of one stream that were ready together (at most one read's worth), in order:
/// entries `first_index..first_index + lines.len()`, all read from `file_identity`. What
/// [`FileSource::start_chunked`] hands out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineChunk {
    /// The stream path.
    pub stream: Arc<str>,
    /// The index of `lines[0]`.
    pub first_index: u64,
    /// The file the lines were read from.
    pub file_identity: FileIdentity,
    /// The lines.
    pub lines: Vec<ChunkLine>,
    /// Bytes of the lines, all together (counted once, as they were cut).
    pub bytes: u64,
}

/// One line of a [`LineChunk`] (see [`Line`] for the fields).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkLine {
    /// The line's bytes, without its `\n`.
    pub bytes: Bytes,
    /// File offset just past the line (past its `\n` when it had one).
    pub file_offset_end: u64,
    /// Whether this is a piece cut at `max_line_bytes`.
    pub split: bool,
}

/// Starts file sources. See the [module docs](self).
pub struct FileSource;

impl FileSource {
    /// Validates `config`, loads the checkpoints of source `name` under `data_dir`, and
    /// starts reading on a thread of its own, sending lines into `lines`.
    pub fn start(
        name: &str,
        config: FileSourceConfig,
        data_dir: &Path,
        lines: mpsc::Sender<Line>,
    ) -> Result<FileSourceHandle, FileSourceError> {
        Self::start_with(name, config, data_dir, LineTx::One(lines))
    }

    /// [`FileSource::start`], handing lines out in chunks: each message holds the
    /// consecutive lines of one stream that were ready together (up to one read's worth),
    /// in order. One channel hand-off per chunk instead of per line is what lets the
    /// agent's pipeline keep up with fast files.
    pub fn start_chunked(
        name: &str,
        config: FileSourceConfig,
        data_dir: &Path,
        chunks: mpsc::Sender<LineChunk>,
    ) -> Result<FileSourceHandle, FileSourceError> {
        Self::start_with(name, config, data_dir, LineTx::Chunks(chunks))
    }

    fn start_with(
        name: &str,
        config: FileSourceConfig,
        data_dir: &Path,
        lines: LineTx,
    ) -> Result<FileSourceHandle, FileSourceError> {
        let compiled = config
            .compile(name)
            .map_err(|error| FileSourceError::Config {
                source_name: name.to_string(),
                error,
            })?;
        let start_error = |error| FileSourceError::Start {
            source_name: name.to_string(),
            error,
        };
        let store = CheckpointStore::open(data_dir, name)?;
        let loaded = store.load()?;
        let stats = Arc::new(FileSourceStats::default());
        let shared = Arc::new(Shared::new(
            store,
            loaded,
            config.max_unacknowledged_lines,
            stats.clone(),
            Duration::from_millis(config.checkpoint_interval_ms),
        ));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .enable_io()
            .build()
            .map_err(start_error)?;
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let runner = Runner {
            ctx: Ctx {
                shared: shared.clone(),
                stats: stats.clone(),
                registry: Registry::default(),
                fingerprint_bytes: config.fingerprint_bytes,
                max_line: config.max_line_bytes,
                needs_persist: false,
                buffers: ReadBuffers::default(),
            },
            base_dirs: compiled.matcher.base_dirs(),
            matcher: compiled.matcher,
            source_name: name.to_string(),
            template: compiled.template,
            config,
            streams: Vec::new(),
            by_name: HashMap::new(),
            by_path: HashMap::new(),
            skipped: HashSet::new(),
            tx: lines,
            shutdown: shutdown_rx,
        };
        let persister = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("weir-file-ckpt-{name}"))
                .spawn(move || shared.run_persister())
                .map_err(start_error)?
        };
        let (done_tx, done_rx) = oneshot::channel();
        let thread_shared = shared.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("weir-file-{name}"))
            .spawn(move || {
                runtime.block_on(runner.run());
                drop(runtime);
                thread_shared.stop_persister();
                let _ = persister.join();
                let _ = done_tx.send(thread_shared.persist());
            });
        if let Err(e) = spawned {
            shared.stop_persister();
            return Err(start_error(e));
        }
        tracing::info!(source = name, "file source started");
        Ok(FileSourceHandle {
            name: name.to_string(),
            checkpoints: CheckpointHandle { shared },
            stats,
            shutdown: shutdown_tx,
            done: done_rx,
        })
    }
}

/// A running file source. Dropping it stops the source too, without waiting.
#[derive(Debug)]
pub struct FileSourceHandle {
    name: String,
    checkpoints: CheckpointHandle,
    stats: Arc<FileSourceStats>,
    shutdown: watch::Sender<bool>,
    done: oneshot::Receiver<Result<(), CheckpointError>>,
}

impl FileSourceHandle {
    /// Where the agent acknowledges, and reads positions.
    pub fn checkpoints(&self) -> CheckpointHandle {
        self.checkpoints.clone()
    }

    /// The source's counters.
    pub fn stats(&self) -> Arc<FileSourceStats> {
        self.stats.clone()
    }

    /// Stops reading, writes the checkpoints a last time, and waits for both. Lines
    /// already in the channel stay there; acknowledgements made after this are kept in
    /// memory only (call [`CheckpointHandle::persist`] to write them).
    pub async fn stop(self) -> Result<(), FileSourceError> {
        let _ = self.shutdown.send(true);
        match self.done.await {
            Ok(result) => Ok(result?),
            Err(_) => Err(FileSourceError::Panicked(self.name)),
        }
    }
}
