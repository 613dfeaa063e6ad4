//! [`IngressClient`]: a batching Loggregator v2 ingress client that never blocks its
//! callers and accounts for every envelope.
//!
//! ```no_run
//! # async fn f() -> Result<(), weir_client::ClientError> {
//! use weir_client::{IngressClient, LogType, SourceInfo};
//! let client = IngressClient::builder()
//!     .addr("127.0.0.1:3458")
//!     .source(SourceInfo::new("my-app", "APP/PROC/WEB", "0"))
//!     .tag("deployment", "prod")
//!     .build()?;
//! client.emit_log("hello", LogType::Out);
//! client.emit_counter("requests", weir_client::CounterValue::Delta(1));
//! client.emit_event("deployed", "v42").await?; // unary, returns the RPC's error
//! client.close_send().await?;                   // flushes and waits
//! println!("dropped: {}", client.dropped());
//! # Ok(()) }
//! ```
//!
//! # The send path
//!
//! An emit builds the message on the caller's thread (the time, the payload) and puts
//! it in a bounded lock-free buffer (`buffer.rs`). It never blocks and never locks:
//! when the buffer is full, the **newest** envelope is dropped and counted
//! ([`IngressClient::dropped`]). Upstream blocks the caller instead; weir's promise is
//! bounded memory and visible loss without stalling the application.
//!
//! One sender task takes envelopes from the buffer and cuts batches at
//! `batch_max_size` envelopes (default 100), at `max_batch_bytes`, or `flush_interval`
//! (default 100 ms) after a batch's first envelope. The fixed part of each envelope
//! (source id, instance id, tags) was encoded to protobuf once, so encoding is a copy
//! (`encode.rs`).
//!
//! # Acknowledgements: exact accounting across server restarts
//!
//! `BatchSender` is client-streaming: the server answers once, at the end of the
//! client's stream, and there is no per-batch answer. When a long-lived stream breaks,
//! the client cannot tell which of the batches it wrote were taken; upstream drops the
//! batch whose send failed and never knows about the rest. weir's client instead keeps
//! each call **short and bounded**:
//!
//! 1. a call carries at most `max_batches_per_call` batches (default 32), fewer when
//!    the buffer runs empty; then the client half-closes it and waits for the answer.
//!    It holds the encoded batches of the call until then (at most 32 × 100
//!    envelopes). One call is in flight at a time, which keeps envelopes in order;
//!    meanwhile new envelopes wait in the buffer;
//! 2. an **OK** answer confirms every batch of the call: a weir collector answers at
//!    the end of the stream only after storing everything (a Loggregator Agent after
//!    forwarding it);
//! 3. a **failed** call that carries the trailer `weir-batches-stored: N`
//!    ([`BATCHES_STORED_KEY`], a weir extension sent when a collector shuts down or its
//!    store fails) confirms the first N batches; the others were not stored and are
//!    **resent** first on the next call;
//! 4. a failed call **without** it (a real Loggregator, a crash, a cut connection):
//!    batches the transport never took are resent (they cannot have arrived); those it
//!    took may or may not have arrived, and are counted as **dropped** (upstream's
//!    at-most-once);
//! 5. after a failure the next call waits a backoff delay (exponential, capped,
//!    jittered; reset by a success); the gRPC channel reconnects on its own.
//!
//! So with a weir collector shut down gracefully and restarted, every envelope emitted
//! is either stored once or counted in [`IngressClient::dropped`]: emitted = stored +
//! dropped, exactly. (A store failure in the middle of one of the collector's
//! multi-batch appends can store part of a batch it then reports as not stored; the
//! resend then duplicates that part: at-least-once in that case.)
//!
//! # Closing and cancelling
//!
//! [`IngressClient::close_send`] refuses later emits (counted as dropped), sends what
//! is buffered at once and waits until every batch is confirmed or dropped. It keeps
//! retrying batches that were certainly not stored for as long as the client is not
//! cancelled: bound it with a timeout and the cancellation token. Dropping the last
//! handle closes in the background. Cancelling the token
//! ([`IngressClientBuilder::cancellation`]) stops at once: the call under way is cut,
//! and everything unconfirmed counts as dropped.
//!
//! `emit_event` does not use the buffer: it sends one unary `Send` at once and returns
//! its error, as upstream (so it has no order relative to batched envelopes).

