//! The protojson writer: envelopes as Go `protojson` (EmitUnpopulated) writes them.
//!
//! Hand-written into a `String`, because it runs once per envelope per SSE subscriber.

use std::collections::HashMap;
use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use weir_proto::lv2::{Envelope, Value, envelope::Message, log, value::Data};

/// Appends one envelope as a protojson object (no trailing newline).
///
/// The output is the canonical form described in the [module docs](super): keys in
/// declaration order, 64-bit integers as strings, sorted map keys, no spaces.
pub fn write_envelope(out: &mut String, env: &Envelope) {
    out.push_str("{\"timestamp\":\"");
    push_int(out, env.timestamp);
    out.push_str("\",\"source_id\":");
    write_str(out, &env.source_id);
    out.push_str(",\"instance_id\":");
    write_str(out, &env.instance_id);

    out.push_str(",\"deprecated_tags\":{");
    for (i, (k, v)) in sorted(&env.deprecated_tags).into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(out, k);
        out.push(':');
        write_value(out, v);
    }
    out.push_str("},\"tags\":{");
    for (i, (k, v)) in sorted(&env.tags).into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(out, k);
        out.push(':');
        write_str(out, v);
    }
    out.push('}');

    match &env.message {
        None => {}
        Some(Message::Log(l)) => {
            out.push_str(",\"log\":{\"payload\":\"");
            STANDARD.encode_string(&l.payload, out);
            out.push_str("\",\"type\":");
            match log::Type::try_from(l.r#type) {
                Ok(t) => {
                    out.push('"');
                    out.push_str(t.as_str_name());
                    out.push('"');
                }
                Err(_) => push_int(out, l.r#type),
            }
            out.push('}');
        }
        Some(Message::Counter(c)) => {
            out.push_str(",\"counter\":{\"name\":");
            write_str(out, &c.name);
            out.push_str(",\"delta\":\"");
            push_int(out, c.delta);
            out.push_str("\",\"total\":\"");
            push_int(out, c.total);
            out.push_str("\"}");
        }
        Some(Message::Gauge(g)) => {
            out.push_str(",\"gauge\":{\"metrics\":{");
            for (i, (k, v)) in sorted(&g.metrics).into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_str(out, k);
                out.push_str(":{\"unit\":");
                write_str(out, &v.unit);
                out.push_str(",\"value\":");
                write_double(out, v.value);
                out.push('}');
            }
            out.push_str("}}");
        }
        Some(Message::Timer(t)) => {
            out.push_str(",\"timer\":{\"name\":");
            write_str(out, &t.name);
            out.push_str(",\"start\":\"");
            push_int(out, t.start);
            out.push_str("\",\"stop\":\"");
            push_int(out, t.stop);
            out.push_str("\"}");
        }
        Some(Message::Event(e)) => {
            out.push_str(",\"event\":{\"title\":");
            write_str(out, &e.title);
            out.push_str(",\"body\":");
            write_str(out, &e.body);
            out.push('}');
        }
    }
    out.push('}');
}

/// Appends `{"batch":[...]}` holding the given envelopes: one SSE `data:` payload.
///
/// Takes any iterator of envelope references, so a `&[Envelope]`, a `&Vec<Envelope>` or
/// `arcs.iter().map(|a| &**a)` all work.
pub fn write_batch<'a, I>(out: &mut String, envs: I)
where
    I: IntoIterator<Item = &'a Envelope>,
{
    out.push_str("{\"batch\":[");
    for (i, env) in envs.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_envelope(out, env);
    }
    out.push_str("]}");
}

/// One envelope as a protojson object; see [`write_envelope`].
pub fn envelope_to_json(env: &Envelope) -> String {
    let mut out = String::with_capacity(estimate(env));
    write_envelope(&mut out, env);
    out
}

/// An `EnvelopeBatch` as protojson, `{"batch":[...]}`; see [`write_batch`].
pub fn batch_to_json<'a, I>(envs: I) -> String
where
    I: IntoIterator<Item = &'a Envelope>,
{
    let iter = envs.into_iter();
    let mut out = String::with_capacity(16 + 256 * iter.size_hint().0);
    write_batch(&mut out, iter);
    out
}

/// A rough size of the JSON form, to allocate once in the common case.
fn estimate(env: &Envelope) -> usize {
    let payload = match &env.message {
        Some(Message::Log(l)) => l.payload.len() * 4 / 3 + 4,
        _ => 64,
    };
    160 + env.source_id.len()
        + env.instance_id.len()
        + 48 * (env.tags.len() + env.deprecated_tags.len())
        + payload
}

/// The entries of a map, sorted by key bytes as Go's protojson sorts them.
fn sorted<V>(m: &HashMap<String, V>) -> Vec<(&String, &V)> {
    let mut v: Vec<_> = m.iter().collect();
    if v.len() > 1 {
        v.sort_unstable_by(|a, b| a.0.cmp(b.0));
    }
    v
}

fn write_value(out: &mut String, v: &Value) {
    match &v.data {
        None => out.push_str("{}"),
        Some(Data::Text(t)) => {
            out.push_str("{\"text\":");
            write_str(out, t);
            out.push('}');
        }
        Some(Data::Integer(i)) => {
            out.push_str("{\"integer\":\"");
            push_int(out, *i);
            out.push_str("\"}");
        }
        Some(Data::Decimal(d)) => {
            out.push_str("{\"decimal\":");
            write_double(out, *d);
            out.push('}');
        }
    }
}

