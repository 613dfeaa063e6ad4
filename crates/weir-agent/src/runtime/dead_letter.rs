//! The dead-letter file: batches a flusher refused for good (`invalid`, `conflict`,
//! `terminated`, a 4xx of the http flusher, …), kept so that nothing is dropped
//! silently and so that `weir replay-dead-letters` can send them again once the cause
//! is fixed.
//!
//! ```toml
//! [dead_letters]
//! max_bytes = 67108864     # the file's bound; past it refusals are only counted
//! ```
//!
//! `<data_dir>/dead-letters.ndjson` holds one JSON object per refused stream run:
//! `{"time_ns", "flusher", "stream", "first_index", "terminal_count", "reason",
//! "entries": [base64 of each protobuf-encoded envelope]}`. Appends are written whole
//! (one `write` of the line) and synced. When the file is at `max_bytes`, a refusal is
//! counted in `weir_agent_dropped_entries_total{reason="dead_letter_full"}` and logged,
//! not written.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::flusher::StreamBatch;

/// `[dead_letters]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeadLetterConfig {
    /// Bound of the dead-letter file in bytes. Default 64 MiB.
    pub max_bytes: u64,
}

impl Default for DeadLetterConfig {
    fn default() -> Self {
        DeadLetterConfig {
            max_bytes: 64 << 20,
        }
    }
}

/// One line of the dead-letter file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub time_ns: i64,
    pub flusher: String,
    pub stream: String,
    pub first_index: u64,
    pub terminal_count: Option<u64>,
    pub reason: String,
    /// Base64 of each protobuf-encoded envelope.
    pub entries: Vec<String>,
}

impl DeadLetter {
    /// The stream run it holds (envelopes that do not decode are left out and counted
    /// in the second value).
    pub fn to_stream_batch(&self) -> (StreamBatch, usize) {
        let mut bad = 0;
        let entries = self
            .entries
            .iter()
            .filter_map(|e| {
                let bytes = base64::engine::general_purpose::STANDARD.decode(e).ok();
                let env =
                    bytes.and_then(|b| <weir_core::Envelope as prost::Message>::decode(&*b).ok());
                if env.is_none() {
                    bad += 1;
                }
                env
            })
            .collect();
        (
            StreamBatch {
                stream: self.stream.as_str().into(),
                first_index: self.first_index,
                entries,
                terminal_count: self.terminal_count,
            },
            bad,
        )
    }
}

/// The agent's dead-letter file.
#[derive(Debug)]
pub struct DeadLetters {
    path: PathBuf,
    max_bytes: u64,
    lock: Mutex<()>,
}

impl DeadLetters {
    /// The file under `data_dir` (created on first write).
    pub fn new(data_dir: &Path, config: &DeadLetterConfig) -> Self {
        DeadLetters {
            path: Self::path_in(data_dir),
            max_bytes: config.max_bytes,
            lock: Mutex::new(()),
        }
    }

    /// Where the file of the agent with `data_dir` is.
    pub fn path_in(data_dir: &Path) -> PathBuf {
        data_dir.join("dead-letters.ndjson")
    }

    /// Writes one refused run; false when it could not be written (file full or I/O
    /// error, logged).
    pub fn write(&self, flusher: &str, s: &StreamBatch, reason: &str) -> bool {
        let letter = DeadLetter {
            time_ns: weir_core::now_ns(),
            flusher: flusher.to_string(),
            stream: s.stream.to_string(),
            first_index: s.first_index,
            terminal_count: s.terminal_count,
            reason: reason.to_string(),
            entries: s
                .entries
                .iter()
                .map(|e| {
                    base64::engine::general_purpose::STANDARD
                        .encode(prost::Message::encode_to_vec(&*e))
                })
                .collect(),
        };
        let Ok(mut line) = serde_json::to_vec(&letter) else {
            return false;
        };
        line.push(b'\n');
        let _guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        let size = std::fs::metadata(&self.path).map_or(0, |m| m.len());
        if size + line.len() as u64 > self.max_bytes {
            tracing::error!(path = %self.path.display(), stream = %s.stream, "dead-letter file is full: refused entries are only counted");
            return false;
        }
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .and_then(|mut f| {
                f.write_all(&line)?;
                f.sync_data()
            });
        match written {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(path = %self.path.display(), error = %e, "cannot write the dead-letter file");
                false
            }
        }
    }
}

