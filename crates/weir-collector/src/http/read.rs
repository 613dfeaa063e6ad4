//! `GET /v2/read`: live envelopes as Server-Sent Events, compatible with Cloud Foundry's
//! RLP gateway and so with go-loggregator's `RLPGatewayClient` (PROTOCOLS.md §3).
//!
//! The query ([`super::read_query`]) becomes the selectors of one hub subscriber with
//! `use_preferred_tags = true` (SSE readers see only `tags`; `"deprecated_tags":{}` is
//! still written). The response is `200` with `Content-Type: text/event-stream`,
//! `Cache-Control: no-cache` and `Connection: keep-alive`, sent before the first event,
//! then these events (LF line ends only):
//!
//! | event | bytes | when |
//! | --- | --- | --- |
//! | data | `data: <compact protojson EnvelopeBatch>\n\n` | a batch: `egress.batch_size` envelopes, or what arrived `egress.flush_interval_ms` after the first |
//! | heartbeat | `event: heartbeat\ndata: <unix seconds>\n\n` | `egress.heartbeat_interval_ms` (15 s) without an event; the timer restarts after each data event and heartbeat |
//! | closing | `event: closing\ndata: closing due to stream timeout\n\n` | `egress.stream_timeout_ms` (14 min) after the start, however busy; then the response ends |
//!
//! The response also ends, without a closing event, when the client goes away or the
//! collector shuts down. A client that stops reading loses the oldest envelopes of its
//! diode (counted per subscriber) and holds up nothing else.
//!
//! Errors are the gateway's, written as Go's `http.Error` writes them: the status,
//! `Content-Type: text/plain; charset=utf-8`, `X-Content-Type-Options: nosniff`, and the
//! JSON `{"message":"…","error":"<name>"}` followed by a newline from Go's JSON encoder
//! and another from `http.Error`'s `Fprintln`:
//!
//! | status | error | when |
//! | --- | --- | --- |
//! | 405 | `method_not_allowed` | the method is not GET |
//! | 400 | `empty_query` | no query parameter at all |
//! | 400 | `missing_envelope_type` | none of log, counter, gauge, timer, event, counter.name, gauge.name |
//! | 503 | `streaming_unavailable` | `egress.max_streams` streams are open, or the collector is shutting down |
//!
//! **No authorization.** The gateway requires an `Authorization` header and answers 404
//! when it does not pass CF's checks; weir does not check it yet (its bearer tokens come
//! later): anyone who can reach the HTTP port can read every envelope. Bind the HTTP
//! listener to loopback (the default) or put it behind a proxy that authenticates.

use std::borrow::Cow;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::time::{Instant, sleep, sleep_until};
use tokio_util::sync::CancellationToken;
use weir_core::Envelope;
use weir_core::json::{to_preferred_tags, write_batch};

use super::read_query::{self, QueryError};
use super::sse;
use crate::collector::Collector;
use crate::hub::{Filter, SubscribeRequest, Subscription};
use crate::metrics::{Egress, RejectReason};

/// One of the gateway's errors (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GatewayError {
    pub status: StatusCode,
    pub name: &'static str,
    pub message: &'static str,
}

impl GatewayError {
    pub const METHOD_NOT_ALLOWED: GatewayError = GatewayError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        name: "method_not_allowed",
        message: "method not allowed",
    };
    pub const STREAMING_UNAVAILABLE: GatewayError = GatewayError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        name: "streaming_unavailable",
        message: "streaming is temporarily unavailable",
    };

    fn query(e: QueryError) -> Self {
        GatewayError {
            status: StatusCode::BAD_REQUEST,
            name: e.name(),
            message: e.message(),
        }
    }

    /// The body exactly as the gateway writes it: Go's JSON encoder writes the struct's
    /// fields in order (`message`, `error`) and a newline; `http.Error` adds another.
    pub fn body(&self) -> String {
        let quote = |s: &str| serde_json::Value::from(s).to_string();
        format!(
            "{{\"message\":{},\"error\":{}}}\n\n",
            quote(self.message),
            quote(self.name)
        )
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let mut resp = Response::new(Body::from(self.body()));
        *resp.status_mut() = self.status;
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        h.insert(
            header::HeaderName::from_static("x-content-type-options"),
            HeaderValue::from_static("nosniff"),
        );
        resp
    }
}