mod buffer;
mod builder;
mod call;
mod encode;
mod item;
mod sender;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use weir_proto::lv2::ingress_client::IngressClient as GrpcIngressClient;
use weir_proto::lv2::{Envelope, EnvelopeBatch, Event, GaugeValue, envelope::Message as Body};

pub use builder::{
    DEFAULT_ADDR, DEFAULT_BATCH_MAX_SIZE, DEFAULT_BUFFER_CAPACITY, DEFAULT_FLUSH_INTERVAL,
    DEFAULT_MAX_BATCH_BYTES, DEFAULT_MAX_BATCHES_PER_CALL, IngressClientBuilder,
};
pub use call::BATCHES_STORED_KEY;
pub use item::SourceInfo;
/// A log's stream: `Out` (stdout) or `Err` (stderr, upstream's default).
pub use weir_proto::lv2::log::Type as LogType;

use crate::error::ClientError;
use buffer::Buffer;
use item::{Item, Kind, Template};
use sender::Exit;

/// A counter's value: go-loggregator's default delta of 1, `WithDelta(n)`, or
/// `WithTotal(t)` (which sends delta 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CounterValue {
    /// An increment since the last emit.
    Delta(u64),
    /// A running total (delta is sent as 0).
    Total(u64),
}

impl Default for CounterValue {
    fn default() -> Self {
        CounterValue::Delta(1)
    }
}

/// A snapshot of a client's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Envelopes the server confirmed.
    pub delivered: u64,
    /// Envelopes dropped (buffer full, emitted after closing, unconfirmed).
    pub dropped: u64,
    /// Envelopes waiting in the buffer.
    pub buffered: u64,
    /// `BatchSender` calls made.
    pub calls: u64,
    /// Calls that failed.
    pub failed_calls: u64,
    /// Batches resent because a failed call had certainly not stored them.
    pub resent_batches: u64,
}

#[derive(Default)]
pub(crate) struct Stats {
    pub(crate) delivered: AtomicU64,
    pub(crate) calls: AtomicU64,
    pub(crate) failed_calls: AtomicU64,
    pub(crate) resent_batches: AtomicU64,
}

/// What the handles and the sender task share.
pub(crate) struct Shared {
    pub(crate) buffer: Buffer,
    pub(crate) default: Arc<Template>,
    pub(crate) client_tags: Arc<[(String, String)]>,
    pub(crate) channel: Channel,
    pub(crate) cancel: CancellationToken,
    pub(crate) stats: Stats,
    pub(crate) done: watch::Receiver<Option<Exit>>,
}

/// Closes the client when the last handle (client or emitter) goes.
struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.buffer.close();
    }
}

/// A batching Loggregator v2 ingress client. Cheap to clone; clones share the buffer
/// and the sender. See the module docs.
#[derive(Clone)]
pub struct IngressClient {
    handle: Arc<Handle>,
}

