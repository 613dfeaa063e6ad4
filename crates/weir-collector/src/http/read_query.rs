//! The query of `GET /v2/read`, read as the RLP gateway reads it (PROTOCOLS.md §3.1;
//! upstream `selector_builder.go`).
//!
//! | parameter | effect |
//! | --- | --- |
//! | `log`, `timer`, `event` | one selector of that type |
//! | `counter` | one counter selector for every name, unless `counter.name` is given |
//! | `counter.name=N` (repeatable) | one counter selector per name |
//! | `gauge` | one gauge selector for every gauge, unless `gauge.name` is given |
//! | `gauge.name=a,b` (repeatable) | one gauge selector per parameter, for the exact set of names split on `,` |
//! | `source_id=S` (repeatable) | the selectors above are made once per source id (the cross product); none means every source |
//! | `shard_id`, `deterministic_name` | the request's shard id and deterministic name (first value) |
//!
//! Parameter names are case-sensitive; unknown parameters are ignored. The query string
//! is split as Go's `url.ParseQuery` splits it: on `&`, skipping empty pairs and pairs
//! holding a `;`, with `+` read as a space and `%XX` decoded; a pair that does not
//! decode is skipped.

use std::collections::HashMap;

use weir_proto::lv2::selector::Message as Wants;
use weir_proto::lv2::{
    CounterSelector, EventSelector, GaugeSelector, LogSelector, Selector, TimerSelector,
};

/// Why a `/v2/read` query was refused: the gateway's error names and messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryError {
    /// No query parameter at all: 400 `empty_query`.
    Empty,
    /// None of the envelope types: 400 `missing_envelope_type`.
    MissingType,
}

impl QueryError {
    /// The `error` name of the JSON body.
    pub fn name(self) -> &'static str {
        match self {
            QueryError::Empty => "empty_query",
            QueryError::MissingType => "missing_envelope_type",
        }
    }

    /// The `message` of the JSON body.
    pub fn message(self) -> &'static str {
        match self {
            QueryError::Empty => "query cannot be empty",
            QueryError::MissingType => "query must provide at least one envelope type",
        }
    }
}

/// A parsed `/v2/read` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadQuery {
    pub selectors: Vec<Selector>,
    pub shard_id: String,
    pub deterministic_name: String,
}

/// Go's `url.Values`: each key with its values in order.
type Values = HashMap<String, Vec<String>>;

/// Splits a raw query string as Go's `url.ParseQuery` (see the module docs).
pub fn go_query(raw: &str) -> Values {
    let mut values = Values::new();
    for pair in raw.split('&') {
        if pair.is_empty() || pair.contains(';') {
            continue;
        }
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (Some(k), Some(v)) = (unescape(k), unescape(v)) else {
            continue;
        };
        values.entry(k).or_default().push(v);
    }
    values
}