fn push_int<I: itoa::Integer>(out: &mut String, n: I) {
    out.push_str(itoa::Buffer::new().format(n));
}

/// Appends a JSON string as Go protojson writes it: only `"`, `\` and control
/// characters are escaped; `\b \f \n \r \t` in short form, other controls as `\u00xx`
/// with lower-case hex. `<`, `>`, `&`, DEL and U+2028/9 are written as they are.
pub(crate) fn write_str(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    let bytes = s.as_bytes();
    let mut run = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            0x08 => "\\b",
            0x0c => "\\f",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x00..=0x1f => "",
            _ => continue,
        };
        // Every byte that needs escaping is ASCII, so these are char boundaries.
        out.push_str(&s[run..i]);
        if short.is_empty() {
            out.push_str("\\u00");
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 0xf)] as char);
        } else {
            out.push_str(short);
        }
        run = i + 1;
    }
    out.push_str(&s[run..]);
    out.push('"');
}

/// Appends a double as Go protojson writes it: the shortest text that reads back as
/// the same double, in exponent form below 1e-6 or at 1e21 and above (`1e-7`, `1e+21`),
/// plain otherwise (`104857600`, `0.5`, `-0`); NaN and the infinities as the strings
/// `"NaN"`, `"Infinity"`, `"-Infinity"`.
pub(crate) fn write_double(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("\"NaN\"");
        return;
    }
    if v.is_infinite() {
        out.push_str(if v > 0.0 {
            "\"Infinity\""
        } else {
            "\"-Infinity\""
        });
        return;
    }
    let abs = v.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        // Rust writes `1e21` and `1e-7`; Go writes `1e+21` and `1e-7` (it strips the
        // leading zero of a two-digit negative exponent, and never pads past that).
        let start = out.len();
        let _ = write!(out, "{v:e}");
        if let Some(e) = out[start..].rfind('e') {
            let at = start + e + 1;
            if out.as_bytes().get(at) != Some(&b'-') {
                out.insert(at, '+');
            }
        }
    } else {
        // Rust's `Display` for f64 is the shortest round-trip text, never in exponent
        // form: the same digits as Go's `strconv.FormatFloat(v, 'f', -1, 64)`.
        let _ = write!(out, "{v}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn double(v: f64) -> String {
        let mut s = String::new();
        write_double(&mut s, v);
        s
    }

    fn string(v: &str) -> String {
        let mut s = String::new();
        write_str(&mut s, v);
        s
    }

    #[test]
    fn doubles_are_written_as_go_writes_them() {
        let cases: &[(f64, &str)] = &[
            (0.0, "0"),
            (-0.0, "-0"),
            (0.5, "0.5"),
            (12.5, "12.5"),
            (1.0, "1"),
            (-3.0, "-3"),
            (104857600.0, "104857600"),
            (1e20, "100000000000000000000"),
            (123456789012345680000.0, "123456789012345680000"),
            (1e21, "1e+21"),
            (-1e21, "-1e+21"),
            (1.5e300, "1.5e+300"),
            (f64::MAX, "1.7976931348623157e+308"),
            (1e-6, "0.000001"),
            (1.5e-6, "0.0000015"),
            (1e-7, "1e-7"),
            (-2.5e-7, "-2.5e-7"),
            (1e-10, "1e-10"),
            (5e-324, "5e-324"),
            (0.1 + 0.2, "0.30000000000000004"),
            (f64::NAN, "\"NaN\""),
            (f64::INFINITY, "\"Infinity\""),
            (f64::NEG_INFINITY, "\"-Infinity\""),
        ];
        for (v, want) in cases {
            assert_eq!(double(*v), *want, "formatting {v:?}");
        }
    }

    #[test]
    fn strings_escape_only_what_go_escapes() {
        assert_eq!(string("plain"), "\"plain\"");
        assert_eq!(string("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(string("<a href='x'>&amp;</a>"), "\"<a href='x'>&amp;</a>\"");
        assert_eq!(string("\n\t\r\u{8}\u{c}"), r#""\n\t\r\b\f""#);
        assert_eq!(
            string("\u{0}\u{1}\u{1f}\u{7f}"),
            "\"\\u0000\\u0001\\u001f\u{7f}\""
        );
        assert_eq!(string("é\u{2028}日本"), "\"é\u{2028}日本\"");
        assert_eq!(string(""), "\"\"");
    }

    #[test]
    fn unknown_log_type_is_written_as_a_number() {
        let env = Envelope {
            message: Some(Message::Log(weir_proto::lv2::Log {
                payload: bytes::Bytes::from_static(b"x"),
                r#type: 7,
            })),
            ..Default::default()
        };
        assert!(envelope_to_json(&env).ends_with(r#""log":{"payload":"eA==","type":7}}"#));
    }

    #[test]
    fn envelope_without_message_and_empty_value() {
        let mut env = Envelope::default();
        env.deprecated_tags.insert("k".into(), Value { data: None });
        assert_eq!(
            envelope_to_json(&env),
            r#"{"timestamp":"0","source_id":"","instance_id":"","deprecated_tags":{"k":{}},"tags":{}}"#
        );
        assert_eq!(batch_to_json(&[] as &[Envelope]), r#"{"batch":[]}"#);
    }
}
