//! A file source's pipeline: the source's lines → the batcher → every flusher the source
//! feeds, with acknowledgements back into the source's checkpoints ([`FileAcks`]).
//!
//! Memory is bounded at every step: the line channel ([`LINE_CHUNKS`] chunks), the
//! batch being built (`[batch]` bounds), each flusher's input channel
//! ([`super::FLUSHER_CHANNEL`] batches) and the source's own
//! `max_unacknowledged_lines`. With one flusher: when it is not ready or keeps failing,
//! its channel fills, the batcher waits on it, the line channel fills and the source
//! stops reading. With several, each is behind a [`SpillLane`]: one that lags spills to
//! its own spool instead of holding the others. With `spool = true` the batches go to
//! the agent's spool, and the checkpoint moves once they are durable there.

use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::delivery::{AckSink, Delivery, Phase};
use super::file_acks::FileAcks;
use super::spill::{LaneHandle, SpillConfig, SpillLane, lane_dir, leftover};
use crate::batcher::{BatchConfig, Batcher};
use crate::flusher::{Batch, LogLine};
use crate::metrics::SourceCounters;
use crate::sources::file::{
    CheckpointHandle, FileSource, FileSourceConfig, FileSourceHandle, LineChunk,
};
use crate::spool::{FsyncPolicy, Spool, SpoolConfig};

/// Lines between a source that hands out one line at a time and its batcher.
pub const LINE_CHANNEL: usize = 4096;

/// Chunks of lines between a file source and its batcher (a chunk is at most one read's
/// worth of lines of one stream: 128 KiB).
pub const LINE_CHUNKS: usize = 4;

/// Where a file source's batches go.
pub enum Route {
    /// To each of these flushers (name, input channel); with two or more, each behind
    /// its own [`SpillLane`].
    Flushers(Vec<(String, mpsc::Sender<Delivery>)>),
    /// `spool = true`: to the agent's spool; the spool's feeders hand them on.
    Spool(Spool),
}

/// What a lane needs besides its flusher.
pub struct LaneSettings {
    pub data_dir: std::path::PathBuf,
    /// `[spool]`: the settings lane spools share.
    pub spool: SpoolConfig,
    /// `[spill]`: when to spill, and each lane's size.
    pub spill: SpillConfig,
    pub phase: watch::Receiver<Phase>,
}

/// A running file pipeline.
pub struct FilePipeline {
    pub name: String,
    pub source: FileSourceHandle,
    pub checkpoints: CheckpointHandle,
    pub batcher: JoinHandle<()>,
    /// The spill lanes of its flushers (none with a single flusher or `spool = true`).
    pub lanes: Vec<LaneHandle>,
}

impl FilePipeline {
    /// Starts the source and its batcher, routing batches as `route` says (a flusher's
    /// slot in the source's book is its position).
    pub async fn start(
        name: &str,
        config: FileSourceConfig,
        batch: BatchConfig,
        route: Route,
        lanes: LaneSettings,
        counters: SourceCounters,
    ) -> Result<FilePipeline, super::AgentError> {
        let data_dir = lanes.data_dir.clone();
        let (tx, rx) = mpsc::channel(LINE_CHUNKS);
        let source = FileSource::start_chunked(name, config, &data_dir, tx)?;
        let checkpoints = source.checkpoints();
        let slots = match &route {
            Route::Flushers(f) => f.len(),
            Route::Spool(_) => 1,
        };
        let sink: Arc<dyn AckSink> = Arc::new(FileAcks::new(
            checkpoints.clone(),
            slots,
            counters.acked.clone(),
        ));
        let mut handles = Vec::new();
        let lane_spool = lanes.spill.lane_spool(&lanes.spool);
        let single_with_leftover = match &route {
            Route::Flushers(f) if f.len() == 1 => {
                let dir = lane_dir(&data_dir, name, &f[0].0);
                match leftover(&dir, &lane_spool).await {
                    Ok(0) => false,
                    Ok(pending) => {
                        tracing::info!(source = name, flusher = %f[0].0, pending, "a lane spool left from a configuration with more flushers still holds records: delivering them through the lane");
                        true
                    }
                    Err(e) => {
                        let _ = source.stop().await;
                        return Err(e.into());
                    }
                }
            }
            _ => false,
        };
        let outputs = match route {
            Route::Spool(spool) => vec![Output::Spool(spool)],
            Route::Flushers(flushers) if flushers.len() < 2 && !single_with_leftover => flushers
                .into_iter()
                .map(|(_, tx)| Output::Direct(tx))
                .collect(),
            Route::Flushers(flushers) => {
                let mut outputs = Vec::new();
                for (slot, (flusher, tx)) in flushers.into_iter().enumerate() {
                    let started = SpillLane::start(
                        &data_dir,
                        name,
                        &flusher,
                        slot,
                        tx,
                        sink.clone(),
                        &lanes.spill,
                        &lanes.spool,
                        lanes.phase.clone(),
                    )
                    .await;
                    let lane = match started {
                        Ok(l) => l,
                        Err(e) => {
                            for h in &handles {
                                let h: &LaneHandle = h;
                                h.lane.close();
                            }
                            let _ = source.stop().await;
                            return Err(e.into());
                        }
                    };
                    outputs.push(Output::Lane(lane.lane.clone()));
                    handles.push(lane);
                }
                outputs
            }
        };
        let batcher = tokio::spawn(run_batcher(
            name.into(),
            rx,
            Batcher::new(batch),
            Fanout {
                source: name.to_string(),
                outputs,
                sink,
            },
            counters,
        ));
        Ok(FilePipeline {
            name: name.to_string(),
            source,
            checkpoints,
            batcher,
            lanes: handles,
        })
    }
}

