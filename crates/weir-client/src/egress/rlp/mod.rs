//! [`RlpGatewayClient`]: reads the RLP gateway's `GET /v2/read` Server-Sent Events, as
//! go-loggregator's `RLPGatewayClient` does (PROTOCOLS.md §3.4).
//!
//! ```no_run
//! # async fn f() -> Result<(), weir_client::RlpError> {
//! use weir_client::RlpGatewayClient;
//! use weir_proto::lv2::{EgressBatchRequest, Selector, selector::Message, LogSelector};
//! let client = RlpGatewayClient::builder("http://127.0.0.1:8088")
//!     .authorization("bearer <token>")
//!     .build()?;
//! let request = EgressBatchRequest {
//!     selectors: vec![Selector { source_id: "my-app".into(), message: Some(Message::Log(LogSelector {})) }],
//!     ..Default::default()
//! };
//! let mut stream = client.stream(tokio_util::sync::CancellationToken::new(), &request)?;
//! while let Some(batch) = stream.next().await {
//!     println!("{} envelopes", batch.len());
//! }
//! if let Some(e) = stream.error() { eprintln!("{e}"); }
//! # Ok(()) }
//! ```
//!
//! The request is `GET <addr>/v2/read?<query>` with `Accept: text/event-stream`,
//! `Cache-Control: no-cache` and, when set, `Authorization`; the query is built from an
//! `EgressBatchRequest` ([`query`]). The body is read line by line (module `sse`) and each
//! event's data is decoded with `weir_core::json::batch_from_json_slice` (protojson, as
//! Go's `protojson.Unmarshal`).
//!
//! Reconnecting, as upstream: a body that ends or fails, or `event: closing`, counts
//! as a successful connection, and the client reconnects at once; a transport error or
//! a status other than 200 is a failed attempt; after more than `max_retries`
//! (default 10) failed attempts in a row it gives up: `next` returns `None` and
//! [`RlpStream::error`] says why.
//!
//! Departures from upstream, each for a reason:
//! - batches come out **in the order** the server sent them: one task reads and
//!   decodes (upstream decodes on 1000 goroutines, losing the order);
//! - `next().await` waits for the next batch instead of polling every 50 ms;
//! - failed attempts are spaced by a short backoff (default 50 ms doubling to 2 s, set
//!   both to zero for upstream's back-to-back attempts), so a collector restart that
//!   takes a second does not exhaust the retries in a few milliseconds;
//! - an event that does not decode is skipped and counted
//!   ([`RlpStream::decode_errors`]); upstream logs it and loses a decoding worker;
//! - lines and events are bounded ([`DEFAULT_MAX_EVENT_BYTES`]); a longer one drops the
//!   connection (counted as a decode error) and the client reconnects;
//! - values in the query are URL-escaped (see [`query`]).

pub mod query;
mod sse;

use std::time::Duration;

use reqwest::header::{ACCEPT, AUTHORIZATION, CACHE_CONTROL, HeaderValue};
use tokio_util::sync::CancellationToken;
use weir_proto::lv2::{EgressBatchRequest, Envelope};

pub use query::{QueryError, read_query};
use sse::{SseEvent, SseParser};

use crate::backoff::Backoff;
use crate::tls::{ClientTls, TlsError};

/// Consecutive failed attempts before giving up (upstream: 10).
pub const DEFAULT_MAX_RETRIES: u32 = 10;
/// Longest line or event accepted (the gateway's gRPC limit is 10 MiB per batch; its
/// JSON is larger).
pub const DEFAULT_MAX_EVENT_BYTES: usize = 32 << 20;

/// Why a stream could not be made, or why it ended.
#[derive(Debug, thiserror::Error)]
pub enum RlpError {
    /// The request cannot be expressed as a `/v2/read` query.
    #[error("cannot build the /v2/read query: {0}")]
    Query(#[from] QueryError),
    /// The gateway address is not a URL.
    #[error("invalid gateway address {addr:?}: {reason}")]
    InvalidAddress { addr: String, reason: String },
    /// The Authorization value is not a valid header value.
    #[error("the Authorization value is not a valid HTTP header value")]
    InvalidAuthorization,
    /// The TLS material could not be loaded.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Http(String),
    /// Too many failed attempts in a row.
    #[error(
        "client connection attempts exceeded max retries -- giving up ({attempts} attempts; last error: {last_error})"
    )]
    GaveUp { attempts: u32, last_error: String },
}

