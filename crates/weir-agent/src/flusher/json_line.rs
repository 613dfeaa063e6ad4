//! A fast writer of the people JSON form for the common entry: a log line with no tags.
//!
//! [`write_numbered`] writes exactly the bytes that `serde_json` writes for
//! [`PeopleJson::numbered`] (the tests compare them), without going through serde: the
//! escaping skips runs of plain bytes eight at a time, and the timestamp is formatted by
//! hand. Any other entry (tags, metrics, events, a payload that is not UTF-8) goes
//! through serde as before.

use weir_core::Envelope;
use weir_core::json::PeopleJson;
use weir_core::json::civil_from_days;
use weir_proto::lv2::envelope::Message as Body;
use weir_proto::lv2::log;

/// Appends `env` as entry `index` of `stream` in the people JSON form (no newline).
pub fn write_numbered(out: &mut Vec<u8>, stream: &str, index: u64, env: &Envelope) {
    let mut enc = Encoder::default();
    enc.start_run(stream);
    enc.entry(out, stream, index, env);
}

/// Writes runs of entries as people JSON, reusing what consecutive entries share: the
/// stream's part (once per run), the timestamp's date and time of day (once per
/// second), the source and instance part (while they stay the same).
#[derive(Debug, Default)]
pub struct Encoder {
    /// `{"stream":"…","index":` of the current run.
    stream: Vec<u8>,
    /// `,"source_id":…,"instance_id":…,"tags":{},"type":"log","message":` and the two
    /// ids it was made for.
    ids: Vec<u8>,
    ids_of: Option<(String, String)>,
    /// The whole seconds and `YYYY-MM-DDTHH:MM:SS.` of the last timestamp.
    second: Option<(i64, [u8; 20])>,
}

impl Encoder {
    /// Entries of `stream` follow.
    pub fn start_run(&mut self, stream: &str) {
        self.stream.clear();
        self.stream.extend_from_slice(b"{\"stream\":");
        write_str(&mut self.stream, stream);
        self.stream.extend_from_slice(b",\"index\":");
    }

