//! The options of an [`IngressClient`], with upstream's defaults where upstream has the
//! option (PROTOCOLS.md §4.1).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::transport::ClientTlsConfig;

use super::buffer::Buffer;
use super::item::{SourceInfo, Template};
use super::sender::{Sender, SenderConfig};
use super::{Handle, IngressClient, Shared, Stats};
use crate::backoff::Backoff;
use crate::error::{ClientError, endpoint, require_runtime};

/// The Loggregator Agent's (and weir's) gRPC ingress address.
pub const DEFAULT_ADDR: &str = "127.0.0.1:3458";
/// Envelopes per batch (upstream: 100).
pub const DEFAULT_BATCH_MAX_SIZE: usize = 100;
/// A batch is sent at the latest this long after its first envelope (upstream: 100 ms).
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_millis(100);
/// Envelopes the buffer holds before it drops the newest.
pub const DEFAULT_BUFFER_CAPACITY: usize = 10_000;
/// Batches per `BatchSender` call before it is half-closed and confirmed.
pub const DEFAULT_MAX_BATCHES_PER_CALL: usize = 32;
/// A batch is cut once it holds this many bytes (servers refuse huge messages).
pub const DEFAULT_MAX_BATCH_BYTES: usize = 1 << 20;

/// Builds an [`IngressClient`]; start with [`IngressClient::builder`].
#[derive(Debug, Clone)]
pub struct IngressClientBuilder {
    addr: String,
    tls: Option<ClientTlsConfig>,
    batch_max_size: usize,
    max_batch_bytes: usize,
    flush_interval: Duration,
    buffer_capacity: usize,
    max_batches_per_call: usize,
    tags: Vec<(String, String)>,
    source: Option<SourceInfo>,
    cancel: Option<CancellationToken>,
    backoff: (Duration, Duration),
    call_timeout: Duration,
}

impl Default for IngressClientBuilder {
    fn default() -> Self {
        IngressClientBuilder {
            addr: DEFAULT_ADDR.to_string(),
            tls: None,
            batch_max_size: DEFAULT_BATCH_MAX_SIZE,
            max_batch_bytes: DEFAULT_MAX_BATCH_BYTES,
            flush_interval: DEFAULT_FLUSH_INTERVAL,
            buffer_capacity: DEFAULT_BUFFER_CAPACITY,
            max_batches_per_call: DEFAULT_MAX_BATCHES_PER_CALL,
            tags: Vec::new(),
            source: None,
            cancel: None,
            backoff: (Duration::from_millis(100), Duration::from_secs(5)),
            call_timeout: Duration::from_secs(30),
        }
    }
}

impl IngressClientBuilder {
    /// The server: `host:port` (default [`DEFAULT_ADDR`]) or a URI (`http://…`,
    /// `https://…`).
    pub fn addr(mut self, addr: impl Into<String>) -> Self {
        self.addr = addr.into();
        self
    }

    /// TLS or mutual TLS, e.g. from [`crate::tls::ingress_tls_config`]. Without it the
    /// connection is plain text.
    pub fn tls(mut self, tls: ClientTlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Envelopes per batch (at least 1; default 100).
    pub fn batch_max_size(mut self, n: usize) -> Self {
        self.batch_max_size = n.max(1);
        self
    }

    /// A batch is cut once it holds this many encoded bytes (default 1 MiB).
    pub fn max_batch_bytes(mut self, n: usize) -> Self {
        self.max_batch_bytes = n.max(1);
        self
    }

    /// The longest an envelope waits for its batch to fill (default 100 ms).
    pub fn flush_interval(mut self, d: Duration) -> Self {
        self.flush_interval = d;
        self
    }

    /// Envelopes buffered between the callers and the sender (at least 1; default
    /// 10,000). When it is full, new envelopes are dropped and counted.
    pub fn buffer_capacity(mut self, n: usize) -> Self {
        self.buffer_capacity = n.max(1);
        self
    }

    /// Batches sent on one `BatchSender` call before it is half-closed and its answer
    /// confirms them (at least 1; default 32). It bounds what a failed call can leave
    /// unconfirmed. See the module docs of [`crate::ingress`].
    pub fn max_batches_per_call(mut self, n: usize) -> Self {
        self.max_batches_per_call = n.max(1);
        self
    }

    /// A tag added to every envelope built by the emit helpers (not by raw `emit`, as
    /// upstream). A later tag of the same key wins.
    pub fn tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.tags.push((key.into(), value.into()));
        self
    }

    /// The source of envelopes built by the client's own emit helpers (source id,
    /// instance id, `source_type` tag). Other sources: [`IngressClient::emitter`].
    pub fn source(mut self, source: SourceInfo) -> Self {
        self.source = Some(source);
        self
    }

    /// Cancelling this token stops the client at once: the call under way is cut and
    /// everything not confirmed is counted as dropped.
    pub fn cancellation(mut self, token: CancellationToken) -> Self {
        self.cancel = Some(token);
        self
    }

    /// Delays between failed calls: exponential from `initial` up to `max`, jittered
    /// (default 100 ms to 5 s).
    pub fn reconnect_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.backoff = (initial, max);
        self
    }

    /// The longest to wait for the answer of a half-closed call (default 30 s); then
    /// its fate is unknown (see the module docs of [`crate::ingress`]).
    pub fn call_timeout(mut self, d: Duration) -> Self {
        self.call_timeout = d;
        self
    }

    /// Builds the client and starts its sender task. Connects lazily: the server need
    /// not be up yet. Must be called inside a Tokio runtime.
    pub fn build(self) -> Result<IngressClient, ClientError> {
        require_runtime()?;
        let channel = endpoint(&self.addr, self.tls.as_ref())?.connect_lazy();
        let (done_tx, done_rx) = watch::channel(None);
        let shared = Arc::new(Shared {
            buffer: Buffer::new(self.buffer_capacity),
            default: Arc::new(Template::new(self.source.as_ref(), &self.tags, &[])),
            client_tags: self.tags.into(),
            channel,
            cancel: self.cancel.unwrap_or_default(),
            stats: Stats::default(),
            done: done_rx,
        });
        let config = SenderConfig {
            batch_max_size: self.batch_max_size,
            max_batch_bytes: self.max_batch_bytes,
            flush_interval: self.flush_interval,
            max_batches_per_call: self.max_batches_per_call,
            backoff: Backoff::new(self.backoff.0, self.backoff.1),
            call_timeout: self.call_timeout,
        };
        tokio::spawn(Sender::new(shared.clone(), config).run(done_tx));
        Ok(IngressClient {
            handle: Arc::new(Handle { shared }),
        })
    }
}
