//! End-to-end acknowledgement: the checkpoint moves only over what every flusher has
//! acknowledged (DESIGN.md, Guarantee 2).
//!
//! The source hands lines out and forgets nothing it would need to move the checkpoint:
//! for each stream, the *book* keeps the end offset of every line handed out but not yet
//! acknowledged (8 bytes a line), and the files the stream started since its checkpoint's
//! file, each with the index of its first line. When the agent calls
//! [`CheckpointHandle::acknowledge`]`(stream, next)` — every index below `next` is
//! acknowledged, the same reading as the collector's `stored(next)` — the book finds the
//! file and end offset of line `next - 1`, makes that the stream's checkpoint, and drops
//! what lies before it.
//!
//! The book is bounded: once `max_unacknowledged_lines` lines of the source await
//! acknowledgement, the source stops reading until some are acknowledged (back-pressure,
//! DESIGN.md Guarantee 3).
//!
//! Writing to disk is debounced: an acknowledgement marks the book dirty and wakes the
//! persister thread, which writes at most once per `debounce` (`checkpoint_interval_ms`,
//! default 1 s). Two moments are
//! written at once instead, before any line they concern is handed out: a stream's first
//! position (so `read_from = "end"` is not re-applied after a crash) and every file a
//! stream starts or queues (so a restart finds rotated files by identity). And once more
//! when the source stops.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use super::checkpoint::{CheckpointStore, Checkpoints, StreamCheckpoint, Successor};
use super::error::{AckError, CheckpointError};
use super::identity::FileIdentity;
use super::stats::{FileSourceStats, add};

/// The acknowledged position of one stream and what was handed out after it.
#[derive(Debug)]
struct StreamBook {
    path: String,
    /// File, offset and index of the first unacknowledged entry.
    file: FileIdentity,
    offset: u64,
    next_index: u64,
    /// Files started after `file`, in order, with the index of their first line.
    started: VecDeque<Successor>,
    /// Files opened as successors but not started yet.
    queued: Vec<FileIdentity>,
    /// End offsets of the lines `next_index ..` handed out, not yet acknowledged.
    pending: VecDeque<u64>,
}

impl StreamBook {
    fn handed_out(&self) -> u64 {
        self.next_index + self.pending.len() as u64
    }

    fn checkpoint(&self) -> StreamCheckpoint {
        let next = self.handed_out();
        StreamCheckpoint {
            path: self.path.clone(),
            file: self.file,
            offset: self.offset,
            next_index: self.next_index,
            successors: self
                .started
                .iter()
                .copied()
                .chain(self.queued.iter().map(|&file| Successor {
                    file,
                    first_index: next,
                }))
                .collect(),
        }
    }
}

#[derive(Debug, Default)]
struct Book {
    streams: HashMap<Arc<str>, StreamBook>,
    /// Checkpoints loaded from disk of streams not (yet) followed; written back as they
    /// are, so a path that reappears resumes where it was.
    inactive: Checkpoints,
    pending_total: usize,
    max_pending: usize,
    dirty: bool,
    stopping: bool,
    /// The persister waits for the book to become dirty (not out its debounce).
    persister_idle: bool,
}

/// State shared by the source's thread, the persister thread and [`CheckpointHandle`]s.
#[derive(Debug)]
pub(crate) struct Shared {
    book: Mutex<Book>,
    /// Wakes the persister (dirty, or stopping).
    changed: Condvar,
    /// Wakes the source when acknowledgements free room in the book.
    room: tokio::sync::Notify,
    /// Serialises whole snapshot-and-write rounds so an older snapshot never overwrites
    /// a newer one.
    write: Mutex<()>,
    store: CheckpointStore,
    stats: Arc<FileSourceStats>,
    debounce: Duration,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    pub fn new(
        store: CheckpointStore,
        loaded: Checkpoints,
        max_pending: usize,
        stats: Arc<FileSourceStats>,
        debounce: Duration,
    ) -> Self {
        Shared {
            book: Mutex::new(Book {
                inactive: loaded,
                max_pending,
                ..Book::default()
            }),
            changed: Condvar::new(),
            room: tokio::sync::Notify::new(),
            write: Mutex::new(()),
            store,
            stats,
            debounce,
        }
    }

    /// The checkpoint stored for `stream` from an earlier run, if any.
    pub fn stored(&self, stream: &str) -> Option<StreamCheckpoint> {
        lock(&self.book).inactive.get(stream).cloned()
    }