    /// Appends entry `index` of the current run's `stream` (given again for entries that
    /// take the serde path), without a newline.
    pub fn entry(&mut self, out: &mut Vec<u8>, stream: &str, index: u64, env: &Envelope) {
        let Some(Body::Log(l)) = &env.message else {
            return serde_form(out, stream, index, env);
        };
        if !env.tags.is_empty() || !env.deprecated_tags.is_empty() {
            return serde_form(out, stream, index, env);
        }
        let mark = out.len();
        out.extend_from_slice(&self.stream);
        write_u64(out, index);
        out.extend_from_slice(b",\"timestamp\":\"");
        self.timestamp(out, env.timestamp);
        out.push(b'"');
        let same = self.ids_of.as_ref().is_some_and(|(s, i)| {
            short_eq(s.as_bytes(), env.source_id.as_bytes())
                && short_eq(i.as_bytes(), env.instance_id.as_bytes())
        });
        if !same {
            self.ids.clear();
            self.ids.extend_from_slice(b",\"source_id\":");
            write_str(&mut self.ids, &env.source_id);
            self.ids.extend_from_slice(b",\"instance_id\":");
            write_str(&mut self.ids, &env.instance_id);
            self.ids
                .extend_from_slice(b",\"tags\":{},\"type\":\"log\",\"message\":");
            self.ids_of = Some((env.source_id.clone(), env.instance_id.clone()));
        }
        out.extend_from_slice(&self.ids);
        // The message is escaped as it is; when it turns out not to be ASCII it is
        // checked for UTF-8 (a rare, slower path), and written again in the serde form
        // (base64) when it is not.
        if !write_escaped(out, &l.payload) && std::str::from_utf8(&l.payload).is_err() {
            out.truncate(mark);
            return serde_form(out, stream, index, env);
        }
        out.extend_from_slice(b",\"log_type\":");
        match log::Type::try_from(l.r#type) {
            Ok(t) => {
                out.push(b'"');
                out.extend_from_slice(t.as_str_name().as_bytes());
                out.push(b'"');
            }
            Err(_) => write_i64(out, i64::from(l.r#type)),
        }
        out.push(b'}');
    }

    fn timestamp(&mut self, out: &mut Vec<u8>, ns: i64) {
        let secs = ns.div_euclid(1_000_000_000);
        let nanos = ns.rem_euclid(1_000_000_000) as u64;
        match self.second {
            Some((s, prefix)) if s == secs => out.extend_from_slice(&prefix),
            _ => {
                let mut prefix = Vec::with_capacity(20);
                if !write_date_time(&mut prefix, secs) {
                    out.extend_from_slice(weir_core::json::format_rfc3339_nanos(ns).as_bytes());
                    return;
                }
                let mut fixed = [0u8; 20];
                fixed.copy_from_slice(&prefix);
                self.second = Some((secs, fixed));
                out.extend_from_slice(&prefix);
            }
        }
        write_digits(out, nanos, 9);
        out.push(b'Z');
    }
}

/// Byte equality without a call into libc's `memcmp` for the short ids compared per
/// entry (the call dominated the comparison of a few bytes).
#[inline]
fn short_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && (a.len() > 32 && a == b || a.iter().zip(b).all(|(x, y)| x == y))
}

fn serde_form(out: &mut Vec<u8>, stream: &str, index: u64, env: &Envelope) {
    // Serialising into a Vec cannot fail for this type.
    let _ = serde_json::to_writer(&mut *out, &PeopleJson::numbered(stream, index, env));
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// Per byte of the word, the high bit set where the byte is a control byte, `"` or `\`.
/// Only the lowest set bit is exact (a borrow may set bits above it), which is all the
/// escaper uses: where the first byte to escape is, or that there is none.
#[inline]
fn escape_mask(x: u64) -> u64 {
    let zero = |v: u64| v.wrapping_sub(LO) & !v & HI;
    let below_space = x.wrapping_sub(LO * 0x20) & !x & HI;
    below_space | zero(x ^ (LO * b'"' as u64)) | zero(x ^ (LO * b'\\' as u64))
}

/// Whether any of the eight bytes is a control byte, `"` or `\`.
#[cfg(test)]
fn needs_escape(x: u64) -> bool {
    escape_mask(x) != 0
}

/// Appends the escape of byte `b` (a control byte, `"` or `\`) as `serde_json` writes it.
#[inline]
fn push_escape(out: &mut Vec<u8>, b: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    match b {
        b'"' => out.extend_from_slice(b"\\\""),
        b'\\' => out.extend_from_slice(b"\\\\"),
        b'\n' => out.extend_from_slice(b"\\n"),
        b'\r' => out.extend_from_slice(b"\\r"),
        b'\t' => out.extend_from_slice(b"\\t"),
        0x08 => out.extend_from_slice(b"\\b"),
        0x0c => out.extend_from_slice(b"\\f"),
        _ => out.extend_from_slice(&[
            b'\\',
            b'u',
            b'0',
            b'0',
            HEX[usize::from(b >> 4)],
            HEX[usize::from(b & 0xf)],
        ]),
    }
}

/// `s` as a JSON string, escaped as `serde_json` escapes it.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    write_escaped(out, s.as_bytes());
}

/// `bytes` as a JSON string, escaped as `serde_json` escapes a `str` (bytes of 0x80 and
/// above are copied as they are). Returns whether every byte was ASCII.
fn write_escaped(out: &mut Vec<u8>, bytes: &[u8]) -> bool {
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut start = 0;
    let mut i = 0;
    let mut high = 0u64;
    while i + 8 <= bytes.len() {
        let mut word = [0u8; 8];
        word.copy_from_slice(&bytes[i..i + 8]);
        let word = u64::from_le_bytes(word);
        high |= word;
        let mask = escape_mask(word);
        if mask == 0 {
            i += 8;
            continue;
        }
        let j = i + (mask.trailing_zeros() / 8) as usize;
        out.extend_from_slice(&bytes[start..j]);
        push_escape(out, bytes[j]);
        i = j + 1;
        start = i;
    }
    let mut ascii = high & HI == 0;
    while i < bytes.len() {
        let b = bytes[i];
        ascii &= b < 0x80;
        if b < 0x20 || b == b'"' || b == b'\\' {
            out.extend_from_slice(&bytes[start..i]);
            push_escape(out, b);
            start = i + 1;
        }
        i += 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
    ascii
}

fn write_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

fn write_i64(out: &mut Vec<u8>, v: i64) {
    if v < 0 {
        out.push(b'-');
    }
    write_u64(out, v.unsigned_abs());
}

/// `v` as exactly `width` decimal digits (zero-padded; `v` must fit).
fn write_digits(out: &mut Vec<u8>, mut v: u64, width: usize) {
    let mut buf = [b'0'; 20];
    for slot in buf[..width].iter_mut().rev() {
        *slot = b'0' + (v % 10) as u8;
        v /= 10;
    }
    out.extend_from_slice(&buf[..width]);
}

/// Unix nanoseconds as `weir_core::json::format_rfc3339_nanos` formats them (RFC 3339,
/// UTC, nine fraction digits), without the quotes.
pub fn write_rfc3339_nanos(out: &mut Vec<u8>, ns: i64) {
    Encoder::default().timestamp(out, ns);
}

/// `YYYY-MM-DDTHH:MM:SS.` of Unix second `secs` (20 bytes); false (nothing written) for
/// years outside 0..=9999.
fn write_date_time(out: &mut Vec<u8>, secs: i64) -> bool {
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400) as u64;
    let (y, m, d) = civil_from_days(days);
    if !(0..=9999).contains(&y) {
        return false;
    }
    write_digits(out, y as u64, 4);
    out.push(b'-');
    write_digits(out, m as u64, 2);
    out.push(b'-');
    write_digits(out, d as u64, 2);
    out.push(b'T');
    write_digits(out, sod / 3600, 2);
    out.push(b':');
    write_digits(out, sod / 60 % 60, 2);
    out.push(b':');
    write_digits(out, sod % 60, 2);
    out.push(b'.');
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_proto::lv2::Log;

    fn serde_form(stream: &str, index: u64, env: &Envelope) -> Vec<u8> {
        serde_json::to_vec(&PeopleJson::numbered(stream, index, env)).unwrap()
    }

    fn log(payload: &[u8], ts: i64, kind: i32) -> Envelope {
        Envelope {
            timestamp: ts,
            source_id: "app \"x\"".into(),
            instance_id: "0".into(),
            message: Some(Body::Log(Log {
                payload: payload.to_vec().into(),
                r#type: kind,
            })),
            ..Default::default()
        }
    }

    #[test]
    fn same_bytes_as_serde() {
        let mut payloads: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"plain ascii line of some length".to_vec(),
            br#"{"level":"info","msg":"quoted \"x\" and back\\slash"}"#.to_vec(),
            "ünïcödé ✓ and emoji 🦀 mixed".as_bytes().to_vec(),
            b"bad utf8 \xff\xfe here".to_vec(),
            b"del \x7f and \x1b[31mansi\x1b[0m".to_vec(),
        ];
        payloads.push((0u8..=127).collect());
        for b in 0u8..0x20 {
            payloads.push(vec![b'a', b, b'b', b'c', b'd', b'e', b'f', b'g', b'h', b]);
        }
        let times = [
            0,
            -1,
            1_700_000_000_123_456_789,
            951_782_400_123_456_789,
            i64::MAX,
            i64::MIN,
            -2_208_988_800_000_000_000,
        ];
        for (i, p) in payloads.iter().enumerate() {
            for &ts in &times {
                for kind in [0, 1, 7] {
                    let env = log(p, ts, kind);
                    let mut fast = Vec::new();
                    write_numbered(&mut fast, "host/h/+/file/a\tb", i as u64 * 1000, &env);
                    assert_eq!(
                        String::from_utf8_lossy(&fast),
                        String::from_utf8_lossy(&serde_form(
                            "host/h/+/file/a\tb",
                            i as u64 * 1000,
                            &env
                        )),
                        "payload {i} ts {ts}"
                    );
                }
            }
        }
    }

