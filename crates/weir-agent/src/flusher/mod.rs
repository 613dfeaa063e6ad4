//! Flushers: the agent's outputs, behind one trait with iLogtail's contract.
//!
//! The agent drives a flusher like this:
//!
//! 1. [`Flusher::init`] once, before anything else (connect, open files).
//! 2. While running: it hands a [`Batch`] to [`Flusher::flush`] only when
//!    [`Flusher::is_ready`] says so — that is the back-pressure: a flusher that is not
//!    ready is not handed more, and the agent's sources stop reading (or its spool holds
//!    the data). `flush` answers one [`StreamAck`] per stream of the batch, in order.
//! 3. [`Flusher::set_urgent`] when shutdown is coming: stop waiting to fill buffers.
//! 4. [`Flusher::stop`]: flush what is buffered and release everything.
//!
//! What "acknowledged" means differs per flusher (DESIGN.md, Contracts): `weir`, the
//! collector answered `stored`; `loggregator`, unary `Send` returned OK; `http`, a 2xx;
//! `tcp`, the write returned (at-least-once: a connection reset can lose what the kernel
//! held); `file`, written and synced per its fsync policy; `stdout` and `blackhole`, at
//! once. Only acknowledged data may leave the spool or move a file checkpoint.
//!
//! The `tcp`, `http`, `file` and `stdout` flushers write the people JSON form
//! ([`weir_core::json::PeopleJson::numbered`]): the line as a string `message`, plus
//! `stream`, `index`, `timestamp`, `tags` (one object per line).

pub mod blackhole;
pub mod entries;
pub mod file;
pub mod http;
pub mod json_line;
pub mod loggregator;
pub mod registry;
pub mod secrets;
pub mod stdout;
pub mod tcp;
pub mod weir;

use std::ops::Range;
use std::sync::Arc;

pub use entries::{Entries, LogLine, LogLines};
use weir_proto::lv2::envelope::Message as Body;

/// One stream's run of consecutive entries, as the batcher cut it.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamBatch {
    /// The stream's path.
    pub stream: Arc<str>,
    /// Index of `entries[0]`.
    pub first_index: u64,
    /// Entries `first_index..first_index + entries.len()`.
    pub entries: Entries,
    /// Set when the stream ends with this many entries.
    pub terminal_count: Option<u64>,
}

impl StreamBatch {
    /// The index after the last entry.
    pub fn end_index(&self) -> u64 {
        self.first_index + self.entries.len() as u64
    }
}

/// What a flusher is handed: runs of entries for one or more streams.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    pub streams: Vec<StreamBatch>,
}

impl Batch {
    /// Entries in the batch.
    pub fn len(&self) -> usize {
        self.streams.iter().map(|s| s.entries.len()).sum()
    }

    /// Whether the batch has no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The outcome for one stream of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamAck {
    /// Every index below `next` is acknowledged.
    Acked { next: u64 },
    /// Transient: resend from `from` later (with backoff).
    Retry { from: u64, reason: String },
    /// Permanent: the entries can never be delivered; they go to the dead-letter file.
    DeadLetter { reason: String },
}

/// Errors of a flusher. `Transient` failures of a whole flush are retried with backoff;
/// `Config` errors stop the agent at start with the message.
#[derive(Debug, thiserror::Error)]
pub enum FlusherError {
    #[error("{flusher}: configuration: {reason}")]
    Config { flusher: String, reason: String },
    #[error("{flusher}: {reason}")]
    Transient { flusher: String, reason: String },
}

/// An output with back-pressure (iLogtail's flusher contract). See the module docs for
/// how the agent drives it.
#[async_trait::async_trait]
pub trait Flusher: Send {
    /// Connects, opens files, checks the configuration.
    async fn init(&mut self) -> Result<(), FlusherError>;
    /// One line naming the flusher and where it writes, for logs and events.
    fn describe(&self) -> String;
    /// Whether it can take another batch now.
    fn is_ready(&self) -> bool;
    /// Writes a batch; one [`StreamAck`] per stream, in order. An `Err` means nothing of
    /// the batch is acknowledged and the whole batch should be retried.
    async fn flush(&mut self, batch: &Batch) -> Result<Vec<StreamAck>, FlusherError>;
    /// Shutdown is coming: do not wait to fill buffers.
    fn set_urgent(&mut self);
    /// Flushes what is buffered and releases everything.
    async fn stop(&mut self) -> Result<(), FlusherError>;
}

/// A lazily connecting gRPC endpoint for `addr` (`HOST:PORT` or a URL), with a timeout
/// per call; errors name the flusher and the address.
pub fn grpc_channel(
    flusher: &str,
    addr: &str,
    timeout_ms: u64,
) -> Result<tonic::transport::Channel, FlusherError> {
    grpc_channel_tls(flusher, addr, timeout_ms, None)
}

/// [`grpc_channel`] with TLS when `tls` is given (`https` unless `addr` names a scheme).
pub fn grpc_channel_tls(
    flusher: &str,
    addr: &str,
    timeout_ms: u64,
    tls: Option<tonic::transport::ClientTlsConfig>,
) -> Result<tonic::transport::Channel, FlusherError> {
    let uri = if addr.contains("://") {
        addr.to_string()
    } else if tls.is_some() {
        format!("https://{addr}")
    } else {
        format!("http://{addr}")
    };
    let config = |e: tonic::transport::Error| FlusherError::Config {
        flusher: flusher.to_string(),
        reason: format!("addr {addr:?}: {e}"),
    };
    let mut endpoint = tonic::transport::Endpoint::from_shared(uri).map_err(config)?;
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls).map_err(config)?;
    }
    // Lazy: a receiver that is down at start is retried by flushes.
    Ok(endpoint
        .timeout(std::time::Duration::from_millis(timeout_ms))
        .connect_timeout(std::time::Duration::from_secs(5))
        .connect_lazy())
}

