//! The protojson reader: accepts what Go's `protojson.Unmarshal` (default options)
//! accepts for `EnvelopeBatch` and `Envelope`, and refuses what it refuses.
//!
//! A small hand-written parser rather than serde: it must see duplicate keys, keep
//! number text exact (Go accepts `"1e3"` for an int64 but not `"1.5"`), and name the
//! path of every error. The schema is fixed and unknown keys are errors, so nothing is
//! ever skipped and nesting is bounded by the schema.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use bytes::Bytes;
use weir_proto::lv2::{
    Counter, Envelope, EnvelopeBatch, Event, Gauge, GaugeValue, Log, Timer, Value,
    envelope::Message, log, value::Data,
};

use super::JsonError;

/// Reads an `EnvelopeBatch` (`{"batch":[...]}`), e.g. one SSE `data:` payload.
///
/// Accepts each field under its JSON or proto name (identical for these messages),
/// 64-bit integers as strings or numbers (`"5"`, `5`, `5e0`), bytes as standard or
/// URL-safe base64 with or without padding, the log type as `"OUT"`/`"ERR"` or a number,
/// doubles as numbers or `"NaN"`/`"Infinity"`/`"-Infinity"` (or a number in a string),
/// and `null` for "leave unset". Refuses unknown and duplicate keys, duplicate map keys,
/// two members of one oneof, wrong types, and anything after the object but whitespace.
pub fn batch_from_json(s: &str) -> Result<EnvelopeBatch, JsonError> {
    let mut p = Parser::new(s);
    let root = Path::Root;
    p.open_object(&root, "EnvelopeBatch")?;
    let batch = p.batch(&root)?;
    p.finish(&root)?;
    Ok(batch)
}

/// Reads one `Envelope` object; the same rules as [`batch_from_json`].
pub fn envelope_from_json(s: &str) -> Result<Envelope, JsonError> {
    let mut p = Parser::new(s);
    let root = Path::Root;
    p.open_object(&root, "Envelope")?;
    let env = p.envelope(&root)?;
    p.finish(&root)?;
    Ok(env)
}

/// [`batch_from_json`] for a raw body; text that is not UTF-8 is a syntax error, as in
/// Go.
pub fn batch_from_json_slice(b: &[u8]) -> Result<EnvelopeBatch, JsonError> {
    batch_from_json(utf8(b)?)
}

/// [`envelope_from_json`] for a raw body; text that is not UTF-8 is a syntax error.
pub fn envelope_from_json_slice(b: &[u8]) -> Result<Envelope, JsonError> {
    envelope_from_json(utf8(b)?)
}

fn utf8(b: &[u8]) -> Result<&str, JsonError> {
    std::str::from_utf8(b).map_err(|e| JsonError::Syntax {
        path: Path::Root.to_string(),
        offset: e.valid_up_to(),
        reason: "invalid UTF-8".into(),
    })
}

/// Where the parser is, for error messages; rendered only when an error is made.
#[derive(Clone, Copy)]
enum Path<'p> {
    Root,
    Field(&'p Path<'p>, &'static str),
    Index(&'p Path<'p>, usize),
    Key(&'p Path<'p>, &'p str),
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Root => f.write_str("$"),
            Path::Field(p, name) => write!(f, "{p}.{name}"),
            Path::Index(p, i) => write!(f, "{p}[{i}]"),
            Path::Key(p, k) => write!(f, "{p}[{k:?}]"),
        }
    }
}

/// One JSON value's first token. Objects and arrays are only opened.
enum Tok<'a> {
    Str(Cow<'a, str>),
    Num(&'a str),
    Bool(bool),
    Null,
    Object,
    Array,
}

impl Tok<'_> {
    /// How the token looks, for error messages (long strings shortened).
    fn describe(&self) -> String {
        match self {
            Tok::Str(s) => {
                let mut end = s.len().min(64);
                while !s.is_char_boundary(end) {
                    end -= 1;
                }
                if end < s.len() {
                    format!("{:?}…", &s[..end])
                } else {
                    format!("{s:?}")
                }
            }
            Tok::Num(n) => (*n).to_owned(),
            Tok::Bool(b) => b.to_string(),
            Tok::Null => "null".into(),
            Tok::Object => "an object".into(),
            Tok::Array => "an array".into(),
        }
    }
}

fn invalid(path: &Path<'_>, kind: &'static str, tok: &Tok<'_>) -> JsonError {
    JsonError::InvalidValue {
        path: path.to_string(),
        kind,
        found: tok.describe(),
    }
}

