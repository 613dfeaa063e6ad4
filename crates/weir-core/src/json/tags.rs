//! `tags` and `deprecated_tags`, converted as the Loggregator RLP converts them
//! (PROTOCOLS.md §1.3; upstream `convergeTags` in the RLP egress server).

use std::borrow::Cow;
use std::fmt::Write as _;

use weir_proto::lv2::{Envelope, Value, value::Data};

/// Moves every `deprecated_tags` entry into `tags` as a string, then empties
/// `deprecated_tags`: what a subscriber with `use_preferred_tags = true` (and so every
/// RLP gateway reader) sees.
///
/// Text is copied as is, integers in decimal (`-7`), doubles as Go's `fmt.Sprint`
/// prints them (`0.5`, `1`, `1e+06`, `1e-05`). A deprecated tag overwrites a `tags`
/// entry with the same key. A `Value` with nothing set is dropped.
pub fn to_preferred_tags(env: &mut Envelope) {
    for (k, v) in env.deprecated_tags.drain() {
        if let Some(s) = value_as_tag(&v) {
            env.tags.insert(k, s.into_owned());
        }
    }
}

/// Moves every `tags` entry into `deprecated_tags` as `Value{text}`, then empties
/// `tags`: what a gRPC subscriber with `use_preferred_tags = false` (the proto default)
/// sees. A `tags` entry overwrites a deprecated tag with the same key.
pub fn to_legacy_tags(env: &mut Envelope) {
    for (k, v) in env.tags.drain() {
        env.deprecated_tags.insert(
            k,
            Value {
                data: Some(Data::Text(v)),
            },
        );
    }
}

/// The string form of a deprecated tag's value, or `None` when nothing is set.
pub(crate) fn value_as_tag(v: &Value) -> Option<Cow<'_, str>> {
    match &v.data {
        Some(Data::Text(t)) => Some(Cow::Borrowed(t)),
        Some(Data::Integer(i)) => Some(Cow::Owned(i.to_string())),
        Some(Data::Decimal(d)) => Some(Cow::Owned(go_sprint_float(*d))),
        None => None,
    }
}

/// A double as Go's `fmt.Sprint` prints it, which is `strconv.FormatFloat(v, 'g', -1,
/// 64)`: the shortest round-trip digits, in exponent form when the decimal exponent is
/// below -4 or at least 6 (Go fixes the threshold at 6 for the shortest form), with a
/// signed exponent of at least two digits (`1e+06`, `1.5e-07`); `+Inf`, `-Inf`, `NaN`.
pub(crate) fn go_sprint_float(v: f64) -> String {
    if v.is_nan() {
        return "NaN".to_owned();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned();
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0" } else { "0" }.to_owned();
    }
    // `{:e}` gives the shortest round-trip digits as `d.ddde<exp>`.
    let sci = format!("{v:e}");
    let Some((mantissa, exp)) = sci.split_once('e') else {
        return sci;
    };
    let Ok(exp) = exp.parse::<i32>() else {
        return sci;
    };
    if !(-4..6).contains(&exp) {
        let mut s = String::with_capacity(mantissa.len() + 5);
        s.push_str(mantissa);
        s.push('e');
        s.push(if exp < 0 { '-' } else { '+' });
        let _ = write!(s, "{:02}", exp.unsigned_abs());
        s
    } else {
        // Plain shortest digits; Rust's Display never uses an exponent.
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_like_go_fmt_sprint() {
        let cases: &[(f64, &str)] = &[
            (0.5, "0.5"),
            (1.0, "1"),
            (-2.0, "-2"),
            (0.0, "0"),
            (-0.0, "-0"),
            (12.25, "12.25"),
            (999999.0, "999999"),
            (999999.5, "999999.5"),
            (1e6, "1e+06"),
            (1234567.0, "1.234567e+06"),
            (123456789.0, "1.23456789e+08"),
            (1e21, "1e+21"),
            (1e100, "1e+100"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (5e-324, "5e-324"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
        ];
        for (v, want) in cases {
            assert_eq!(go_sprint_float(*v), *want, "formatting {v:?}");
        }
    }

    #[test]
    fn preferred_overwrites_and_drops_empty_values() {
        let mut env = Envelope::default();
        env.tags.insert("a".into(), "old".into());
        env.tags.insert("keep".into(), "k".into());
        env.deprecated_tags.insert(
            "a".into(),
            Value {
                data: Some(Data::Integer(3)),
            },
        );
        env.deprecated_tags
            .insert("empty".into(), Value { data: None });
        to_preferred_tags(&mut env);
        assert!(env.deprecated_tags.is_empty());
        assert_eq!(env.tags.len(), 2);
        assert_eq!(env.tags["a"], "3");
        assert_eq!(env.tags["keep"], "k");
    }

    #[test]
    fn legacy_moves_tags_as_text() {
        let mut env = Envelope::default();
        env.tags.insert("a".into(), "new".into());
        env.deprecated_tags.insert(
            "a".into(),
            Value {
                data: Some(Data::Integer(3)),
            },
        );
        env.deprecated_tags.insert(
            "b".into(),
            Value {
                data: Some(Data::Decimal(0.5)),
            },
        );
        to_legacy_tags(&mut env);
        assert!(env.tags.is_empty());
        assert_eq!(
            env.deprecated_tags["a"].data,
            Some(Data::Text("new".into()))
        );
        assert_eq!(env.deprecated_tags["b"].data, Some(Data::Decimal(0.5)));
    }
}
