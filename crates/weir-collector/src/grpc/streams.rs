//! `weir.v1.Streams`: list streams, get one, read entries, follow a stream or a prefix
//! (see [`super::follow`]).
//!
//! Paths are checked with `StreamPath::parse` (an invalid one is `InvalidArgument`
//! naming the rule); an unknown stream is `NotFound`; a store failure `Unavailable`.
//! Each refusal is counted once in `weir_rejected_total`.

use tonic::{Request, Response, Status};
use weir_core::StreamPath;
use weir_proto::wv1::{
    self, FollowRequest, GetStreamRequest, ListStreamsRequest, ListStreamsResponse, ReadRequest,
    ReadResponse, StreamInfo, streams_server::Streams,
};
use weir_store::ReadBatch;

use super::{refuse, unavailable};
use crate::collector::Collector;
use crate::follow::Target;
use crate::info::stream_info;
use crate::metrics::{Egress, RejectReason};

/// Streams listed or entries read when the request asks for 0.
pub const DEFAULT_LIMIT: u32 = 1000;
/// Most streams listed or entries read in one response.
pub const MAX_LIMIT: u32 = 10_000;

/// The limit to use for a requested one (0: the default; capped at [`MAX_LIMIT`]).
pub fn effective_limit(requested: u32) -> usize {
    match requested {
        0 => DEFAULT_LIMIT as usize,
        n => n.min(MAX_LIMIT) as usize,
    }
}

/// `weir.v1.Streams` over a [`Collector`]'s store.
#[derive(Debug, Clone)]
pub struct StreamsService {
    collector: Collector,
}

impl StreamsService {
    /// The service over `collector`.
    pub fn new(collector: Collector) -> Self {
        StreamsService { collector }
    }

    /// Checks a requested path, counting a refusal.
    fn check_path(&self, path: &str) -> Result<(), Status> {
        if path.is_empty() {
            return Err(refuse(
                &self.collector,
                RejectReason::InvalidRequest,
                Status::invalid_argument("path is required"),
            ));
        }
        StreamPath::parse(path).map(|_| ()).map_err(|e| {
            refuse(
                &self.collector,
                RejectReason::InvalidPath,
                Status::invalid_argument(format!("path: {e}")),
            )
        })
    }

    fn not_found(&self, path: &str) -> Status {
        refuse(
            &self.collector,
            RejectReason::NotFound,
            Status::not_found(format!("no stream at path {path:?}")),
        )
    }
}

/// The gRPC form of a read.
pub fn read_response(batch: ReadBatch) -> ReadResponse {
    let path = &batch.state.path;
    let entries = batch
        .entries
        .into_iter()
        .map(|e| wv1::Entry {
            path: path.clone(),
            index: e.index,
            ingest_ns: e.ingest_ns,
            envelope: Some(e.envelope),
        })
        .collect();
    ReadResponse {
        stream: Some(stream_info(&batch.state)),
        entries,
        started_at: batch.started_at,
        below_low_water: batch.below_low_water,
    }
}

#[tonic::async_trait]
impl Streams for StreamsService {
    async fn list(
        &self,
        request: Request<ListStreamsRequest>,
    ) -> Result<Response<ListStreamsResponse>, Status> {
        let req = request.into_inner();
        let after = (!req.after.is_empty()).then_some(req.after.as_str());
        let states = self
            .collector
            .store()
            .list(&req.prefix, after, effective_limit(req.limit))
            .await
            .map_err(|e| unavailable(&self.collector, e))?;
        Ok(Response::new(ListStreamsResponse {
            streams: states.iter().map(stream_info).collect(),
        }))
    }

    async fn get(
        &self,
        request: Request<GetStreamRequest>,
    ) -> Result<Response<StreamInfo>, Status> {
        let path = request.into_inner().path;
        self.check_path(&path)?;
        match self.collector.store().stream(&path).await {
            Ok(Some(state)) => Ok(Response::new(stream_info(&state))),
            Ok(None) => Err(self.not_found(&path)),
            Err(e) => Err(unavailable(&self.collector, e)),
        }
    }

    async fn read(&self, request: Request<ReadRequest>) -> Result<Response<ReadResponse>, Status> {
        let req = request.into_inner();
        self.check_path(&req.path)?;
        let store = self.collector.store();
        let from = match req.from_time_ns {
            None => req.from,
            Some(t) => match store.index_at_time(&req.path, t).await {
                Ok(Some(i)) => i,
                Ok(None) => return Err(self.not_found(&req.path)),
                Err(e) => return Err(unavailable(&self.collector, e)),
            },
        };
        match store
            .read(&req.path, from, effective_limit(req.limit))
            .await
        {
            Ok(Some(batch)) => Ok(Response::new(read_response(batch))),
            Ok(None) => Err(self.not_found(&req.path)),
            Err(e) => Err(unavailable(&self.collector, e)),
        }
    }

    type FollowStream = super::egress::ResponseStream<ReadResponse>;

    async fn follow(
        &self,
        request: Request<FollowRequest>,
    ) -> Result<Response<Self::FollowStream>, Status> {
        let req = request.into_inner();
        let target = match (req.path.is_empty(), req.prefix.is_empty()) {
            (false, true) => {
                self.check_path(&req.path)?;
                match self.collector.store().stream(&req.path).await {
                    Ok(Some(_)) => {}
                    Ok(None) => return Err(self.not_found(&req.path)),
                    Err(e) => return Err(unavailable(&self.collector, e)),
                }
                Target::Stream(req.path)
            }
            (true, false) => Target::Prefix(req.prefix),
            (false, false) => {
                return Err(refuse(
                    &self.collector,
                    RejectReason::InvalidRequest,
                    Status::invalid_argument("set either path or prefix, not both"),
                ));
            }
            (true, true) => {
                return Err(refuse(
                    &self.collector,
                    RejectReason::InvalidRequest,
                    Status::invalid_argument("path or prefix is required"),
                ));
            }
        };
        if self.collector.is_closed() {
            return Err(unavailable(
                &self.collector,
                "the collector is shutting down",
            ));
        }
        let permit = self
            .collector
            .hub()
            .open_stream(Egress::Follow)
            .map_err(|e| {
                refuse(
                    &self.collector,
                    RejectReason::TooManyStreams,
                    Status::resource_exhausted(e.to_string()),
                )
            })?;
        Ok(Response::new(Box::pin(super::follow::start(
            self.collector.clone(),
            target,
            req.from,
            permit,
        ))))
    }
}
