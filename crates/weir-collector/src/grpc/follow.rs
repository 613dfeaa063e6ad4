//! `Streams/Follow`: a stream's history from an index, then its live entries, ending
//! when the stream is terminated and every entry below the terminal count was sent.
//!
//! The follower subscribes to the store's write notifications *before* its first read,
//! so nothing written after that read goes unnoticed; it tracks the next index to send,
//! so nothing is sent twice. On each notification for its stream (and when it lagged
//! behind the notification channel and may have missed some) it reads the store again
//! from that index, in chunks of [`CHUNK`]. Responses go through a channel of
//! [`CHANNEL`] responses: a slow client slows its follower, never the collector.
//!
//! The first response is sent even when it has no entries, so the client learns the
//! stream's state and where reading started (`started_at`, `below_low_water`). A
//! follow ends with `Unavailable` when the store fails or the collector shuts down.

use std::sync::Arc;

use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;
use weir_proto::wv1::ReadResponse;
use weir_store::Store;

use super::streams::read_response;
use crate::collector::Collector;

/// Most entries in one response.
pub const CHUNK: usize = 1000;
/// Responses buffered for a client.
pub const CHANNEL: usize = 8;

type Tx = mpsc::Sender<Result<ReadResponse, Status>>;

/// Starts following `path` from `from`; the stream of responses for the client.
pub fn start(
    collector: Collector,
    path: String,
    from: u64,
) -> ReceiverStream<Result<ReadResponse, Status>> {
    let (tx, rx) = mpsc::channel(CHANNEL);
    tokio::spawn(async move {
        let end = tokio::select! {
            end = run(collector.store().clone(), &path, from, &tx) => end,
            () = collector.closing() => Err(Status::unavailable("the collector is shutting down")),
            () = tx.closed() => Ok(()),
        };
        if let Err(status) = end {
            if status.code() == tonic::Code::Unavailable {
                collector
                    .metrics()
                    .rejected(crate::metrics::RejectReason::Unavailable);
            }
            // The client may be gone already; nothing more to do then.
            let _ = tx.send(Err(status)).await;
        }
    });
    ReceiverStream::new(rx)
}

/// The follow loop; `Ok` when the stream is complete or the client went away.
async fn run(store: Arc<dyn Store>, path: &str, mut next: u64, tx: &Tx) -> Result<(), Status> {
    let mut notifications = store.subscribe();
    let mut first = true;
    loop {
        // Catch up with the store.
        loop {
            let batch = match store.read(path, next, CHUNK).await {
                Ok(Some(batch)) => batch,
                Ok(None) => {
                    return Err(Status::not_found(format!(
                        "stream {path:?} no longer exists"
                    )));
                }
                Err(e) => return Err(Status::unavailable(e.to_string())),
            };
            let n = batch.entries.len();
            next = match batch.entries.last() {
                Some(last) => last.index + 1,
                None => next.max(batch.started_at),
            };
            let terminal = batch.state.terminal_count;
            if n > 0 || first {
                first = false;
                if tx.send(Ok(read_response(batch))).await.is_err() {
                    return Ok(());
                }
            }
            if terminal.is_some_and(|count| next >= count) {
                return Ok(());
            }
            if n < CHUNK {
                break;
            }
        }
        // Wait until the stream may have more.
        loop {
            match notifications.recv().await {
                Ok(a) if &*a.path == path => break,
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => break,
                Err(RecvError::Closed) => {
                    return Err(Status::unavailable(
                        "the store stopped sending notifications",
                    ));
                }
            }
        }
    }
}
