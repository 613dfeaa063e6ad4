//! [`FileEventStore`]: the agent's own events in a small bounded file,
//! `<data_dir>/events.ndjson`, the [`EventStore`] of the agent's event queue.
//!
//! One JSON object per line: `{"seq", "type", "message", "timestamp_ns", "member",
//! "fields"}`. `seq` numbers the agent's events 0, 1, 2, … across restarts (the
//! shipper's position, see [`super::shipper`]). The file is bounded by `max_bytes` and
//! `max_lines`: when a write passes either, the oldest events are dropped (counted in
//! [`FileEventStore::dropped`]) down to nine tenths of the bound and the file is
//! rewritten (temp file, rename), so the cost of rewriting is paid once per tenth of the
//! bound. Purging by age rewrites it the same way. The file's events are also held in
//! memory (they are at most `max_bytes`), so reading them for shipping costs no I/O.
//!
//! Lines that do not parse when the file is opened (a torn last line after a crash) are
//! skipped and counted in [`FileEventStore::damaged`].

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use weir_core::event_queue::{Event, EventStore, EventStoreError};

/// One line of the events file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventLine {
    /// The event's number on this agent.
    pub seq: u64,
    #[serde(rename = "type")]
    pub kind: String,
    pub message: String,
    pub timestamp_ns: i64,
    pub member: String,
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
}

impl EventLine {
    fn new(seq: u64, e: Event) -> Self {
        EventLine {
            seq,
            kind: e.kind,
            message: e.message,
            timestamp_ns: e.timestamp_ns,
            member: e.member_id,
            fields: e.fields,
        }
    }

    /// The event of this line.
    pub fn event(&self) -> Event {
        Event {
            kind: self.kind.clone(),
            message: self.message.clone(),
            timestamp_ns: self.timestamp_ns,
            member_id: self.member.clone(),
            fields: self.fields.clone(),
        }
    }
}

/// Bounds of the events file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileBounds {
    /// Most bytes of the file.
    pub max_bytes: u64,
    /// Most events (lines) of the file.
    pub max_lines: usize,
}

struct Inner {
    /// The file's lines, oldest first, with their encoded length (newline included).
    lines: VecDeque<(EventLine, u64)>,
    bytes: u64,
    next_seq: u64,
    dropped: u64,
    damaged: u64,
}

/// The events file. See the module docs.
pub struct FileEventStore {
    path: PathBuf,
    bounds: FileBounds,
    inner: Mutex<Inner>,
    /// Woken after every write (the shipper waits on it).
    written: Notify,
}

impl std::fmt::Debug for FileEventStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileEventStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl FileEventStore {
    /// Where the events file of the agent with `data_dir` is.
    pub fn path_in(data_dir: &Path) -> PathBuf {
        data_dir.join("events.ndjson")
    }