    /// `(stream, path)` of every stored checkpoint not followed yet.
    pub fn inactive_paths(&self) -> Vec<(String, String)> {
        lock(&self.book)
            .inactive
            .iter()
            .map(|(stream, c)| (stream.clone(), c.path.clone()))
            .collect()
    }

    /// Starts keeping the book of `stream`: its first unacknowledged entry, `next_index`,
    /// starts at `offset` of `file`.
    pub fn begin_stream(
        &self,
        stream: &Arc<str>,
        path: String,
        file: FileIdentity,
        offset: u64,
        next_index: u64,
    ) {
        let mut book = lock(&self.book);
        book.inactive.remove(&**stream);
        book.streams.insert(
            stream.clone(),
            StreamBook {
                path,
                file,
                offset,
                next_index,
                started: VecDeque::new(),
                queued: Vec::new(),
                pending: VecDeque::new(),
            },
        );
        book.dirty = true;
    }

    /// `stream` starts reading `file` from offset 0 after the files before it.
    pub fn start_file(&self, stream: &str, file: FileIdentity) {
        let mut book = lock(&self.book);
        let Some(s) = book.streams.get_mut(stream) else {
            return;
        };
        s.queued.retain(|q| q.inode_key() != file.inode_key());
        let next = s.handed_out();
        if s.pending.is_empty() && s.started.is_empty() {
            // Everything before is acknowledged: the new file *is* the position.
            s.file = file;
            s.offset = 0;
        } else if s.started.back().is_some_and(|l| l.first_index == next) {
            // The last started file gave no line: it need not be remembered.
            if let Some(last) = s.started.back_mut() {
                last.file = file;
            }
        } else {
            s.started.push_back(Successor {
                file,
                first_index: next,
            });
        }
        book.dirty = true;
    }

    /// The successors `stream` has opened but not started.
    pub fn set_queued(&self, stream: &str, queued: Vec<FileIdentity>) {
        let mut book = lock(&self.book);
        if let Some(s) = book.streams.get_mut(stream) {
            s.queued = queued;
            book.dirty = true;
        }
    }

    /// The file `stream` is reading now got a longer fingerprint.
    pub fn update_identity(&self, stream: &str, file: FileIdentity) {
        let mut book = lock(&self.book);
        let Some(s) = book.streams.get_mut(stream) else {
            return;
        };
        let current = match s.started.back_mut() {
            Some(last) => &mut last.file,
            None => &mut s.file,
        };
        if current.inode_key() == file.inode_key() {
            *current = file;
        }
    }

    /// How many more lines may be handed out now.
    pub fn room(&self) -> usize {
        let book = lock(&self.book);
        book.max_pending.saturating_sub(book.pending_total)
    }

    /// Waits until acknowledgements may have freed room (spurious wake-ups possible).
    pub async fn room_freed(&self) {
        self.room.notified().await;
    }

    /// Records lines of `stream` ending at `offsets`, in order; returns the index of the
    /// first. The caller keeps within [`room`](Self::room).
    pub fn register(&self, stream: &str, offsets: impl IntoIterator<Item = u64>) -> u64 {
        let mut book = lock(&self.book);
        let Some(s) = book.streams.get_mut(stream) else {
            return 0;
        };
        let first = s.handed_out();
        let before = s.pending.len();
        s.pending.extend(offsets);
        let added = s.pending.len() - before;
        book.pending_total += added;
        first
    }

    /// See [`CheckpointHandle::acknowledge`].
    fn acknowledge(&self, stream: &str, next_index: u64) -> Result<(), AckError> {
        let mut book = lock(&self.book);
        let s = book
            .streams
            .get_mut(stream)
            .ok_or_else(|| AckError::UnknownStream(stream.to_string()))?;
        if next_index <= s.next_index {
            return Ok(());
        }
        if next_index > s.handed_out() {
            return Err(AckError::BeyondHandedOut {
                stream: stream.to_string(),
                next_index,
                handed_out: s.handed_out(),
            });
        }
        let last = next_index - 1;
        let count = (next_index - s.next_index) as usize;
        let offset = s.pending[count - 1];
        if let Some(j) = s.started.iter().rposition(|f| f.first_index <= last) {
            s.file = s.started[j].file;
            s.started.drain(..=j);
        }
        s.offset = offset;
        s.next_index = next_index;
        s.pending.drain(..count);
        book.pending_total -= count;
        book.dirty = true;
        // Only a persister waiting for a change is woken: one waiting out its debounce
        // writes this change when that ends (a wake per acknowledgement was two dozen
        // needless thread switches a second under a steady load).
        let wake = book.persister_idle;
        drop(book);
        if wake {
            self.changed.notify_all();
        }
        self.room.notify_one();
        Ok(())
    }

