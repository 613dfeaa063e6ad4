//! The `/v2/read` query made from an `EgressBatchRequest`, as go-loggregator's
//! `RLPGatewayClient` makes it (PROTOCOLS.md §3.4), with two departures:
//!
//! - values are **URL-escaped** (upstream pastes them in raw, so a source id with `&`,
//!   `#` or a space breaks the query); the gateway decodes them, so ordinary ids are
//!   unchanged on the wire except for escaping;
//! - a gauge selector with several names is sent as one `gauge.name=a,b` (the gateway
//!   splits it on commas into one exact set) instead of panicking as upstream does; a
//!   name holding a comma cannot be expressed and is an error.
//!
//! The rest follows upstream: `shard_id` and `deterministic_name` first when set; for
//! each selector its `source_id` (when set) and its type keyword (`log`, `counter`,
//! `counter.name=N`, `gauge`, `gauge.name=…`, `timer`, `event`); bare `counter` is
//! removed when some `counter.name` is present, bare `gauge` likewise; repeated
//! `source_id`s are sent once. As the RLP does, the legacy selector is used only when
//! `selectors` is empty. A selector without a type is an error (the gateway would
//! answer 400).

use weir_proto::lv2::selector::Message;
use weir_proto::lv2::{EgressBatchRequest, Selector};

/// Why a request cannot be expressed as a `/v2/read` query.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// No selectors (the gateway answers 400 `empty_query`).
    #[error("the request has no selectors")]
    NoSelectors,
    /// A selector without a message type.
    #[error("selector {index} has no message type (log, counter, gauge, timer, event)")]
    NoMessageType { index: usize },
    /// A gauge name with a comma.
    #[error("gauge name {name:?} contains a comma, which /v2/read cannot express")]
    CommaInGaugeName { name: String },
}

/// The query string (without `?`) for `request`. See the module docs.
pub fn read_query(request: &EgressBatchRequest) -> Result<String, QueryError> {
    let selectors: Vec<&Selector> = if request.selectors.is_empty() {
        request.legacy_selector.iter().collect()
    } else {
        request.selectors.iter().collect()
    };
    if selectors.is_empty() {
        return Err(QueryError::NoSelectors);
    }
    // (key, value) in upstream's order; `None` is a bare keyword.
    let mut params: Vec<(&str, Option<String>)> = Vec::new();
    if !request.shard_id.is_empty() {
        params.push(("shard_id", Some(request.shard_id.clone())));
    }
    if !request.deterministic_name.is_empty() {
        params.push((
            "deterministic_name",
            Some(request.deterministic_name.clone()),
        ));
    }
    for (index, selector) in selectors.into_iter().enumerate() {
        if !selector.source_id.is_empty() {
            params.push(("source_id", Some(selector.source_id.clone())));
        }
        match &selector.message {
            None => return Err(QueryError::NoMessageType { index }),
            Some(Message::Log(_)) => params.push(("log", None)),
            Some(Message::Counter(c)) if !c.name.is_empty() => {
                params.push(("counter.name", Some(c.name.clone())));
            }
            Some(Message::Counter(_)) => params.push(("counter", None)),
            Some(Message::Gauge(g)) if !g.names.is_empty() => {
                if let Some(name) = g.names.iter().find(|n| n.contains(',')) {
                    return Err(QueryError::CommaInGaugeName { name: name.clone() });
                }
                params.push(("gauge.name", Some(g.names.join(","))));
            }
            Some(Message::Gauge(_)) => params.push(("gauge", None)),
            Some(Message::Timer(_)) => params.push(("timer", None)),
            Some(Message::Event(_)) => params.push(("event", None)),
        }
    }
    let named_counter = params.iter().any(|(k, _)| *k == "counter.name");
    let named_gauge = params.iter().any(|(k, _)| *k == "gauge.name");
    params.retain(|(k, v)| {
        !(v.is_none() && ((named_counter && *k == "counter") || (named_gauge && *k == "gauge")))
    });
    let mut seen_sources: Vec<String> = Vec::new();
    params.retain(|(k, v)| match (k, v) {
        (&"source_id", Some(id)) => {
            if seen_sources.contains(id) {
                false
            } else {
                seen_sources.push(id.clone());
                true
            }
        }
        _ => true,
    });
    let parts: Vec<String> = params
        .into_iter()
        .map(|(k, v)| match v {
            None => k.to_string(),
            Some(v) => format!(
                "{k}={}",
                form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>()
            ),
        })
        .collect();
    Ok(parts.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_proto::lv2::{
        CounterSelector, EventSelector, GaugeSelector, LogSelector, TimerSelector,
    };

    fn sel(source: &str, m: Message) -> Selector {
        Selector {
            source_id: source.into(),
            message: Some(m),
        }
    }

    #[test]
    fn as_upstream_builds_it() {
        let req = EgressBatchRequest {
            shard_id: "weir-1".into(),
            deterministic_name: "d".into(),
            selectors: vec![
                sel("app", Message::Log(LogSelector {})),
                sel(
                    "app",
                    Message::Counter(CounterSelector {
                        name: String::new(),
                    }),
                ),
                sel(
                    "",
                    Message::Counter(CounterSelector {
                        name: "hits".into(),
                    }),
                ),
                sel("", Message::Gauge(GaugeSelector { names: vec![] })),
                sel("other", Message::Timer(TimerSelector {})),
                sel("", Message::Event(EventSelector {})),
            ],
            ..Default::default()
        };
        assert_eq!(
            read_query(&req).unwrap(),
            "shard_id=weir-1&deterministic_name=d&source_id=app&log&counter.name=hits&gauge&source_id=other&timer&event"
        );
    }

    #[test]
    fn escapes_values_and_joins_gauge_names() {
        let req = EgressBatchRequest {
            selectors: vec![
                sel(
                    "a b&c",
                    Message::Gauge(GaugeSelector {
                        names: vec!["cpu".into(), "mem".into()],
                    }),
                ),
                sel("", Message::Gauge(GaugeSelector { names: vec![] })),
            ],
            ..Default::default()
        };
        assert_eq!(
            read_query(&req).unwrap(),
            "source_id=a+b%26c&gauge.name=cpu%2Cmem"
        );
    }

    #[test]
    fn refuses_what_the_gateway_cannot_express() {
        assert_eq!(
            read_query(&EgressBatchRequest::default()),
            Err(QueryError::NoSelectors)
        );
        let req = EgressBatchRequest {
            selectors: vec![Selector {
                source_id: "x".into(),
                message: None,
            }],
            ..Default::default()
        };
        assert_eq!(
            read_query(&req),
            Err(QueryError::NoMessageType { index: 0 })
        );
        let req = EgressBatchRequest {
            selectors: vec![sel(
                "",
                Message::Gauge(GaugeSelector {
                    names: vec!["a,b".into()],
                }),
            )],
            ..Default::default()
        };
        assert!(matches!(
            read_query(&req),
            Err(QueryError::CommaInGaugeName { .. })
        ));
    }

    #[test]
    fn legacy_selector_when_no_selectors() {
        let req = EgressBatchRequest {
            legacy_selector: Some(sel("old", Message::Log(LogSelector {}))),
            ..Default::default()
        };
        assert_eq!(read_query(&req).unwrap(), "source_id=old&log");
    }
}
