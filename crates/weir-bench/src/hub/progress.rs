//! What the subscribers have received so far, shared with the producer.
//!
//! Flow control of a throughput run: the producer keeps at most `window` envelopes
//! beyond what the slowest subscriber has received, so no diode overflows and the run
//! measures what the hub delivers without loss. Subscribers report after each batch;
//! the producer also learns here when every subscriber is connected (it has seen
//! filler) and when every one has everything.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// Each subscriber's count of real (not filler) envelopes received.
pub struct Progress {
    counts: Vec<AtomicU64>,
    ready: Vec<AtomicBool>,
    done_at: Vec<Mutex<Option<Instant>>>,
    /// When the last real envelope arrived at any subscriber.
    last_real: Mutex<Option<Instant>>,
    wake: Notify,
}

impl Progress {
    pub fn new(subscribers: usize) -> Self {
        Progress {
            counts: (0..subscribers).map(|_| AtomicU64::new(0)).collect(),
            ready: (0..subscribers).map(|_| AtomicBool::new(false)).collect(),
            done_at: (0..subscribers).map(|_| Mutex::new(None)).collect(),
            last_real: Mutex::new(None),
            wake: Notify::new(),
        }
    }

    /// Subscriber `i` received `n` more real envelopes.
    pub fn add(&self, i: usize, n: u64) {
        if n > 0 {
            self.counts[i].fetch_add(n, Ordering::Release);
            if let Ok(mut t) = self.last_real.lock() {
                *t = Some(Instant::now());
            }
        }
        self.wake.notify_waiters();
    }

    /// Subscriber `i` is connected (it received something).
    pub fn mark_ready(&self, i: usize) {
        if !self.ready[i].swap(true, Ordering::AcqRel) {
            self.wake.notify_waiters();
        }
    }

    /// Subscriber `i` has everything.
    pub fn finish(&self, i: usize) {
        if let Ok(mut d) = self.done_at[i].lock() {
            d.get_or_insert_with(Instant::now);
        }
        self.wake.notify_waiters();
    }

    /// The smallest count.
    pub fn min(&self) -> u64 {
        self.counts
            .iter()
            .map(|c| c.load(Ordering::Acquire))
            .min()
            .unwrap_or(0)
    }

    /// Real envelopes received by all subscribers, at most `cap` counted for each.
    pub fn total(&self, cap: u64) -> u64 {
        self.counts
            .iter()
            .map(|c| c.load(Ordering::Acquire).min(cap))
            .sum()
    }

    /// When the last real envelope arrived, if any did.
    pub fn last_real(&self) -> Option<Instant> {
        self.last_real.lock().ok().and_then(|t| *t)
    }

    /// Whether every subscriber is connected.
    pub fn all_ready(&self) -> bool {
        self.ready.iter().all(|r| r.load(Ordering::Acquire))
    }

    /// Whether every subscriber has everything; then the last one's finishing time.
    pub fn all_done(&self) -> Option<Instant> {
        let mut last = None;
        for d in &self.done_at {
            let t = (*d.lock().ok()?)?;
            last = Some(last.map_or(t, |l: Instant| l.max(t)));
        }
        last
    }

    /// Waits until the slowest subscriber has at least `at_least`; `false` when no
    /// subscriber reported anything for `stall`.
    pub async fn wait_min(&self, at_least: u64, stall: Duration) -> bool {
        loop {
            let woken = self.wake.notified();
            if self.min() >= at_least {
                return true;
            }
            if tokio::time::timeout(stall, woken).await.is_err() {
                return false;
            }
        }
    }

    /// Waits for the next report of any subscriber, at most `max`.
    pub async fn changed(&self, max: Duration) {
        let _ = tokio::time::timeout(max, self.wake.notified()).await;
    }
}
