//! End-to-end acknowledgement of a file source: the fan-in of every flusher's
//! acknowledgements into the source's checkpoints.
//!
//! A file source is its own spool (DESIGN.md, Agent): its checkpoint may move past a
//! line only when *every* flusher it feeds has acknowledged that line. This book keeps,
//! per stream, how far each flusher (slot) is done, and moves the checkpoint to the
//! lowest of them whenever that rises.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::metrics::counter::Counter;

use super::delivery::AckSink;
use crate::flusher::Batch;
use crate::sources::file::{AckError, CheckpointHandle};

/// Per stream, how far each flusher is done.
#[derive(Debug)]
pub struct FileAcks {
    checkpoints: CheckpointHandle,
    slots: usize,
    streams: Mutex<HashMap<Arc<str>, Vec<u64>>>,
    acked: Counter,
}

impl FileAcks {
    /// A book for a source feeding `slots` flushers.
    pub fn new(checkpoints: CheckpointHandle, slots: usize, acked: Counter) -> Self {
        FileAcks {
            checkpoints,
            slots,
            streams: Mutex::new(HashMap::new()),
            acked,
        }
    }
}

impl AckSink for FileAcks {
    fn delivered(&self, slot: usize, _tag: u64, batch: &Batch) {
        let mut streams = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        for s in &batch.streams {
            // Every flusher gets the same batches in the same order, so the first batch
            // seen of a stream starts where its checkpoint was.
            let done = streams
                .entry(s.stream.clone())
                .or_insert_with(|| vec![s.first_index; self.slots]);
            let before = done.iter().copied().min().unwrap_or(0);
            if let Some(d) = done.get_mut(slot) {
                *d = (*d).max(s.end_index());
            }
            let after = done.iter().copied().min().unwrap_or(0);
            if after <= before {
                continue;
            }
            match self.checkpoints.acknowledge(&s.stream, after) {
                Ok(()) => {
                    self.acked.inc_by(after - before);
                }
                Err(AckError::UnknownStream(_)) => {
                    // The file was released meanwhile; nothing to move.
                }
                Err(e) => tracing::error!(error = %e, "file checkpoint refused an acknowledgement"),
            }
        }
    }
}