/// Go's `url.QueryUnescape`: `+` is a space, `%XX` a byte; `None` for a bad escape or
/// bytes that are not UTF-8.
fn unescape(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = b.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn selector(source_id: &str, wants: Wants) -> Selector {
    Selector {
        source_id: source_id.to_string(),
        message: Some(wants),
    }
}

/// Builds the request from a raw query string (`None`: no `?` at all).
pub fn parse(raw: Option<&str>) -> Result<ReadQuery, QueryError> {
    let v = go_query(raw.unwrap_or(""));
    if v.is_empty() {
        return Err(QueryError::Empty);
    }
    let has = |k: &str| v.contains_key(k);
    const TYPES: [&str; 7] = [
        "log",
        "counter",
        "gauge",
        "timer",
        "event",
        "counter.name",
        "gauge.name",
    ];
    if !TYPES.iter().any(|t| has(t)) {
        return Err(QueryError::MissingType);
    }
    let no_source = vec![String::new()];
    let sources = v
        .get("source_id")
        .filter(|s| !s.is_empty())
        .unwrap_or(&no_source);
    let counter_names = v.get("counter.name");
    let gauge_names = v.get("gauge.name");
    let mut selectors = Vec::new();
    for sid in sources {
        if has("log") {
            selectors.push(selector(sid, Wants::Log(LogSelector {})));
        }
        if has("counter") || counter_names.is_some() {
            match counter_names {
                None => selectors.push(selector(sid, Wants::Counter(CounterSelector::default()))),
                Some(names) => {
                    selectors.extend(names.iter().map(|n| {
                        selector(sid, Wants::Counter(CounterSelector { name: n.clone() }))
                    }))
                }
            }
        }
        if has("gauge") || gauge_names.is_some() {
            match gauge_names {
                None => selectors.push(selector(sid, Wants::Gauge(GaugeSelector::default()))),
                Some(params) => selectors.extend(params.iter().map(|p| {
                    selector(
                        sid,
                        Wants::Gauge(GaugeSelector {
                            names: p.split(',').map(str::to_string).collect(),
                        }),
                    )
                })),
            }
        }
        if has("timer") {
            selectors.push(selector(sid, Wants::Timer(TimerSelector {})));
        }
        if has("event") {
            selectors.push(selector(sid, Wants::Event(EventSelector {})));
        }
    }
    let first = |k: &str| {
        v.get(k)
            .and_then(|vals| vals.first())
            .cloned()
            .unwrap_or_default()
    };
    Ok(ReadQuery {
        selectors,
        shard_id: first("shard_id"),
        deterministic_name: first("deterministic_name"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(q: &ReadQuery) -> Vec<String> {
        q.selectors
            .iter()
            .map(|s| {
                let k = match &s.message {
                    Some(Wants::Log(_)) => "log".to_string(),
                    Some(Wants::Counter(c)) => format!("counter:{}", c.name),
                    Some(Wants::Gauge(g)) => format!("gauge:{}", g.names.join(",")),
                    Some(Wants::Timer(_)) => "timer".into(),
                    Some(Wants::Event(_)) => "event".into(),
                    None => "none".into(),
                };
                format!("{}/{k}", s.source_id)
            })
            .collect()
    }

    #[test]
    fn errors() {
        assert_eq!(parse(None), Err(QueryError::Empty));
        assert_eq!(parse(Some("")), Err(QueryError::Empty));
        assert_eq!(parse(Some("&&")), Err(QueryError::Empty));
        assert_eq!(parse(Some("source_id=a")), Err(QueryError::MissingType));
        assert_eq!(
            parse(Some("LOG")),
            Err(QueryError::MissingType),
            "case-sensitive"
        );
    }

    #[test]
    fn cross_product_of_sources_and_types() {
        let q = parse(Some("log&counter&source_id=a&source_id=b&shard_id=s&x=1")).unwrap();
        assert_eq!(kinds(&q), ["a/log", "a/counter:", "b/log", "b/counter:"]);
        assert_eq!(q.shard_id, "s");
        assert_eq!(q.deterministic_name, "");
    }

    #[test]
    fn names_replace_the_bare_type() {
        let q = parse(Some(
            "counter&counter.name=a&counter.name=b&gauge&gauge.name=cpu,mem&timer&event",
        ))
        .unwrap();
        assert_eq!(
            kinds(&q),
            [
                "/counter:a",
                "/counter:b",
                "/gauge:cpu,mem",
                "/timer",
                "/event"
            ]
        );
        // Go reads `?counter.name` as one empty name: a counter selector for every name.
        assert_eq!(kinds(&parse(Some("counter.name")).unwrap()), ["/counter:"]);
    }

    #[test]
    fn go_style_unescaping() {
        let v = go_query("a=x+y&b=%41%2b&c=%zz&d;e=1&=v");
        assert_eq!(v["a"], ["x y"]);
        assert_eq!(v["b"], ["A+"]);
        assert!(!v.contains_key("c"), "bad escape skipped");
        assert!(!v.contains_key("d;e"));
        assert_eq!(v[""], ["v"]);
    }
}