/// One destination of a source's batches.
pub enum Output {
    /// A flusher's input channel: waits for room (back-pressure).
    Direct(mpsc::Sender<Delivery>),
    /// A flusher behind its spill lane.
    Lane(Arc<SpillLane>),
    /// The agent's spool (`spool = true`): acknowledged once durably appended.
    Spool(Spool),
}

/// Hands each batch to every output of a source.
pub struct Fanout {
    pub source: String,
    pub outputs: Vec<Output>,
    pub sink: Arc<dyn AckSink>,
}

impl Drop for Fanout {
    fn drop(&mut self) {
        for out in &self.outputs {
            if let Output::Lane(lane) = out {
                lane.close();
            }
        }
    }
}

impl Fanout {
    /// Sends `batch` to every output.
    pub async fn send(&self, batch: Batch, tag: u64) {
        let batch = Arc::new(batch);
        for (slot, out) in self.outputs.iter().enumerate() {
            match out {
                Output::Direct(tx) => {
                    let d = Delivery {
                        batch: batch.clone(),
                        sink: self.sink.clone(),
                        slot,
                        tag,
                    };
                    if tx.send(d).await.is_err() {
                        tracing::debug!(
                            slot,
                            "flusher gone; batch not handed over (delivered after restart)"
                        );
                    }
                }
                Output::Lane(lane) => lane.send(batch.clone()).await,
                Output::Spool(spool) => {
                    if append_durably(spool, &self.source, &batch).await {
                        self.sink.delivered(slot, tag, &batch);
                    }
                }
            }
        }
    }
}

/// Appends a batch of `source` to `spool` and waits until it is durable as far as the
/// fsync policy goes (`interval`: synced now). False when it could not be appended
/// (the lines stay behind the checkpoint).
pub(crate) async fn append_durably(spool: &Spool, source: &str, batch: &Batch) -> bool {
    let appended = match spool
        .append(super::spool_pipeline::encode(source, batch))
        .await
    {
        Ok(_) if spool.config().fsync == FsyncPolicy::Interval => spool.sync().await,
        Ok(_) => Ok(()),
        Err(e) => Err(e),
    };
    match appended {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(source, error = %e, "cannot append to the spool; the lines stay behind the checkpoint");
            false
        }
    }
}

async fn run_batcher(
    source_id: Arc<str>,
    mut rx: mpsc::Receiver<LineChunk>,
    mut batcher: Batcher,
    out: Fanout,
    counters: SourceCounters,
) {
    loop {
        let deadline = batcher.deadline();
        let chunk = tokio::select! {
            chunk = rx.recv() => chunk,
            _ = sleep_until(deadline), if deadline.is_some() => {
                if let Some(b) = batcher.take() {
                    emit(&out, &counters, b).await;
                }
                continue;
            }
        };
        let Some(chunk) = chunk else { break };
        counters.read_lines.inc_by(chunk.lines.len() as u64);
        counters.read_bytes.inc_by(chunk.bytes);
        // The lines of a chunk were read together: one timestamp for all of them.
        let now = weir_core::now_ns();
        let mut lines = chunk.lines.into_iter().map(|line| LogLine {
            payload: line.bytes,
            timestamp: now,
        });
        let mut index = chunk.first_index;
        while let Some(b) = batcher.push_lines(&chunk.stream, &mut index, &source_id, &mut lines) {
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
