//! The sender task: takes items from the buffer, cuts batches, sends them in short
//! `BatchSender` calls and settles each call's batches (confirmed, resent or dropped).
//! The module docs of [`crate::ingress`] explain why and what it guarantees.
//!
//! One call is in flight at a time, so envelopes reach the server in the order they
//! were emitted, resends included: the batches of a failed call are resent first, on
//! the next call.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::Shared;
use super::call::{Call, CallOutcome};
use super::encode::{Batch, BatchBuilder};
use crate::backoff::Backoff;

/// How the sender cuts batches and calls.
#[derive(Debug, Clone)]
pub(crate) struct SenderConfig {
    pub(crate) batch_max_size: usize,
    pub(crate) max_batch_bytes: usize,
    pub(crate) flush_interval: Duration,
    pub(crate) max_batches_per_call: usize,
    pub(crate) backoff: Backoff,
    pub(crate) call_timeout: Duration,
}

/// How the sender ended.
#[derive(Debug, Clone)]
pub(crate) enum Exit {
    /// Closed: everything buffered was sent and settled. `dropped` envelopes of it could
    /// not be confirmed (at-most-once), the last error being `last_error`.
    Closed {
        dropped: u64,
        last_error: Option<String>,
    },
    /// The cancellation token fired: what was not confirmed was dropped.
    Cancelled,
}

pub(crate) struct Sender {
    shared: Arc<Shared>,
    config: SenderConfig,
    builder: BatchBuilder,
    /// Batches to (re)send first, in order: at most `max_batches_per_call`.
    held: VecDeque<Batch>,
    /// The batches of the call under way, in the order sent.
    inflight: Vec<Batch>,
    backoff: Backoff,
    last_error: Option<String>,
    /// Envelopes this task dropped (unconfirmed) after closing began.
    dropped_while_closing: u64,
}

impl Sender {
    pub(crate) fn new(shared: Arc<Shared>, config: SenderConfig) -> Self {
        Sender {
            builder: BatchBuilder::new(config.batch_max_size, config.max_batch_bytes),
            backoff: config.backoff.clone(),
            shared,
            config,
            held: VecDeque::new(),
            inflight: Vec::new(),
            last_error: None,
            dropped_while_closing: 0,
        }
    }

    /// Runs until closed and drained, or cancelled; then publishes how it ended.
    pub(crate) async fn run(mut self, done: watch::Sender<Option<Exit>>) {
        let cancel = self.shared.cancel.clone();
        let cancelled = tokio::select! {
            biased;
            () = cancel.cancelled() => true,
            () = self.serve() => false,
        };
        let exit = if cancelled {
            self.abandon();
            Exit::Cancelled
        } else {
            Exit::Closed {
                dropped: self.dropped_while_closing,
                last_error: self.last_error.take(),
            }
        };
        self.shared.buffer.finish();
        let _ = done.send(Some(exit));
    }

    async fn serve(&mut self) {
        loop {
            if self.held.is_empty() {
                match self.next_batch().await {
                    Some(b) => self.held.push_back(b),
                    None => return, // closed and drained
                }
            }
            if self.run_call().await {
                self.backoff.reset();
            } else {
                let delay = self.backoff.next_delay();
                tracing::debug!(?delay, "BatchSender failed; retrying after a delay");
                tokio::time::sleep(delay).await;
            }
        }
    }

    /// One call: the held batches, then new ones while there are some, up to the
    /// per-call limit. `true` when it succeeded.
    async fn run_call(&mut self) -> bool {
        let limit = self.config.max_batches_per_call.max(1);
        let mut call = Call::start(&self.shared.channel, limit);
        debug_assert!(self.inflight.is_empty());
        self.inflight.extend(self.held.drain(..));
        for b in &self.inflight {
            call.send(b.bytes.clone());
        }
        while self.inflight.len() < limit && !call.is_finished() {
            // No batch ready without waiting: end the call now so its batches are
            // confirmed at once; the next call takes the rest.
            if !self.batch_ready() {
                break;
            }
            let batch = tokio::select! {
                b = self.next_batch() => b,
                () = call.ended() => break,
            };
            match batch {
                Some(b) => {
                    call.send(b.bytes.clone());
                    self.inflight.push(b);
                }
                None => break,
            }
        }
        let outcome = call.finish(self.config.call_timeout).await;
        self.settle(outcome)
    }