/// Records field number `num` as seen in the current object; a second sighting is the
/// "duplicate field" error (Go counts a `null` value as a sighting too).
fn see(seen: &mut u32, num: u32, path: &Path<'_>, name: &str) -> Result<(), JsonError> {
    let bit = 1u32 << num;
    if *seen & bit != 0 {
        return Err(JsonError::DuplicateField {
            path: path.to_string(),
            name: name.to_owned(),
        });
    }
    *seen |= bit;
    Ok(())
}

/// Claims a oneof for the member `name`; a second member is an error.
fn claim(
    slot: &mut Option<&'static str>,
    oneof: &'static str,
    name: &'static str,
    path: &Path<'_>,
) -> Result<(), JsonError> {
    if let Some(first) = *slot {
        return Err(JsonError::OneofAlreadySet {
            path: path.to_string(),
            oneof,
            first,
        });
    }
    *slot = Some(name);
    Ok(())
}

fn unknown(path: &Path<'_>, name: Cow<'_, str>) -> JsonError {
    JsonError::UnknownField {
        path: path.to_string(),
        name: name.into_owned(),
    }
}

struct Parser<'a> {
    s: &'a str,
    b: &'a [u8],
    pos: usize,
}

impl<'a> Parser<'a> {
    fn new(s: &'a str) -> Self {
        Parser {
            s,
            b: s.as_bytes(),
            pos: 0,
        }
    }

    fn syntax_at(&self, path: &Path<'_>, offset: usize, reason: impl Into<String>) -> JsonError {
        JsonError::Syntax {
            path: path.to_string(),
            offset,
            reason: reason.into(),
        }
    }

    fn syntax(&self, path: &Path<'_>, reason: impl Into<String>) -> JsonError {
        self.syntax_at(path, self.pos, reason)
    }

