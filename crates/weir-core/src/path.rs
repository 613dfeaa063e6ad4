//! Stream names and paths, following LogDog's grammar (PROTOCOLS.md section 5.1).
//!
//! A *stream name* is one or more segments joined by `/`. Each segment is non-empty,
//! made of ASCII letters, digits, `:`, `_`, `-` and `.`, and begins with a letter or a
//! digit. A name is at most 4096 bytes. A *stream path* is `prefix/+/name`: two names
//! joined by a segment that is exactly `+`.
//!
//! Streams of Loggregator clients (and other outside clients) live under the reserved
//! prefix [`LOGGREGATOR_PREFIX`]: see [`loggregator_path`] for the mapping rule.
//!
//! The prefix [`WEIR_PREFIX`] is reserved for weir's own events: the collector's stream
//! `weir/+/events`, and one stream per agent that ships its events,
//! [`agent_events_path`] (`weir/agent/<member>/+/events`, or a later generation of it,
//! `…/+/events/gen-N`). A producer may write only agent event streams there
//! ([`StreamPath::parse_producer`]); anything else under `weir/` is refused with
//! [`PathError::ReservedWeirPrefix`].

use std::fmt;

/// Maximum length of a stream name (prefix or name part), in bytes.
pub const MAX_NAME_BYTES: usize = 4096;

/// The first segment of every collector-owned stream of outside clients.
pub const LOGGREGATOR_PREFIX: &str = "loggregator";

/// The first segment of every stream of weir's own events.
pub const WEIR_PREFIX: &str = "weir";

/// Why a stream name or path is invalid; the message names the rule that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("stream path is empty")]
    Empty,
    #[error("stream path {0:?} has no \"/+/\" separating prefix and name")]
    NoSeparator(String),
    #[error("{part} of stream path is {len} bytes, over the limit of {MAX_NAME_BYTES}")]
    TooLong { part: &'static str, len: usize },
    #[error("{part} of stream path has an empty segment (leading, trailing or double \"/\")")]
    EmptySegment { part: &'static str },
    #[error("{part} of stream path: segment {segment:?} must begin with an ASCII letter or digit")]
    BadSegmentStart { part: &'static str, segment: String },
    #[error(
        "{part} of stream path: character {ch:?} is not allowed (only ASCII letters, digits, ':', '_', '-', '.' and '/')"
    )]
    BadCharacter { part: &'static str, ch: char },
    #[error("the prefix \"loggregator/\" is reserved for streams the collector owns")]
    ReservedPrefix,
    #[error(
        "the prefix \"weir/\" is reserved for weir's own events: producers may write only agent event streams weir/agent/<member>/+/events"
    )]
    ReservedWeirPrefix,
}

fn allowed_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, ':' | '_' | '-' | '.')
}

/// Checks one stream name (a prefix or a name part). `part` names it in errors.
pub fn validate_name(name: &str, part: &'static str) -> Result<(), PathError> {
    if name.is_empty() {
        return Err(PathError::EmptySegment { part });
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(PathError::TooLong {
            part,
            len: name.len(),
        });
    }
    for segment in name.split('/') {
        let Some(first) = segment.chars().next() else {
            return Err(PathError::EmptySegment { part });
        };
        if !first.is_ascii_alphanumeric() {
            return Err(PathError::BadSegmentStart {
                part,
                segment: segment.to_string(),
            });
        }
        if let Some(ch) = segment.chars().find(|c| !allowed_char(*c)) {
            return Err(PathError::BadCharacter { part, ch });
        }
    }
    Ok(())
}

/// A valid full stream path `prefix/+/name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamPath {
    full: String,
    plus: usize,
}

impl StreamPath {
    /// Parses and validates a full path.
    pub fn parse(path: &str) -> Result<Self, PathError> {
        if path.is_empty() {
            return Err(PathError::Empty);
        }
        let plus = find_separator(path).ok_or_else(|| PathError::NoSeparator(path.into()))?;
        validate_name(&path[..plus], "prefix")?;
        validate_name(&path[plus + 3..], "name")?;
        Ok(StreamPath {
            full: path.to_string(),
            plus,
        })
    }

