//! Readers of the Loggregator egress: [`EnvelopeStreamConnector`] over gRPC
//! (`BatchedReceiver`) and [`RlpGatewayClient`] over HTTP Server-Sent Events
//! (`/v2/read`). Both reconnect on their own and hand out batches with
//! `next().await`, `None` once cancelled (or, for SSE, once it gives up).

pub mod connector;
pub mod rlp;

pub use connector::{EnvelopeStream, EnvelopeStreamConnector};
pub use rlp::{RlpError, RlpGatewayClient, RlpGatewayClientBuilder, RlpStream};
