//! Server-Sent Events framing, as the RLP gateway writes it (PROTOCOLS.md §3.2): every
//! event is `field: value` lines ended by a bare LF, and a blank line; no `id:` or
//! `retry:` fields. The headers are sent before the first event.

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use futures::Stream;

/// The closing event `/v2/read` writes when its stream timeout ends.
pub const CLOSING: &[u8] = b"event: closing\ndata: closing due to stream timeout\n\n";

/// The heartbeat event: `event: heartbeat\ndata: <unix seconds>\n\n`.
pub fn heartbeat(unix_secs: i64) -> Bytes {
    Bytes::from(format!("event: heartbeat\ndata: {unix_secs}\n\n"))
}

/// Starts a `data: ` event in `out`; the caller writes one line of payload (it must not
/// contain a LF) and calls [`end_data`].
pub fn begin_data(out: &mut String) {
    out.push_str("data: ");
}

/// Ends the event begun with [`begin_data`].
pub fn end_data(out: &mut String) {
    out.push_str("\n\n");
}

/// The current Unix time in whole seconds.
pub fn unix_secs() -> i64 {
    weir_core::now_ns().div_euclid(1_000_000_000)
}

/// A `200` event-stream response with the gateway's headers (`Content-Type:
/// text/event-stream`, `Cache-Control: no-cache`, `Connection: keep-alive`) and the
/// events of `body`. The server sends the headers as soon as the handler returns, before
/// `body` yields anything.
pub fn response<S>(body: S) -> Response
where
    S: Stream<Item = Result<Bytes, std::convert::Infallible>> + Send + 'static,
{
    let mut resp = Response::new(Body::from_stream(body));
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
    resp
}
