//! A file source's pipeline: the source's lines → the batcher → every flusher the source
//! feeds, with acknowledgements back into the source's checkpoints ([`FileAcks`]).
//!
//! Memory is bounded at every step: the line channel ([`LINE_CHANNEL`] lines), the
//! batch being built (`[batch]` bounds), each flusher's input channel
//! ([`super::FLUSHER_CHANNEL`] batches) and the source's own
//! `max_unacknowledged_lines`. When a flusher is not ready or keeps failing, its channel
//! fills, the batcher waits on it, the line channel fills and the source stops reading.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::delivery::{AckSink, Delivery};
use super::file_acks::FileAcks;
use crate::batcher::{BatchConfig, Batcher, log_envelope};
use crate::flusher::Batch;
use crate::metrics::SourceCounters;
use crate::sources::file::{
    CheckpointHandle, FileSource, FileSourceConfig, FileSourceError, FileSourceHandle, Line,
};

/// Lines between the file source and its batcher.
pub const LINE_CHANNEL: usize = 4096;

/// A running file pipeline.
pub struct FilePipeline {
    pub name: String,
    pub source: FileSourceHandle,
    pub checkpoints: CheckpointHandle,
    pub batcher: JoinHandle<()>,
}

impl FilePipeline {
    /// Starts the source and its batcher; `outputs` are the input channels of the
    /// flushers it feeds (slot = position).
    pub fn start(
        name: &str,
        config: FileSourceConfig,
        data_dir: &std::path::Path,
        batch: BatchConfig,
        outputs: Vec<mpsc::Sender<Delivery>>,
        counters: SourceCounters,
    ) -> Result<FilePipeline, FileSourceError> {
        let (tx, rx) = mpsc::channel(LINE_CHANNEL);
        let source = FileSource::start(name, config, data_dir, tx)?;
        let checkpoints = source.checkpoints();
        let sink: Arc<dyn AckSink> = Arc::new(FileAcks::new(
            checkpoints.clone(),
            outputs.len(),
            counters.acked.clone(),
        ));
        let batcher = tokio::spawn(run_batcher(
            name.to_string(),
            rx,
            Batcher::new(batch),
            Fanout { outputs, sink },
            counters,
        ));
        Ok(FilePipeline {
            name: name.to_string(),
            source,
            checkpoints,
            batcher,
        })
    }
}

/// Hands each batch to every flusher of a source.
pub struct Fanout {
    pub outputs: Vec<mpsc::Sender<Delivery>>,
    pub sink: Arc<dyn AckSink>,
}

impl Fanout {
    /// Sends `batch` to every output, waiting for room (back-pressure).
    pub async fn send(&self, batch: Batch, tag: u64) {
        let batch = Arc::new(batch);
        for (slot, out) in self.outputs.iter().enumerate() {
            let d = Delivery {
                batch: batch.clone(),
                sink: self.sink.clone(),
                slot,
                tag,
            };
            if out.send(d).await.is_err() {
                tracing::debug!(
                    slot,
                    "flusher gone; batch not handed over (delivered after restart)"
                );
            }
        }
    }
}

async fn run_batcher(
    name: String,
    mut rx: mpsc::Receiver<Line>,
    mut batcher: Batcher,
    out: Fanout,
    counters: SourceCounters,
) {
    loop {
        let deadline = batcher.deadline();
        let line = tokio::select! {
            line = rx.recv() => line,
            _ = sleep_until(deadline), if deadline.is_some() => {
                if let Some(b) = batcher.take() {
                    emit(&out, &counters, b).await;
                }
                continue;
            }
        };
        let Some(line) = line else { break };
        counters.read_lines.inc();
        counters.read_bytes.inc_by(line.bytes.len() as u64);
        let entry = log_envelope(&name, line.bytes, false);
        if let Some(b) = batcher.push(&line.stream, line.index, entry) {
            emit(&out, &counters, b).await;
        }
    }
    if let Some(b) = batcher.take() {
        emit(&out, &counters, b).await;
    }
}

async fn emit(out: &Fanout, counters: &SourceCounters, batch: Batch) {
    counters.batches.inc();
    counters.batched.inc_by(batch.len() as u64);
    out.send(batch, 0).await;
}

pub(crate) async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
