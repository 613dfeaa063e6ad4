//! One subscriber over the network, with weir's own reader clients: gRPC through
//! `EnvelopeStreamConnector` (`BatchedReceiver`, no client-side buffer, so nothing is
//! dropped on this side) or SSE through `RlpGatewayClient` (`GET /v2/read`). Each
//! subscriber has its own connection. It reads until cancelled, so that it never
//! leaves envelopes (filler included) to pile up in its diode on the collector.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use weir_client::{EnvelopeStream, EnvelopeStreamConnector, RlpGatewayClient, RlpStream};
use weir_proto::lv2::{EgressBatchRequest, Envelope, LogSelector, Selector, selector};

use super::latency::{Latencies, now_ns};
use super::producer::{SOURCE, is_filler};
use super::progress::Progress;
use super::{Mode, SAMPLE_EVERY};

/// A subscriber's reading end.
enum Reader {
    Grpc(EnvelopeStream),
    Sse(Box<RlpStream>),
}

impl Reader {
    async fn next(&mut self) -> Option<Vec<Envelope>> {
        match self {
            Reader::Grpc(s) => s.next().await,
            Reader::Sse(s) => s.next().await,
        }
    }
}

/// What a subscriber saw, once cancelled.
pub struct Seen {
    pub latencies: Latencies,
    /// Real envelopes received (more than expected would be duplicates).
    pub received: u64,
    /// Batches the client itself lost: overwritten in the connector's buffer (there
    /// is none here) or SSE events that did not decode.
    pub client_lost_batches: u64,
}

/// Every log of the benchmark's source.
fn request() -> EgressBatchRequest {
    EgressBatchRequest {
        selectors: vec![Selector {
            source_id: SOURCE.into(),
            message: Some(selector::Message::Log(LogSelector {})),
        }],
        use_preferred_tags: true,
        ..Default::default()
    }
}

/// The addresses a subscriber may connect to.
#[derive(Debug, Clone, Copy)]
pub struct Addrs {
    pub grpc: SocketAddr,
    pub http: SocketAddr,
}

/// Starts subscriber `i` of `mode`; it reports to `progress` and expects `per_sub`
/// real envelopes.
pub fn spawn(
    mode: Mode,
    addrs: Addrs,
    i: usize,
    per_sub: u64,
    progress: Arc<Progress>,
    cancel: CancellationToken,
) -> anyhow::Result<JoinHandle<Seen>> {
    let mut reader = match mode {
        Mode::Grpc => {
            let connector = EnvelopeStreamConnector::new(&addrs.grpc.to_string(), None)?;
            Reader::Grpc(connector.stream(cancel, request()))
        }
        Mode::Sse => {
            let client = RlpGatewayClient::builder(format!("http://{}", addrs.http)).build()?;
            Reader::Sse(Box::new(client.stream(cancel, &request())?))
        }
        Mode::InProcess => anyhow::bail!("in-process subscribers are not network readers"),
    };
    Ok(tokio::spawn(async move {
        let mut lat = Latencies::with_capacity((per_sub / SAMPLE_EVERY) as usize + 1);
        let mut got = 0u64;
        while let Some(batch) = reader.next().await {
            let now = now_ns();
            progress.mark_ready(i);
            let mut real = 0;
            for e in batch.iter().filter(|e| !is_filler(e)) {
                let n = got + real;
                if n < per_sub && n.is_multiple_of(SAMPLE_EVERY) {
                    lat.record(e.timestamp, now);
                }
                real += 1;
            }
            let before = got;
            got += real;
            progress.add(i, real);
            if before < per_sub && got >= per_sub {
                progress.finish(i);
            }
        }
        let client_lost_batches = match &reader {
            Reader::Grpc(s) => s.dropped(),
            Reader::Sse(s) => s.decode_errors(),
        };
        Seen {
            latencies: lat,
            received: got,
            client_lost_batches,
        }
    }))
}