    /// A description of what is at `pos`, for "expected X" errors.
    fn found(&self) -> String {
        match self.s.get(self.pos..).and_then(|r| r.chars().next()) {
            Some(c) => format!("found {c:?}"),
            None => "found the end of the input".into(),
        }
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.pos) {
            self.pos += 1;
        }
    }

    fn slice(&self, from: usize, to: usize) -> &'a str {
        // Callers only cut at ASCII bytes, which are always char boundaries.
        self.s.get(from..to).unwrap_or_default()
    }

    /// After the top-level value: only whitespace may follow.
    fn finish(&mut self, path: &Path<'_>) -> Result<(), JsonError> {
        self.ws();
        if self.pos < self.b.len() {
            return Err(self.syntax(
                path,
                format!(
                    "unexpected data after the top-level object ({})",
                    self.found()
                ),
            ));
        }
        Ok(())
    }

    /// Reads the first token of the next value.
    fn token(&mut self, path: &Path<'_>) -> Result<Tok<'a>, JsonError> {
        self.ws();
        match self.b.get(self.pos) {
            None => Err(self.syntax(path, "unexpected end of input, expected a value")),
            Some(b'"') => Ok(Tok::Str(self.string(path)?)),
            Some(b'{') => {
                self.pos += 1;
                Ok(Tok::Object)
            }
            Some(b'[') => {
                self.pos += 1;
                Ok(Tok::Array)
            }
            Some(b't') => self.literal(path, "true", Tok::Bool(true)),
            Some(b'f') => self.literal(path, "false", Tok::Bool(false)),
            Some(b'n') => self.literal(path, "null", Tok::Null),
            Some(b'-' | b'0'..=b'9') => match scan_number(&self.b[self.pos..]) {
                Some(n) => {
                    let start = self.pos;
                    self.pos += n;
                    Ok(Tok::Num(self.slice(start, self.pos)))
                }
                None => Err(self.syntax(path, "invalid number")),
            },
            Some(_) => Err(self.syntax(path, format!("expected a value, {}", self.found()))),
        }
    }

    fn literal(&mut self, path: &Path<'_>, word: &str, tok: Tok<'a>) -> Result<Tok<'a>, JsonError> {
        if self.b[self.pos..].starts_with(word.as_bytes()) {
            self.pos += word.len();
            Ok(tok)
        } else {
            Err(self.syntax(path, format!("invalid literal, expected {word}")))
        }
    }

    /// Reads a JSON string starting at its opening quote. Borrowed when it has no
    /// escapes.
    fn string(&mut self, path: &Path<'_>) -> Result<Cow<'a, str>, JsonError> {
        let start = self.pos + 1;
        let mut i = start;
        loop {
            match self.b.get(i) {
                None => return Err(self.syntax_at(path, i, "unterminated string")),
                Some(b'"') => {
                    self.pos = i + 1;
                    return Ok(Cow::Borrowed(self.slice(start, i)));
                }
                Some(b'\\') => break,
                Some(&c) if c < 0x20 => {
                    return Err(self.syntax_at(
                        path,
                        i,
                        format!("control character {:?} in string", c as char),
                    ));
                }
                Some(_) => i += 1,
            }
        }
        let mut out = String::with_capacity(i - start + 16);
        out.push_str(self.slice(start, i));
        loop {
            match self.b.get(i) {
                None => return Err(self.syntax_at(path, i, "unterminated string")),
                Some(b'"') => {
                    self.pos = i + 1;
                    return Ok(Cow::Owned(out));
                }
                Some(b'\\') => {
                    let simple = match self.b.get(i + 1) {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => {
                            let (c, len) = self.unicode_escape(path, i)?;
                            out.push(c);
                            i += len;
                            continue;
                        }
                        None => return Err(self.syntax_at(path, i, "unterminated string")),
                        Some(_) => return Err(self.syntax_at(path, i, "invalid escape in string")),
                    };
                    out.push(simple);
                    i += 2;
                }
                Some(&c) if c < 0x20 => {
                    return Err(self.syntax_at(
                        path,
                        i,
                        format!("control character {:?} in string", c as char),
                    ));
                }
                Some(_) => {
                    let run = i;
                    while let Some(&c) = self.b.get(i) {
                        if c == b'"' || c == b'\\' || c < 0x20 {
                            break;
                        }
                        i += 1;
                    }
                    out.push_str(self.slice(run, i));
                }
            }
        }
    }

    /// A `\uXXXX` escape at `i` (its backslash), with a following low surrogate when
    /// the first is a high one. Lone surrogates are errors, as in Go. Returns the char
    /// and the number of bytes used.
    fn unicode_escape(&self, path: &Path<'_>, i: usize) -> Result<(char, usize), JsonError> {
        let bad = || self.syntax_at(path, i, "invalid \\u escape in string");
        let hi = hex4(self.b.get(i + 2..i + 6)).ok_or_else(bad)?;
        if !(0xD800..0xE000).contains(&hi) {
            return char::from_u32(hi).map(|c| (c, 6)).ok_or_else(bad);
        }
        if hi >= 0xDC00 || self.b.get(i + 6..i + 8) != Some(b"\\u") {
            return Err(bad());
        }
        let lo = hex4(self.b.get(i + 8..i + 12)).ok_or_else(bad)?;
        if !(0xDC00..0xE000).contains(&lo) {
            return Err(bad());
        }
        let c = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
        char::from_u32(c).map(|c| (c, 12)).ok_or_else(bad)
    }

    /// After a message's `{` or a member's value: the next key, or `None` at `}`.
    fn next_key(
        &mut self,
        first: &mut bool,
        path: &Path<'_>,
    ) -> Result<Option<Cow<'a, str>>, JsonError> {
        self.ws();
        match self.b.get(self.pos) {
            Some(b'}') => {
                self.pos += 1;
                return Ok(None);
            }
            Some(b',') if !*first => {
                self.pos += 1;
                self.ws();
            }
            _ if *first => {}
            _ => return Err(self.syntax(path, format!("expected ',' or '}}', {}", self.found()))),
        }
        *first = false;
        if self.b.get(self.pos) != Some(&b'"') {
            return Err(self.syntax(path, format!("expected a string key, {}", self.found())));
        }
        let key = self.string(path)?;
        self.ws();
        if self.b.get(self.pos) != Some(&b':') {
            return Err(self.syntax(path, format!("expected ':' after key, {}", self.found())));
        }
        self.pos += 1;
        Ok(Some(key))
    }

    /// After `[` or an element: whether another element follows (`false` at `]`).
    fn next_elem(&mut self, first: &mut bool, path: &Path<'_>) -> Result<bool, JsonError> {
        self.ws();
        let more = match self.b.get(self.pos) {
            Some(b']') => {
                self.pos += 1;
                false
            }
            Some(b',') if !*first => {
                self.pos += 1;
                true
            }
            _ if *first => true,
            _ => return Err(self.syntax(path, format!("expected ',' or ']', {}", self.found()))),
        };
        *first = false;
        Ok(more)
    }

    /// The top-level value must be an object.
    fn open_object(&mut self, path: &Path<'_>, what: &'static str) -> Result<(), JsonError> {
        match self.token(path)? {
            Tok::Object => Ok(()),
            t => Err(JsonError::InvalidValue {
                path: path.to_string(),
                kind: what,
                found: t.describe(),
            }),
        }
    }

    // ---- scalars; each returns None for `null` ----

    /// Reads field `name` (number `seen.1`) of the message at `path` with `read` into
    /// `slot`, refusing a second occurrence; a JSON `null` leaves `slot` at its default.
    fn field<T>(
        &mut self,
        (seen, num): (&mut u32, u32),
        path: &Path<'_>,
        name: &'static str,
        read: impl FnOnce(&mut Self, &Path<'_>) -> Result<Option<T>, JsonError>,
        slot: &mut T,
    ) -> Result<(), JsonError> {
        see(seen, num, path, name)?;
        if let Some(v) = read(self, &Path::Field(path, name))? {
            *slot = v;
        }
        Ok(())
    }

    fn string_field(&mut self, path: &Path<'_>) -> Result<Option<String>, JsonError> {
        match self.token(path)? {
            Tok::Str(s) => Ok(Some(s.into_owned())),
            Tok::Null => Ok(None),
            t => Err(invalid(path, "string", &t)),
        }
    }

    /// Text of a 64-bit integer in Go's normal form, from a number or a string.
    fn int_text(
        &mut self,
        path: &Path<'_>,
        kind: &'static str,
    ) -> Result<Option<String>, JsonError> {
        let tok = self.token(path)?;
        let text = match &tok {
            Tok::Null => return Ok(None),
            Tok::Num(n) => normalize_int(n),
            Tok::Str(s) if is_number(s) => normalize_int(s),
            _ => None,
        };
        text.map(Some).ok_or_else(|| invalid(path, kind, &tok))
    }

    fn int64_field(&mut self, path: &Path<'_>) -> Result<Option<i64>, JsonError> {
        let Some(text) = self.int_text(path, "int64")? else {
            return Ok(None);
        };
        text.parse().map(Some).map_err(|_| JsonError::InvalidValue {
            path: path.to_string(),
            kind: "int64",
            found: text,
        })
    }

    fn uint64_field(&mut self, path: &Path<'_>) -> Result<Option<u64>, JsonError> {
        let Some(text) = self.int_text(path, "uint64")? else {
            return Ok(None);
        };
        text.parse().map(Some).map_err(|_| JsonError::InvalidValue {
            path: path.to_string(),
            kind: "uint64",
            found: text,
        })
    }

    fn double_field(&mut self, path: &Path<'_>) -> Result<Option<f64>, JsonError> {
        let tok = self.token(path)?;
        let v = match &tok {
            Tok::Null => return Ok(None),
            Tok::Num(n) => parse_double(n),
            Tok::Str(s) => match &**s {
                "NaN" => Some(f64::NAN),
                "Infinity" => Some(f64::INFINITY),
                "-Infinity" => Some(f64::NEG_INFINITY),
                s if is_number(s) => parse_double(s),
                _ => None,
            },
            _ => None,
        };
        v.map(Some).ok_or_else(|| invalid(path, "double", &tok))
    }

    fn bytes_field(&mut self, path: &Path<'_>) -> Result<Option<Bytes>, JsonError> {
        match self.token(path)? {
            Tok::Null => Ok(None),
            Tok::Str(s) => match decode_base64(&s) {
                Some(b) => Ok(Some(Bytes::from(b))),
                None => Err(JsonError::InvalidValue {
                    path: path.to_string(),
                    kind: "bytes (base64)",
                    found: Tok::Str(s).describe(),
                }),
            },
            t => Err(invalid(path, "bytes (base64)", &t)),
        }
    }

    fn log_type_field(&mut self, path: &Path<'_>) -> Result<Option<i32>, JsonError> {
        let tok = self.token(path)?;
        let v = match &tok {
            Tok::Null => return Ok(None),
            Tok::Str(s) => log::Type::from_str_name(s).map(|t| t as i32),
            Tok::Num(n) => normalize_int(n).and_then(|t| t.parse::<i32>().ok()),
            _ => None,
        };
        v.map(Some)
            .ok_or_else(|| invalid(path, "enum loggregator.v2.Log.Type", &tok))
    }

    /// For a message-typed field: `Ok(true)` after its `{`, `Ok(false)` for `null`.
    fn message_start(&mut self, path: &Path<'_>, kind: &'static str) -> Result<bool, JsonError> {
        match self.token(path)? {
            Tok::Object => Ok(true),
            Tok::Null => Ok(false),
            t => Err(invalid(path, kind, &t)),
        }
    }

    /// For a map field: `Ok(true)` after its `{`, `Ok(false)` for `null`.
    fn map_start(&mut self, path: &Path<'_>) -> Result<bool, JsonError> {
        match self.token(path)? {
            Tok::Object => Ok(true),
            Tok::Null => Ok(false),
            t => Err(invalid(path, "map", &t)),
        }
    }

    /// A map value that must be a message: `null` is an error here, as in Go.
    fn map_message_start(&mut self, path: &Path<'_>, kind: &'static str) -> Result<(), JsonError> {
        match self.token(path)? {
            Tok::Object => Ok(()),
            t => Err(invalid(path, kind, &t)),
        }
    }

    // ---- messages; each is called just after its `{` ----

    fn batch(&mut self, path: &Path<'_>) -> Result<EnvelopeBatch, JsonError> {
        let mut out = EnvelopeBatch::default();
        let mut seen = 0;
        let mut first = true;
        while let Some(key) = self.next_key(&mut first, path)? {
            if key != "batch" {
                return Err(unknown(path, key));
            }
            see(&mut seen, 1, path, &key)?;
            let fp = Path::Field(path, "batch");
            match self.token(&fp)? {
                Tok::Null => continue,
                Tok::Array => {}
                t => return Err(invalid(&fp, "repeated loggregator.v2.Envelope", &t)),
            }
            let mut first_elem = true;
            while self.next_elem(&mut first_elem, &fp)? {
                let ep = Path::Index(&fp, out.batch.len());
                self.map_message_start(&ep, "message loggregator.v2.Envelope")?;
                let env = self.envelope(&ep)?;
                out.batch.push(env);
            }
        }
        Ok(out)
    }

    fn envelope(&mut self, path: &Path<'_>) -> Result<Envelope, JsonError> {
        let mut env = Envelope::default();
        let mut seen = 0;
        let mut oneof = None;
        let mut first = true;
        while let Some(key) = self.next_key(&mut first, path)? {
            let (num, name) = match &*key {
                "timestamp" => (1, "timestamp"),
                "source_id" => (2, "source_id"),
                "deprecated_tags" => (3, "deprecated_tags"),
                "log" => (4, "log"),
                "counter" => (5, "counter"),
                "gauge" => (6, "gauge"),
                "timer" => (7, "timer"),
                "instance_id" => (8, "instance_id"),
                "tags" => (9, "tags"),
                "event" => (10, "event"),
                _ => return Err(unknown(path, key)),
            };
            see(&mut seen, num, path, name)?;
            let fp = Path::Field(path, name);
            match num {
                1 => {
                    if let Some(v) = self.int64_field(&fp)? {
                        env.timestamp = v;
                    }
                }
                2 => {
                    if let Some(v) = self.string_field(&fp)? {
                        env.source_id = v;
                    }
                }
                8 => {
                    if let Some(v) = self.string_field(&fp)? {
                        env.instance_id = v;
                    }
                }
                3 => {
                    if self.map_start(&fp)? {
                        self.value_map(&fp, &mut env.deprecated_tags)?;
                    }
                }
                9 => {
                    if self.map_start(&fp)? {
                        self.string_map(&fp, &mut env.tags)?;
                    }
                }
                _ => {
                    let kind = match num {
                        4 => "message loggregator.v2.Log",
                        5 => "message loggregator.v2.Counter",
                        6 => "message loggregator.v2.Gauge",
                        7 => "message loggregator.v2.Timer",
                        _ => "message loggregator.v2.Event",
                    };
                    if !self.message_start(&fp, kind)? {
                        continue;
                    }
                    claim(&mut oneof, "message", name, &fp)?;
                    env.message = Some(match num {
                        4 => Message::Log(self.log(&fp)?),
                        5 => Message::Counter(self.counter(&fp)?),
                        6 => Message::Gauge(self.gauge(&fp)?),
                        7 => Message::Timer(self.timer(&fp)?),
                        _ => Message::Event(self.event(&fp)?),
                    });
                }
            }
        }
        Ok(env)
    }

    fn string_map(
        &mut self,
        path: &Path<'_>,
        map: &mut HashMap<String, String>,
    ) -> Result<(), JsonError> {
        let mut first = true;
        while let Some(key) = self.next_key(&mut first, path)? {
            if map.contains_key(&*key) {
                return Err(dup_key(path, key));
            }
            let value = {
                let kp = Path::Key(path, &key);
                match self.token(&kp)? {
                    Tok::Str(v) => v.into_owned(),
                    t => return Err(invalid(&kp, "string", &t)),
                }
            };
            map.insert(key.into_owned(), value);
        }
        Ok(())
    }

    fn value_map(
        &mut self,
        path: &Path<'_>,
        map: &mut HashMap<String, Value>,
    ) -> Result<(), JsonError> {
        let mut first = true;
        while let Some(key) = self.next_key(&mut first, path)? {
            if map.contains_key(&*key) {
                return Err(dup_key(path, key));
            }
            let value = {
                let kp = Path::Key(path, &key);
                self.map_message_start(&kp, "message loggregator.v2.Value")?;
                self.value(&kp)?
            };
            map.insert(key.into_owned(), value);
        }
        Ok(())
    }

    fn value(&mut self, path: &Path<'_>) -> Result<Value, JsonError> {
        let mut out = Value::default();
        let mut seen = 0;
        let mut oneof = None;
        let mut first = true;
        while let Some(key) = self.next_key(&mut first, path)? {
            let (num, name) = match &*key {
                "text" => (1, "text"),
                "integer" => (2, "integer"),
                "decimal" => (3, "decimal"),
                _ => return Err(unknown(path, key)),
            };
            see(&mut seen, num, path, name)?;
            let fp = Path::Field(path, name);
            let data = match num {
                1 => self.string_field(&fp)?.map(Data::Text),
                2 => self.int64_field(&fp)?.map(Data::Integer),
                _ => self.double_field(&fp)?.map(Data::Decimal),
            };
            if let Some(d) = data {
                claim(&mut oneof, "data", name, &fp)?;
                out.data = Some(d);
            }
        }
        Ok(out)
    }

    fn log(&mut self, path: &Path<'_>) -> Result<Log, JsonError> {
        let mut out = Log::default();
        let mut seen = 0;
        let mut first = true;
        while let Some(key) = self.next_key(&mut first, path)? {
            match &*key {
                "payload" => self.field(
                    (&mut seen, 1),
                    path,
                    "payload",
                    Self::bytes_field,
                    &mut out.payload,
                )?,
                "type" => {
                    see(&mut seen, 2, path, "type")?;
                    if let Some(v) = self.log_type_field(&Path::Field(path, "type"))? {
                        out.r#type = v;
                    }
                }
                _ => return Err(unknown(path, key)),
            }
        }
        Ok(out)
    }

    fn counter(&mut self, path: &Path<'_>) -> Result<Counter, JsonError> {
        let mut out = Counter::default();
        let mut seen = 0;
        let mut first = true;
        while let Some(key) = self.next_key(&mut first, path)? {
            match &*key {
                "name" => self.field(
                    (&mut seen, 1),
                    path,
                    "name",
                    Self::string_field,
                    &mut out.name,
                )?,
                "delta" => self.field(
                    (&mut seen, 2),
                    path,
                    "delta",
                    Self::uint64_field,
                    &mut out.delta,
                )?,
                "total" => self.field(
                    (&mut seen, 3),
                    path,
                    "total",
                    Self::uint64_field,
                    &mut out.total,
                )?,
                _ => return Err(unknown(path, key)),
            }
        }
        Ok(out)
    }

    fn gauge(&mut self, path: &Path<'_>) -> Result<Gauge, JsonError> {
        let mut out = Gauge::default();
        let mut seen = 0;
        let mut first = true;
        while let Some(key) = self.next_key(&mut first, path)? {
            if key != "metrics" {
                return Err(unknown(path, key));
            }
            see(&mut seen, 1, path, "metrics")?;
            let fp = Path::Field(path, "metrics");
            if !self.map_start(&fp)? {
                continue;
            }
            let mut first_metric = true;
            while let Some(name) = self.next_key(&mut first_metric, &fp)? {
                if out.metrics.contains_key(&*name) {
                    return Err(dup_key(&fp, name));
                }
                let value = {
                    let kp = Path::Key(&fp, &name);
                    self.map_message_start(&kp, "message loggregator.v2.GaugeValue")?;
                    self.gauge_value(&kp)?
                };
                out.metrics.insert(name.into_owned(), value);
            }
        }
        Ok(out)
    }

    fn gauge_value(&mut self, path: &Path<'_>) -> Result<GaugeValue, JsonError> {
        let mut out = GaugeValue::default();
        let mut seen = 0;
        let mut first = true;
        while let Some(key) = self.next_key(&mut first, path)? {
            match &*key {
                "unit" => self.field(
                    (&mut seen, 1),
                    path,
                    "unit",
                    Self::string_field,
                    &mut out.unit,
                )?,
                "value" => self.field(
                    (&mut seen, 2),
                    path,
                    "value",
                    Self::double_field,
                    &mut out.value,
                )?,
                _ => return Err(unknown(path, key)),
            }
        }
        Ok(out)
    }

    fn timer(&mut self, path: &Path<'_>) -> Result<Timer, JsonError> {
        let mut out = Timer::default();
        let mut seen = 0;
        let mut first = true;
        while let Some(key) = self.next_key(&mut first, path)? {
            match &*key {
                "name" => self.field(
                    (&mut seen, 1),
                    path,
                    "name",
                    Self::string_field,
                    &mut out.name,
                )?,
                "start" => self.field(
                    (&mut seen, 2),
                    path,
                    "start",
                    Self::int64_field,
                    &mut out.start,
                )?,
                "stop" => self.field(
                    (&mut seen, 3),
                    path,
                    "stop",
                    Self::int64_field,
                    &mut out.stop,
                )?,
                _ => return Err(unknown(path, key)),
            }
        }
        Ok(out)
    }

    fn event(&mut self, path: &Path<'_>) -> Result<Event, JsonError> {
        let mut out = Event::default();
        let mut seen = 0;
        let mut first = true;
        while let Some(key) = self.next_key(&mut first, path)? {
            match &*key {
                "title" => self.field(
                    (&mut seen, 1),
                    path,
                    "title",
                    Self::string_field,
                    &mut out.title,
                )?,
                "body" => self.field(
                    (&mut seen, 2),
                    path,
                    "body",
                    Self::string_field,
                    &mut out.body,
                )?,
                _ => return Err(unknown(path, key)),
            }
        }
        Ok(out)
    }
}