    fn snapshot(&self) -> Checkpoints {
        let mut book = lock(&self.book);
        book.dirty = false;
        let mut all = book.inactive.clone();
        for (name, s) in &book.streams {
            all.insert(name.to_string(), s.checkpoint());
        }
        all
    }

    /// Writes the checkpoints now.
    pub fn persist(&self) -> Result<(), CheckpointError> {
        let _round = lock(&self.write);
        let snapshot = self.snapshot();
        match self.store.save(&snapshot) {
            Ok(()) => {
                add(&self.stats.checkpoint_writes, 1);
                Ok(())
            }
            Err(e) => {
                add(&self.stats.checkpoint_errors, 1);
                lock(&self.book).dirty = true;
                Err(e)
            }
        }
    }

    /// The persister thread's loop: write when dirty, at most once per debounce, until
    /// [`stop_persister`](Self::stop_persister).
    pub fn run_persister(&self) {
        loop {
            {
                let book = lock(&self.book);
                let book = self
                    .changed
                    .wait_while(book, |b| {
                        b.persister_idle = !b.dirty && !b.stopping;
                        b.persister_idle
                    })
                    .unwrap_or_else(PoisonError::into_inner);
                if book.stopping {
                    return;
                }
            }
            if let Err(e) = self.persist() {
                tracing::warn!(error = %e, "writing file checkpoints failed; will retry");
            }
            let book = lock(&self.book);
            let _unused = self
                .changed
                .wait_timeout_while(book, self.debounce, |b| !b.stopping)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Makes [`run_persister`](Self::run_persister) return.
    pub fn stop_persister(&self) {
        lock(&self.book).stopping = true;
        self.changed.notify_all();
    }
}

/// The agent's side of the file source's checkpoints: acknowledge what every flusher has
/// acknowledged, read positions. Cheap to clone; usable from any thread or task (its
/// methods take a short lock and never wait on I/O, except [`persist`](Self::persist)).
#[derive(Debug, Clone)]
pub struct CheckpointHandle {
    pub(crate) shared: Arc<Shared>,
}

impl CheckpointHandle {
    /// Every entry of `stream` below `next_index` has been acknowledged by every flusher
    /// (the reading of the collector's `stored(next)`). Moves the stream's checkpoint to
    /// the end of line `next_index - 1` and frees room for more reading; written to disk
    /// within the debounce interval. Acknowledging at or below the checkpoint again is a
    /// no-op; past what was handed out is refused.
    pub fn acknowledge(&self, stream: &str, next_index: u64) -> Result<(), AckError> {
        self.shared.acknowledge(stream, next_index)
    }

    /// The current (acknowledged, maybe not yet written) checkpoint of `stream`.
    pub fn checkpoint(&self, stream: &str) -> Option<StreamCheckpoint> {
        let book = lock(&self.shared.book);
        match book.streams.get(stream) {
            Some(s) => Some(s.checkpoint()),
            None => book.inactive.get(stream).cloned(),
        }
    }

    /// Lines handed out and not yet acknowledged, over all streams.
    pub fn unacknowledged(&self) -> usize {
        lock(&self.shared.book).pending_total
    }

    /// Writes the checkpoints now instead of at the next debounce.
    pub fn persist(&self) -> Result<(), CheckpointError> {
        self.shared.persist()
    }

    /// The checkpoint file.
    pub fn path(&self) -> &Path {
        self.shared.store.path()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::file::identity::Fingerprint;
    use std::sync::atomic::Ordering;

    fn id(inode: u64) -> FileIdentity {
        FileIdentity {
            dev: 1,
            inode,
            fingerprint: Fingerprint::EMPTY,
        }
    }

    fn shared(dir: &Path, max: usize) -> Shared {
        Shared::new(
            CheckpointStore::open(dir, "t").unwrap(),
            Checkpoints::new(),
            max,
            Arc::default(),
            Duration::from_millis(100),
        )
    }

    #[test]
    fn acknowledgement_moves_across_files() {
        let dir = tempfile::tempdir().unwrap();
        let sh = shared(dir.path(), 10);
        let s: Arc<str> = "a/+/b".into();
        sh.begin_stream(&s, "/b".into(), id(1), 100, 7);
        assert_eq!(sh.register(&s, [110, 120]), 7);
        sh.start_file(&s, id(2));
        assert_eq!(sh.register(&s, [5, 9, 14]), 9);
        sh.start_file(&s, id(3)); // gives no line before the next one starts
        sh.start_file(&s, id(4));
        assert_eq!(sh.register(&s, [3]), 12);
        assert_eq!(sh.room(), 4);
        let h = CheckpointHandle {
            shared: Arc::new(sh),
        };
        h.acknowledge(&s, 8).unwrap();
        let c = h.checkpoint(&s).unwrap();
        assert_eq!((c.file, c.offset, c.next_index), (id(1), 110, 8));
        assert_eq!(c.successors.len(), 2, "{c:?}");
        h.acknowledge(&s, 10).unwrap();
        let c = h.checkpoint(&s).unwrap();
        assert_eq!((c.file, c.offset, c.next_index), (id(2), 5, 10));
        assert_eq!(
            c.successors,
            vec![Successor {
                file: id(4),
                first_index: 12
            }]
        );
        assert_eq!(
            h.acknowledge(&s, 14),
            Err(AckError::BeyondHandedOut {
                stream: s.to_string(),
                next_index: 14,
                handed_out: 13
            })
        );
        h.acknowledge(&s, 13).unwrap();
        let c = h.checkpoint(&s).unwrap();
        assert_eq!((c.file, c.offset, c.next_index), (id(4), 3, 13));
        assert!(c.successors.is_empty());
        assert_eq!(h.unacknowledged(), 0);
        h.acknowledge(&s, 9).unwrap(); // old news
        assert!(matches!(
            h.acknowledge("x/+/y", 1),
            Err(AckError::UnknownStream(_))
        ));
        h.persist().unwrap();
        let on_disk = h.shared.store.load().unwrap();
        assert_eq!(on_disk[&*s], h.checkpoint(&s).unwrap());
    }

    #[test]
    fn a_new_file_after_everything_acknowledged_becomes_the_position() {
        let dir = tempfile::tempdir().unwrap();
        let sh = shared(dir.path(), 10);
        let s: Arc<str> = "a/+/b".into();
        sh.begin_stream(&s, "/b".into(), id(1), 0, 0);
        sh.register(&s, [4]);
        let h = CheckpointHandle {
            shared: Arc::new(sh),
        };
        h.acknowledge(&s, 1).unwrap();
        h.shared.start_file(&s, id(2));
        let c = h.checkpoint(&s).unwrap();
        assert_eq!((c.file, c.offset, c.next_index), (id(2), 0, 1));
    }
    /// Whether `cond` holds within ten seconds (checked every 5 ms).
    fn eventually(mut cond: impl FnMut() -> bool) -> bool {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if cond() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        cond()
    }

    /// Whether the checkpoint on disk of `stream` reaches `next_index` (bounded wait).
    fn on_disk_reaches(h: &CheckpointHandle, stream: &str, next_index: u64) -> bool {
        eventually(|| {
            h.shared
                .store
                .load()
                .unwrap()
                .get(stream)
                .is_some_and(|c| c.next_index == next_index)
        })
    }

    /// The persister writes acknowledgements on its own: the first at once, later ones
    /// after the debounce, also when the book was already dirty from something that
    /// does not wake it (a queued file) and many acknowledgements came together.
    #[test]
    fn the_persister_writes_what_was_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let sh = shared(dir.path(), 1000);
        let s: Arc<str> = "a/+/b".into();
        sh.begin_stream(&s, "/b".into(), id(1), 0, 0);
        sh.register(&s, (1..=300).map(|i| i * 10));
        let h = CheckpointHandle {
            shared: Arc::new(sh),
        };
        let persister = {
            let shared = h.shared.clone();
            std::thread::spawn(move || shared.run_persister())
        };
        h.acknowledge(&s, 1).unwrap();
        assert!(
            on_disk_reaches(&h, &s, 1),
            "the first acknowledgement is written"
        );
        for next in 2..=100 {
            h.acknowledge(&s, next).unwrap();
        }
        assert!(
            on_disk_reaches(&h, &s, 100),
            "a burst is written by its end"
        );
        assert!(
            eventually(|| lock(&h.shared.book).persister_idle),
            "the persister waits for a change"
        );
        h.shared.set_queued(&s, vec![id(2)]);
        h.acknowledge(&s, 200).unwrap();
        assert!(on_disk_reaches(&h, &s, 200), "written though already dirty");
        let writes = h.shared.stats.checkpoint_writes.load(Ordering::Relaxed);
        assert!(writes <= 6, "{writes} writes for three debounced rounds");
        h.shared.stop_persister();
        persister.join().unwrap();
    }
}