    #[test]
    fn an_encoder_reused_across_entries_writes_each_as_serde_does() {
        let mut enc = Encoder::default();
        let mut k = 0u64;
        for stream in ["a/+/x", "b/+/\"quoted\""] {
            enc.start_run(stream);
            for (i, ts) in [
                5,
                999_999_999,
                1_000_000_000,
                1_000_000_001,
                86_400_000_000_000,
            ]
            .into_iter()
            .enumerate()
            {
                let mut env = log(format!("line {i}").as_bytes(), ts, 0);
                if i % 2 == 1 {
                    env.source_id = "other".into();
                    env.instance_id = format!("{i}");
                }
                let mut fast = Vec::new();
                enc.entry(&mut fast, stream, k, &env);
                assert_eq!(
                    String::from_utf8_lossy(&fast),
                    String::from_utf8_lossy(&serde_form(stream, k, &env))
                );
                k += 1;
            }
        }
    }

    #[test]
    fn other_entries_go_through_serde() {
        let mut env = log(b"x", 5, 0);
        env.tags.insert("k".into(), "v".into());
        let mut fast = Vec::new();
        write_numbered(&mut fast, "s/+/t", 1, &env);
        assert_eq!(fast, serde_form("s/+/t", 1, &env));
    }

    #[test]
    fn escape_detection_is_exact_per_word() {
        for b in 0u8..=255 {
            for pos in 0..8 {
                let mut w = [b'a'; 8];
                w[pos] = b;
                let want = b < 0x20 || b == b'"' || b == b'\\';
                assert_eq!(
                    needs_escape(u64::from_le_bytes(w)),
                    want,
                    "byte {b} at {pos}"
                );
            }
        }
    }
}
