//! The pipeline of sources that cannot replay (stdin): lines → batcher (numbering each
//! stream, see [`super::numbering`]) → the spool → one feeder per flusher, reading the
//! spool with the flusher's own cursor → the flusher. A record leaves the spool only
//! when every flusher reading it acknowledged it ([`SpoolAcks`]); a slow flusher holds
//! only its own cursor.
//!
//! A record holds one batch: `u16 LE` length of the source name, the name, then a
//! protobuf `weir.v1.Bundle` whose stream appends carry path, first index, entries and
//! terminal count (no secret, no descriptor).

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use prost::Message;
use tokio::sync::{mpsc, oneshot, watch};
use weir_proto::wv1;

use super::delivery::{AckSink, Delivery};
use super::numbering::Numbering;
use super::spill::OrderedAcks;
use crate::batcher::{Batcher, log_envelope};
use crate::flusher::{Batch, StreamBatch};
use crate::metrics::SourceCounters;
use crate::spool::{RecordId, Spool, SpoolAcker, SpoolReader};

/// Encodes a batch of source `source` as a spool record.
pub fn encode(source: &str, batch: &Batch) -> Vec<u8> {
    let bundle = wv1::Bundle {
        streams: batch
            .streams
            .iter()
            .map(|s| wv1::StreamAppend {
                path: s.stream.to_string(),
                first_index: s.first_index,
                entries: s.entries.to_envelopes(),
                terminal_count: s.terminal_count,
                ..Default::default()
            })
            .collect(),
    };
    let name = source.as_bytes();
    let len = name.len().min(u16::MAX as usize);
    let mut out = Vec::with_capacity(2 + len + bundle.encoded_len());
    out.extend_from_slice(&(len as u16).to_le_bytes());
    out.extend_from_slice(&name[..len]);
    bundle.encode(&mut out).ok();
    out
}

/// Decodes a spool record; `None` when it is not one.
pub fn decode(bytes: &[u8]) -> Option<(String, Batch)> {
    let len = u16::from_le_bytes([*bytes.first()?, *bytes.get(1)?]) as usize;
    let name = std::str::from_utf8(bytes.get(2..2 + len)?)
        .ok()?
        .to_string();
    let bundle = wv1::Bundle::decode(bytes.get(2 + len..)?).ok()?;
    let streams = bundle
        .streams
        .into_iter()
        .map(|a| StreamBatch {
            stream: a.path.into(),
            first_index: a.first_index,
            entries: a.entries.into(),
            terminal_count: a.terminal_count,
        })
        .collect();
    Some((name, Batch { streams }))
}

/// What a spooled source hands its batcher.
pub enum SpoolItem {
    /// A line (stdin, `weir run`): a log entry.
    Line(Bytes),
    /// A metric (socket), with where to say whether it reached the spool.
    Entry(weir_core::Envelope, oneshot::Sender<bool>),
}

impl From<Bytes> for SpoolItem {
    fn from(b: Bytes) -> Self {
        SpoolItem::Line(b)
    }
}

/// One spooled source's stream and where its batches go.
pub struct SpooledSource {
    /// The source's name (the envelopes' `source_id`, and the spool records' mark).
    pub name: String,
    /// Its stream.
    pub stream: Arc<str>,
    pub spool: Spool,
    pub numbering: Arc<Numbering>,
    pub counters: SourceCounters,
    /// Terminate the stream when the input ends.
    pub terminate: bool,
    /// Mark log entries as stderr.
    pub stderr: bool,
}