fn dup_key(path: &Path<'_>, key: Cow<'_, str>) -> JsonError {
    JsonError::DuplicateMapKey {
        path: path.to_string(),
        key: key.into_owned(),
    }
}

fn hex4(b: Option<&[u8]>) -> Option<u32> {
    let b = b?;
    let mut v = 0u32;
    for &c in b {
        v = v * 16 + (c as char).to_digit(16)?;
    }
    Some(v)
}

/// The length of the JSON number (RFC 8259 grammar) at the start of `b`, or `None`.
/// A `.` or `e` not followed by digits ends the number before it (the caller then
/// finds a stray character, as Go does).
fn scan_number(b: &[u8]) -> Option<usize> {
    let digits = |from: usize| b[from..].iter().take_while(|c| c.is_ascii_digit()).count();
    let mut i = usize::from(b.first() == Some(&b'-'));
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => i += 1 + digits(i + 1),
        _ => return None,
    }
    if b.get(i) == Some(&b'.') && b.get(i + 1).is_some_and(u8::is_ascii_digit) {
        i += 1 + digits(i + 1);
    }
    if let Some(b'e' | b'E') = b.get(i) {
        let sign = usize::from(matches!(b.get(i + 1), Some(b'+' | b'-')));
        let n = digits(i + 1 + sign);
        if n > 0 {
            i += 1 + sign + n;
        }
    }
    Some(i)
}

