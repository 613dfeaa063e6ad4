//! The gRPC services, served on one port:
//!
//! - `loggregator.v2.Ingress` ([`ingress`]): `Sender`, `BatchSender`, `Send`, wire-compatible
//!   with go-loggregator clients (PROTOCOLS.md §2.1).
//! - `loggregator.v2.Egress` ([`egress`]): `Receiver`, `BatchedReceiver`: live
//!   envelopes from the hub, with selectors and shard groups (PROTOCOLS.md §2.2–2.3).
//! - `weir.v1.Ingest` ([`ingest`]): `Send` a bundle, get one result per stream.
//! - `weir.v1.Streams` ([`streams`], [`follow`]): `List`, `Get`, `Read`, `Follow`.
//!
//! Every service decodes at most `limits.max_request_bytes` per message. A request that
//! cannot be decoded, or is over that size, is answered `InvalidArgument` naming the
//! problem and counted as `weir_rejected_total{reason="invalid_request"}`
//! ([`malformed`]).

pub mod egress;
pub mod follow;
pub mod ingest;
pub mod ingress;
pub mod malformed;
pub mod streams;

use tonic::Status;
use weir_proto::codec::malformed_request;
use weir_proto::lv2::egress_server::EgressServer;
use weir_proto::lv2::ingress_server::IngressServer;
use weir_proto::wv1::ingest_server::IngestServer;
use weir_proto::wv1::streams_server::StreamsServer;

use crate::collector::Collector;
use crate::metrics::RejectReason;

/// The gRPC services over `collector`, each limited to `limits.max_request_bytes` per
/// decoded message.
pub struct Services {
    pub ingress: IngressServer<ingress::IngressService>,
    pub egress: EgressServer<egress::EgressService>,
    pub ingest: IngestServer<ingest::IngestService>,
    pub streams: StreamsServer<streams::StreamsService>,
}

/// Every gRPC service over `collector`; see [`Services`].
pub fn services(collector: &Collector) -> Services {
    let max = collector.limits().max_request_bytes;
    Services {
        ingress: IngressServer::new(ingress::IngressService::new(collector.clone()))
            .max_decoding_message_size(max),
        egress: EgressServer::new(egress::EgressService::new(collector.clone()))
            .max_decoding_message_size(max),
        ingest: IngestServer::new(ingest::IngestService::new(collector.clone()))
            .max_decoding_message_size(max),
        streams: StreamsServer::new(streams::StreamsService::new(collector.clone()))
            .max_decoding_message_size(max),
    }
}

/// Maps an error from reading a client's message stream: a message over the size
/// limit (tonic's `OutOfRange`) becomes a malformed-request `InvalidArgument`; decode
/// errors already are one (`weir_proto::codec`).
pub(crate) fn read_error(status: Status) -> Status {
    if status.code() == tonic::Code::OutOfRange {
        malformed_request(status.message().to_string())
    } else {
        status
    }
}

/// Counts a refusal under `reason` and returns its status.
pub(crate) fn refuse(collector: &Collector, reason: RejectReason, status: Status) -> Status {
    collector.metrics().rejected(reason);
    status
}

/// A store failure as `Unavailable`, counted.
pub(crate) fn unavailable(collector: &Collector, e: impl std::fmt::Display) -> Status {
    refuse(
        collector,
        RejectReason::Unavailable,
        Status::unavailable(e.to_string()),
    )
}
