//! `weir.v1.Ingest`: bundles of numbered entries from weir producers.

use tonic::{Request, Response, Status};
use weir_proto::wv1::{Bundle, BundleResponse, ingest_server::Ingest};

use crate::collector::Collector;

/// `weir.v1.Ingest` over a [`Collector`]: `Send` is [`Collector::process`].
#[derive(Debug, Clone)]
pub struct IngestService {
    collector: Collector,
}

impl IngestService {
    /// The service over `collector`.
    pub fn new(collector: Collector) -> Self {
        IngestService { collector }
    }
}

#[tonic::async_trait]
impl Ingest for IngestService {
    async fn send(&self, request: Request<Bundle>) -> Result<Response<BundleResponse>, Status> {
        Ok(Response::new(
            self.collector.process(request.into_inner()).await,
        ))
    }
}
