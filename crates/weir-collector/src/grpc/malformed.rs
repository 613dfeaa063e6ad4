//! A tower layer over the gRPC server that makes every malformed request an
//! `InvalidArgument` and counts it once (`weir_rejected_total{reason="invalid_request"}`).
//!
//! tonic answers a message over the decoding limit with `OutOfRange` before any handler
//! runs; weir's codec marks undecodable requests with
//! [`weir_proto::codec::MALFORMED_REQUEST_KEY`]. Both are errors answered in the
//! response headers (trailers-only responses), where this layer sees them.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::codegen::http;
use tower::{Layer, Service};
use weir_proto::codec::MALFORMED_REQUEST_KEY;

use crate::metrics::{Metrics, RejectReason};

/// See the module docs.
#[derive(Clone, Debug)]
pub struct MalformedRequestLayer {
    metrics: Metrics,
}

impl MalformedRequestLayer {
    /// Counts into `metrics`.
    pub fn new(metrics: Metrics) -> Self {
        MalformedRequestLayer { metrics }
    }
}

impl<S> Layer<S> for MalformedRequestLayer {
    type Service = MalformedRequest<S>;

    fn layer(&self, inner: S) -> Self::Service {
        MalformedRequest {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// The service of [`MalformedRequestLayer`].
#[derive(Clone, Debug)]
pub struct MalformedRequest<S> {
    inner: S,
    metrics: Metrics,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for MalformedRequest<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<S::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        let fut = self.inner.call(req);
        let metrics = self.metrics.clone();
        Box::pin(async move {
            let mut resp = fut.await?;
            mark(resp.headers_mut(), &metrics);
            Ok(resp)
        })
    }
}

/// `grpc-status` of OutOfRange and InvalidArgument.
const OUT_OF_RANGE: &str = "11";
const INVALID_ARGUMENT: &str = "3";

fn mark(headers: &mut http::HeaderMap, metrics: &Metrics) {
    let Some(status) = headers.get("grpc-status") else {
        return;
    };
    let too_large = status.as_bytes() == OUT_OF_RANGE.as_bytes();
    if too_large || headers.contains_key(MALFORMED_REQUEST_KEY) {
        if too_large {
            headers.insert(
                "grpc-status",
                http::HeaderValue::from_static(INVALID_ARGUMENT),
            );
        }
        metrics.rejected(RejectReason::InvalidRequest);
    }
}