    /// Opens (or creates on first write) the events file under `data_dir`.
    pub fn open(data_dir: &Path, bounds: FileBounds) -> std::io::Result<Self> {
        let path = Self::path_in(data_dir);
        let mut inner = Inner {
            lines: VecDeque::new(),
            bytes: 0,
            next_seq: 0,
            dropped: 0,
            damaged: 0,
        };
        match std::fs::read(&path) {
            Ok(data) => {
                for raw in data.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                    match serde_json::from_slice::<EventLine>(raw) {
                        Ok(line) => {
                            inner.next_seq = inner.next_seq.max(line.seq + 1);
                            inner.bytes += raw.len() as u64 + 1;
                            inner.lines.push_back((line, raw.len() as u64 + 1));
                        }
                        Err(_) => inner.damaged += 1,
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let store = FileEventStore {
            path,
            bounds,
            inner: Mutex::new(inner),
            written: Notify::new(),
        };
        // Damaged lines go (and a file over a smaller bound shrinks) at once.
        let mut inner = store.lock();
        let damaged = inner.damaged > 0;
        if store.trim(&mut inner) || damaged {
            store.rewrite(&inner)?;
        }
        drop(inner);
        Ok(store)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The events from number `seq` on, at most `max`, oldest first.
    pub fn since(&self, seq: u64, max: usize) -> Vec<EventLine> {
        let inner = self.lock();
        let start = inner.lines.partition_point(|(l, _)| l.seq < seq);
        inner
            .lines
            .iter()
            .skip(start)
            .take(max)
            .map(|(l, _)| l.clone())
            .collect()
    }

    /// Every event in the file, oldest first.
    pub fn all(&self) -> Vec<EventLine> {
        self.since(0, usize::MAX)
    }

    /// The number the next event gets.
    pub fn next_seq(&self) -> u64 {
        self.lock().next_seq
    }

    /// Events dropped to keep the file within its bounds, since open.
    pub fn dropped(&self) -> u64 {
        self.lock().dropped
    }

    /// Lines that did not parse when the file was opened.
    pub fn damaged(&self) -> u64 {
        self.lock().damaged
    }

    /// A future that completes after the next write. Call [`enable`] on it (pinned)
    /// before looking at the events, so that a write in between is not missed.
    ///
    /// [`enable`]: tokio::sync::futures::Notified::enable
    pub fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.written.notified()
    }

    /// Drops the oldest lines while over a bound, down to nine tenths of it; whether any
    /// went.
    fn trim(&self, inner: &mut Inner) -> bool {
        let over = |i: &Inner, bytes: u64, lines: usize| i.bytes > bytes || i.lines.len() > lines;
        if !over(inner, self.bounds.max_bytes, self.bounds.max_lines) {
            return false;
        }
        let bytes = self.bounds.max_bytes / 10 * 9;
        let lines = self.bounds.max_lines / 10 * 9;
        while over(inner, bytes, lines) {
            let Some((_, len)) = inner.lines.pop_front() else {
                break;
            };
            inner.bytes -= len;
            inner.dropped += 1;
        }
        true
    }

    /// Writes the file anew from `inner` (temp file, rename).
    fn rewrite(&self, inner: &Inner) -> std::io::Result<()> {
        let tmp = self.path.with_extension("ndjson.tmp");
        let mut data = Vec::with_capacity(inner.bytes as usize);
        for (line, _) in &inner.lines {
            serde_json::to_writer(&mut data, line).map_err(std::io::Error::other)?;
            data.push(b'\n');
        }
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&data)?;
            f.sync_data()?;
        }
        std::fs::rename(&tmp, &self.path)
    }

    fn append(&self, events: Vec<Event>) -> std::io::Result<()> {
        let mut inner = self.lock();
        let mut data = Vec::new();
        let mut added = Vec::with_capacity(events.len());
        for (i, e) in events.into_iter().enumerate() {
            let line = EventLine::new(inner.next_seq + i as u64, e);
            let start = data.len();
            serde_json::to_writer(&mut data, &line).map_err(std::io::Error::other)?;
            data.push(b'\n');
            added.push((line, (data.len() - start) as u64));
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        f.write_all(&data)?;
        inner.next_seq += added.len() as u64;
        for (line, len) in added {
            inner.bytes += len;
            inner.lines.push_back((line, len));
        }
        if self.trim(&mut inner) {
            self.rewrite(&inner)?;
        }
        Ok(())
    }

    fn purge(&self, cutoff_ns: i64) -> std::io::Result<u64> {
        let mut inner = self.lock();
        let before = inner.lines.len();
        let mut bytes = inner.bytes;
        inner.lines.retain(|(l, len)| {
            let keep = l.timestamp_ns >= cutoff_ns;
            if !keep {
                bytes -= len;
            }
            keep
        });
        inner.bytes = bytes;
        let purged = (before - inner.lines.len()) as u64;
        if purged > 0 {
            self.rewrite(&inner)?;
        }
        Ok(purged)
    }
}

fn io_error(path: &Path, e: std::io::Error) -> EventStoreError {
    EventStoreError(format!("{}: {e}", path.display()))
}

#[async_trait::async_trait]
impl EventStore for FileEventStore {
    async fn put(&self, events: Vec<Event>) -> Result<(), EventStoreError> {
        // Small writes to a local file: done in place rather than on a blocking thread.
        let r = self.append(events).map_err(|e| io_error(&self.path, e));
        self.written.notify_waiters();
        r
    }

    async fn healthy(&self) -> bool {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .is_ok()
    }

    async fn purge_before(&self, cutoff_ns: i64) -> Result<u64, EventStoreError> {
        self.purge(cutoff_ns).map_err(|e| io_error(&self.path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str, ts: i64) -> Event {
        Event {
            kind: kind.into(),
            message: format!("{kind} happened"),
            timestamp_ns: ts,
            member_id: "host".into(),
            fields: BTreeMap::from([("k".to_string(), "v".to_string())]),
        }
    }

    #[tokio::test]
    async fn keeps_events_across_reopen_with_their_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let bounds = FileBounds {
            max_bytes: 1 << 20,
            max_lines: 1000,
        };
        let s = FileEventStore::open(dir.path(), bounds).unwrap();
        s.put(vec![event("a", 1), event("b", 2)]).await.unwrap();
        s.put(vec![event("c", 3)]).await.unwrap();
        drop(s);
        let s = FileEventStore::open(dir.path(), bounds).unwrap();
        let kinds: Vec<(u64, String)> = s.all().into_iter().map(|l| (l.seq, l.kind)).collect();
        assert_eq!(
            kinds,
            vec![(0, "a".into()), (1, "b".into()), (2, "c".into())]
        );
        assert_eq!(s.next_seq(), 3);
        assert_eq!(s.since(2, 10)[0].event(), event("c", 3));
    }

    #[tokio::test]
    async fn bound_drops_the_oldest_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let bounds = FileBounds {
            max_bytes: 1 << 20,
            max_lines: 10,
        };
        let s = FileEventStore::open(dir.path(), bounds).unwrap();
        for i in 0..11 {
            s.put(vec![event("e", i)]).await.unwrap();
        }
        // Over ten lines: down to nine, the two oldest gone.
        let seqs: Vec<u64> = s.all().iter().map(|l| l.seq).collect();
        assert_eq!(seqs, (2..11).collect::<Vec<_>>());
        assert_eq!(s.dropped(), 2);
        let on_disk = std::fs::read_to_string(FileEventStore::path_in(dir.path())).unwrap();
        assert_eq!(on_disk.lines().count(), 9);

        // By bytes too.
        let dir = tempfile::tempdir().unwrap();
        let bounds = FileBounds {
            max_bytes: 1000,
            max_lines: 1000,
        };
        let s = FileEventStore::open(dir.path(), bounds).unwrap();
        for i in 0..100 {
            s.put(vec![event("e", i)]).await.unwrap();
        }
        let size = std::fs::metadata(FileEventStore::path_in(dir.path()))
            .unwrap()
            .len();
        assert!(size <= 1000, "{size}");
        assert!(s.dropped() > 0);
        assert_eq!(s.all().last().unwrap().seq, 99);
    }

    #[tokio::test]
    async fn purge_removes_only_old_events_and_damage_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let bounds = FileBounds {
            max_bytes: 1 << 20,
            max_lines: 1000,
        };
        let s = FileEventStore::open(dir.path(), bounds).unwrap();
        s.put(vec![event("old", 10), event("new", 100)])
            .await
            .unwrap();
        assert_eq!(s.purge_before(50).await.unwrap(), 1);
        assert_eq!(s.all().len(), 1);
        drop(s);
        // A torn last line (a crash in the middle of a write).
        let path = FileEventStore::path_in(dir.path());
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"{\"seq\":7,\"ty").unwrap();
        drop(f);
        let s = FileEventStore::open(dir.path(), bounds).unwrap();
        assert_eq!(s.damaged(), 1);
        assert_eq!(s.all().len(), 1);
        assert_eq!(s.all()[0].kind, "new");
        assert_eq!(s.next_seq(), 2);
    }
}