    /// Parses a path that a weir producer may register: valid, not under the reserved
    /// `loggregator/` prefix, and under the reserved `weir/` prefix only when it is an
    /// agent's event stream ([`StreamPath::is_agent_events`]).
    pub fn parse_producer(path: &str) -> Result<Self, PathError> {
        let p = Self::parse(path)?;
        if p.is_collector_owned() {
            return Err(PathError::ReservedPrefix);
        }
        if p.is_weir_reserved() && !p.is_agent_events() {
            return Err(PathError::ReservedWeirPrefix);
        }
        Ok(p)
    }

    /// The whole path.
    pub fn as_str(&self) -> &str {
        &self.full
    }

    /// The prefix (before `/+/`).
    pub fn prefix(&self) -> &str {
        &self.full[..self.plus]
    }

    /// The name (after `/+/`).
    pub fn name(&self) -> &str {
        &self.full[self.plus + 3..]
    }

    /// Whether the path is under the reserved `loggregator/` prefix.
    pub fn is_collector_owned(&self) -> bool {
        self.prefix() == LOGGREGATOR_PREFIX
            || self
                .prefix()
                .strip_prefix(LOGGREGATOR_PREFIX)
                .is_some_and(|rest| rest.starts_with('/'))
    }
}

impl StreamPath {
    /// Whether the path is under the reserved `weir/` prefix (weir's own events).
    pub fn is_weir_reserved(&self) -> bool {
        first_segment(self.prefix()) == WEIR_PREFIX
    }

    /// Whether the path is an agent's event stream: prefix `weir/agent/<member>` (one
    /// segment), name `events` or a generation of it (`events/gen-N`).
    pub fn is_agent_events(&self) -> bool {
        let mut prefix = self.prefix().split('/');
        let shape = (prefix.next(), prefix.next(), prefix.next(), prefix.next());
        let prefix_ok = matches!(shape, (Some(WEIR_PREFIX), Some("agent"), Some(_), None));
        let name_ok = match self.name().strip_prefix("events") {
            Some("") => true,
            Some(rest) => rest
                .strip_prefix("/gen-")
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())),
            None => false,
        };
        prefix_ok && name_ok
    }
}

fn first_segment(name: &str) -> &str {
    name.split('/').next().unwrap_or(name)
}

/// The stream an agent named `member` ships its events on:
/// `weir/agent/<member>/+/events`, the member mapped by [`to_segment`].
pub fn agent_events_path(member: &str) -> String {
    format!("{WEIR_PREFIX}/agent/{}/+/events", to_segment(member))
}

impl fmt::Display for StreamPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

/// Position of the first segment that is exactly `+` (the `/` before it).
fn find_separator(path: &str) -> Option<usize> {
    let bytes = path.as_bytes();
    let mut start = 0;
    for (i, b) in bytes
        .iter()
        .enumerate()
        .chain(std::iter::once((bytes.len(), &b'/')))
    {
        if *b == b'/' {
            if &path[start..i] == "+" && start > 0 && i < bytes.len() {
                return Some(start - 1);
            }
            start = i + 1;
        }
    }
    None
}

/// Maps any string into one valid path segment.
///
/// The rule (documented for users): every character that is not an ASCII letter, digit,
/// `:`, `_`, `-` or `.` becomes `_` (so `/` does too); a segment that does not begin with
/// a letter or digit gets `x` put in front; an empty string becomes `unknown`; the result
/// is cut to 1024 bytes. Different inputs may map to the same segment (`a/b` and `a_b`).
pub fn to_segment(s: &str) -> String {
    if s.is_empty() {
        return "unknown".to_string();
    }
    let mut out: String = s
        .chars()
        .map(|c| if allowed_char(c) { c } else { '_' })
        .take(1024)
        .collect();
    if !out.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        out.insert(0, 'x');
    }
    out.truncate(1024);
    out
}

