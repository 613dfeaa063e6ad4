//! `GET /v1/events`: the collector's own events ([`crate::events`]).
//!
//! | parameter | meaning |
//! | --- | --- |
//! | `type` | only events of this type (e.g. `stream_conflict`) |
//! | `since` | only events at or after this time: a duration ago (`10m`, `24h`) or Unix nanoseconds |
//! | `from` | start at this index of the events stream (a previous answer's `next`) |
//! | `limit` | most events (default 1000, at most 10000) |
//! | `follow` | `true`: Server-Sent Events, the matching events then every new one |
//!
//! Without `follow` the answer is `{"events": [...], "next": N}`, oldest first, each
//! event `{"index", "type", "message", "timestamp", "timestamp_ns", "member",
//! "fields"}`; `next` is where to continue (`from=N`). With `follow=true` each event is
//! `data: <that JSON>\n\n`; a store failure ends the response with
//! `event: error\ndata: {"error": "unavailable", "message": …}`. A follow holds one of
//! the `egress.max_streams` slots and ends when the collector shuts down.

use std::convert::Infallible;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::json;

use super::{ApiError, Params, invalid, sse, unavailable};
use crate::collector::Collector;
use crate::events::codec::to_json;
use crate::events::query::{self, EventQuery};
use crate::metrics::{Egress, RejectReason};

/// The handler of `GET /v1/events`.
pub async fn handler(
    State(collector): State<Collector>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let params = Params::new(&collector, raw)?;
    let query = EventQuery {
        kind: params
            .str("type")
            .filter(|t| !t.is_empty())
            .map(str::to_string),
        since_ns: since(&collector, params.str("since"))?,
        from_index: match params.str("from") {
            None | Some("") => None,
            Some(_) => Some(params.u64("from", 0)?),
        },
        limit: params.limit()?,
    };
    if params.bool("follow")? {
        if collector.is_closed() {
            return Err(unavailable(&collector, "the collector is shutting down"));
        }
        let permit = collector
            .hub()
            .open_stream(Egress::EventsFollow)
            .map_err(|e| ApiError::new(&collector, RejectReason::TooManyStreams, e.to_string()))?;
        let events = query::follow(collector.store().clone(), query, collector.closing_token())
            .map(move |item| {
                let _held = &permit;
                Ok::<Bytes, Infallible>(match item {
                    Ok((index, event)) => {
                        Bytes::from(format!("data: {}\n\n", to_json(index, &event)))
                    }
                    Err(e) => {
                        let body = json!({"error": "unavailable", "message": e.to_string()});
                        Bytes::from(format!("event: error\ndata: {body}\n\n"))
                    }
                })
            });
        return Ok(sse::response(events));
    }
    let page = query::list(collector.store().as_ref(), &query)
        .await
        .map_err(|e| unavailable(&collector, e))?;
    let events: Vec<_> = page.events.iter().map(|(i, e)| to_json(*i, e)).collect();
    Ok(Json(json!({"events": events, "next": page.next})).into_response())
}

/// The `since` parameter as Unix ns: a duration before now, or Unix ns.
fn since(collector: &Collector, value: Option<&str>) -> Result<Option<i64>, ApiError> {
    let Some(s) = value.filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    if let Ok(ns) = s.parse::<i64>() {
        return Ok(Some(ns));
    }
    let ago = weir_core::duration::parse(s).map_err(|e| {
        invalid(
            collector,
            format!("query parameter \"since\": {e}; or give Unix nanoseconds"),
        )
    })?;
    let ago = i64::try_from(ago.as_nanos()).unwrap_or(i64::MAX);
    Ok(Some(weir_core::now_ns().saturating_sub(ago)))
}
