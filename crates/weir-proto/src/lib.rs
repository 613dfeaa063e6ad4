//! Protocol definitions for weir.
//!
//! - [`loggregator::v2`]: Cloud Foundry Loggregator v2, wire-compatible with upstream
//!   (package `loggregator.v2`, same messages, field numbers and services).
//! - [`weir::v1`]: weir's own ingest (bundles of numbered entries) and streams services.
//!
//! - [`codec`]: the gRPC codec of every service (decode errors are `InvalidArgument`).
//!
//! The code is generated at build time by protox + tonic-prost-build; no system
//! `protoc` is needed.

pub mod codec;

/// Loggregator protocols.
pub mod loggregator {
    /// Loggregator v2: envelopes, ingress and egress services.
    pub mod v2 {
        #![allow(missing_docs, clippy::all)]
        tonic::include_proto!("loggregator.v2");
    }
}

/// weir's own protocols.
pub mod weir {
    /// weir.v1: bundles, per-stream results, streams service.
    pub mod v1 {
        #![allow(missing_docs, clippy::all)]
        tonic::include_proto!("weir.v1");
    }
}

pub use loggregator::v2 as lv2;
pub use weir::v1 as wv1;
