//! The producer's side: the envelopes it sends, and one Loggregator `BatchSender`
//! connection to the collector.
//!
//! Real envelopes are logs of source `bench`, instance `0`, stamped with their send
//! time. Filler envelopes (instance [`FILLER`]) complete the subscribers' last partial
//! batches at the end of a run, so a run need not wait for the egress flush interval,
//! and tell the producer that a subscriber is connected before the run starts; they
//! are not counted.

use std::net::SocketAddr;

use anyhow::Context;
use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use weir_proto::lv2::{
    Envelope, EnvelopeBatch, Log, envelope::Message, ingress_client::IngressClient,
};

use super::latency::now_ns;

/// Source id of every envelope of the benchmark.
pub const SOURCE: &str = "bench";
/// Instance id of the real envelopes.
pub const REAL: &str = "0";
/// Instance id of filler envelopes.
pub const FILLER: &str = "filler";
/// Envelopes per batch sent.
pub const BATCH: u64 = 100;

/// A log envelope of `instance` sent at `ts` (Unix nanoseconds).
pub fn envelope(payload: &Bytes, instance: &str, ts: i64) -> Envelope {
    Envelope {
        timestamp: ts,
        source_id: SOURCE.into(),
        instance_id: instance.into(),
        message: Some(Message::Log(Log {
            payload: payload.clone(),
            r#type: 0,
        })),
        ..Default::default()
    }
}

/// Whether `env` is filler.
pub fn is_filler(env: &Envelope) -> bool {
    env.instance_id == FILLER
}

/// A batch of [`BATCH`] envelopes of `instance`, stamped now.
pub fn batch(payload: &Bytes, instance: &str) -> Vec<Envelope> {
    let ts = now_ns();
    (0..BATCH)
        .map(|_| envelope(payload, instance, ts))
        .collect()
}

/// One open `BatchSender` call.
pub struct Sender {
    tx: mpsc::Sender<EnvelopeBatch>,
    call: JoinHandle<anyhow::Result<()>>,
}

impl Sender {
    /// Connects to the collector's gRPC address and opens the call.
    pub async fn open(grpc: SocketAddr) -> anyhow::Result<Sender> {
        let mut client = IngressClient::connect(format!("http://{grpc}"))
            .await
            .context("cannot connect to the collector's gRPC port")?;
        // A short queue: a batch is stamped just before it goes to the connection.
        let (tx, rx) = mpsc::channel::<EnvelopeBatch>(2);
        let call = tokio::spawn(async move {
            client
                .batch_sender(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
                .context("BatchSender failed")?;
            Ok(())
        });
        Ok(Sender { tx, call })
    }

    /// Sends one batch (waits while the connection is busy).
    pub async fn send(&self, batch: Vec<Envelope>) -> anyhow::Result<()> {
        self.tx
            .send(EnvelopeBatch { batch })
            .await
            .map_err(|_| anyhow::anyhow!("the BatchSender call ended early"))
    }

    /// Half-closes the call and waits for the collector's answer.
    pub async fn close(self) -> anyhow::Result<()> {
        drop(self.tx);
        self.call.await?
    }
}