/// Reads every dead letter of a file; lines that do not parse are counted.
pub fn read_all(path: &Path) -> std::io::Result<(Vec<DeadLetter>, usize)> {
    let text = std::fs::read_to_string(path)?;
    let mut bad = 0;
    let letters = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| {
            let r = serde_json::from_str(l).ok();
            if r.is_none() {
                bad += 1;
            }
            r
        })
        .collect();
    Ok((letters, bad))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bound() {
        let dir = tempfile::tempdir().unwrap();
        let dl = DeadLetters::new(dir.path(), &DeadLetterConfig { max_bytes: 600 });
        let s = StreamBatch {
            stream: "a/+/b".into(),
            first_index: 3,
            entries: vec![crate::batcher::log_envelope("x", "hello".into(), false)].into(),
            terminal_count: None,
        };
        assert!(dl.write("central", &s, "invalid: too big"));
        let (letters, bad) = read_all(&DeadLetters::path_in(dir.path())).unwrap();
        assert_eq!((letters.len(), bad), (1, 0));
        assert_eq!(letters[0].to_stream_batch(), (s.clone(), 0));
        assert_eq!(letters[0].reason, "invalid: too big");
        let mut wrote = 1;
        while dl.write("central", &s, "again") {
            wrote += 1;
        }
        assert!(wrote < 5, "bounded");
    }
}

/// What [`replay`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Stream runs the receiver acknowledged (removed from the file).
    pub delivered: usize,
    /// Stream runs refused again or not delivered (kept in the file).
    pub kept: usize,
    /// Lines of the file that could not be read (kept as they were).
    pub unreadable: usize,
}

/// Why a replay could not run.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("dead-letter file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("flusher {name:?}: {error}")]
    Flusher {
        name: String,
        #[source]
        error: crate::flusher::FlusherError,
    },
}

/// Sends the dead letters of the agent configured by `config` again, each through the
/// flusher that refused it (only those of flusher `only` when given), one attempt each.
/// Delivered runs are removed from the file; the rest stay, with their reason updated.
/// Run it while the agent is stopped: the file is rewritten (atomically) at the end.
pub async fn replay(
    config: &crate::config::AgentConfig,
    only: Option<&str>,
) -> Result<ReplayReport, ReplayError> {
    use crate::flusher::{Batch, StreamAck};
    let path = DeadLetters::path_in(&config.data_dir);
    let io = |source| ReplayError::Io {
        path: path.clone(),
        source,
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ReplayReport::default()),
        Err(e) => return Err(io(e)),
    };
    let mut report = ReplayReport::default();
    let mut keep: Vec<String> = Vec::new();
    let mut flushers: std::collections::BTreeMap<String, Box<dyn crate::flusher::Flusher>> =
        Default::default();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(mut letter) = serde_json::from_str::<DeadLetter>(line) else {
            report.unreadable += 1;
            keep.push(line.to_string());
            continue;
        };
        let wanted = only.is_none_or(|o| o == letter.flusher);
        let Some(spec) = config.flushers.get(&letter.flusher).filter(|_| wanted) else {
            report.kept += 1;
            keep.push(line.to_string());
            continue;
        };
        if !flushers.contains_key(&letter.flusher) {
            let dir = config.data_dir.join("flushers").join(&letter.flusher);
            let mut f = spec.config.build(&dir);
            f.init().await.map_err(|error| ReplayError::Flusher {
                name: letter.flusher.clone(),
                error,
            })?;
            flushers.insert(letter.flusher.clone(), f);
        }
        let Some(flusher) = flushers.get_mut(&letter.flusher) else {
            continue;
        };
        let (run, _bad) = letter.to_stream_batch();
        let end = run.end_index();
        let batch = Batch { streams: vec![run] };
        let outcome = match flusher.flush(&batch).await {
            Ok(acks) => match acks.first() {
                Some(StreamAck::Acked { next }) if *next >= end => None,
                Some(StreamAck::Acked { next }) => Some(format!("acknowledged only up to {next}")),
                Some(StreamAck::Retry { reason, .. }) => Some(reason.clone()),
                Some(StreamAck::DeadLetter { reason }) => Some(reason.clone()),
                None => Some("no answer".into()),
            },
            Err(e) => Some(e.to_string()),
        };
        match outcome {
            None => report.delivered += 1,
            Some(reason) => {
                report.kept += 1;
                letter.reason = reason;
                keep.push(serde_json::to_string(&letter).unwrap_or_else(|_| line.to_string()));
            }
        }
    }
    for (_, mut f) in flushers {
        let _ = f.stop().await;
    }
    let tmp = path.with_extension("ndjson.tmp");
    let mut out = keep.join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    std::fs::File::create(&tmp)
        .and_then(|mut f| {
            f.write_all(out.as_bytes())?;
            f.sync_all()
        })
        .map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(io)?;
    Ok(report)
}