/// Numbers the lines of one stream, batches them and appends the batches to the spool.
/// With `terminate`, the stream is terminated when the lines end (`weir run`).
pub async fn run_spooled_batcher(
    source: SpooledSource,
    mut rx: mpsc::Receiver<SpoolItem>,
    mut batcher: Batcher,
) {
    let SpooledSource {
        name,
        stream,
        spool,
        numbering,
        counters,
        terminate,
        stderr,
    } = source;
    let mut next = numbering.next(&stream);
    // Senders waiting to hear that their entry is in the spool (bounded by the batch).
    let mut waiting: Vec<oneshot::Sender<bool>> = Vec::new();
    loop {
        let deadline = batcher.deadline();
        let line = tokio::select! {
            line = rx.recv() => line,
            _ = super::file_pipeline::sleep_until(deadline), if deadline.is_some() => {
                if let Some(b) = batcher.take() {
                    next = append(&name, &spool, &numbering, &counters, b, next, &mut waiting).await;
                }
                continue;
            }
        };
        let Some(item) = line else { break };
        let entry = match item {
            SpoolItem::Line(line) => {
                counters.read_lines.inc();
                counters.read_bytes.inc_by(line.len() as u64);
                log_envelope(&name, line, stderr)
            }
            SpoolItem::Entry(entry, done) => {
                counters.read_lines.inc();
                counters
                    .read_bytes
                    .inc_by(prost::Message::encoded_len(&entry) as u64);
                waiting.push(done);
                entry
            }
        };
        let index = next;
        next += 1;
        if let Some(b) = batcher.push(&stream, index, entry) {
            next = append(&name, &spool, &numbering, &counters, b, next, &mut waiting).await;
        }
    }
    if terminate {
        batcher.terminate(&stream, next);
    }
    if let Some(b) = batcher.take() {
        append(&name, &spool, &numbering, &counters, b, next, &mut waiting).await;
    }
}

/// Appends a batch and records the numbering; returns the next index to give (rolled
/// back to the recorded one when the append failed, so no index is skipped).
async fn append(
    name: &str,
    spool: &Spool,
    numbering: &Numbering,
    counters: &SourceCounters,
    batch: Batch,
    next: u64,
    waiting: &mut Vec<oneshot::Sender<bool>>,
) -> u64 {
    counters.batches.inc();
    counters.batched.inc_by(batch.len() as u64);
    match spool.append(encode(name, &batch)).await {
        Ok(_) => {
            for s in &batch.streams {
                numbering.advance(&s.stream, s.end_index());
            }
            if let Err(e) = numbering.save() {
                tracing::error!(error = %e, "cannot write the stream numbering");
            }
            for done in waiting.drain(..) {
                let _ = done.send(true);
            }
            next
        }
        Err(e) => {
            tracing::error!(source = name, error = %e, entries = batch.len(), "cannot append to the spool: entries dropped");
            counters.dropped_spool_error.inc_by(batch.len() as u64);
            for done in waiting.drain(..) {
                let _ = done.send(false);
            }
            batch
                .streams
                .first()
                .map_or(next, |s| numbering.next(&s.stream))
        }
    }
}

/// Acknowledges spool records for one reader: in read order ([`OrderedAcks`]), and
/// only once the stream numbering on disk covers the record's streams.
///
/// The second rule closes the crash window between a batcher's append and its
/// `numbering.json` write ([`super::numbering`]): a record can leave the spool only
/// after its acknowledgement, and the acknowledgement first makes sure the numbering
/// file is past the record's entries (writing it when the batcher has not yet). So
/// after a crash the numbering is always past every record that left the spool, and
/// [`Numbering::reconcile`] covers the records still in it.
pub struct SpoolAcks {
    acks: Arc<OrderedAcks>,
    numbering: Arc<Numbering>,
}

impl SpoolAcks {
    /// The sink and the task that acknowledges (it ends when every sink clone is gone).
    /// Bounded in practice: one id per record read and not yet done.
    pub fn start(
        acker: SpoolAcker,
        numbering: Arc<Numbering>,
    ) -> (Arc<SpoolAcks>, tokio::task::JoinHandle<()>) {
        let (acks, task) = OrderedAcks::start(acker);
        (Arc::new(SpoolAcks { acks, numbering }), task)
    }

    /// Record `id` was read (call in read order, before it is handed on).
    pub fn given(&self, id: RecordId) {
        self.acks.given(id);
    }
}

