//! [`EnvelopeStreamConnector`]: reads `loggregator.v2.Egress/BatchedReceiver` and keeps
//! reading across server restarts, as go-loggregator's connector (PROTOCOLS.md §4.5).
//!
//! ```no_run
//! # async fn f() -> Result<(), weir_client::ClientError> {
//! use weir_client::EnvelopeStreamConnector;
//! use weir_proto::lv2::{EgressBatchRequest, Selector, selector::Message, LogSelector};
//! let token = tokio_util::sync::CancellationToken::new();
//! let connector = EnvelopeStreamConnector::new("127.0.0.1:3458", None)?;
//! let request = EgressBatchRequest {
//!     selectors: vec![Selector { source_id: String::new(), message: Some(Message::Log(LogSelector {})) }],
//!     use_preferred_tags: true,
//!     ..Default::default()
//! };
//! let mut stream = connector.stream(token.clone(), request);
//! while let Some(batch) = stream.next().await {
//!     println!("{} envelopes", batch.len());
//! }
//! # Ok(()) }
//! ```
//!
//! The stream retries for as long as it lives and its token is not cancelled: when a
//! read fails (or the server ends the stream) it opens a new `BatchedReceiver` at once
//! with the same request; when opening fails it waits 50 ms and tries again. The
//! connection is made lazily, on the first `next`.
//!
//! Without a buffer, the reader reads only when `next` is called (gRPC flow control
//! holds the server back). With [`with_buffer`](EnvelopeStreamConnector::with_buffer),
//! a task reads ahead into a [`Diode`] of `size` slots, one batch each: when the
//! caller falls behind, the oldest batches are overwritten, and the next `next` calls
//! the alerter with the number of **batches** lost, on the caller's side (as upstream,
//! whose docs say "envelopes" but count batches).

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, DropGuard};
use tonic::transport::{Channel, ClientTlsConfig};
use tonic::{Status, Streaming};
use weir_core::diode::{Alerter, Diode};
use weir_proto::lv2::egress_client::EgressClient;
use weir_proto::lv2::{EgressBatchRequest, Envelope, EnvelopeBatch};

use crate::error::{ClientError, endpoint, require_runtime};

/// The wait after a failed attempt to open the stream (upstream: 50 ms).
pub const OPEN_RETRY_DELAY: Duration = Duration::from_millis(50);
/// Largest batch accepted from the server (the RLP gateway's limit: 10 MiB).
pub const MAX_MESSAGE_BYTES: usize = 10 << 20;

/// Opens reconnecting `BatchedReceiver` streams. See the module docs.
#[derive(Clone)]
pub struct EnvelopeStreamConnector {
    channel: Channel,
    buffer: Option<(usize, Alerter)>,
}

impl std::fmt::Debug for EnvelopeStreamConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvelopeStreamConnector")
            .field("buffer", &self.buffer.as_ref().map(|(n, _)| n))
            .finish_non_exhaustive()
    }
}

impl EnvelopeStreamConnector {
    /// A connector to `addr` (`host:port` or a URI), with TLS when given (e.g.
    /// [`crate::tls::egress_tls_config`]). Connects lazily. Must be called inside a
    /// Tokio runtime.
    pub fn new(addr: &str, tls: Option<ClientTlsConfig>) -> Result<Self, ClientError> {
        require_runtime()?;
        let channel = endpoint(addr, tls.as_ref())?.connect_lazy();
        Ok(EnvelopeStreamConnector {
            channel,
            buffer: None,
        })
    }

    /// Reads ahead into a diode of `size` batches; `alerter(n)` is called when `n`
    /// batches were overwritten before being read.
    pub fn with_buffer(
        mut self,
        size: usize,
        alerter: impl Fn(u64) + Send + Sync + 'static,
    ) -> Self {
        self.buffer = Some((size.max(1), Arc::new(alerter)));
        self
    }

    /// A stream of batches for `request`, until `cancel` is cancelled or the stream is
    /// dropped.
    pub fn stream(&self, cancel: CancellationToken, request: EgressBatchRequest) -> EnvelopeStream {
        let reader = Reader {
            client: EgressClient::new(self.channel.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
            request,
            stream: None,
        };
        let inner = match &self.buffer {
            None => Inner::Direct(Box::new(reader)),
            Some((size, alerter)) => {
                let diode = Arc::new(Diode::with_alerter(*size, alerter.clone()));
                let stop = cancel.child_token();
                let task = tokio::spawn(read_ahead(reader, diode.clone(), stop.clone()));
                Inner::Buffered {
                    diode,
                    _stop: stop.drop_guard(),
                    _task: task,
                }
            }
        };
        EnvelopeStream { cancel, inner }
    }
}

/// Batches from a `BatchedReceiver`, reconnecting. See the module docs.
pub struct EnvelopeStream {
    cancel: CancellationToken,
    inner: Inner,
}

enum Inner {
    Direct(Box<Reader>),
    Buffered {
        diode: Arc<Diode<Vec<Envelope>>>,
        _stop: DropGuard,
        _task: JoinHandle<()>,
    },
}

impl std::fmt::Debug for EnvelopeStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvelopeStream")
            .field("cancelled", &self.cancel.is_cancelled())
            .finish_non_exhaustive()
    }
}

impl EnvelopeStream {
    /// Batches overwritten in the buffer before they were read (0 without a buffer).
    pub fn dropped(&self) -> u64 {
        match &self.inner {
            Inner::Direct(_) => 0,
            Inner::Buffered { diode, .. } => diode.dropped(),
        }
    }

    /// The next batch; `None` once the token is cancelled.
    pub async fn next(&mut self) -> Option<Vec<Envelope>> {
        if self.cancel.is_cancelled() {
            return None;
        }
        let cancel = self.cancel.clone();
        match &mut self.inner {
            Inner::Direct(reader) => tokio::select! {
                () = cancel.cancelled() => None,
                batch = reader.next() => Some(batch),
            },
            Inner::Buffered { diode, .. } => tokio::select! {
                () = cancel.cancelled() => None,
                batch = diode.next() => Some(batch),
            },
        }
    }
}

async fn read_ahead(mut reader: Reader, diode: Arc<Diode<Vec<Envelope>>>, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            batch = reader.next() => diode.set(batch),
        }
    }
}

/// One subscription, reopened whenever it ends.
struct Reader {
    client: EgressClient<Channel>,
    request: EgressBatchRequest,
    stream: Option<Streaming<EnvelopeBatch>>,
}

impl Reader {
    /// The next batch, reopening the stream as often as needed. Cancel-safe.
    async fn next(&mut self) -> Vec<Envelope> {
        loop {
            let stream = match &mut self.stream {
                Some(s) => s,
                None => match self.open().await {
                    Ok(s) => self.stream.insert(s),
                    Err(e) => {
                        tracing::warn!("Error connecting to Logs Provider: {e}");
                        tokio::time::sleep(OPEN_RETRY_DELAY).await;
                        continue;
                    }
                },
            };
            match stream.message().await {
                Ok(Some(batch)) => return batch.batch,
                Ok(None) => {
                    tracing::debug!("the egress stream ended; reopening");
                    self.stream = None;
                }
                Err(e) => {
                    tracing::debug!("reading the egress stream failed: {e}; reopening");
                    self.stream = None;
                }
            }
        }
    }

    async fn open(&mut self) -> Result<Streaming<EnvelopeBatch>, Status> {
        Ok(self
            .client
            .batched_receiver(self.request.clone())
            .await?
            .into_inner())
    }
}