/// Options of an [`RlpGatewayClient`].
#[derive(Debug, Clone)]
pub struct RlpGatewayClientBuilder {
    addr: String,
    authorization: Option<String>,
    max_retries: u32,
    retry_backoff: (Duration, Duration),
    max_event_bytes: usize,
    tls: Option<ClientTls>,
}

impl RlpGatewayClientBuilder {
    /// The `Authorization` header sent with every request (e.g. `bearer <jwt>`).
    pub fn authorization(mut self, value: impl Into<String>) -> Self {
        self.authorization = Some(value.into());
        self
    }

    /// Consecutive failed attempts before giving up (default 10).
    pub fn max_retries(mut self, n: u32) -> Self {
        self.max_retries = n;
        self
    }

    /// Delays between failed attempts (default 50 ms doubling to 2 s; `ZERO, ZERO`
    /// for none, as upstream).
    pub fn retry_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.retry_backoff = (initial, max);
        self
    }

    /// Longest line or event accepted (default 32 MiB).
    pub fn max_event_bytes(mut self, n: usize) -> Self {
        self.max_event_bytes = n.max(1);
        self
    }

    /// TLS for an `https://` gateway: the CA to trust, and a client certificate for
    /// mutual TLS. The server's certificate is checked against the URL's host.
    pub fn tls(mut self, tls: ClientTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The client.
    pub fn build(self) -> Result<RlpGatewayClient, RlpError> {
        let addr = if self.addr.contains("://") {
            self.addr.clone()
        } else if self.tls.is_some() {
            format!("https://{}", self.addr)
        } else {
            format!("http://{}", self.addr)
        };
        let base = reqwest::Url::parse(&addr).map_err(|e| RlpError::InvalidAddress {
            addr: self.addr.clone(),
            reason: e.to_string(),
        })?;
        let authorization = match self.authorization {
            None => None,
            Some(v) => {
                let mut v =
                    HeaderValue::from_str(&v).map_err(|_| RlpError::InvalidAuthorization)?;
                v.set_sensitive(true);
                Some(v)
            }
        };
        let mut http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true);
        if let Some(tls) = &self.tls {
            http = tls.apply_http(http)?;
        }
        let http = http.build().map_err(|e| RlpError::Http(e.to_string()))?;
        Ok(RlpGatewayClient {
            http,
            base: addr.trim_end_matches('/').to_string(),
            _url: base,
            authorization,
            max_retries: self.max_retries,
            retry_backoff: self.retry_backoff,
            max_event_bytes: self.max_event_bytes,
        })
    }
}

/// A client of the RLP gateway's `/v2/read`. Cheap to clone. See the module docs.
#[derive(Debug, Clone)]
pub struct RlpGatewayClient {
    http: reqwest::Client,
    base: String,
    _url: reqwest::Url,
    authorization: Option<HeaderValue>,
    max_retries: u32,
    retry_backoff: (Duration, Duration),
    max_event_bytes: usize,
}

impl RlpGatewayClient {
    /// Options for the gateway at `addr` (`http://host:port`, `https://…`, or
    /// `host:port`).
    pub fn builder(addr: impl Into<String>) -> RlpGatewayClientBuilder {
        RlpGatewayClientBuilder {
            addr: addr.into(),
            authorization: None,
            max_retries: DEFAULT_MAX_RETRIES,
            retry_backoff: (Duration::from_millis(50), Duration::from_secs(2)),
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
            tls: None,
        }
    }

    /// A stream of batches for `request` until `cancel` is cancelled or the client
    /// gives up. Fails only when the request cannot be expressed as a query.
    pub fn stream(
        &self,
        cancel: CancellationToken,
        request: &EgressBatchRequest,
    ) -> Result<RlpStream, RlpError> {
        let url = format!("{}/v2/read?{}", self.base, read_query(request)?);
        Ok(RlpStream {
            parser: SseParser::new(self.max_event_bytes),
            backoff: Backoff::new(self.retry_backoff.0, self.retry_backoff.1),
            client: self.clone(),
            url,
            cancel,
            response: None,
            failures: 0,
            error: None,
            decode_errors: 0,
            connections: 0,
        })
    }
}

