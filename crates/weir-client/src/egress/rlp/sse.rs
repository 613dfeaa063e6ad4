//! Reading the gateway's Server-Sent Events exactly as go-loggregator's
//! `RLPGatewayClient` does (PROTOCOLS.md §3.4), line by line, split on `\n`:
//!
//! - `heartbeat: …` (an old format) is skipped;
//! - `event: closing` ends the connection;
//! - `event: heartbeat` discards the **next two lines**, whatever they are (the data
//!   line and the blank line);
//! - `data: X` appends X to the event, with no separator between data lines;
//! - a line that is exactly `\n` ends the event, if it has data;
//! - every other line is ignored.
//!
//! Bounded: a line or an event longer than the limit is an error (the caller drops the
//! connection). A partial last line at the end of a connection is discarded
//! ([`SseParser::reset`]).

use bytes::BytesMut;

/// What the parser found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SseEvent {
    /// The data of one event: one raw JSON `EnvelopeBatch`.
    Data(Vec<u8>),
    /// `event: closing`: the server ends the connection.
    Closing,
}

/// A line or event over the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an SSE line or event is longer than {0} bytes")]
pub(crate) struct TooLarge(pub(crate) usize);

/// An incremental SSE reader. See the module docs.
pub(crate) struct SseParser {
    pending: BytesMut,
    /// Bytes of `pending` known to hold no `\n`.
    scanned: usize,
    data: Vec<u8>,
    skip: u8,
    max: usize,
}

impl SseParser {
    /// A parser refusing lines and events over `max` bytes.
    pub(crate) fn new(max: usize) -> Self {
        SseParser {
            pending: BytesMut::new(),
            scanned: 0,
            data: Vec::new(),
            skip: 0,
            max,
        }
    }

    /// Adds bytes read from the body.
    pub(crate) fn feed(&mut self, chunk: &[u8]) {
        self.pending.extend_from_slice(chunk);
    }

    /// Forgets everything (a new connection).
    pub(crate) fn reset(&mut self) {
        self.pending.clear();
        self.scanned = 0;
        self.data.clear();
        self.skip = 0;
    }

    /// The next complete event in what was fed, if any.
    pub(crate) fn next_event(&mut self) -> Result<Option<SseEvent>, TooLarge> {
        loop {
            let Some(at) = memchr::memchr(b'\n', &self.pending[self.scanned..]) else {
                self.scanned = self.pending.len();
                if self.pending.len() > self.max {
                    return Err(TooLarge(self.max));
                }
                return Ok(None);
            };
            let line = self.pending.split_to(self.scanned + at + 1);
            self.scanned = 0;
            if self.skip > 0 {
                self.skip -= 1;
                continue;
            }
            if line.starts_with(b"heartbeat: ") {
                continue;
            }
            if line.starts_with(b"event: closing") {
                return Ok(Some(SseEvent::Closing));
            }
            if line.starts_with(b"event: heartbeat") {
                self.skip = 2;
                continue;
            }
            if let Some(rest) = line.strip_prefix(b"data: ") {
                let rest = &rest[..rest.len() - 1]; // without the '\n'
                if self.data.len() + rest.len() > self.max {
                    self.data.clear();
                    return Err(TooLarge(self.max));
                }
                self.data.extend_from_slice(rest);
                continue;
            }
            if &line[..] == b"\n" && !self.data.is_empty() {
                return Ok(Some(SseEvent::Data(std::mem::take(&mut self.data))));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(p: &mut SseParser) -> Vec<SseEvent> {
        std::iter::from_fn(|| p.next_event().unwrap()).collect()
    }

    #[test]
    fn reads_the_example_exchange() {
        let body = "data: {\"batch\":[]}\n\nevent: heartbeat\ndata: 1700000015\n\nevent: closing\ndata: closing due to stream timeout\n\n";
        let mut p = SseParser::new(1 << 20);
        p.feed(body.as_bytes());
        // The caller drops the connection at `Closing`: what follows is never read.
        assert_eq!(
            events(&mut p)[..2],
            [
                SseEvent::Data(b"{\"batch\":[]}".to_vec()),
                SseEvent::Closing
            ]
        );
    }

    #[test]
    fn byte_by_byte_gives_the_same_events() {
        let body = "data: {\"a\":\ndata: 1}\n\nheartbeat: 5\nevent: heartbeat\ndata: 1\n\n: comment\n\ndata: x\n\n";
        let mut p = SseParser::new(1 << 20);
        let mut got = Vec::new();
        for b in body.as_bytes() {
            p.feed(&[*b]);
            got.extend(events(&mut p));
        }
        assert_eq!(
            got,
            vec![
                SseEvent::Data(b"{\"a\":1}".to_vec()),
                SseEvent::Data(b"x".to_vec())
            ]
        );
    }

    #[test]
    fn heartbeat_discards_the_next_two_lines_blindly() {
        // As upstream: a data line right after the heartbeat's two lines is kept, but
        // the two lines after `event: heartbeat` are gone whatever they hold.
        let mut p = SseParser::new(1 << 20);
        p.feed(b"event: heartbeat\ndata: lost\n\ndata: kept\n\n");
        assert_eq!(events(&mut p), vec![SseEvent::Data(b"kept".to_vec())]);
        p.feed(b"event: heartbeat\ndata: 1\ndata: swallowed-blank-was-this\n\n");
        assert_eq!(events(&mut p), vec![]);
    }

    #[test]
    fn crlf_blank_line_does_not_end_an_event_and_partial_lines_wait() {
        let mut p = SseParser::new(1 << 20);
        p.feed(b"data: a\n\r\ndata: b\n\ndata: c");
        assert_eq!(events(&mut p), vec![SseEvent::Data(b"ab".to_vec())]);
        p.reset();
        p.feed(b"\n\n");
        assert_eq!(events(&mut p), vec![], "the partial line was forgotten");
    }

    #[test]
    fn bounded() {
        let mut p = SseParser::new(8);
        p.feed(b"data: 0123456789\n");
        assert_eq!(p.next_event(), Err(TooLarge(8)));
        let mut p = SseParser::new(8);
        p.feed(b"0123456789");
        assert_eq!(p.next_event(), Err(TooLarge(8)));
    }
}
