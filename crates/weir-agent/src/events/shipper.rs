//! The shipper: sends the agent's events from its events file to the collector, on the
//! agent's own stream `weir/agent/<member>/+/events`, exactly once.
//!
//! It uses a `weir` flusher of its own, built from the configuration of one of the
//! agent's `weir` flushers (same address, timeouts and transport settings; its stream
//! secret kept apart under `<data_dir>/events/flusher/`), so event shipping never waits
//! behind data and a failing collector is retried with the agent's `[retry]` backoff.
//!
//! **Numbering.** The events stream's index *i* is the *i*-th event shipped; the file's
//! `seq` numbers can have holes (events dropped by the file's bound before they were
//! shipped). `<data_dir>/events/shipped.json` holds `{next_seq, next_index}`: the first
//! event not yet acknowledged and the index it will get; it is rewritten atomically
//! after every acknowledgement. A crash between the collector's answer and that write
//! resends the same events at the same indices, which the collector acknowledges as
//! duplicates.
//!
//! **Sync.** Before shipping (and after a refusal) the shipper asks the collector for
//! the stream's next index (an append without entries). More than it knows of means the
//! collector stored events whose acknowledgement was lost: it skips that many. Fewer
//! means the collector lost them (a new data dir): it goes on from the collector's index.
//!
//! Events the collector refuses for good (`invalid`, `conflict`) are skipped, logged
//! and counted (`unshipped`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;

use super::file_store::{EventLine, FileEventStore};
use crate::flusher::{Batch, Flusher, StreamAck, StreamBatch};
use crate::runtime::RetryConfig;

/// Most events in one bundle.
pub const MAX_BATCH: usize = 500;

/// The shipper's position, persisted in `shipped.json`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipState {
    /// The first event (file `seq`) not yet acknowledged.
    pub next_seq: u64,
    /// The stream index that event gets.
    pub next_index: u64,
}

/// Counts of the shipper.
#[derive(Debug, Default)]
pub struct ShipStats {
    /// Events the collector acknowledged.
    pub shipped: AtomicU64,
    /// Events the collector refused for good (skipped).
    pub unshipped: AtomicU64,
    /// Failed attempts (each followed by a backoff).
    pub failures: AtomicU64,
}

/// The shipper task's parts.
pub struct Shipper {
    pub store: Arc<FileEventStore>,
    pub flusher: Box<dyn Flusher>,
    /// The events stream's path.
    pub stream: Arc<str>,
    /// Where [`ShipState`] is kept.
    pub state_path: PathBuf,
    pub retry: RetryConfig,
    pub stats: Arc<ShipStats>,
    /// `Some(deadline)` once the agent stops: ship what is left until then, and end.
    pub stop: watch::Receiver<Option<Instant>>,
}

/// Why an attempt failed (retried after a backoff).
struct Failed(String);

