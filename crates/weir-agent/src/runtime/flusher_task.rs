//! One task per flusher: hands it batches when it is ready, retries with backoff until
//! each batch is acknowledged or refused for good, and reports the outcome.
//!
//! Per batch:
//! 1. Wait until [`Flusher::is_ready`] (polled every [`READY_POLL`]; the flusher is
//!    handed nothing meanwhile, its input channel fills, and back-pressure reaches the
//!    sources).
//! 2. [`Flusher::flush`]. An `Err` retries the whole batch after a backoff. Per stream:
//!    `Acked` up to the end is done; `Acked` short of it, `Retry { from }` or a missing
//!    answer resend that stream from where the receiver is, after a backoff;
//!    `DeadLetter` is counted and written to the dead-letter file, and counts as done
//!    (it will never be delivered, and holding it would stop the source for good).
//! 3. When every stream is done, [`AckSink::delivered`](super::delivery::AckSink::delivered).
//!
//! Streams of a batch are resent before the next batch is taken, so each stream reaches
//! the flusher in index order. At shutdown ([`Phase::Draining`]) the task calls
//! [`Flusher::set_urgent`], delivers what is queued, then [`Flusher::stop`]; at
//! [`Phase::Abandon`] it drops the batch in hand unreported and stops.
//!
//! The first failure of a batch reports `flusher_failing` (with the reason; rate-limited
//! per flusher); when that batch then goes through, `flusher_recovered` (with the
//! outage's length and the retries). A batch refused for good reports `dead_lettered`.
//!
//! `weir_agent_flusher_ready{flusher}` is 0 while the flusher says it is not ready or a
//! batch of it is failing (backing off), 1 once a batch went through.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::dead_letter::DeadLetters;
use super::delivery::{Delivery, Phase, reached};
use super::retry::RetryConfig;
use crate::events::AgentEvents;
use crate::flusher::{Batch, Entries, Flusher, StreamAck, StreamBatch};
use crate::metrics::FlusherCounters;

/// How often a flusher that is not ready is asked again.
pub const READY_POLL: Duration = Duration::from_millis(10);

/// A flusher and everything its task needs.
pub struct FlusherTask {
    pub name: String,
    pub flusher: Box<dyn Flusher>,
    pub rx: mpsc::Receiver<Delivery>,
    pub phase: watch::Receiver<Phase>,
    pub retry: RetryConfig,
    pub counters: FlusherCounters,
    pub dead_letters: Arc<DeadLetters>,
    /// Where `flusher_failing`, `flusher_recovered` and `dead_lettered` are reported.
    pub events: AgentEvents,
}

/// How one delivery ended.
enum Outcome {
    Done,
    Abandoned,
}

impl FlusherTask {
    /// Runs until every sender of its channel is gone (or the agent abandons), then
    /// stops the flusher.
    pub async fn run(mut self) {
        let mut urgent = false;
        let mut phase = self.phase.clone();
        self.counters.ready.set(i64::from(self.flusher.is_ready()));
        loop {
            let now = *phase.borrow_and_update();
            if now == Phase::Abandon {
                break;
            }
            if now >= Phase::Draining && !urgent {
                urgent = true;
                self.flusher.set_urgent();
            }
            let next = tokio::select! {
                biased;
                changed = phase.changed() => {
                    if changed.is_err() {
                        break; // the agent is gone
                    }
                    continue;
                }
                d = self.rx.recv() => d,
            };
            let Some(delivery) = next else { break };
            match self.deliver(&delivery).await {
                Outcome::Done => {
                    delivery
                        .sink
                        .delivered(delivery.slot, delivery.tag, &delivery.batch);
                }
                Outcome::Abandoned => break,
            }
        }
        if !urgent {
            self.flusher.set_urgent();
        }
        let stop = self.flusher.stop();
        match tokio::time::timeout(Duration::from_secs(5), stop).await {
            Ok(Ok(())) => tracing::info!(flusher = %self.name, "flusher stopped"),
            Ok(Err(e)) => tracing::warn!(flusher = %self.name, error = %e, "flusher stop failed"),
            Err(_) => tracing::warn!(flusher = %self.name, "flusher stop timed out"),
        }
        self.counters.ready.set(0);
    }

