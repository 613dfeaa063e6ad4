//! The entries of one stream's run in a batch: envelopes, or plain log lines of one
//! source.
//!
//! A file's lines are by far the most common entries, and all of a run's lines share
//! their source. Building a 200-byte [`Envelope`] with its own `source_id` string for
//! each of them, only for the JSON and raw flushers to take the payload back out, was
//! a large part of the agent's CPU per GiB (measured; see the agent benchmark in the
//! README). So the file pipeline hands out [`Entries::Lines`]: a payload and a
//! timestamp per line, the source once. Flushers that need envelopes (`weir`,
//! `loggregator`, the spool) get them from [`Entries::iter`]; the line flushers write
//! straight from the lines.

use std::borrow::Cow;
use std::sync::Arc;

use bytes::Bytes;
use weir_core::Envelope;

use crate::batcher::{log_envelope_at, payload_len};

/// One log line of a [`LogLines`] run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// The line's bytes (no newline).
    pub payload: Bytes,
    /// When it was read, Unix nanoseconds.
    pub timestamp: i64,
}

/// Log lines (stdout type, no tags) of one source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLines {
    /// The `source_id` of every line.
    pub source_id: Arc<str>,
    /// The lines, in index order.
    pub lines: Vec<LogLine>,
}

impl LogLines {
    /// Line `line` as the envelope it stands for.
    pub fn envelope(&self, line: &LogLine) -> Envelope {
        log_envelope_at(&self.source_id, line.payload.clone(), false, line.timestamp)
    }
}

/// A run's entries, in index order; see the [module docs](self).
#[derive(Debug, Clone, PartialEq)]
pub enum Entries {
    /// Entries of any kind.
    Envelopes(Vec<Envelope>),
    /// Log lines of one source, without an envelope each.
    Lines(LogLines),
}

impl Default for Entries {
    fn default() -> Self {
        Entries::Envelopes(Vec::new())
    }
}

impl From<Vec<Envelope>> for Entries {
    fn from(envelopes: Vec<Envelope>) -> Self {
        Entries::Envelopes(envelopes)
    }
}

impl FromIterator<Envelope> for Entries {
    fn from_iter<I: IntoIterator<Item = Envelope>>(envelopes: I) -> Self {
        Entries::Envelopes(envelopes.into_iter().collect())
    }
}

impl Entries {
    /// Lines of `source_id`, with room for `capacity` of them.
    pub fn lines(source_id: Arc<str>, capacity: usize) -> Self {
        Entries::Lines(LogLines {
            source_id,
            lines: Vec::with_capacity(capacity),
        })
    }

    /// How many entries.
    pub fn len(&self) -> usize {
        match self {
            Entries::Envelopes(e) => e.len(),
            Entries::Lines(l) => l.lines.len(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Each entry as an envelope (lines are turned into one as they are visited).
    pub fn iter(&self) -> impl Iterator<Item = Cow<'_, Envelope>> {
        let (envelopes, lines) = match self {
            Entries::Envelopes(e) => (e.as_slice(), None),
            Entries::Lines(l) => (&[][..], Some(l)),
        };
        envelopes.iter().map(Cow::Borrowed).chain(
            lines
                .into_iter()
                .flat_map(|l| l.lines.iter().map(|line| Cow::Owned(l.envelope(line)))),
        )
    }

    /// Every entry as an envelope.
    pub fn to_envelopes(&self) -> Vec<Envelope> {
        self.iter().map(Cow::into_owned).collect()
    }

    /// The envelopes, converting lines to envelopes first: for callers that change
    /// entries in place (rare; tests and tools).
    pub fn envelopes_mut(&mut self) -> &mut Vec<Envelope> {
        if let Entries::Lines(_) = self {
            *self = Entries::Envelopes(self.to_envelopes());
        }
        match self {
            Entries::Envelopes(e) => e,
            Entries::Lines(_) => unreachable!("converted above"),
        }
    }

    /// Bytes of payload: a log line's bytes, the encoded size of any other entry.
    pub fn payload_bytes(&self) -> usize {
        match self {
            Entries::Envelopes(e) => e.iter().map(payload_len).sum(),
            Entries::Lines(l) => l.lines.iter().map(|line| line.payload.len()).sum(),
        }
    }

    /// The entries from position `skip` on.
    pub fn tail(&self, skip: usize) -> Entries {
        match self {
            Entries::Envelopes(e) => Entries::Envelopes(e.get(skip..).unwrap_or(&[]).to_vec()),
            Entries::Lines(l) => Entries::Lines(LogLines {
                source_id: l.source_id.clone(),
                lines: l.lines.get(skip..).unwrap_or(&[]).to_vec(),
            }),
        }
    }

    /// Removes the first `n` entries (all of them when there are fewer).
    pub fn drop_front(&mut self, n: usize) {
        match self {
            Entries::Envelopes(e) => {
                e.drain(..n.min(e.len()));
            }
            Entries::Lines(l) => {
                l.lines.drain(..n.min(l.lines.len()));
            }
        }
    }

    /// Appends an envelope (lines so far become envelopes: a run holds one kind).
    pub fn push_envelope(&mut self, envelope: Envelope) {
        self.envelopes_mut().push(envelope);
    }

    /// Appends a log line of `source_id`: kept as a line when the run is lines of that
    /// source (or still empty), as an envelope otherwise.
    pub fn push_line(&mut self, source_id: &Arc<str>, line: LogLine) {
        match self {
            Entries::Lines(l) if Arc::ptr_eq(&l.source_id, source_id) => l.lines.push(line),
            Entries::Envelopes(e) if e.is_empty() => {
                let mut lines = Vec::with_capacity(e.capacity());
                lines.push(line);
                *self = Entries::Lines(LogLines {
                    source_id: source_id.clone(),
                    lines,
                });
            }
            Entries::Lines(l) if l.lines.is_empty() => {
                l.source_id = source_id.clone();
                l.lines.push(line);
            }
            _ => self.envelopes_mut().push(log_envelope_at(
                source_id,
                line.payload,
                false,
                line.timestamp,
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(s: &str, ts: i64) -> LogLine {
        LogLine {
            payload: Bytes::copy_from_slice(s.as_bytes()),
            timestamp: ts,
        }
    }

    #[test]
    fn lines_stand_for_the_envelopes_the_file_pipeline_made() {
        let app: Arc<str> = "app".into();
        let mut e = Entries::default();
        e.push_line(&app, line("a", 1));
        e.push_line(&app, line("bb", 2));
        assert!(matches!(e, Entries::Lines(_)));
        assert_eq!(
            e.to_envelopes(),
            vec![
                log_envelope_at("app", "a".into(), false, 1),
                log_envelope_at("app", "bb".into(), false, 2)
            ]
        );
        assert_eq!((e.len(), e.payload_bytes()), (2, 3));
        assert_eq!(e.tail(1).to_envelopes()[0].timestamp, 2);
        e.drop_front(1);
        assert_eq!(e.len(), 1);
    }

    #[test]
    fn mixing_kinds_or_sources_keeps_every_entry_in_order() {
        let app: Arc<str> = "app".into();
        let other: Arc<str> = "other".into();
        let mut e = Entries::default();
        e.push_line(&app, line("1", 1));
        e.push_line(&other, line("2", 2));
        e.push_envelope(log_envelope_at("x", "3".into(), true, 3));
        let got: Vec<(String, i64)> = e
            .iter()
            .map(|env| (env.source_id.clone(), env.timestamp))
            .collect();
        assert_eq!(
            got,
            vec![("app".into(), 1), ("other".into(), 2), ("x".into(), 3)]
        );
    }
}