/// Whether all of `s` is one JSON number (how Go reads a number inside a string).
fn is_number(s: &str) -> bool {
    scan_number(s.as_bytes()) == Some(s.len())
}

/// A JSON number as an integer in normal form (`"-12"`), or `None` when it is not an
/// integer: Go's `normalizeToIntString`, so `1e3`, `1.0` and `10e-1` are integers and
/// `1.5` and `1e-1` are not. Range is checked by the caller's parse.
fn normalize_int(lex: &str) -> Option<String> {
    let (neg, rest) = match lex.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, lex),
    };
    let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
    let (mut intp, rest) = rest.split_at(int_len);
    if intp == "0" {
        intp = "";
    }
    let (frac, rest) = match rest.strip_prefix('.') {
        Some(r) => {
            let n = r.bytes().take_while(u8::is_ascii_digit).count();
            (r[..n].trim_end_matches('0'), &r[n..])
        }
        None => ("", rest),
    };
    if intp.is_empty() && frac.is_empty() {
        return Some("0".into());
    }
    let exp: i64 = match rest.strip_prefix(['e', 'E']) {
        Some(e) => e.parse::<i32>().ok()?.into(),
        None => 0,
    };
    let mut num = String::with_capacity(21);
    if neg {
        num.push('-');
    }
    if exp >= 0 {
        let (frac_len, int_len) = (frac.len() as i64, intp.len() as i64);
        if frac_len > exp || int_len + exp > 20 {
            return None;
        }
        num.push_str(intp);
        num.push_str(frac);
        for _ in 0..exp - frac_len {
            num.push('0');
        }
    } else {
        if !frac.is_empty() {
            return None;
        }
        let index = usize::try_from(intp.len() as i64 + exp).ok()?;
        if intp[index..].bytes().any(|c| c != b'0') {
            return None;
        }
        num.push_str(&intp[..index]);
    }
    Some(num)
}

