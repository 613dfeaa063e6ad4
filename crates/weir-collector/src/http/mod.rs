//! The HTTP API (axum):
//!
//! | route | answer |
//! | --- | --- |
//! | `GET /healthz` | `200 ok` |
//! | `GET /v1/streams?prefix=&after=&limit=` | JSON array of streams (see [`crate::info::stream_json`]) |
//! | `GET /v1/stream?path=` | one stream, or 404 |
//! | `GET /v1/entries?path=&from=&limit=` | `{"stream": …, "started_at": N, "below_low_water": bool, "entries": [people JSON …]}` |
//! | `GET /v1/entries?path=&from=&follow=true` | SSE: one stream's entries, history then live, until it is terminated ([`follow`]) |
//! | `GET /v1/entries?prefix=&from=&follow=true` | SSE: every stream under a prefix, new ones included ([`follow`]) |
//! | `GET /v1/events?type=&since=&from=&limit=&follow=` | the collector's own events, JSON or SSE ([`events`]) |
//! | `GET /v2/read?…` | SSE: live envelopes, RLP-gateway-compatible ([`read`]) |
//! | `GET /metrics` | Prometheus text, `text/plain; version=0.0.4` |
//!
//! `limit` defaults to 1000 and is capped at 10000 (0 means the default); `from`
//! defaults to 0. No answer ever carries a stream's secret (the store does not keep it).
//!
//! Errors are JSON `{"error": "<name>", "message": "<reason naming the parameter>"}`:
//! 400 `invalid_request` for a missing or malformed parameter, 400 `invalid_path` for a
//! path that breaks the path rules, 404 `not_found` for an unknown stream, 503
//! `unavailable` when the store fails or `egress.max_streams` streams are open
//! (`too_many_streams`). Each is counted once in `weir_rejected_total`. `/v2/read` has
//! its own, upstream's, errors ([`read`]).

pub mod events;
pub mod follow;
pub mod read;
pub mod read_query;
pub mod sse;

use std::collections::HashMap;

use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use serde_json::{Value, json};
use weir_core::StreamPath;

use crate::collector::Collector;
use crate::follow::Target;
use crate::grpc::streams::{MAX_LIMIT, effective_limit};
use crate::info::stream_json;
use crate::metrics::{Egress, RejectReason};

/// Content type of `/metrics`.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The router of the HTTP API over `collector`.
pub fn router(collector: Collector) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/v1/streams", get(list_streams))
        .route("/v1/stream", get(get_stream))
        .route("/v1/entries", get(get_entries))
        .route("/v1/events", get(events::handler))
        .route("/v2/read", any(read::handler))
        .route("/metrics", get(metrics))
        .with_state(collector)
}

/// An error answer; counted when it is made (see [`ApiError::new`]).
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    error: &'static str,
    message: String,
}

impl ApiError {
    /// An error answer counted under `reason`.
    fn new(collector: &Collector, reason: RejectReason, message: String) -> Self {
        collector.metrics().rejected(reason);
        let status = match reason {
            RejectReason::NotFound => StatusCode::NOT_FOUND,
            RejectReason::Unavailable | RejectReason::TooManyStreams => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError {
            status,
            error: reason.as_str(),
            message,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"error": self.error, "message": self.message})),
        )
            .into_response()
    }
}

/// The query parameters of one request, with typed getters whose errors name the
/// parameter.
struct Params<'a> {
    collector: &'a Collector,
    map: HashMap<String, String>,
}

impl<'a> Params<'a> {
    /// Parses the raw query string. A `+` is kept as a `+`, not read as a space as HTML
    /// forms would: stream paths contain `/+/` and never a space, so
    /// `?path=app/+/log` means what the user typed. `%2B` and `%20` decode as usual.
    fn new(collector: &'a Collector, query: Option<String>) -> Result<Self, ApiError> {
        let raw = query.unwrap_or_default().replace('+', "%2B");
        let map = form_urlencoded::parse(raw.as_bytes())
            .into_owned()
            .collect();
        Ok(Params { collector, map })
    }

    fn str(&self, name: &str) -> Option<&str> {
        self.map.get(name).map(String::as_str)
    }

    fn u64(&self, name: &str, default: u64) -> Result<u64, ApiError> {
        match self.str(name) {
            None | Some("") => Ok(default),
            Some(s) => s.parse().map_err(|_| {
                invalid(
                    self.collector,
                    format!("query parameter {name:?} must be a non-negative integer, got {s:?}"),
                )
            }),
        }
    }

    fn limit(&self) -> Result<usize, ApiError> {
        let n = self.u64("limit", 0)?;
        Ok(effective_limit(n.min(u64::from(MAX_LIMIT)) as u32))
    }

