//! `loggregator.v2.Ingress`, wire-compatible with go-loggregator clients (PROTOCOLS.md
//! §2.1).
//!
//! `Sender` and `BatchSender` read the client's stream until it half-closes and answer
//! the empty response then. Whatever has arrived and is ready is taken together (up to
//! [`MAX_PENDING`] envelopes) and handed to [`Collector::ingest_envelopes`] as one call,
//! which groups it by stream. A bad envelope is dropped and counted and never ends the
//! stream; a store failure ends it with `Unavailable` (the client reconnects and
//! resends), a request that cannot be decoded with `InvalidArgument`, and shutting
//! down with `Unavailable`. `Send` hands on one batch and answers when it is stored.
//!
//! # Acknowledging part of a stream: `weir-batches-stored`
//!
//! A client stream has one answer, at its end, so a client whose stream is ended by an
//! error cannot tell which of its messages were stored. A weir server says so: every
//! error that ends a `Sender` or `BatchSender` call carries the trailer (status
//! metadata) [`BATCHES_STORED_KEY`]` = N`, the number of leading messages of the call
//! (batches for `BatchSender`, envelopes for `Sender`) that were fully handled:
//! stored, or dropped as invalid and counted here. The messages after the first N
//! were not stored, so weir's client resends them (`weir_client::ingress`); other
//! clients ignore the trailer. An OK answer means every message was handled.
//!
//! The count is exact on shutdown: the reader stops between messages (it waits for the
//! next message or the collector's closing, closing first), and a group of messages
//! handed to the collector is either stored whole or refused whole, because
//! [`Collector::close`] waits for calls under way before the store closes, and a
//! call that starts after closing began stores nothing. After a store failure in the
//! middle of a group, part of it may be stored while the count leaves the whole group
//! out: a resend can then duplicate that part (at-least-once).

use futures::FutureExt;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status, Streaming};
use weir_core::Envelope;
use weir_proto::lv2::{
    BatchSenderResponse, EnvelopeBatch, IngressResponse, SendResponse, ingress_server::Ingress,
};

use super::read_error;
use crate::collector::Collector;
use crate::metrics::protocol;

/// Most envelopes taken from a client stream before they are stored.
pub const MAX_PENDING: usize = 1000;

/// The trailer of a failed `Sender` or `BatchSender` call: how many leading messages
/// of the call were stored (see the module docs).
pub const BATCHES_STORED_KEY: &str = "weir-batches-stored";

/// `status` with the [`BATCHES_STORED_KEY`] trailer set to `stored`.
fn with_stored(mut status: Status, stored: u64) -> Status {
    status
        .metadata_mut()
        .insert(BATCHES_STORED_KEY, MetadataValue::from(stored));
    status
}

/// `loggregator.v2.Ingress` over a [`Collector`].
#[derive(Debug, Clone)]
pub struct IngressService {
    collector: Collector,
}

impl IngressService {
    /// The service over `collector`.
    pub fn new(collector: Collector) -> Self {
        IngressService { collector }
    }
}

#[tonic::async_trait]
impl Ingress for IngressService {
    async fn sender(
        &self,
        request: Request<Streaming<Envelope>>,
    ) -> Result<Response<IngressResponse>, Status> {
        drain(
            &self.collector,
            request.into_inner(),
            protocol::LOGGREGATOR_SENDER,
            |env, pending| pending.push(env),
        )
        .await?;
        Ok(Response::new(IngressResponse {}))
    }

    async fn batch_sender(
        &self,
        request: Request<Streaming<EnvelopeBatch>>,
    ) -> Result<Response<BatchSenderResponse>, Status> {
        drain(
            &self.collector,
            request.into_inner(),
            protocol::LOGGREGATOR_BATCH_SENDER,
            |batch, pending| pending.extend(batch.batch),
        )
        .await?;
        Ok(Response::new(BatchSenderResponse {}))
    }

    async fn send(
        &self,
        request: Request<EnvelopeBatch>,
    ) -> Result<Response<SendResponse>, Status> {
        let batch = request.into_inner().batch;
        let report = self
            .collector
            .ingest_envelopes(batch, protocol::LOGGREGATOR_SEND)
            .await;
        match report.unavailable {
            Some(why) => Err(Status::unavailable(why)),
            None => Ok(Response::new(SendResponse {})),
        }
    }
}

/// Reads a client stream to its end, storing envelopes as they come (see the module
/// docs). `unpack` adds one message's envelopes to the pending ones. Every error it
/// returns carries the number of messages stored ([`BATCHES_STORED_KEY`]).
async fn drain<T>(
    collector: &Collector,
    mut stream: Streaming<T>,
    protocol: &'static str,
    unpack: impl Fn(T, &mut Vec<Envelope>),
) -> Result<(), Status> {
    let mut pending = Vec::new();
    // Messages taken into `pending`, and messages of this call fully handled.
    let (mut taken, mut stored) = (0u64, 0u64);
    loop {
        // Wait for the next message (or the end), unless shutting down: closing wins,
        // so the call stops between messages.
        let first = tokio::select! {
            biased;
            () = collector.closing() => {
                return Err(with_stored(
                    Status::unavailable("the collector is shutting down"),
                    stored,
                ));
            }
            m = stream.message() => m,
        };
        let mut end = match first {
            Ok(Some(m)) => {
                unpack(m, &mut pending);
                taken += 1;
                None
            }
            Ok(None) => Some(Ok(())),
            Err(s) => Some(Err(read_error(s))),
        };
        // Take what else is ready without waiting.
        while end.is_none() && pending.len() < MAX_PENDING {
            match stream.message().now_or_never() {
                None => break,
                Some(Ok(Some(m))) => {
                    unpack(m, &mut pending);
                    taken += 1;
                }
                Some(Ok(None)) => end = Some(Ok(())),
                Some(Err(s)) => end = Some(Err(read_error(s))),
            }
        }
        if !pending.is_empty() {
            let envs = std::mem::replace(&mut pending, Vec::with_capacity(MAX_PENDING.min(256)));
            let report = collector.ingest_envelopes(envs, protocol).await;
            if let Some(why) = report.unavailable {
                return Err(with_stored(Status::unavailable(why), stored));
            }
        }
        stored += std::mem::take(&mut taken);
        if let Some(end) = end {
            return end.map_err(|s| with_stored(s, stored));
        }
    }
}