/// The `/v2/read` handler (any method; only GET is served).
pub async fn handler(State(collector): State<Collector>, request: Request) -> Response {
    let refuse = |reason: RejectReason, e: GatewayError| {
        collector.metrics().rejected(reason);
        e.into_response()
    };
    if request.method() != Method::GET {
        return refuse(
            RejectReason::InvalidRequest,
            GatewayError::METHOD_NOT_ALLOWED,
        );
    }
    let query = match read_query::parse(request.uri().query()) {
        Ok(q) => q,
        Err(e) => return refuse(RejectReason::InvalidRequest, GatewayError::query(e)),
    };
    if collector.is_closed() {
        return refuse(
            RejectReason::Unavailable,
            GatewayError::STREAMING_UNAVAILABLE,
        );
    }
    // The gateway builds only valid selectors; an error here would be ours.
    let filters = match Filter::from_request(&query.selectors, None) {
        Ok(f) => f,
        Err(_) => {
            return refuse(
                RejectReason::InvalidRequest,
                GatewayError::query(QueryError::MissingType),
            );
        }
    };
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.to_string());
    let sub = match collector.hub().subscribe(SubscribeRequest {
        egress: Egress::V2Read,
        peer,
        filters,
        shard_id: query.shard_id,
        deterministic_name: query.deterministic_name,
        diode_capacity: None,
    }) {
        Ok(sub) => sub,
        Err(_) => {
            return refuse(
                RejectReason::TooManyStreams,
                GatewayError::STREAMING_UNAVAILABLE,
            );
        }
    };
    let config = collector.egress_config();
    let events = Events {
        sub,
        closing: collector.closing_token(),
        heartbeat: Duration::from_millis(config.heartbeat_interval_ms.max(1)),
        timeout_at: Instant::now() + Duration::from_millis(config.stream_timeout_ms),
        buf: Vec::new(),
        state: Phase::Streaming,
    };
    sse::response(futures::stream::unfold(events, |mut ev| async move {
        let bytes = ev.next().await?;
        Some((Ok::<Bytes, Infallible>(bytes), ev))
    }))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Streaming,
    /// The timeout passed while a batch was half full: that batch went out, the
    /// closing event is next.
    Closing,
    Done,
}

/// The event source of one `/v2/read` response.
struct Events {
    sub: Subscription,
    closing: CancellationToken,
    heartbeat: Duration,
    timeout_at: Instant,
    /// The batch being filled (kept across wake-ups so nothing is lost when a timer
    /// fires while it fills).
    buf: Vec<Arc<Envelope>>,
    state: Phase,
}

impl Events {
    /// The next event's bytes; `None` ends the response.
    async fn next(&mut self) -> Option<Bytes> {
        match self.state {
            Phase::Done => return None,
            Phase::Closing => {
                self.state = Phase::Done;
                return Some(Bytes::from_static(sse::CLOSING));
            }
            Phase::Streaming => {}
        }
        tokio::select! {
            biased;
            () = self.closing.cancelled() => {
                self.state = Phase::Done;
                None
            }
            () = sleep_until(self.timeout_at) => {
                if self.buf.is_empty() {
                    self.state = Phase::Done;
                    Some(Bytes::from_static(sse::CLOSING))
                } else {
                    self.state = Phase::Closing;
                    Some(self.data())
                }
            }
            () = sleep(self.heartbeat) => {
                if self.buf.is_empty() {
                    Some(sse::heartbeat(sse::unix_secs()))
                } else {
                    Some(self.data())
                }
            }
            _ = self.sub.next_batch(&mut self.buf) => Some(self.data()),
        }
    }

    /// The data event of the batch in `buf` (emptied).
    fn data(&mut self) -> Bytes {
        let envs: Vec<Cow<'_, Envelope>> = self
            .buf
            .iter()
            .map(|e| {
                if e.deprecated_tags.is_empty() {
                    Cow::Borrowed(&**e)
                } else {
                    let mut e = (**e).clone();
                    to_preferred_tags(&mut e);
                    Cow::Owned(e)
                }
            })
            .collect();
        let mut out = String::with_capacity(64 + 400 * envs.len());
        sse::begin_data(&mut out);
        write_batch(&mut out, envs.iter().map(|e| e.as_ref()));
        sse::end_data(&mut out);
        drop(envs);
        self.buf.clear();
        Bytes::from(out)
    }
}