impl std::fmt::Debug for IngressClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngressClient")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl IngressClient {
    /// Options, starting from the defaults.
    pub fn builder() -> IngressClientBuilder {
        IngressClientBuilder::default()
    }

    fn shared(&self) -> &Shared {
        &self.handle.shared
    }

    /// Queues a log envelope (the client's source and tags). `false` when it was
    /// dropped (counted). Never blocks.
    #[inline]
    pub fn emit_log(&self, payload: impl Into<Bytes>, log_type: LogType) -> bool {
        push(self.shared(), None, log_kind(payload.into(), log_type))
    }

    /// Queues a counter envelope.
    pub fn emit_counter(&self, name: impl Into<String>, value: CounterValue) -> bool {
        push(self.shared(), None, counter_kind(name.into(), value))
    }

    /// Queues a gauge envelope of `(name, value, unit)` metrics; a repeated name keeps
    /// its last value.
    pub fn emit_gauge<N, U>(&self, metrics: impl IntoIterator<Item = (N, f64, U)>) -> bool
    where
        N: Into<String>,
        U: Into<String>,
    {
        push(self.shared(), None, gauge_kind(metrics))
    }

    /// Queues a timer envelope (start and stop in Unix nanoseconds).
    pub fn emit_timer(&self, name: impl Into<String>, start_ns: i64, stop_ns: i64) -> bool {
        push(
            self.shared(),
            None,
            timer_kind(name.into(), start_ns, stop_ns),
        )
    }

    /// Queues a whole envelope, sent as it is: no client tags or source are added (as
    /// upstream's `Emit`).
    pub fn emit(&self, envelope: Envelope) -> bool {
        push(self.shared(), None, Kind::Raw(Box::new(envelope)))
    }

    /// Sends an event envelope at once with the unary `Send` and returns its error
    /// (not buffered, not batched).
    pub async fn emit_event(
        &self,
        title: impl Into<String>,
        body: impl Into<String>,
    ) -> Result<(), ClientError> {
        let shared = self.shared();
        send_event(shared, &shared.default, title.into(), body.into()).await
    }

    /// An emitter for another source: its envelopes carry `source` and the client's
    /// tags (add more with [`Emitter::tag`]). Emitters share the client's buffer.
    pub fn emitter(&self, source: SourceInfo) -> Emitter {
        Emitter::new(self.handle.clone(), Some(source), Vec::new())
    }

    /// Refuses later emits, sends everything buffered and waits until each envelope
    /// is confirmed or counted as dropped. `Err(DroppedOnClose)` when some could not be
    /// confirmed during the close, `Err(Cancelled)` when the token fired first. Safe to
    /// call more than once.
    pub async fn close_send(&self) -> Result<(), ClientError> {
        let shared = self.shared();
        shared.buffer.close();
        let mut done = shared.done.clone();
        let exit = match done.wait_for(Option::is_some).await {
            Ok(exit) => exit.clone(),
            Err(_) => None,
        };
        match exit {
            Some(Exit::Closed { dropped: 0, .. }) => Ok(()),
            Some(Exit::Closed {
                dropped,
                last_error,
            }) => Err(ClientError::DroppedOnClose {
                count: dropped,
                last_error: last_error.unwrap_or_default(),
            }),
            Some(Exit::Cancelled) | None => Err(ClientError::Cancelled),
        }
    }

    /// Envelopes dropped so far: buffer full, emitted after closing, or unconfirmed
    /// after a failure (see the module docs). Exact once the client has closed.
    pub fn dropped(&self) -> u64 {
        self.shared().buffer.dropped()
    }

    /// Envelopes the server confirmed so far.
    pub fn delivered(&self) -> u64 {
        self.shared().stats.delivered.load(Ordering::Relaxed)
    }

    /// All counters.
    pub fn stats(&self) -> ClientStats {
        let s = self.shared();
        ClientStats {
            delivered: s.stats.delivered.load(Ordering::Relaxed),
            dropped: s.buffer.dropped(),
            buffered: s.buffer.len() as u64,
            calls: s.stats.calls.load(Ordering::Relaxed),
            failed_calls: s.stats.failed_calls.load(Ordering::Relaxed),
            resent_batches: s.stats.resent_batches.load(Ordering::Relaxed),
        }
    }
}

/// Emits envelopes of one source through a client's buffer: go-loggregator's per-call
/// `WithSourceInfo` and `WithEnvelopeTag` options, prepared once. Cheap to clone.
#[derive(Clone)]
pub struct Emitter {
    handle: Arc<Handle>,
    source: Option<SourceInfo>,
    tags: Vec<(String, String)>,
    template: Arc<Template>,
}

impl std::fmt::Debug for Emitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emitter")
            .field("source", &self.source)
            .field("tags", &self.tags)
            .finish_non_exhaustive()
    }
}