/// Batches read from `/v2/read`, reconnecting. See the module docs.
pub struct RlpStream {
    client: RlpGatewayClient,
    url: String,
    cancel: CancellationToken,
    response: Option<reqwest::Response>,
    parser: SseParser,
    failures: u32,
    backoff: Backoff,
    error: Option<RlpError>,
    decode_errors: u64,
    connections: u64,
}

impl std::fmt::Debug for RlpStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RlpStream")
            .field("url", &self.url)
            .field("connections", &self.connections)
            .field("decode_errors", &self.decode_errors)
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl RlpStream {
    /// The next batch, in the server's order; `None` once cancelled or given up.
    pub async fn next(&mut self) -> Option<Vec<Envelope>> {
        loop {
            if self.error.is_some() || self.cancel.is_cancelled() {
                return None;
            }
            match self.parser.next_event() {
                Ok(Some(SseEvent::Data(raw))) => {
                    match weir_core::json::batch_from_json_slice(&raw) {
                        Ok(batch) => return Some(batch.batch),
                        Err(e) => {
                            self.decode_errors += 1;
                            tracing::warn!("skipping an SSE event that does not decode: {e}");
                        }
                    }
                    continue;
                }
                Ok(Some(SseEvent::Closing)) => {
                    tracing::debug!("the gateway is closing the stream; reconnecting");
                    self.disconnect();
                    continue;
                }
                Err(e) => {
                    self.decode_errors += 1;
                    tracing::warn!("{e}; reconnecting");
                    self.disconnect();
                    continue;
                }
                Ok(None) => {}
            }
            let Some(response) = self.response.as_mut() else {
                self.connect().await;
                continue;
            };
            let cancel = self.cancel.clone();
            let chunk = tokio::select! {
                () = cancel.cancelled() => return None,
                c = response.chunk() => c,
            };
            match chunk {
                Ok(Some(bytes)) => self.parser.feed(&bytes),
                // The end of the body, or a failed read: a successful connection that
                // ended. Reconnect at once.
                Ok(None) => self.disconnect(),
                Err(e) => {
                    tracing::debug!("reading /v2/read failed: {e}; reconnecting");
                    self.disconnect();
                }
            }
        }
    }

    /// Why the stream ended, once `next` returned `None` without a cancellation.
    pub fn error(&self) -> Option<&RlpError> {
        self.error.as_ref()
    }

    /// Events skipped because they did not decode (or were too large).
    pub fn decode_errors(&self) -> u64 {
        self.decode_errors
    }

    /// Successful connections made so far.
    pub fn connections(&self) -> u64 {
        self.connections
    }

    fn disconnect(&mut self) {
        self.response = None;
        self.parser.reset();
    }

    /// One attempt to connect; on failure counts it, gives up past `max_retries`, or
    /// waits the backoff delay. Cancel-safe.
    async fn connect(&mut self) {
        let mut request = self
            .client
            .http
            .get(&self.url)
            .header(ACCEPT, "text/event-stream")
            .header(CACHE_CONTROL, "no-cache");
        if let Some(auth) = &self.client.authorization {
            request = request.header(AUTHORIZATION, auth.clone());
        }
        let cancel = self.cancel.clone();
        let result = tokio::select! {
            () = cancel.cancelled() => return,
            r = request.send() => r,
        };
        let why = match result {
            Ok(response) if response.status() == reqwest::StatusCode::OK => {
                self.response = Some(response);
                self.parser.reset();
                self.failures = 0;
                self.backoff.reset();
                self.connections += 1;
                return;
            }
            Ok(response) => format!("the gateway answered {}", response.status()),
            Err(e) => format!("cannot reach the gateway: {e}"),
        };
        self.failures += 1;
        tracing::debug!(failures = self.failures, "{why}");
        if self.failures > self.client.max_retries {
            tracing::warn!("client connection attempts exceeded max retries -- giving up: {why}");
            self.error = Some(RlpError::GaveUp {
                attempts: self.failures,
                last_error: why,
            });
            return;
        }
        if self.client.retry_backoff.0.is_zero() {
            return;
        }
        let delay = self.backoff.next_delay();
        tokio::select! {
            () = cancel.cancelled() => {}
            () = tokio::time::sleep(delay) => {}
        }
    }
}
