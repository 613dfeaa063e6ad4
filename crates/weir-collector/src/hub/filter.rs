//! What one subscription asks for: a Loggregator v2 `Selector` turned into a
//! [`Filter`] (PROTOCOLS.md §2.2).
//!
//! | selector | matches an envelope when |
//! | --- | --- |
//! | `source_id` | it equals the envelope's `source_id`; empty matches every source |
//! | `log`, `timer`, `event` | the envelope carries that message |
//! | `counter { name }` | it is a counter named exactly `name`; an empty name matches every counter |
//! | `gauge { names }` | it is a gauge whose **set** of metric names equals `names` (order and repeats do not matter); no names matches every gauge |
//!
//! Two selectors with equal filters land on the same node of the hub's routing table,
//! which is where shard groups are formed (see [`super::route`]). Empty strings in a
//! gauge's `names` are ignored, so `gauge.name=` (which Go reads as one empty name)
//! matches every gauge, as `counter.name=` matches every counter.

use std::collections::BTreeSet;

use weir_core::Envelope;
use weir_proto::lv2::{Selector, envelope::Message, selector::Message as Wants};

/// The five kinds of envelope message, the first level of routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Log = 0,
    Counter = 1,
    Gauge = 2,
    Timer = 3,
    Event = 4,
}

impl Kind {
    /// How many kinds there are.
    pub const COUNT: usize = 5;

    /// The kind of an envelope's message, `None` when it has none.
    pub fn of(env: &Envelope) -> Option<Kind> {
        Some(match env.message.as_ref()? {
            Message::Log(_) => Kind::Log,
            Message::Counter(_) => Kind::Counter,
            Message::Gauge(_) => Kind::Gauge,
            Message::Timer(_) => Kind::Timer,
            Message::Event(_) => Kind::Event,
        })
    }
}

/// Which names a counter or gauge filter accepts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Names {
    /// Every name (logs, timers, events; a counter or gauge selector without names).
    Any,
    /// A counter with exactly this name.
    Counter(String),
    /// A gauge whose metric names are exactly this set.
    Gauge(BTreeSet<String>),
}

impl Names {
    /// Whether `env` (already known to be of the filter's kind) has the wanted names.
    pub fn accept(&self, env: &Envelope) -> bool {
        match (self, &env.message) {
            (Names::Any, _) => true,
            (Names::Counter(want), Some(Message::Counter(c))) => c.name == *want,
            (Names::Gauge(want), Some(Message::Gauge(g))) => {
                g.metrics.len() == want.len() && g.metrics.keys().all(|k| want.contains(k))
            }
            _ => false,
        }
    }
}

/// One selector as the hub matches it. See the module docs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Filter {
    pub kind: Kind,
    /// Empty: every source.
    pub source_id: String,
    pub names: Names,
}

/// Why a selector cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// The request has no selector (and no legacy selector).
    #[error("Selectors cannot be empty")]
    Empty,
    /// Selector `index` (0-based, in request order) sets none of log, counter, gauge,
    /// timer, event.
    #[error("selector {index} has no message type: set one of log, counter, gauge, timer or event")]
    NoMessage { index: usize },
}

impl Filter {
    /// The filter of selector number `index` of a request.
    pub fn from_selector(index: usize, s: &Selector) -> Result<Filter, SelectorError> {
        let (kind, names) = match s.message.as_ref() {
            None => return Err(SelectorError::NoMessage { index }),
            Some(Wants::Log(_)) => (Kind::Log, Names::Any),
            Some(Wants::Timer(_)) => (Kind::Timer, Names::Any),
            Some(Wants::Event(_)) => (Kind::Event, Names::Any),
            Some(Wants::Counter(c)) if c.name.is_empty() => (Kind::Counter, Names::Any),
            Some(Wants::Counter(c)) => (Kind::Counter, Names::Counter(c.name.clone())),
            Some(Wants::Gauge(g)) => {
                let set: BTreeSet<String> =
                    g.names.iter().filter(|n| !n.is_empty()).cloned().collect();
                if set.is_empty() {
                    (Kind::Gauge, Names::Any)
                } else {
                    (Kind::Gauge, Names::Gauge(set))
                }
            }
        };
        Ok(Filter {
            kind,
            source_id: s.source_id.clone(),
            names,
        })
    }

