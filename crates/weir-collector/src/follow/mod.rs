//! Following streams: history from an index, then live entries as they are stored, with
//! no gap and no duplicate at the seam. Served by `weir.v1.Streams/Follow` and
//! `GET /v1/entries?follow=true`.
//!
//! A follow is driven by the **store**, not by the live hub: it never loses an entry
//! (a slow reader slows its own follow down, through a bounded channel, and nothing
//! else). How the seam is kept exact:
//!
//! 1. subscribe to the store's write notifications ([`weir_store::Store::subscribe`])
//!    *before* the first read, so nothing written after that read goes unnoticed;
//! 2. keep, per stream, the next index wanted; every read starts there and moves it
//!    past what it returned, so nothing is sent twice;
//! 3. on each notification for a followed stream, read again from that index (in
//!    chunks of [`CHUNK`] entries) until caught up; when the notification channel
//!    reports that this follower lagged (notifications were lost), re-read every
//!    followed stream.
//!
//! Two targets:
//!
//! - [`Target::Stream`]: one stream from `from`; ends when the stream is terminated and
//!   every entry below its terminal count was sent ([`single`]).
//! - [`Target::Prefix`]: every stream whose path starts with the prefix, including
//!   streams created after the follow began; existing streams from `from`, new ones from
//!   their first entry. Each batch names its stream. It runs until the reader goes
//!   away ([`prefix`]).
//!
//! A read that starts below a stream's low-water mark (entries expired) starts at the
//! mark and says so (`below_low_water` of the batch). Each follow holds one of the
//! `egress.max_streams` slots for its life.

mod prefix;
mod single;

use std::sync::Arc;

use tokio::sync::mpsc;
use weir_store::{ReadBatch, Store, StoreError};

use crate::collector::Collector;
use crate::hub::StreamPermit;

/// Most entries read (and sent) in one batch.
pub const CHUNK: usize = 1000;
/// Batches buffered toward a reader.
pub const CHANNEL: usize = 8;
/// Streams listed per page when a prefix follow (re)scans the registry.
pub const LIST_PAGE: usize = 1000;

/// What to follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// One stream, by its full path.
    Stream(String),
    /// Every stream whose path starts with this string.
    Prefix(String),
}

/// Why a follow ended early.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FollowError {
    /// The followed stream is not (or no longer) registered.
    #[error("no stream at path {0:?}")]
    NotFound(String),
    /// The store failed, or stopped sending notifications.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The collector is shutting down.
    #[error("the collector is shutting down")]
    ShuttingDown,
}

impl From<StoreError> for FollowError {
    fn from(e: StoreError) -> Self {
        FollowError::Unavailable(e.to_string())
    }
}

/// One batch of a follow: a store read (the stream's state, where it started, its
/// entries). A stream's first batch is sent even when empty, so the reader learns the
/// stream's state and where reading started.
pub type FollowItem = Result<ReadBatch, FollowError>;

/// Where a follow's batches go: `Err` when the reader has gone.
pub(crate) struct Sink<'a> {
    tx: &'a mpsc::Sender<FollowItem>,
}

impl Sink<'_> {
    /// Sends a batch; `false` when the reader has gone.
    async fn send(&self, batch: ReadBatch) -> bool {
        self.tx.send(Ok(batch)).await.is_ok()
    }
}

/// Starts following `target` from `from` on its own task; the reader gets the batches
/// (then one `Err` if it ended early) from the returned channel. Dropping the receiver
/// stops the follow. `permit` is held until the follow ends.
pub fn spawn(
    collector: &Collector,
    target: Target,
    from: u64,
    permit: StreamPermit,
) -> mpsc::Receiver<FollowItem> {
    let (tx, rx) = mpsc::channel(CHANNEL);
    let store = collector.store().clone();
    let closing = collector.closing_token();
    tokio::spawn(async move {
        let _permit = permit;
        let run = run(store, &target, from, Sink { tx: &tx });
        let end = tokio::select! {
            end = run => end,
            () = closing.cancelled() => Err(FollowError::ShuttingDown),
            () = tx.closed() => Ok(()),
        };
        if let Err(e) = end {
            // The reader may be gone already; nothing more to do then.
            let _ = tx.send(Err(e)).await;
        }
    });
    rx
}

async fn run(
    store: Arc<dyn Store>,
    target: &Target,
    from: u64,
    sink: Sink<'_>,
) -> Result<(), FollowError> {
    match target {
        Target::Stream(path) => single::run(store, path, from, sink).await,
        Target::Prefix(prefix) => prefix::run(store, prefix, from, sink).await,
    }
}

/// A stream's position in a follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cursor {
    /// The next index to send.
    pub next: u64,
    /// Whether the stream's first batch went out.
    pub announced: bool,
    /// Terminated and everything below the count was sent.
    pub done: bool,
}

impl Cursor {
    pub fn at(next: u64) -> Self {
        Cursor {
            next,
            announced: false,
            done: false,
        }
    }
}

/// What [`catch_up`] came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CaughtUp {
    /// Everything stored so far was sent.
    Yes,
    /// The reader went away.
    ReaderGone,
    /// The stream is not registered.
    Missing,
}

/// Reads `path` from `cursor.next` until caught up with the store, sending each
/// non-empty batch (and the first one even when empty); moves the cursor past what it
/// sent and marks it done at termination.
pub(crate) async fn catch_up(
    store: &dyn Store,
    path: &str,
    cursor: &mut Cursor,
    sink: &Sink<'_>,
) -> Result<CaughtUp, FollowError> {
    while !cursor.done {
        let Some(batch) = store.read(path, cursor.next, CHUNK).await? else {
            return Ok(CaughtUp::Missing);
        };
        let n = batch.entries.len();
        cursor.next = match batch.entries.last() {
            Some(last) => last.index + 1,
            None => cursor.next.max(batch.started_at),
        };
        if let Some(count) = batch.state.terminal_count {
            cursor.done = cursor.next >= count;
        }
        if (n > 0 || !cursor.announced) && !sink.send(batch).await {
            return Ok(CaughtUp::ReaderGone);
        }
        cursor.announced = true;
        if n < CHUNK {
            break;
        }
    }
    Ok(CaughtUp::Yes)
}
