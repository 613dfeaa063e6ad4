//! The people-friendly JSON form of an entry (shape in the [module docs](super)).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::ser::{Serialize, SerializeMap, Serializer};
use weir_proto::lv2::{Envelope, Gauge, envelope::Message, log};

use super::tags::value_as_tag;

/// An envelope in the people JSON form, ready for `serde_json`.
///
/// It borrows the envelope and writes straight to the output, keys in the documented
/// order: `serde_json::to_writer(&mut out, &PeopleJson::entry(..))` for a flusher or a
/// response body, `serde_json::to_value` (or [`people_entry`]) for a `Value`.
#[derive(Debug, Clone, Copy)]
pub struct PeopleJson<'a> {
    place: Option<Place<'a>>,
    env: &'a Envelope,
}

#[derive(Debug, Clone, Copy)]
struct Place<'a> {
    stream: &'a str,
    index: u64,
    ingest_ns: Option<i64>,
}

impl<'a> PeopleJson<'a> {
    /// A stored entry: `stream` is the stream's path as the API names it, `index` its
    /// position in the stream, `ingest_ns` when weir stored it (Unix nanoseconds).
    pub fn entry(stream: &'a str, index: u64, ingest_ns: i64, env: &'a Envelope) -> Self {
        PeopleJson {
            place: Some(Place {
                stream,
                index,
                ingest_ns: Some(ingest_ns),
            }),
            env,
        }
    }

    /// An entry numbered by a producer but not stored yet (what the agent's flushers
    /// write): `stream` and `index`, no `ingest_time`.
    pub fn numbered(stream: &'a str, index: u64, env: &'a Envelope) -> Self {
        PeopleJson {
            place: Some(Place {
                stream,
                index,
                ingest_ns: None,
            }),
            env,
        }
    }

    /// An envelope not (yet) stored, for live views: no `stream`, `index` or
    /// `ingest_time`.
    pub fn envelope(env: &'a Envelope) -> Self {
        PeopleJson { place: None, env }
    }
}

/// A stored entry as a people JSON object; see [`PeopleJson::entry`].
pub fn people_entry(stream: &str, index: u64, ingest_ns: i64, env: &Envelope) -> serde_json::Value {
    to_value(PeopleJson::entry(stream, index, ingest_ns, env))
}

/// A live envelope as a people JSON object; see [`PeopleJson::envelope`].
pub fn people_envelope(env: &Envelope) -> serde_json::Value {
    to_value(PeopleJson::envelope(env))
}

fn to_value(p: PeopleJson<'_>) -> serde_json::Value {
    // Serialising to a Value fails only for non-string map keys or 128-bit integers out
    // of range, and `PeopleJson` writes neither.
    serde_json::to_value(p).unwrap_or(serde_json::Value::Null)
}

/// Unix nanoseconds as RFC 3339 in UTC with all nine fraction digits, e.g.
/// `2023-11-14T22:13:20.000000000Z`. Every `i64` has a form (years 1677 to 2262);
/// times before 1970 count backwards (`-1` is `1969-12-31T23:59:59.999999999Z`).
pub fn format_rfc3339_nanos(ns: i64) -> String {
    Rfc3339(ns).to_string()
}

/// Displays Unix nanoseconds as RFC 3339 (see [`format_rfc3339_nanos`]).
struct Rfc3339(i64);

impl fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.div_euclid(1_000_000_000);
        let nanos = self.0.rem_euclid(1_000_000_000);
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
            sod / 3600,
            sod / 60 % 60,
            sod % 60
        )
    }
}

impl Serialize for Rfc3339 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The proleptic Gregorian date `(year, month, day)` of a day counted from 1970-01-01
/// (Howard Hinnant's `civil_from_days`).
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// A double as a JSON number, or a string for NaN and the infinities.
struct Double(f64);

impl Serialize for Double {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let v = self.0;
        if v.is_nan() {
            s.serialize_str("NaN")
        } else if v.is_infinite() {
            s.serialize_str(if v > 0.0 { "Infinity" } else { "-Infinity" })
        } else {
            s.serialize_f64(v)
        }
    }
}

/// `tags` merged with `deprecated_tags` (as strings, winning on a clash), sorted.
struct MergedTags<'a>(&'a Envelope);

impl Serialize for MergedTags<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let env = self.0;
        let mut merged: BTreeMap<&str, Cow<'_, str>> = env
            .tags
            .iter()
            .map(|(k, v)| (k.as_str(), Cow::Borrowed(v.as_str())))
            .collect();
        for (k, v) in &env.deprecated_tags {
            if let Some(v) = value_as_tag(v) {
                merged.insert(k, v);
            }
        }
        s.collect_map(merged)
    }
}

struct Metrics<'a>(&'a Gauge);

impl Serialize for Metrics<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut names: Vec<_> = self.0.metrics.iter().collect();
        names.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut m = s.serialize_map(Some(names.len()))?;
        for (name, v) in names {
            m.serialize_entry(name, &Metric(v.value, &v.unit))?;
        }
        m.end()
    }
}

struct Metric<'a>(f64, &'a str);

impl Serialize for Metric<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("value", &Double(self.0))?;
        m.serialize_entry("unit", self.1)?;
        m.end()
    }
}