    /// The filters of a request's selectors, applying the RLP's rule: the legacy
    /// selector is used only when `selectors` is empty; no selector at all is
    /// [`SelectorError::Empty`].
    pub fn from_request(
        selectors: &[Selector],
        legacy: Option<&Selector>,
    ) -> Result<Vec<Filter>, SelectorError> {
        let chosen: Vec<&Selector> = if selectors.is_empty() {
            legacy.into_iter().collect()
        } else {
            selectors.iter().collect()
        };
        if chosen.is_empty() {
            return Err(SelectorError::Empty);
        }
        chosen
            .into_iter()
            .enumerate()
            .map(|(i, s)| Filter::from_selector(i, s))
            .collect()
    }

    /// Whether `env` matches: kind, source and names.
    pub fn matches(&self, env: &Envelope) -> bool {
        Kind::of(env) == Some(self.kind)
            && (self.source_id.is_empty() || self.source_id == env.source_id)
            && self.names.accept(env)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_proto::lv2::{
        Counter, CounterSelector, Gauge, GaugeSelector, GaugeValue, Log, LogSelector,
    };

    fn counter(source: &str, name: &str) -> Envelope {
        Envelope {
            source_id: source.into(),
            message: Some(Message::Counter(Counter {
                name: name.into(),
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    fn gauge(names: &[&str]) -> Envelope {
        Envelope {
            message: Some(Message::Gauge(Gauge {
                metrics: names
                    .iter()
                    .map(|n| (n.to_string(), GaugeValue::default()))
                    .collect(),
            })),
            ..Default::default()
        }
    }

    fn sel(source: &str, wants: Wants) -> Selector {
        Selector {
            source_id: source.into(),
            message: Some(wants),
        }
    }

    #[test]
    fn counter_by_name_and_source() {
        let f = Filter::from_selector(
            0,
            &sel(
                "a",
                Wants::Counter(CounterSelector {
                    name: "hits".into(),
                }),
            ),
        )
        .unwrap();
        assert!(f.matches(&counter("a", "hits")));
        assert!(!f.matches(&counter("a", "misses")));
        assert!(!f.matches(&counter("b", "hits")));
        let any =
            Filter::from_selector(0, &sel("", Wants::Counter(CounterSelector::default()))).unwrap();
        assert!(any.matches(&counter("b", "misses")));
    }

    #[test]
    fn gauge_matches_the_exact_set_of_names() {
        let f = Filter::from_selector(
            0,
            &sel(
                "",
                Wants::Gauge(GaugeSelector {
                    names: vec!["mem".into(), "cpu".into()],
                }),
            ),
        )
        .unwrap();
        assert!(f.matches(&gauge(&["cpu", "mem"])));
        assert!(!f.matches(&gauge(&["cpu"])));
        assert!(!f.matches(&gauge(&["cpu", "mem", "disk"])));
        let any = Filter::from_selector(
            0,
            &sel(
                "",
                Wants::Gauge(GaugeSelector {
                    names: vec!["".into()],
                }),
            ),
        )
        .unwrap();
        assert_eq!(any.names, Names::Any);
        assert!(any.matches(&gauge(&["x"])));
    }

    #[test]
    fn kinds_do_not_cross() {
        let f = Filter::from_selector(0, &sel("", Wants::Log(LogSelector {}))).unwrap();
        assert!(!f.matches(&counter("a", "x")));
        let log = Envelope {
            message: Some(Message::Log(Log::default())),
            ..Default::default()
        };
        assert!(f.matches(&log));
        assert!(
            !f.matches(&Envelope::default()),
            "no message matches nothing"
        );
    }

    #[test]
    fn legacy_only_when_selectors_are_empty() {
        let legacy = sel("old", Wants::Log(LogSelector {}));
        let new = sel("new", Wants::Log(LogSelector {}));
        let fs = Filter::from_request(std::slice::from_ref(&new), Some(&legacy)).unwrap();
        assert_eq!(fs.len(), 1);
        assert_eq!(fs[0].source_id, "new");
        let fs = Filter::from_request(&[], Some(&legacy)).unwrap();
        assert_eq!(fs[0].source_id, "old");
        assert_eq!(Filter::from_request(&[], None), Err(SelectorError::Empty));
        let empty = Selector::default();
        assert_eq!(
            Filter::from_request(&[new, empty], None),
            Err(SelectorError::NoMessage { index: 1 })
        );
    }
}
