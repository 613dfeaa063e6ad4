//! Reading events back: by type and time ([`list`]) and live ([`follow`]).
//!
//! Events are entries of [`EVENTS_PATH`] in the order they were stored. A query starts
//! at the first entry ingested at or after `since` (so it skips older partitions
//! without reading them) and keeps the events of the wanted type whose own time is at
//! or after `since`. It reads at most [`MAX_SCAN`] entries per call and says where to
//! go on (`next`), so one request never scans without bound.

use std::sync::Arc;

use futures::Stream;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use weir_core::event_queue::Event;
use weir_store::{Store, StoreError};

use super::EVENTS_PATH;
use super::codec::from_envelope;

/// Most entries one [`list`] call reads.
pub const MAX_SCAN: usize = 100_000;
/// Entries read from the store per round.
const PAGE: usize = 1_000;

/// What to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventQuery {
    /// Only events of this type (`None`: every type).
    pub kind: Option<String>,
    /// Only events at or after this time, Unix ns.
    pub since_ns: Option<i64>,
    /// Start at this index of the events stream (a previous answer's `next`); overrides
    /// where `since_ns` would start.
    pub from_index: Option<u64>,
    /// Most events returned.
    pub limit: usize,
}

impl EventQuery {
    fn wants(&self, event: &Event) -> bool {
        self.kind.as_deref().is_none_or(|k| event.kind == k)
            && self.since_ns.is_none_or(|s| event.timestamp_ns >= s)
    }
}

/// Events found by [`list`], with their indices.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventPage {
    pub events: Vec<(u64, Event)>,
    /// Where to continue (the next index not examined).
    pub next: u64,
}

/// Where a query starts in the events stream; `None` when the stream does not exist.
async fn start(store: &dyn Store, query: &EventQuery) -> Result<Option<u64>, StoreError> {
    if let Some(from) = query.from_index {
        return Ok(Some(from));
    }
    match query.since_ns {
        Some(since) => store.index_at_time(EVENTS_PATH, since).await,
        None => Ok(store.stream(EVENTS_PATH).await?.map(|s| s.low_water)),
    }
}

/// Reads events matching `query` from index `from`, at most `query.limit` of them and
/// at most [`MAX_SCAN`] entries.
async fn scan(store: &dyn Store, query: &EventQuery, from: u64) -> Result<EventPage, StoreError> {
    let mut page = EventPage {
        events: Vec::new(),
        next: from,
    };
    let mut scanned = 0;
    while page.events.len() < query.limit && scanned < MAX_SCAN {
        let Some(batch) = store.read(EVENTS_PATH, page.next, PAGE).await? else {
            break;
        };
        page.next = page.next.max(batch.started_at);
        if batch.entries.is_empty() {
            break;
        }
        for entry in batch.entries {
            scanned += 1;
            page.next = entry.index + 1;
            if let Some(event) = from_envelope(&entry.envelope).filter(|e| query.wants(e)) {
                page.events.push((entry.index, event));
                if page.events.len() >= query.limit {
                    break;
                }
            }
        }
    }
    Ok(page)
}

/// The events matching `query`, oldest first.
pub async fn list(store: &dyn Store, query: &EventQuery) -> Result<EventPage, StoreError> {
    match start(store, query).await? {
        Some(from) => scan(store, query, from).await,
        None => Ok(EventPage::default()),
    }
}

/// The events matching `query` (its `limit` is per round), then every new one as it is
/// stored, until `closing` is cancelled, the reader goes away, or an error (sent as the
/// last item). A follower that falls behind the store's notifications re-reads from
/// where it is, so it loses nothing that is still retained.
pub fn follow(
    store: Arc<dyn Store>,
    query: EventQuery,
    closing: CancellationToken,
) -> impl Stream<Item = Result<(u64, Event), StoreError>> + Send + 'static {
    let mut notices = store.subscribe();
    async_stream(move |tx| async move {
        let mut next = match start(store.as_ref(), &query).await {
            Ok(n) => n.unwrap_or(0),
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        };
        loop {
            let page = match scan(store.as_ref(), &query, next).await {
                Ok(p) => p,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            let caught_up = page.next == next && page.events.is_empty();
            next = page.next;
            for item in page.events {
                if tx.send(Ok(item)).await.is_err() {
                    return;
                }
            }
            if !caught_up {
                continue;
            }
            // Wait for a write to the events stream (or a lag, which may hide one).
            loop {
                let notice = tokio::select! {
                    n = notices.recv() => n,
                    () = tx.closed() => return,
                    () = closing.cancelled() => return,
                };
                match notice {
                    Ok(n) if &*n.path == EVENTS_PATH => break,
                    Ok(_) => continue,
                    Err(RecvError::Lagged(_)) => break,
                    Err(RecvError::Closed) => return,
                }
            }
        }
    })
}

/// A stream fed by a task through a small bounded channel (the task waits when the
/// reader is slow; it ends when the reader goes away).
fn async_stream<T, F, Fut>(body: F) -> impl Stream<Item = T> + Send + 'static
where
    T: Send + 'static,
    F: FnOnce(tokio::sync::mpsc::Sender<T>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(body(tx));
    tokio_stream::wrappers::ReceiverStream::new(rx)
}