impl Emitter {
    fn new(handle: Arc<Handle>, source: Option<SourceInfo>, tags: Vec<(String, String)>) -> Self {
        let template = Arc::new(Template::new(
            source.as_ref(),
            &handle.shared.client_tags,
            &tags,
        ));
        Emitter {
            handle,
            source,
            tags,
            template,
        }
    }

    /// The same emitter with one more tag (winning over a client tag of that key).
    pub fn tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.tags.push((key.into(), value.into()));
        Emitter::new(self.handle, self.source, self.tags)
    }

    fn template(&self) -> Option<Arc<Template>> {
        Some(self.template.clone())
    }

    /// As [`IngressClient::emit_log`], from this emitter's source.
    pub fn emit_log(&self, payload: impl Into<Bytes>, log_type: LogType) -> bool {
        push(
            &self.handle.shared,
            self.template(),
            log_kind(payload.into(), log_type),
        )
    }

    /// As [`IngressClient::emit_counter`].
    pub fn emit_counter(&self, name: impl Into<String>, value: CounterValue) -> bool {
        push(
            &self.handle.shared,
            self.template(),
            counter_kind(name.into(), value),
        )
    }

    /// As [`IngressClient::emit_gauge`].
    pub fn emit_gauge<N, U>(&self, metrics: impl IntoIterator<Item = (N, f64, U)>) -> bool
    where
        N: Into<String>,
        U: Into<String>,
    {
        push(&self.handle.shared, self.template(), gauge_kind(metrics))
    }

    /// As [`IngressClient::emit_timer`].
    pub fn emit_timer(&self, name: impl Into<String>, start_ns: i64, stop_ns: i64) -> bool {
        push(
            &self.handle.shared,
            self.template(),
            timer_kind(name.into(), start_ns, stop_ns),
        )
    }

    /// As [`IngressClient::emit_event`].
    pub async fn emit_event(
        &self,
        title: impl Into<String>,
        body: impl Into<String>,
    ) -> Result<(), ClientError> {
        send_event(
            &self.handle.shared,
            &self.template,
            title.into(),
            body.into(),
        )
        .await
    }
}

#[inline]
fn push(shared: &Shared, template: Option<Arc<Template>>, kind: Kind) -> bool {
    shared.buffer.push(Item {
        timestamp: weir_core::now_ns(),
        template,
        kind,
    })
}

#[inline]
fn log_kind(payload: Bytes, log_type: LogType) -> Kind {
    Kind::Log {
        payload,
        log_type: log_type as i32,
    }
}

fn counter_kind(name: String, value: CounterValue) -> Kind {
    let (delta, total) = match value {
        CounterValue::Delta(d) => (d, 0),
        CounterValue::Total(t) => (0, t),
    };
    Kind::Counter { name, delta, total }
}

fn gauge_kind<N: Into<String>, U: Into<String>>(
    metrics: impl IntoIterator<Item = (N, f64, U)>,
) -> Kind {
    let mut map = HashMap::new();
    for (name, value, unit) in metrics {
        map.insert(
            name.into(),
            GaugeValue {
                unit: unit.into(),
                value,
            },
        );
    }
    Kind::Gauge(map)
}

fn timer_kind(name: String, start: i64, stop: i64) -> Kind {
    Kind::Timer { name, start, stop }
}

async fn send_event(
    shared: &Shared,
    template: &Template,
    title: String,
    body: String,
) -> Result<(), ClientError> {
    if shared.cancel.is_cancelled() {
        return Err(ClientError::Cancelled);
    }
    let envelope = template.envelope(weir_core::now_ns(), Body::Event(Event { title, body }));
    let mut client = GrpcIngressClient::new(shared.channel.clone());
    tokio::select! {
        () = shared.cancel.cancelled() => Err(ClientError::Cancelled),
        r = client.send(EnvelopeBatch { batch: vec![envelope] }) => {
            r.map(|_| ()).map_err(ClientError::Send)
        }
    }
}
