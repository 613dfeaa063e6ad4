//! `GET /v1/entries?…&follow=true`: a follow ([`crate::follow`]) as Server-Sent Events.
//!
//! - `?path=P&from=N&follow=true`: stream `P` from index `N` (default 0), history then
//!   live; the response ends when the stream is terminated and every entry below its
//!   terminal count was sent. An unknown stream is 404 before any event.
//! - `?prefix=P&from=N&follow=true`: every stream whose path starts with `P` (non-empty),
//!   new ones included; existing streams from `N`, new ones from their first entry.
//!   The response runs until the client goes away.
//!
//! Each entry is one event, `data: <people JSON>\n\n`, the JSON one line with the
//! entry's `stream` and `index` (so a prefix follow labels every entry with its
//! stream). Two other events may appear:
//!
//! - `event: below_low_water\ndata: {"stream":P,"started_at":N}\n\n` when a stream's
//!   reading starts above the index asked for because older entries expired;
//! - `event: error\ndata: {"error":"<name>","message":"…"}\n\n` before the response
//!   ends early: `not_found` (the stream disappeared) or `unavailable` (the store failed,
//!   or the collector is shutting down).
//!
//! The headers are those of `/v2/read`. A slow client slows down its own follow through
//! a bounded channel; it never loses entries and never holds anyone else up.

use std::convert::Infallible;

use axum::body::Bytes;
use axum::response::Response;
use futures::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use weir_core::json::PeopleJson;
use weir_store::ReadBatch;

use super::sse;
use crate::collector::Collector;
use crate::follow::{self, FollowError, FollowItem, Target};
use crate::hub::StreamPermit;

/// The SSE response of a follow of `target` from `from`.
pub fn response(
    collector: &Collector,
    target: Target,
    from: u64,
    permit: StreamPermit,
) -> Response {
    let rx = follow::spawn(collector, target, from, permit);
    let events = ReceiverStream::new(rx).map(|item| Ok::<Bytes, Infallible>(events(item)));
    sse::response(events.filter(|b| {
        let keep = !matches!(b, Ok(b) if b.is_empty());
        async move { keep }
    }))
}

/// The events of one follow item (empty for a batch without entries).
fn events(item: FollowItem) -> Bytes {
    match item {
        Ok(batch) => batch_events(&batch),
        Err(e) => error_event(&e),
    }
}

fn batch_events(batch: &ReadBatch) -> Bytes {
    let path = batch.state.path.as_str();
    let mut out = Vec::with_capacity(batch.entries.len() * 256);
    if batch.below_low_water {
        let note = serde_json::json!({"stream": path, "started_at": batch.started_at});
        out.extend_from_slice(b"event: below_low_water\ndata: ");
        out.extend_from_slice(note.to_string().as_bytes());
        out.extend_from_slice(b"\n\n");
    }
    for e in &batch.entries {
        out.extend_from_slice(b"data: ");
        // Serialising to a Vec fails only for non-string map keys, which PeopleJson
        // never writes; a failure would leave a truncated line, so stop the entry.
        if serde_json::to_writer(
            &mut out,
            &PeopleJson::entry(path, e.index, e.ingest_ns, &e.envelope),
        )
        .is_err()
        {
            tracing::error!(
                stream = path,
                index = e.index,
                "cannot write an entry as JSON"
            );
        }
        out.extend_from_slice(b"\n\n");
    }
    Bytes::from(out)
}

fn error_event(e: &FollowError) -> Bytes {
    let name = match e {
        FollowError::NotFound(_) => "not_found",
        FollowError::Unavailable(_) | FollowError::ShuttingDown => "unavailable",
    };
    let body = serde_json::json!({"error": name, "message": e.to_string()});
    Bytes::from(format!("event: error\ndata: {body}\n\n"))
}
