//! `loggregator.v2.Egress`: `Receiver` and `BatchedReceiver`, wire-compatible with
//! go-loggregator readers (`EnvelopeStreamConnector`) and behaving as upstream's RLP
//! (PROTOCOLS.md §2.2, §2.3).
//!
//! Each call becomes one subscriber of the live [`Hub`](crate::hub::Hub):
//!
//! - **Selectors.** `legacy_selector` is used only when `selectors` is empty. No
//!   selector at all is `INVALID_ARGUMENT` "Selectors cannot be empty"; a selector with
//!   no message is `INVALID_ARGUMENT` naming it. Each selector is its own subscription
//!   ([`crate::hub::filter`]), so overlapping selectors deliver an envelope twice, as
//!   upstream does.
//! - **Shards.** `shard_id` groups subscriptions per selector; `deterministic_name`
//!   pins counter and gauge names to group members. `Receiver` ignores
//!   `deterministic_name`, as the RLP's non-batched `Receiver` does not pass it on.
//! - **Tags.** `use_preferred_tags = false` (the proto default) moves `tags` into
//!   `deprecated_tags` as text values; `true` moves `deprecated_tags` into `tags`.
//! - **Batching.** `BatchedReceiver` sends `egress.batch_size` envelopes (100) or what
//!   has arrived `egress.flush_interval_ms` (100 ms) after the first of a batch.
//!   `Receiver` sends each envelope as it comes.
//! - **Bounds.** A subscriber that reads slowly (or never) loses the oldest envelopes
//!   in its diode (`egress.diode_capacity`), counted per subscriber; nothing waits for
//!   it. More than `egress.max_streams` streams at once: `RESOURCE_EXHAUSTED`.
//! - **End.** The stream ends when the client goes away, or with `UNAVAILABLE` when
//!   the collector shuts down.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use weir_core::Envelope;
use weir_core::json::{to_legacy_tags, to_preferred_tags};
use weir_proto::lv2::egress_server::Egress as EgressRpc;
use weir_proto::lv2::{EgressBatchRequest, EgressRequest, EnvelopeBatch, Selector};

use super::refuse;
use crate::collector::Collector;
use crate::hub::{Filter, SubscribeRequest, Subscription};
use crate::metrics::{Egress, RejectReason};

/// A boxed response stream.
pub type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// `loggregator.v2.Egress` over a [`Collector`]'s hub.
#[derive(Debug, Clone)]
pub struct EgressService {
    collector: Collector,
}

/// The parts of `EgressRequest` and `EgressBatchRequest` that matter here.
struct Ask {
    egress: Egress,
    peer: Option<String>,
    shard_id: String,
    legacy: Option<Selector>,
    selectors: Vec<Selector>,
    deterministic_name: String,
}

impl EgressService {
    /// The service over `collector`.
    pub fn new(collector: Collector) -> Self {
        EgressService { collector }
    }

    /// Checks the request and subscribes; errors are counted and carry their status.
    fn subscribe(&self, ask: Ask) -> Result<Subscription, Status> {
        let collector = &self.collector;
        if collector.is_closed() {
            return Err(refuse(
                collector,
                RejectReason::Unavailable,
                Status::unavailable("the collector is shutting down"),
            ));
        }
        let filters = Filter::from_request(&ask.selectors, ask.legacy.as_ref()).map_err(|e| {
            refuse(
                collector,
                RejectReason::InvalidRequest,
                Status::invalid_argument(e.to_string()),
            )
        })?;
        collector
            .hub()
            .subscribe(SubscribeRequest {
                egress: ask.egress,
                peer: ask.peer,
                filters,
                shard_id: ask.shard_id,
                deterministic_name: ask.deterministic_name,
                diode_capacity: None,
            })
            .map_err(|e| {
                refuse(
                    collector,
                    RejectReason::TooManyStreams,
                    Status::resource_exhausted(e.to_string()),
                )
            })
    }
}

fn peer<T>(request: &Request<T>) -> Option<String> {
    request.remote_addr().map(|a| a.to_string())
}

/// The envelope as this subscriber wants its tags.
fn outgoing(env: &Envelope, preferred: bool) -> Envelope {
    let mut env = env.clone();
    if preferred {
        to_preferred_tags(&mut env);
    } else {
        to_legacy_tags(&mut env);
    }
    env
}

fn shutting_down() -> Status {
    Status::unavailable("the collector is shutting down")
}

/// What a response stream carries between items: `None` once it has ended.
type State = Option<(Subscription, CancellationToken)>;

/// `BatchedReceiver`'s response: batches from the subscription until closing.
fn batches(
    sub: Subscription,
    closing: CancellationToken,
    preferred: bool,
) -> ResponseStream<EnvelopeBatch> {
    let state: State = Some((sub, closing));
    Box::pin(futures::stream::unfold(state, move |state| async move {
        let (sub, closing) = state?;
        let mut buf: Vec<Arc<Envelope>> = Vec::new();
        tokio::select! {
            biased;
            () = closing.cancelled() => return Some((Err(shutting_down()), None)),
            _ = sub.next_batch(&mut buf) => {}
        }
        let batch = EnvelopeBatch {
            batch: buf.iter().map(|e| outgoing(e, preferred)).collect(),
        };
        Some((Ok(batch), Some((sub, closing))))
    }))
}

/// `Receiver`'s response: one envelope at a time until closing.
fn envelopes(
    sub: Subscription,
    closing: CancellationToken,
    preferred: bool,
) -> ResponseStream<Envelope> {
    let state: State = Some((sub, closing));
    Box::pin(futures::stream::unfold(state, move |state| async move {
        let (sub, closing) = state?;
        let env = tokio::select! {
            biased;
            () = closing.cancelled() => return Some((Err(shutting_down()), None)),
            env = sub.next() => env,
        };
        Some((Ok(outgoing(&env, preferred)), Some((sub, closing))))
    }))
}

#[tonic::async_trait]
impl EgressRpc for EgressService {
    type ReceiverStream = ResponseStream<Envelope>;

    async fn receiver(
        &self,
        request: Request<EgressRequest>,
    ) -> Result<Response<Self::ReceiverStream>, Status> {
        let peer = peer(&request);
        let req = request.into_inner();
        let preferred = req.use_preferred_tags;
        let sub = self.subscribe(Ask {
            egress: Egress::Receiver,
            peer,
            shard_id: req.shard_id,
            legacy: req.legacy_selector,
            selectors: req.selectors,
            // Upstream's RLP does not pass it on for Receiver.
            deterministic_name: String::new(),
        })?;
        Ok(Response::new(envelopes(
            sub,
            self.collector.closing_token(),
            preferred,
        )))
    }

    type BatchedReceiverStream = ResponseStream<EnvelopeBatch>;

    async fn batched_receiver(
        &self,
        request: Request<EgressBatchRequest>,
    ) -> Result<Response<Self::BatchedReceiverStream>, Status> {
        let peer = peer(&request);
        let req = request.into_inner();
        let preferred = req.use_preferred_tags;
        let sub = self.subscribe(Ask {
            egress: Egress::BatchedReceiver,
            peer,
            shard_id: req.shard_id,
            legacy: req.legacy_selector,
            selectors: req.selectors,
            deterministic_name: req.deterministic_name,
        })?;
        Ok(Response::new(batches(
            sub,
            self.collector.closing_token(),
            preferred,
        )))
    }
}