impl AckSink for SpoolAcks {
    fn delivered(&self, _slot: usize, tag: u64, batch: &Batch) {
        for s in &batch.streams {
            self.numbering.advance(&s.stream, s.end_index());
        }
        if let Err(e) = self.numbering.save_if_changed() {
            // Not acknowledged: the record stays and is delivered again after a restart
            // (the collector drops the duplicates), rather than risk reused indices.
            tracing::error!(error = %e, "cannot write the stream numbering; record kept in the spool");
            return;
        }
        self.acks.done(RecordId(tag));
    }
}

/// Reads the spool with one flusher's cursor and hands it the records of the sources
/// it is fed by (others are acknowledged at once). Once `sealed` (no more appends), it
/// hands over what is left and ends.
pub async fn run_feeder(
    mut reader: SpoolReader,
    fed: HashSet<String>,
    tx: mpsc::Sender<Delivery>,
    sink: Arc<SpoolAcks>,
    mut sealed: watch::Receiver<bool>,
) {
    loop {
        let record = tokio::select! {
            r = reader.next() => r,
            _ = sealed_at(&mut sealed) => {
                while let Some(r) = reader.try_next().await {
                    if !feed(&r.payload, r.id, &fed, &tx, &sink).await {
                        break;
                    }
                }
                return;
            }
        };
        let Some(r) = record else { return };
        if !feed(&r.payload, r.id, &fed, &tx, &sink).await {
            return;
        }
    }
}

async fn sealed_at(sealed: &mut watch::Receiver<bool>) {
    let _ = sealed.wait_for(|s| *s).await;
}

async fn feed(
    payload: &[u8],
    id: RecordId,
    fed: &HashSet<String>,
    tx: &mpsc::Sender<Delivery>,
    sink: &Arc<SpoolAcks>,
) -> bool {
    sink.given(id);
    match decode(payload) {
        Some((source, batch)) if fed.contains(&source) => tx
            .send(Delivery {
                batch: Arc::new(batch),
                sink: sink.clone(),
                slot: 0,
                tag: id.0,
            })
            .await
            .is_ok(),
        // Another source's record (or an undecodable one): done at once for this
        // reader, acknowledged once everything read before it is.
        other => {
            let batch = other.map(|(_, b)| b).unwrap_or_default();
            sink.delivered(0, id.0, &batch);
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The crash window between an append and the numbering write: a record whose
    /// batcher never wrote the numbering (it crashed right after the append) is
    /// acknowledged — and may leave the spool — only once `numbering.json` covers it.
    #[tokio::test]
    async fn a_record_is_acknowledged_only_once_the_numbering_covers_it() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path().join("spool"), Default::default())
            .await
            .unwrap();
        let numbering = Arc::new(Numbering::open(dir.path()).unwrap());
        let mut reader = spool.reader("central").await.unwrap();
        let batch = Batch {
            streams: vec![StreamBatch {
                stream: "a/+/b".into(),
                first_index: 0,
                entries: vec![log_envelope("in", "x".into(), false); 5].into(),
                terminal_count: None,
            }],
        };
        // The batcher appended, then "crashed": no numbering write.
        spool.append(encode("in", &batch)).await.unwrap();
        let (sink, task) = SpoolAcks::start(reader.acker(), numbering);
        let record = reader.try_next().await.unwrap();
        sink.given(record.id);
        sink.delivered(0, record.id.0, &batch);
        drop(sink);
        task.await.unwrap();
        assert_eq!(
            spool.stats().cursors[0].acked_next,
            RecordId(1),
            "acknowledged"
        );
        // A restart finds the numbering past the record, though it left the spool.
        assert_eq!(Numbering::open(dir.path()).unwrap().next("a/+/b"), 5);
    }

    #[test]
    fn records_round_trip() {
        let batch = Batch {
            streams: vec![StreamBatch {
                stream: "a/+/b".into(),
                first_index: 7,
                entries: vec![log_envelope("in", "hi".into(), false)].into(),
                terminal_count: Some(8),
            }],
        };
        let (name, back) = decode(&encode("in", &batch)).unwrap();
        assert_eq!(name, "in");
        assert_eq!(back, batch);
        assert!(decode(b"\x05\x00ab").is_none());
    }
}