/// A JSON number as a double; out of range (rounds to infinity) is refused, as Go's
/// `strconv.ParseFloat` refuses it.
fn parse_double(lex: &str) -> Option<f64> {
    lex.parse::<f64>().ok().filter(|v| v.is_finite())
}

const fn engine(alphabet: &alphabet::Alphabet, padded: bool) -> GeneralPurpose {
    GeneralPurpose::new(
        alphabet,
        GeneralPurposeConfig::new()
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(if padded {
                DecodePaddingMode::RequireCanonical
            } else {
                DecodePaddingMode::RequireNone
            }),
    )
}

const STD_PADDED: GeneralPurpose = engine(&alphabet::STANDARD, true);
const STD_RAW: GeneralPurpose = engine(&alphabet::STANDARD, false);
const URL_PADDED: GeneralPurpose = engine(&alphabet::URL_SAFE, true);
const URL_RAW: GeneralPurpose = engine(&alphabet::URL_SAFE, false);

/// Base64 as Go protojson reads `bytes`: the URL-safe alphabet when the text has `-`
/// or `_`, padded when its length is a multiple of 4 and unpadded otherwise; CR and LF
/// are ignored, and non-zero trailing bits are accepted (Go's decoder is not strict).
fn decode_base64(s: &str) -> Option<Vec<u8>> {
    let url = s.contains(['-', '_']);
    let padded = s.len().is_multiple_of(4);
    let cleaned: Cow<'_, str> = if s.contains(['\r', '\n']) {
        Cow::Owned(s.chars().filter(|c| !matches!(c, '\r' | '\n')).collect())
    } else {
        Cow::Borrowed(s)
    };
    let engine = match (url, padded) {
        (false, true) => &STD_PADDED,
        (false, false) => &STD_RAW,
        (true, true) => &URL_PADDED,
        (true, false) => &URL_RAW,
    };
    engine.decode(cleaned.as_bytes()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_normalize_like_go() {
        let ok: &[(&str, &str)] = &[
            ("0", "0"),
            ("-0", "0"),
            ("5", "5"),
            ("-7", "-7"),
            ("1e3", "1000"),
            ("1E+3", "1000"),
            ("1.0", "1"),
            ("1.50e1", "15"),
            ("10e-1", "1"),
            ("0.05e2", "05"),
            ("0.0", "0"),
            ("1700000000000000000", "1700000000000000000"),
        ];
        for (lex, want) in ok {
            assert_eq!(normalize_int(lex).as_deref(), Some(*want), "{lex}");
        }
        assert_eq!(normalize_int("0e99999999999").as_deref(), Some("0"));
        for lex in ["1.5", "1e-1", "0.5", "1e21", "123e-5", "1e99999999999"] {
            assert_eq!(normalize_int(lex), None, "{lex}");
        }
    }

    #[test]
    fn numbers_scan_by_json_grammar() {
        for good in ["0", "-0", "12", "1.5", "-1.5e10", "1E-3", "0e0"] {
            assert!(is_number(good), "{good}");
        }
        for bad in [
            "", "-", "01", "+1", "1.", ".5", "1e", "1e+", " 1", "1 ", "0x10", "NaN",
        ] {
            assert!(!is_number(bad), "{bad}");
        }
    }

    #[test]
    fn base64_accepts_go_variants() {
        for s in ["SGk=", "SGk", "SGl="] {
            assert_eq!(decode_base64(s).as_deref(), Some(&b"Hi"[..]), "{s}");
        }
        // Go skips CR and LF, but picks padded or unpadded by the length with them.
        assert_eq!(
            decode_base64("SGVs\nbG8h\r\n\n").as_deref(),
            Some(&b"Hello!"[..])
        );
        assert_eq!(decode_base64("-_8=").as_deref(), Some(&[0xfb, 0xff][..]));
        assert_eq!(decode_base64("-_8").as_deref(), Some(&[0xfb, 0xff][..]));
        assert_eq!(decode_base64("+/8=").as_deref(), Some(&[0xfb, 0xff][..]));
        assert_eq!(decode_base64("").as_deref(), Some(&[][..]));
        for bad in ["SGk=\n", "SG\nk", "S", "SG=", "+_8=", "SGk!", "SGk==="] {
            assert_eq!(decode_base64(bad), None, "{bad}");
        }
    }
}
