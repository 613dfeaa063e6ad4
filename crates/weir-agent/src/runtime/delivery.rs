//! What travels from a source's batcher to a flusher, and how the outcome travels back.
//!
//! A batch is cut once and shared (`Arc`) by every flusher its source feeds. Each
//! flusher task tells the batch's [`AckSink`] when it is done with the batch — every
//! stream acknowledged, or refused for good (dead-lettered) — and only then. A batch the
//! flusher gives up on at shutdown is never reported: its data stays behind the file
//! checkpoint or in the spool, and is delivered after the next start.

use std::sync::Arc;

use tokio::sync::watch;

use crate::flusher::Batch;

/// One batch handed to one flusher.
pub struct Delivery {
    /// The batch (shared by every flusher the source feeds).
    pub batch: Arc<Batch>,
    /// Where the outcome goes.
    pub sink: Arc<dyn AckSink>,
    /// Which of the sink's flushers this is.
    pub slot: usize,
    /// The sink's own mark of the batch (a spool record id).
    pub tag: u64,
}

/// Receives "flusher `slot` is done with this batch".
pub trait AckSink: Send + Sync {
    /// Every stream of `batch` is acknowledged (or dead-lettered) by flusher `slot`.
    fn delivered(&self, slot: usize, tag: u64, batch: &Batch);
}

/// Where the agent is in its life; every task watches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Reading and delivering.
    Running,
    /// Shutting down: sources stopped, flushers told to hurry (`set_urgent`), what is in
    /// flight is still delivered.
    Draining,
    /// The shutdown timeout passed: give up on what is in flight.
    Abandon,
}

/// Resolves when `phase` reaches `at` (or its sender is gone).
pub async fn reached(phase: &mut watch::Receiver<Phase>, at: Phase) {
    let _ = phase.wait_for(|p| *p >= at).await;
}