impl Shipper {
    /// Reads the position from `path` (the start when there is none or it is damaged).
    pub fn load_state(path: &Path) -> ShipState {
        std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    fn save_state(&self, state: ShipState) {
        let tmp = self.state_path.with_extension("json.tmp");
        let written = serde_json::to_vec(&state)
            .map_err(std::io::Error::other)
            .and_then(|data| std::fs::write(&tmp, data))
            .and_then(|()| std::fs::rename(&tmp, &self.state_path));
        if let Err(e) = written {
            tracing::warn!(path = %self.state_path.display(), error = %e, "cannot write the events shipping position");
        }
    }

    /// Ships until stopped (see the module docs).
    pub async fn run(mut self) {
        if let Err(e) = self.flusher.init().await {
            tracing::error!(error = %e, "event shipping is off: its flusher failed to start");
            return;
        }
        let mut state = Self::load_state(&self.state_path);
        let mut synced = false;
        let mut attempt: u32 = 0;
        loop {
            let store = self.store.clone();
            let written = store.notified();
            tokio::pin!(written);
            written.as_mut().enable();
            let deadline = *self.stop.borrow_and_update();
            let result = if synced {
                let pending = self.store.since(state.next_seq, MAX_BATCH);
                if pending.is_empty() {
                    if deadline.is_some() {
                        break;
                    }
                    tokio::select! {
                        () = written.as_mut() => {}
                        changed = self.stop.changed() => if changed.is_err() { break },
                    }
                    continue;
                }
                self.ship(&mut state, &pending, deadline, &mut synced).await
            } else {
                self.sync(&mut state, deadline)
                    .await
                    .map(|()| synced = true)
            };
            match result {
                Ok(()) => attempt = 0,
                Err(Failed(why)) => {
                    attempt = attempt.saturating_add(1);
                    self.stats.failures.fetch_add(1, Ordering::Relaxed);
                    if attempt == 1 || attempt.is_power_of_two() {
                        tracing::warn!(attempt, reason = %why, "shipping events to the collector failed; retrying");
                    }
                    let wait = Instant::now() + self.retry.backoff(attempt);
                    if deadline.is_some_and(|d| wait >= d) {
                        break;
                    }
                    tokio::select! {
                        () = tokio::time::sleep_until(wait) => {}
                        changed = self.stop.changed() => if changed.is_err() { break },
                    }
                }
            }
        }
        let _ = self.flusher.stop().await;
    }

    /// Flushes `batch`, within `deadline` when stopping.
    async fn flush(
        &mut self,
        batch: &Batch,
        deadline: Option<Instant>,
    ) -> Result<StreamAck, Failed> {
        let flush = self.flusher.flush(batch);
        let result = match deadline {
            Some(d) => tokio::time::timeout_at(d, flush)
                .await
                .map_err(|_| Failed("the agent is stopping".into()))?,
            None => flush.await,
        };
        let acks = result.map_err(|e| Failed(e.to_string()))?;
        acks.into_iter()
            .next()
            .ok_or_else(|| Failed("no answer for the events stream".into()))
    }

    /// Learns the collector's next index and moves the position to it.
    async fn sync(
        &mut self,
        state: &mut ShipState,
        deadline: Option<Instant>,
    ) -> Result<(), Failed> {
        let batch = Batch {
            streams: vec![StreamBatch {
                stream: self.stream.clone(),
                first_index: state.next_index,
                entries: Default::default(),
                terminal_count: None,
            }],
        };
        let next = match self.flush(&batch, deadline).await? {
            StreamAck::Acked { next } => next,
            StreamAck::Retry { reason, .. } => return Err(Failed(reason)),
            StreamAck::DeadLetter { reason } => {
                return Err(Failed(format!(
                    "the collector refused the events stream: {reason}"
                )));
            }
        };
        if next > state.next_index {
            // Stored, but the acknowledgement was lost: skip what the collector has.
            let skip = (next - state.next_index) as usize;
            let stored = self.store.since(state.next_seq, skip);
            if let Some(last) = stored.last() {
                state.next_seq = last.seq + 1;
            }
        } else if next < state.next_index {
            tracing::warn!(
                stream = %self.stream,
                collector_next = next,
                agent_next = state.next_index,
                "the collector has fewer of this agent's events than were acknowledged (a new data dir?); going on from its index"
            );
        }
        state.next_index = next;
        self.save_state(*state);
        Ok(())
    }

    /// Sends `pending` (events from `state.next_seq` on) and moves the position past what
    /// was acknowledged.
    async fn ship(
        &mut self,
        state: &mut ShipState,
        pending: &[EventLine],
        deadline: Option<Instant>,
        synced: &mut bool,
    ) -> Result<(), Failed> {
        let batch = Batch {
            streams: vec![StreamBatch {
                stream: self.stream.clone(),
                first_index: state.next_index,
                entries: pending.iter().map(|l| l.event().to_envelope()).collect(),
                terminal_count: None,
            }],
        };
        match self.flush(&batch, deadline).await? {
            StreamAck::Acked { next } => {
                let n = (next.saturating_sub(state.next_index) as usize).min(pending.len());
                if n == 0 {
                    // The collector is behind what we know: learn where it is.
                    *synced = false;
                    return Err(Failed(format!(
                        "the collector acknowledged up to {next}, before {}",
                        state.next_index
                    )));
                }
                state.next_seq = pending[n - 1].seq + 1;
                state.next_index += n as u64;
                self.stats.shipped.fetch_add(n as u64, Ordering::Relaxed);
                self.save_state(*state);
                Ok(())
            }
            StreamAck::Retry { reason, .. } => {
                *synced = false;
                Err(Failed(reason))
            }
            StreamAck::DeadLetter { reason } => {
                tracing::error!(stream = %self.stream, events = pending.len(), %reason, "the collector refused these events for good; skipping them");
                self.stats
                    .unshipped
                    .fetch_add(pending.len() as u64, Ordering::Relaxed);
                if let Some(last) = pending.last() {
                    state.next_seq = last.seq + 1;
                }
                *synced = false;
                self.save_state(*state);
                Ok(())
            }
        }
    }
}