    /// Confirms, re-holds or drops the batches of the call that ended. `true` on
    /// success.
    fn settle(&mut self, outcome: CallOutcome) -> bool {
        let stats = &self.shared.stats;
        stats.calls.fetch_add(1, Ordering::Relaxed);
        let batches = std::mem::take(&mut self.inflight);
        let (confirmed, lost, status) = match outcome {
            CallOutcome::Confirmed => (batches.len(), 0, None),
            CallOutcome::Partial { stored, status } => (stored.min(batches.len()), 0, Some(status)),
            CallOutcome::Unknown { polled, status } => (0, polled.min(batches.len()), Some(status)),
        };
        let mut rest = batches.into_iter();
        let delivered: u64 = rest.by_ref().take(confirmed).map(|b| b.count).sum();
        stats.delivered.fetch_add(delivered, Ordering::Relaxed);
        let dropped: u64 = rest.by_ref().take(lost).map(|b| b.count).sum();
        if dropped > 0 {
            self.shared.buffer.count_dropped(dropped);
            if self.shared.buffer.is_closed() {
                self.dropped_while_closing += dropped;
            }
        }
        // The rest were certainly not stored: resend them first, in order.
        let resend: Vec<Batch> = rest.collect();
        stats
            .resent_batches
            .fetch_add(resend.len() as u64, Ordering::Relaxed);
        for b in resend.into_iter().rev() {
            self.held.push_front(b);
        }
        match status {
            None => true,
            Some(status) => {
                stats.failed_calls.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    code = ?status.code(),
                    message = status.message(),
                    dropped,
                    resending = self.held.len(),
                    "BatchSender call failed"
                );
                self.last_error = Some(status.to_string());
                false
            }
        }
    }

    /// The next batch: full, or due by the flush interval, or the last one once
    /// closed. `None` when closed and nothing is left.
    async fn next_batch(&mut self) -> Option<Batch> {
        loop {
            self.fill();
            if self.builder.is_full() {
                return self.builder.take();
            }
            if self.shared.buffer.is_closed() {
                if self.shared.buffer.is_empty() {
                    return self.builder.take();
                }
                continue;
            }
            let deadline = self
                .builder
                .started()
                .map(|t| t + self.config.flush_interval);
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return self.builder.take();
            }
            let want = if self.builder.is_empty() {
                1
            } else {
                self.builder.room()
            };
            self.shared.buffer.wait(want, deadline).await;
        }
    }

    /// Whether [`next_batch`](Self::next_batch) would return without waiting.
    fn batch_ready(&self) -> bool {
        let buffer = &self.shared.buffer;
        self.builder.is_full()
            || buffer.len() >= self.builder.room()
            || buffer.is_closed()
            || self
                .builder
                .started()
                .is_some_and(|t| Instant::now() >= t + self.config.flush_interval)
    }

    /// Moves items from the buffer into the batch until it is full or the buffer empty.
    fn fill(&mut self) {
        while !self.builder.is_full() {
            match self.shared.buffer.pop() {
                Some(item) => self.builder.push(item, &self.shared.default),
                None => break,
            }
        }
    }

    /// Cancelled: counts everything not confirmed as dropped.
    fn abandon(&mut self) {
        let buffer = &self.shared.buffer;
        let mut n: u64 = self.held.drain(..).map(|b| b.count).sum();
        n += self.inflight.drain(..).map(|b| b.count).sum::<u64>();
        n += self.builder.len() as u64;
        self.builder.take();
        while buffer.pop().is_some() {
            n += 1;
        }
        buffer.count_dropped(n);
    }
}
