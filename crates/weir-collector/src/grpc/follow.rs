//! `Streams/Follow` over gRPC: the [`crate::follow`] engine's batches as
//! `ReadResponse`s.
//!
//! With `path`, one stream: history from `from`, then live entries; the call ends (OK)
//! when the stream is terminated and every entry below the terminal count was sent.
//! With `prefix`, every stream under it, new ones included; each response holds entries
//! of one stream. The first response for a stream is sent even when it has no entries,
//! so the client learns its state and where reading started (`started_at`,
//! `below_low_water`). A follow ends with `Unavailable` when the store fails or the
//! collector shuts down, `NotFound` when its stream disappears.

use futures::Stream;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;
use weir_proto::wv1::ReadResponse;

use super::streams::read_response;
use crate::collector::Collector;
use crate::follow::{self, FollowError, Target};
use crate::hub::StreamPermit;
use crate::metrics::RejectReason;

/// Starts following `target` from `from`; the stream of responses for the client.
pub fn start(
    collector: Collector,
    target: Target,
    from: u64,
    permit: StreamPermit,
) -> impl Stream<Item = Result<ReadResponse, Status>> + Send + 'static {
    let rx = follow::spawn(&collector, target, from, permit);
    ReceiverStream::new(rx).map(move |item| match item {
        Ok(batch) => Ok(read_response(batch)),
        Err(e) => Err(status(&collector, e)),
    })
}

/// The status a follow ends with, counted.
fn status(collector: &Collector, e: FollowError) -> Status {
    match e {
        FollowError::NotFound(_) => {
            collector.metrics().rejected(RejectReason::NotFound);
            Status::not_found(e.to_string())
        }
        FollowError::Unavailable(_) | FollowError::ShuttingDown => {
            collector.metrics().rejected(RejectReason::Unavailable);
            Status::unavailable(e.to_string())
        }
    }
}