/// The stream of a Loggregator (or other outside) client's envelope:
/// `loggregator/<source_id>/+/<instance_id, or 0>`, each mapped by [`to_segment`].
pub fn loggregator_path(source_id: &str, instance_id: &str) -> String {
    let instance = if instance_id.is_empty() {
        "0".to_string()
    } else {
        to_segment(instance_id)
    };
    format!(
        "{LOGGREGATOR_PREFIX}/{}/+/{}",
        to_segment(source_id),
        instance
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_examples() {
        assert!(StreamPath::parse("bb/123/+/recipes/steps/compile/stdout").is_ok());
        assert!(StreamPath::parse("a/+/b:c.d-e_f").is_ok());
        assert_eq!(
            StreamPath::parse("foo/+/baz/"),
            Err(PathError::EmptySegment { part: "name" })
        );
        assert_eq!(
            StreamPath::parse("foo//bar/+/x"),
            Err(PathError::EmptySegment { part: "prefix" })
        );
        assert!(matches!(
            StreamPath::parse("_foo/+/x"),
            Err(PathError::BadSegmentStart { .. })
        ));
        assert!(matches!(
            StreamPath::parse("foo/bar"),
            Err(PathError::NoSeparator(_))
        ));
        assert!(matches!(
            StreamPath::parse("foo/+/bar/+/baz"),
            Err(PathError::BadSegmentStart { .. })
        ));
        assert!(matches!(
            StreamPath::parse("foo/+/a b"),
            Err(PathError::BadCharacter { ch: ' ', .. })
        ));
        assert!(matches!(
            StreamPath::parse("+/x"),
            Err(PathError::NoSeparator(_))
        ));
        assert_eq!(StreamPath::parse(""), Err(PathError::Empty));
    }

    #[test]
    fn prefix_and_name_split_at_first_plus() {
        let p = StreamPath::parse("foo/bar/+/baz/qux").unwrap();
        assert_eq!(p.prefix(), "foo/bar");
        assert_eq!(p.name(), "baz/qux");
    }

    #[test]
    fn name_length_is_checked_per_part() {
        let long = "a".repeat(MAX_NAME_BYTES);
        assert!(StreamPath::parse(&format!("{long}/+/{long}")).is_ok());
        assert!(matches!(
            StreamPath::parse(&format!("{long}a/+/x")),
            Err(PathError::TooLong { part: "prefix", .. })
        ));
    }

    #[test]
    fn loggregator_prefix_is_reserved_for_producers() {
        assert_eq!(
            StreamPath::parse_producer("loggregator/app/+/0"),
            Err(PathError::ReservedPrefix)
        );
        assert!(StreamPath::parse_producer("loggregatorx/app/+/0").is_ok());
    }

    #[test]
    fn weir_prefix_is_reserved_but_for_agent_event_streams() {
        for refused in [
            "weir/+/events",
            "weir/+/x",
            "weir/agent/+/events",
            "weir/agent/h/x/+/events",
            "weir/agent/h/+/events2",
            "weir/agent/h/+/events/gen-",
            "weir/agent/h/+/events/other",
            "weir/other/h/+/events",
        ] {
            assert_eq!(
                StreamPath::parse_producer(refused),
                Err(PathError::ReservedWeirPrefix),
                "{refused}"
            );
        }
        for allowed in [
            "weir/agent/host-1/+/events",
            "weir/agent/h/+/events/gen-2",
            "weirx/+/events",
            "app/weir/+/events",
        ] {
            assert!(StreamPath::parse_producer(allowed).is_ok(), "{allowed}");
        }
        assert_eq!(agent_events_path("a b"), "weir/agent/a_b/+/events");
        assert!(
            StreamPath::parse(&agent_events_path("x.y"))
                .unwrap()
                .is_agent_events()
        );
    }

    #[test]
    fn loggregator_mapping_gives_valid_paths() {
        for (sid, iid) in [
            ("", ""),
            ("6e4f5b2a-1c3d", "3"),
            ("a/b c", "-1"),
            ("_x", "é"),
            ("..", "+"),
        ] {
            let p = loggregator_path(sid, iid);
            let parsed = StreamPath::parse(&p).unwrap_or_else(|e| panic!("{p}: {e}"));
            assert!(parsed.is_collector_owned());
        }
        assert_eq!(loggregator_path("", ""), "loggregator/unknown/+/0");
        assert_eq!(loggregator_path("a/b", "2"), "loggregator/a_b/+/2");
        assert_eq!(loggregator_path("_x", ""), "loggregator/x_x/+/0");
    }
}