    fn bool(&self, name: &str) -> Result<bool, ApiError> {
        match self.str(name) {
            None | Some("") | Some("false") | Some("0") => Ok(false),
            Some("true") | Some("1") => Ok(true),
            Some(s) => Err(invalid(
                self.collector,
                format!("query parameter {name:?} must be true or false, got {s:?}"),
            )),
        }
    }

    /// The required, valid `path` parameter.
    fn path(&self) -> Result<&str, ApiError> {
        let Some(path) = self.str("path").filter(|p| !p.is_empty()) else {
            return Err(invalid(
                self.collector,
                "query parameter \"path\" is required".into(),
            ));
        };
        StreamPath::parse(path).map_err(|e| {
            ApiError::new(
                self.collector,
                RejectReason::InvalidPath,
                format!("query parameter \"path\": {e}"),
            )
        })?;
        Ok(path)
    }
}

fn invalid(collector: &Collector, message: String) -> ApiError {
    ApiError::new(collector, RejectReason::InvalidRequest, message)
}

fn unavailable(collector: &Collector, e: impl std::fmt::Display) -> ApiError {
    ApiError::new(collector, RejectReason::Unavailable, e.to_string())
}

fn not_found(collector: &Collector, path: &str) -> ApiError {
    ApiError::new(
        collector,
        RejectReason::NotFound,
        format!("no stream at path {path:?}"),
    )
}

async fn list_streams(
    State(collector): State<Collector>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let params = Params::new(&collector, query)?;
    let prefix = params.str("prefix").unwrap_or("");
    let after = params.str("after").filter(|a| !a.is_empty());
    let limit = params.limit()?;
    let states = collector
        .store()
        .list(prefix, after, limit)
        .await
        .map_err(|e| unavailable(&collector, e))?;
    Ok(Json(Value::Array(states.iter().map(stream_json).collect())))
}

async fn get_stream(
    State(collector): State<Collector>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let params = Params::new(&collector, query)?;
    let path = params.path()?;
    match collector.store().stream(path).await {
        Ok(Some(state)) => Ok(Json(stream_json(&state))),
        Ok(None) => Err(not_found(&collector, path)),
        Err(e) => Err(unavailable(&collector, e)),
    }
}

async fn get_entries(
    State(collector): State<Collector>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let params = Params::new(&collector, query)?;
    if params.bool("follow")? {
        return follow_entries(&collector, &params).await;
    }
    let path = params.path()?;
    let from = params.u64("from", 0)?;
    let limit = params.limit()?;
    let batch = match collector.store().read(path, from, limit).await {
        Ok(Some(batch)) => batch,
        Ok(None) => return Err(not_found(&collector, path)),
        Err(e) => return Err(unavailable(&collector, e)),
    };
    let entries: Vec<Value> = batch
        .entries
        .iter()
        .map(|e| weir_core::json::people_entry(path, e.index, e.ingest_ns, &e.envelope))
        .collect();
    Ok(Json(json!({
        "stream": stream_json(&batch.state),
        "started_at": batch.started_at,
        "below_low_water": batch.below_low_water,
        "entries": entries,
    }))
    .into_response())
}

/// `GET /v1/entries?follow=true` (see [`follow`]): checks the parameters and the
/// stream, takes an egress stream slot, and answers with the event stream.
async fn follow_entries(collector: &Collector, params: &Params<'_>) -> Result<Response, ApiError> {
    let from = params.u64("from", 0)?;
    let path = params.str("path").filter(|p| !p.is_empty());
    let prefix = params.str("prefix").filter(|p| !p.is_empty());
    let target = match (path, prefix) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                collector,
                "give query parameter \"path\" or \"prefix\", not both".into(),
            ));
        }
        (None, Some(prefix)) => Target::Prefix(prefix.to_string()),
        (_, None) => {
            let path = params.path()?;
            match collector.store().stream(path).await {
                Ok(Some(_)) => Target::Stream(path.to_string()),
                Ok(None) => return Err(not_found(collector, path)),
                Err(e) => return Err(unavailable(collector, e)),
            }
        }
    };
    if collector.is_closed() {
        return Err(unavailable(collector, "the collector is shutting down"));
    }
    let permit = collector
        .hub()
        .open_stream(Egress::EntriesFollow)
        .map_err(|e| ApiError::new(collector, RejectReason::TooManyStreams, e.to_string()))?;
    Ok(follow::response(collector, target, from, permit))
}

async fn metrics(State(collector): State<Collector>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)],
        collector.metrics().encode(),
    )
}