#[derive(serde::Serialize)]
struct CounterJson<'a> {
    name: &'a str,
    delta: u64,
    total: u64,
}

#[derive(serde::Serialize)]
struct TimerJson<'a> {
    name: &'a str,
    start: Rfc3339,
    stop: Rfc3339,
    duration_ns: i64,
}

#[derive(serde::Serialize)]
struct EventJson<'a> {
    title: &'a str,
    body: &'a str,
}

impl Serialize for PeopleJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let env = self.env;
        let mut m = s.serialize_map(None)?;
        if let Some(p) = &self.place {
            m.serialize_entry("stream", p.stream)?;
            m.serialize_entry("index", &p.index)?;
            if let Some(ns) = p.ingest_ns {
                m.serialize_entry("ingest_time", &Rfc3339(ns))?;
            }
        }
        m.serialize_entry("timestamp", &Rfc3339(env.timestamp))?;
        m.serialize_entry("source_id", &env.source_id)?;
        m.serialize_entry("instance_id", &env.instance_id)?;
        m.serialize_entry("tags", &MergedTags(env))?;
        match &env.message {
            None => m.serialize_entry("type", "none")?,
            Some(Message::Log(l)) => {
                m.serialize_entry("type", "log")?;
                match std::str::from_utf8(&l.payload) {
                    Ok(text) => m.serialize_entry("message", text)?,
                    Err(_) => m.serialize_entry("payload_base64", &STANDARD.encode(&l.payload))?,
                }
                match log::Type::try_from(l.r#type) {
                    Ok(t) => m.serialize_entry("log_type", t.as_str_name())?,
                    Err(_) => m.serialize_entry("log_type", &l.r#type)?,
                }
            }
            Some(Message::Counter(c)) => {
                m.serialize_entry("type", "counter")?;
                let counter = CounterJson {
                    name: &c.name,
                    delta: c.delta,
                    total: c.total,
                };
                m.serialize_entry("counter", &counter)?;
            }
            Some(Message::Gauge(g)) => {
                m.serialize_entry("type", "gauge")?;
                m.serialize_entry("gauge", &Metrics(g))?;
            }
            Some(Message::Timer(t)) => {
                m.serialize_entry("type", "timer")?;
                let timer = TimerJson {
                    name: &t.name,
                    start: Rfc3339(t.start),
                    stop: Rfc3339(t.stop),
                    duration_ns: t.stop.saturating_sub(t.start),
                };
                m.serialize_entry("timer", &timer)?;
            }
            Some(Message::Event(e)) => {
                m.serialize_entry("type", "event")?;
                let event = EventJson {
                    title: &e.title,
                    body: &e.body,
                };
                m.serialize_entry("event", &event)?;
            }
        }
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_instants() {
        // Checked against GNU `date -u -d @SECONDS`.
        let cases: &[(i64, &str)] = &[
            (0, "1970-01-01T00:00:00.000000000Z"),
            (-1, "1969-12-31T23:59:59.999999999Z"),
            (1, "1970-01-01T00:00:00.000000001Z"),
            (1_700_000_000_000_000_000, "2023-11-14T22:13:20.000000000Z"),
            (951_782_400_123_456_789, "2000-02-29T00:00:00.123456789Z"),
            (951_868_799_999_999_999, "2000-02-29T23:59:59.999999999Z"),
            (4_107_542_399_000_000_000, "2100-02-28T23:59:59.000000000Z"),
            (4_107_542_400_000_000_000, "2100-03-01T00:00:00.000000000Z"),
            (1_795_420_800_123_456_789, "2026-11-23T08:00:00.123456789Z"),
            (-86_400_000_000_000, "1969-12-31T00:00:00.000000000Z"),
            (-2_208_988_800_000_000_000, "1900-01-01T00:00:00.000000000Z"),
            (i64::MAX, "2262-04-11T23:47:16.854775807Z"),
            (i64::MIN, "1677-09-21T00:12:43.145224192Z"),
        ];
        for (ns, want) in cases {
            assert_eq!(format_rfc3339_nanos(*ns), *want, "{ns}");
        }
    }

    #[test]
    fn rfc3339_days_are_consecutive() {
        // Walk 1600..2400 day by day: each date follows the previous one.
        let mut prev = civil_from_days(-135_000);
        for day in -134_999..157_000 {
            let (y, m, d) = civil_from_days(day);
            let next_in_month = (y, m, d - 1) == prev;
            let first_of_month = d == 1
                && ((y, m - 1) == (prev.0, prev.1) || (m == 1 && y - 1 == prev.0 && prev.1 == 12));
            assert!(
                next_in_month || first_of_month,
                "day {day}: {prev:?} -> {:?}",
                (y, m, d)
            );
            if first_of_month {
                let leap = (prev.0 % 4 == 0 && prev.0 % 100 != 0) || prev.0 % 400 == 0;
                let len = match prev.1 {
                    2 if leap => 29,
                    2 => 28,
                    4 | 6 | 9 | 11 => 30,
                    _ => 31,
                };
                assert_eq!(prev.2, len, "month {}-{} length", prev.0, prev.1);
            }
            prev = (y, m, d);
        }
    }
}
