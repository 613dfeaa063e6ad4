//! `blackhole`: counts and discards (for benchmarks and dry runs).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use super::{Batch, Flusher, FlusherError, StreamAck, ack_all};

/// `[flushers.NAME] type = "blackhole"`: no settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlackholeConfig {}

/// Counts what it is handed.
#[derive(Debug, Default)]
pub struct BlackholeCounters {
    /// Entries swallowed.
    pub entries: AtomicU64,
    /// Their payload bytes (a log line's bytes, the encoded size of other entries).
    pub bytes: AtomicU64,
}

/// Acknowledges everything at once.
pub struct BlackholeFlusher {
    counters: Arc<BlackholeCounters>,
}

impl BlackholeFlusher {
    /// A blackhole; `counters` lets the caller read what it swallowed.
    pub fn new(_config: BlackholeConfig, counters: Arc<BlackholeCounters>) -> Self {
        BlackholeFlusher { counters }
    }
}

#[async_trait::async_trait]
impl Flusher for BlackholeFlusher {
    async fn init(&mut self) -> Result<(), FlusherError> {
        Ok(())
    }
    fn describe(&self) -> String {
        "blackhole (discards)".into()
    }
    fn is_ready(&self) -> bool {
        true
    }
    async fn flush(&mut self, batch: &Batch) -> Result<Vec<StreamAck>, FlusherError> {
        let bytes: usize = batch
            .streams
            .iter()
            .map(|s| s.entries.payload_bytes())
            .sum();
        self.counters
            .entries
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        self.counters
            .bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
        Ok(ack_all(batch))
    }
    fn set_urgent(&mut self) {}
    async fn stop(&mut self) -> Result<(), FlusherError> {
        Ok(())
    }
}
