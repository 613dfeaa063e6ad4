//! One short `BatchSender` call, and what the server said about its batches.
//!
//! A call is a spawned task running tonic's client-streaming request over a bounded
//! channel of encoded batches ([`Call::send`]); [`Call::finish`] half-closes the
//! request and waits for the answer. The result is a [`CallOutcome`]:
//!
//! - OK: the server stored every batch of the call (weir stores before it answers at
//!   the end of the client's stream; a Loggregator Agent has forwarded them);
//! - an error carrying the trailer [`BATCHES_STORED_KEY`]`: N` (a weir server): the
//!   first N batches were stored, the rest were not;
//! - any other error: the fate of the batches the transport took is unknown. The
//!   request stream counts the batches it has handed to the transport ("polled"); a
//!   batch never polled was certainly not sent.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{BufMut, Bytes};
use prost::Message;
use tokio::sync::mpsc;
use tokio::task::{JoinError, JoinHandle};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use weir_proto::lv2::BatchSenderResponse;

/// The trailer (response metadata) key of a weir server's failed `BatchSender` or
/// `Sender` call: the number of leading messages it stored before the failure.
pub const BATCHES_STORED_KEY: &str = "weir-batches-stored";

const BATCH_SENDER_PATH: &str = "/loggregator.v2.Ingress/BatchSender";

/// What became of one call's batches. See the module docs.
#[derive(Debug)]
pub(crate) enum CallOutcome {
    /// Every batch was stored.
    Confirmed,
    /// The first `stored` batches were stored, the others not.
    Partial { stored: usize, status: Status },
    /// The first `polled` batches may or may not have been stored; the others were
    /// never sent.
    Unknown { polled: usize, status: Status },
}

/// One `BatchSender` call under way. See the module docs.
pub(crate) struct Call {
    tx: Option<mpsc::Sender<Bytes>>,
    polled: Arc<AtomicUsize>,
    task: JoinHandle<Result<(), Status>>,
    result: Option<Result<Result<(), Status>, JoinError>>,
}

impl Call {
    /// Starts a call that can take up to `capacity` batches.
    pub(crate) fn start(channel: &Channel, capacity: usize) -> Call {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let polled = Arc::new(AtomicUsize::new(0));
        let request = Counted {
            inner: ReceiverStream::new(rx),
            polled: polled.clone(),
        };
        let mut grpc = tonic::client::Grpc::new(channel.clone());
        let task = tokio::spawn(async move {
            grpc.ready()
                .await
                .map_err(|e| Status::unavailable(format!("not connected: {e}")))?;
            grpc.client_streaming(
                tonic::Request::new(request),
                PathAndQuery::from_static(BATCH_SENDER_PATH),
                RawBatchCodec,
            )
            .await
            .map(|_| ())
        });
        Call {
            tx: Some(tx),
            polled,
            task,
            result: None,
        }
    }

    /// Hands a batch to the call; `false` when the call has already ended.
    pub(crate) fn send(&self, batch: Bytes) -> bool {
        self.tx
            .as_ref()
            .is_some_and(|tx| tx.try_send(batch).is_ok())
    }

    /// Whether the call has ended (the server answered or the transport failed).
    pub(crate) fn is_finished(&self) -> bool {
        self.result.is_some() || self.task.is_finished()
    }

    /// Completes when the call ends on its own. Cancel-safe.
    pub(crate) async fn ended(&mut self) {
        if self.result.is_none() {
            let r = (&mut self.task).await;
            self.result = Some(r);
        }
    }

    /// Half-closes the request and waits (at most `timeout`) for the answer.
    pub(crate) async fn finish(mut self, timeout: Duration) -> CallOutcome {
        drop(self.tx.take());
        if self.result.is_none() {
            match tokio::time::timeout(timeout, &mut self.task).await {
                Ok(r) => self.result = Some(r),
                Err(_) => {
                    self.task.abort();
                    return CallOutcome::Unknown {
                        polled: self.polled.load(Ordering::SeqCst),
                        status: Status::deadline_exceeded(format!(
                            "no answer to BatchSender within {timeout:?}"
                        )),
                    };
                }
            }
        }
        let polled = self.polled.load(Ordering::SeqCst);
        match self.result.take() {
            Some(Ok(Ok(()))) => CallOutcome::Confirmed,
            Some(Ok(Err(status))) => match stored_count(&status) {
                Some(stored) => CallOutcome::Partial { stored, status },
                None => CallOutcome::Unknown { polled, status },
            },
            Some(Err(e)) => CallOutcome::Unknown {
                polled,
                status: Status::internal(format!("the call's task failed: {e}")),
            },
            None => CallOutcome::Unknown {
                polled,
                status: Status::internal("the call ended without a result"),
            },
        }
    }
}

impl Drop for Call {
    /// A call dropped before it finished (the client was cancelled) is cut.
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The `weir-batches-stored` count of a status, if present and valid.
fn stored_count(status: &Status) -> Option<usize> {
    status
        .metadata()
        .get(BATCHES_STORED_KEY)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The request stream: counts the batches the transport has taken.
struct Counted {
    inner: ReceiverStream<Bytes>,
    polled: Arc<AtomicUsize>,
}

impl Stream for Counted {
    type Item = Bytes;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        let p = Pin::new(&mut self.inner).poll_next(cx);
        if let Poll::Ready(Some(_)) = &p {
            self.polled.fetch_add(1, Ordering::SeqCst);
        }
        p
    }
}

/// Sends pre-encoded `EnvelopeBatch` bytes as they are; decodes the empty answer.
#[derive(Debug, Clone, Copy, Default)]
struct RawBatchCodec;

impl Codec for RawBatchCodec {
    type Encode = Bytes;
    type Decode = BatchSenderResponse;
    type Encoder = RawEncoder;
    type Decoder = ResponseDecoder;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> ResponseDecoder {
        ResponseDecoder
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct RawEncoder;

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct ResponseDecoder;

impl Decoder for ResponseDecoder {
    type Item = BatchSenderResponse;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<BatchSenderResponse>, Status> {
        BatchSenderResponse::decode(buf)
            .map(Some)
            .map_err(|e| Status::internal(format!("cannot decode the BatchSender answer: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::metadata::MetadataValue;

    #[test]
    fn reads_the_stored_count() {
        let mut s = Status::unavailable("x");
        assert_eq!(stored_count(&s), None);
        s.metadata_mut()
            .insert(BATCHES_STORED_KEY, MetadataValue::from(7u64));
        assert_eq!(stored_count(&s), Some(7));
        s.metadata_mut()
            .insert(BATCHES_STORED_KEY, MetadataValue::from_static("x"));
        assert_eq!(stored_count(&s), None);
    }
}