/// How line-oriented flushers write an entry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LineEncoding {
    /// One people JSON object per line (default).
    #[default]
    Json,
    /// The log payload as it was read, then a newline; non-log envelopes as JSON.
    Raw,
}

/// Encodes a whole batch as lines.
pub fn encode_batch(out: &mut Vec<u8>, encoding: LineEncoding, batch: &Batch) {
    let mut json = json_line::Encoder::default();
    for s in &batch.streams {
        encode_run(out, encoding, &mut json, s, 0..s.entries.len());
    }
}

/// Encodes the entries at positions `range` of run `s` as lines; `json` carries what
/// consecutive entries share (reuse it for the runs of one batch).
pub fn encode_run(
    out: &mut Vec<u8>,
    encoding: LineEncoding,
    json: &mut json_line::Encoder,
    s: &StreamBatch,
    range: Range<usize>,
) {
    json.start_run(&s.stream);
    let first_index = s.first_index + range.start as u64;
    match &s.entries {
        Entries::Envelopes(envelopes) => {
            let part = envelopes.get(range).unwrap_or(&[]);
            for (index, env) in (first_index..).zip(part) {
                match (&env.message, encoding) {
                    (Some(Body::Log(log)), LineEncoding::Raw) => {
                        out.extend_from_slice(&log.payload)
                    }
                    _ => json.entry(out, &s.stream, index, env),
                }
                out.push(b'\n');
            }
        }
        Entries::Lines(lines) => {
            let part = lines.lines.get(range).unwrap_or(&[]);
            match encoding {
                LineEncoding::Raw => {
                    for line in part {
                        out.extend_from_slice(&line.payload);
                        out.push(b'\n');
                    }
                }
                LineEncoding::Json => json.lines(out, &s.stream, first_index, lines, part),
            }
        }
    }
}

/// Every stream of the batch acknowledged up to its end (what at-once flushers answer).
pub fn ack_all(batch: &Batch) -> Vec<StreamAck> {
    batch
        .streams
        .iter()
        .map(|s| StreamAck::Acked {
            next: s.end_index(),
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod testing {
    //! Batches for flusher tests.
    use super::*;
    use weir_core::Envelope;
    use weir_proto::lv2::Log;

    /// `streams` streams of `per` log lines each, payload "STREAM line INDEX".
    pub fn batch(streams: usize, per: usize, first: u64) -> Batch {
        Batch {
            streams: (0..streams)
                .map(|s| StreamBatch {
                    stream: format!("test/+/s{s}").into(),
                    first_index: first,
                    entries: (0..per)
                        .map(|i| Envelope {
                            timestamp: 1_700_000_000_000_000_000,
                            message: Some(Body::Log(Log {
                                payload: format!("s{s} line {}", first + i as u64)
                                    .into_bytes()
                                    .into(),
                                r#type: 0,
                            })),
                            ..Default::default()
                        })
                        .collect(),
                    terminal_count: None,
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_carry_stream_index_and_message() {
        let b = testing::batch(1, 2, 5);
        let mut out = Vec::new();
        encode_batch(&mut out, LineEncoding::Json, &b);
        let lines: Vec<serde_json::Value> = out
            .split(|c| *c == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1]["stream"], "test/+/s0");
        assert_eq!(lines[1]["index"], 6);
        assert_eq!(lines[1]["message"], "s0 line 6");
        assert!(lines[0].get("ingest_time").is_none());
        assert_eq!(ack_all(&b), vec![StreamAck::Acked { next: 7 }]);
    }

    #[test]
    fn lines_encode_as_the_envelopes_they_stand_for() {
        let source: Arc<str> = "app".into();
        let mut lines = Entries::default();
        for (i, text) in ["plain", "with \"quotes\"", "bad \u{ff}", "ctl \u{1b}[0m"]
            .into_iter()
            .enumerate()
        {
            let mut payload = text.as_bytes().to_vec();
            if text.starts_with("bad") {
                payload.push(0xff); // not UTF-8: base64 in the serde form
            }
            lines.push_line(
                &source,
                LogLine {
                    payload: payload.into(),
                    timestamp: 1_700_000_000_000_000_000 + i as i64,
                },
            );
        }
        assert!(matches!(lines, Entries::Lines(_)));
        let as_lines = StreamBatch {
            stream: "a/+/b".into(),
            first_index: 3,
            entries: lines.clone(),
            terminal_count: None,
        };
        let as_envelopes = StreamBatch {
            entries: Entries::Envelopes(lines.to_envelopes()),
            ..as_lines.clone()
        };
        for encoding in [LineEncoding::Json, LineEncoding::Raw] {
            for range in [0..4, 1..3, 2..4] {
                let (mut a, mut b) = (Vec::new(), Vec::new());
                let mut json = json_line::Encoder::default();
                encode_run(&mut a, encoding, &mut json, &as_lines, range.clone());
                let mut json = json_line::Encoder::default();
                encode_run(&mut b, encoding, &mut json, &as_envelopes, range.clone());
                assert_eq!(
                    String::from_utf8_lossy(&a),
                    String::from_utf8_lossy(&b),
                    "{encoding:?} {range:?}"
                );
            }
        }
    }

    #[test]
    fn raw_lines_are_payloads() {
        let mut out = Vec::new();
        encode_batch(&mut out, LineEncoding::Raw, &testing::batch(2, 1, 0));
        assert_eq!(out, b"s0 line 0\ns1 line 0\n");
    }
}
