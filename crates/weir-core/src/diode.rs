//! A diode: a bounded ring between a fast writer and a slow reader that overwrites the
//! oldest value when full and reports how many were dropped (Loggregator's one-to-one
//! diode, PROTOCOLS.md section 4.6).
//!
//! The writer never blocks and the newest data always wins. The reader learns of drops
//! on its next read: [`Diode::try_next`] calls the alerter with the number of values lost
//! since the previous alert, on the reader's side, before it returns the next value.
//!
//! Built on `crossbeam_queue::ArrayQueue::force_push`, which displaces the oldest element
//! of a full queue atomically; the displaced element is counted as dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_queue::ArrayQueue;
use tokio::sync::Notify;

/// Called by the reader with the number of values dropped since the last call.
pub type Alerter = Arc<dyn Fn(u64) + Send + Sync>;

/// A bounded, overwrite-oldest queue with drop reporting. Shareable across threads.
pub struct Diode<T> {
    ring: ArrayQueue<T>,
    dropped_total: AtomicU64,
    dropped_unreported: AtomicU64,
    ready: Notify,
    alerter: Option<Alerter>,
}

impl<T> Diode<T> {
    /// A diode of `capacity` slots (at least 1) without an alerter.
    pub fn new(capacity: usize) -> Self {
        Self::build(capacity, None)
    }

    /// A diode whose reader calls `alerter(n)` when it finds `n` values were dropped.
    pub fn with_alerter(capacity: usize, alerter: Alerter) -> Self {
        Self::build(capacity, Some(alerter))
    }

    fn build(capacity: usize, alerter: Option<Alerter>) -> Self {
        Diode {
            ring: ArrayQueue::new(capacity.max(1)),
            dropped_total: AtomicU64::new(0),
            dropped_unreported: AtomicU64::new(0),
            ready: Notify::new(),
            alerter,
        }
    }

    /// Writes a value; when full, the oldest value is dropped and counted. Never blocks.
    pub fn set(&self, value: T) {
        if self.ring.force_push(value).is_some() {
            self.dropped_total.fetch_add(1, Ordering::Relaxed);
            self.dropped_unreported.fetch_add(1, Ordering::Relaxed);
        }
        self.ready.notify_one();
    }

    /// The next value, if any; reports drops to the alerter first.
    pub fn try_next(&self) -> Option<T> {
        let value = self.ring.pop()?;
        self.report_drops();
        Some(value)
    }

    /// Waits for the next value.
    pub async fn next(&self) -> T {
        loop {
            if let Some(v) = self.try_next() {
                return v;
            }
            self.ready.notified().await;
        }
    }

    fn report_drops(&self) {
        if let Some(alerter) = &self.alerter {
            let n = self.dropped_unreported.swap(0, Ordering::Relaxed);
            if n > 0 {
                alerter(n);
            }
        }
    }

    /// Values dropped since the diode was made.
    pub fn dropped(&self) -> u64 {
        self.dropped_total.load(Ordering::Relaxed)
    }

    /// Values waiting to be read.
    pub fn len(&self) -> usize {
        self.ring.len()
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }

    /// The number of slots.
    pub fn capacity(&self) -> usize {
        self.ring.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn keeps_the_newest_and_counts_the_rest() {
        let alerts = Arc::new(Mutex::new(Vec::new()));
        let a = alerts.clone();
        let d = Diode::with_alerter(4, Arc::new(move |n| a.lock().unwrap().push(n)));
        for i in 0..10 {
            d.set(i);
        }
        assert_eq!(d.dropped(), 6);
        let got: Vec<i32> = std::iter::from_fn(|| d.try_next()).collect();
        assert_eq!(got, vec![6, 7, 8, 9]);
        assert_eq!(*alerts.lock().unwrap(), vec![6]);
        d.set(10);
        assert_eq!(d.try_next(), Some(10));
        assert_eq!(*alerts.lock().unwrap(), vec![6], "no drop, no alert");
    }

    #[test]
    fn no_drops_below_capacity_in_order() {
        let d = Diode::new(100);
        for i in 0..100 {
            d.set(i);
        }
        assert_eq!(d.dropped(), 0);
        assert_eq!(
            std::iter::from_fn(|| d.try_next()).collect::<Vec<_>>(),
            (0..100).collect::<Vec<_>>()
        );
    }

    #[tokio::test]
    async fn reader_wakes_for_writer_on_another_task() {
        let d = Arc::new(Diode::new(8));
        let w = d.clone();
        let writer = tokio::spawn(async move {
            for i in 0..1000u32 {
                w.set(i);
                tokio::task::yield_now().await;
            }
        });
        let mut last = None;
        let mut seen = 0u64;
        while last != Some(999) {
            let v = d.next().await;
            if let Some(l) = last {
                assert!(v > l, "order kept");
            }
            last = Some(v);
            seen += 1;
        }
        writer.await.unwrap();
        assert_eq!(seen + d.dropped() + d.len() as u64, 1000);
    }
}