    async fn deliver(&mut self, d: &Delivery) -> Outcome {
        let mut abandon = self.phase.clone();
        let mut resend: Option<Batch> = None;
        let mut attempt: u32 = 0;
        // When this batch first failed, and whether `flusher_failing` was reported.
        let mut failing: Option<(std::time::Instant, bool)> = None;
        loop {
            if !self.wait_ready(&mut abandon).await {
                return Outcome::Abandoned;
            }
            let batch = resend.as_ref().unwrap_or(&d.batch);
            let result = tokio::select! {
                r = self.flusher.flush(batch) => r,
                _ = reached(&mut abandon, Phase::Abandon) => return Outcome::Abandoned,
            };
            let why = match result {
                Err(e) => e.to_string(),
                Ok(acks) => {
                    let (again, why) = self.settle(batch, &acks);
                    if again.is_empty() {
                        self.counters.ready.set(1);
                        if let Some((since, true)) = failing {
                            self.events
                                .flusher_recovered(&self.name, since.elapsed(), attempt);
                        }
                        return Outcome::Done;
                    }
                    resend = Some(Batch { streams: again });
                    why
                }
            };
            attempt = attempt.saturating_add(1);
            if failing.is_none() {
                let reported = self.events.flusher_failing(&self.name, &why);
                failing = Some((std::time::Instant::now(), reported));
            }
            self.counters.retries.inc();
            self.counters.ready.set(0);
            let wait = self.retry.backoff(attempt);
            if attempt == 1 || attempt.is_power_of_two() {
                tracing::warn!(flusher = %self.name, attempt, retry_in_ms = wait.as_millis() as u64, reason = %why, "flush failed; retrying");
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = reached(&mut abandon, Phase::Abandon) => return Outcome::Abandoned,
            }
        }
    }

    /// Applies the per-stream answers; returns what must be sent again and why.
    fn settle(&mut self, batch: &Batch, acks: &[StreamAck]) -> (Vec<StreamBatch>, String) {
        let mut again = Vec::new();
        let mut why = String::new();
        for (i, s) in batch.streams.iter().enumerate() {
            match acks.get(i) {
                Some(StreamAck::Acked { next }) if *next >= s.end_index() => {
                    self.counters.flushed.inc_by(s.entries.len() as u64);
                }
                Some(StreamAck::Acked { next }) => {
                    self.counters
                        .flushed
                        .inc_by(next.saturating_sub(s.first_index));
                    why = format!("{}: acknowledged only up to {next}", s.stream);
                    again.extend(from(s, *next));
                }
                Some(StreamAck::Retry { from: at, reason }) => {
                    why = format!("{}: {reason}", s.stream);
                    again.extend(from(s, *at));
                }
                Some(StreamAck::DeadLetter { reason }) => {
                    tracing::warn!(flusher = %self.name, stream = %s.stream, first_index = s.first_index, entries = s.entries.len(), %reason, "refused for good: dead letter");
                    let written = self.dead_letters.write(&self.name, s, reason);
                    if written {
                        self.counters.dead_letter.inc_by(s.entries.len() as u64);
                    } else {
                        self.counters
                            .dead_letter_full
                            .inc_by(s.entries.len() as u64);
                    }
                    self.events.dead_lettered(
                        &self.name,
                        &s.stream,
                        s.first_index,
                        s.entries.len(),
                        reason,
                        written,
                    );
                }
                None => {
                    why = format!("{}: no answer for this stream", s.stream);
                    again.push(s.clone());
                }
            }
        }
        (again, why)
    }

    /// Waits until the flusher is ready; false when the agent abandons first.
    async fn wait_ready(&mut self, abandon: &mut watch::Receiver<Phase>) -> bool {
        loop {
            if self.flusher.is_ready() {
                return true;
            }
            self.counters.ready.set(0);
            tokio::select! {
                _ = tokio::time::sleep(READY_POLL) => {}
                _ = reached(abandon, Phase::Abandon) => return false,
            }
        }
    }
}

/// The part of `s` from index `at` on (all of it when `at` is at or before its start);
/// `None` when nothing is left to send.
fn from(s: &StreamBatch, at: u64) -> Option<StreamBatch> {
    if at <= s.first_index {
        return Some(s.clone());
    }
    if at >= s.end_index() {
        // Every entry is stored; only a termination may be left to send.
        return s.terminal_count.map(|count| StreamBatch {
            stream: s.stream.clone(),
            first_index: at,
            entries: Entries::default(),
            terminal_count: Some(count),
        });
    }
    let skip = (at - s.first_index) as usize;
    Some(StreamBatch {
        stream: s.stream.clone(),
        first_index: at,
        entries: s.entries.tail(skip),
        terminal_count: s.terminal_count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sb(first: u64, n: usize, term: Option<u64>) -> StreamBatch {
        StreamBatch {
            stream: "a/+/b".into(),
            first_index: first,
            entries: vec![Default::default(); n].into(),
            terminal_count: term,
        }
    }

    #[test]
    fn resend_starts_where_the_receiver_is() {
        assert_eq!(from(&sb(10, 5, None), 3).unwrap().first_index, 10);
        let part = from(&sb(10, 5, None), 12).unwrap();
        assert_eq!((part.first_index, part.end_index()), (12, 15));
        assert!(from(&sb(10, 5, None), 15).is_none());
        let t = from(&sb(10, 5, Some(15)), 15).unwrap();
        assert!(t.entries.is_empty() && t.terminal_count == Some(15));
    }
}
