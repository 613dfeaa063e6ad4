//! The bounded buffer between the callers' threads and the sender task.
//!
//! A lock-free ring (`crossbeam_queue::ArrayQueue`) of [`Item`]s. An emit is one
//! `push`: when the ring is full the push fails and the new item is dropped and
//! counted (**newest dropped**: what is already buffered keeps its place, so the
//! envelopes that get through stay in order). The caller never blocks and never takes
//! a lock.
//!
//! Waking the sender costs the callers almost nothing: the sender announces, before it
//! sleeps, how many items it wants ([`Buffer::wait`]: one when it has nothing, enough
//! to fill its batch otherwise); a push checks a flag that is only set while the
//! sender sleeps and wakes it once the ring holds that many. A `SeqCst` fence on both
//! sides makes sure that a push racing with the sender going to sleep is seen by one
//! of the two (the classic store/load pairing), so no wake-up is lost.
//!
//! Closing ([`Buffer::close`]) refuses later pushes (dropped, counted). Once the sender
//! has stopped ([`Buffer::finish`]), whatever is still in the ring will never be sent
//! and [`Buffer::dropped`] counts it: the count is exact even for a push that raced
//! with closing.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence};

use crossbeam_queue::ArrayQueue;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::item::Item;

/// See the module docs.
pub(crate) struct Buffer {
    ring: ArrayQueue<Item>,
    dropped: AtomicU64,
    closed: AtomicBool,
    finished: AtomicBool,
    sleeping: AtomicBool,
    wake_at: AtomicUsize,
    wake: Notify,
}

impl Buffer {
    /// A buffer of `capacity` items (at least 1).
    pub(crate) fn new(capacity: usize) -> Self {
        Buffer {
            ring: ArrayQueue::new(capacity.max(1)),
            dropped: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            finished: AtomicBool::new(false),
            sleeping: AtomicBool::new(false),
            wake_at: AtomicUsize::new(1),
            wake: Notify::new(),
        }
    }

    /// Queues an item; `false` when it was dropped (full or closed), counted.
    #[inline]
    pub(crate) fn push(&self, item: Item) -> bool {
        if self.closed.load(Ordering::Relaxed) {
            self.count_dropped(1);
            return false;
        }
        if self.ring.push(item).is_err() {
            self.count_dropped(1);
            return false;
        }
        fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::Relaxed) {
            self.wake_if_wanted();
        }
        true
    }

    #[cold]
    fn wake_if_wanted(&self) {
        if self.ring.len() >= self.wake_at.load(Ordering::Relaxed)
            && self.sleeping.swap(false, Ordering::AcqRel)
        {
            self.wake.notify_one();
        }
    }

    /// The next item, if any (sender side).
    pub(crate) fn pop(&self) -> Option<Item> {
        self.ring.pop()
    }

    /// Items waiting.
    pub(crate) fn len(&self) -> usize {
        self.ring.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }

    /// Waits until at least `want` items wait, the buffer is closed, or `deadline`
    /// passes (sender side; may also return early, spuriously).
    pub(crate) async fn wait(&self, want: usize, deadline: Option<Instant>) {
        let notified = self.wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        self.wake_at.store(want.max(1), Ordering::Relaxed);
        self.sleeping.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if self.ring.len() >= want.max(1) || self.is_closed() {
            self.sleeping.store(false, Ordering::Relaxed);
            return;
        }
        match deadline {
            Some(d) => {
                tokio::select! {
                    () = &mut notified => {}
                    () = tokio::time::sleep_until(d) => {}
                }
            }
            None => notified.await,
        }
        self.sleeping.store(false, Ordering::Relaxed);
    }

    /// Refuses later pushes and wakes the sender.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.sleeping.store(false, Ordering::Relaxed);
        self.wake.notify_one();
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Marks the sender stopped: what is left in the ring counts as dropped.
    pub(crate) fn finish(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.finished.store(true, Ordering::SeqCst);
    }

    pub(crate) fn is_finished(&self) -> bool {
        self.finished.load(Ordering::SeqCst)
    }

    /// Counts `n` envelopes as dropped.
    pub(crate) fn count_dropped(&self, n: u64) {
        self.dropped.fetch_add(n, Ordering::Relaxed);
    }

    /// Envelopes dropped so far (see the module docs).
    pub(crate) fn dropped(&self) -> u64 {
        let counted = self.dropped.load(Ordering::Relaxed);
        if self.is_finished() {
            counted + self.ring.len() as u64
        } else {
            counted
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;
    use crate::ingress::item::Kind;

    fn item(i: i64) -> Item {
        Item {
            timestamp: i,
            template: None,
            kind: Kind::Log {
                payload: Bytes::new(),
                log_type: 0,
            },
        }
    }

    #[test]
    fn full_drops_the_newest_and_counts() {
        let b = Buffer::new(3);
        let accepted: Vec<bool> = (0..5).map(|i| b.push(item(i))).collect();
        assert_eq!(accepted, [true, true, true, false, false]);
        assert_eq!(b.dropped(), 2);
        let kept: Vec<i64> = std::iter::from_fn(|| b.pop())
            .map(|i| i.timestamp)
            .collect();
        assert_eq!(kept, [0, 1, 2]);
    }

    #[test]
    fn closed_refuses_and_finished_counts_leftovers() {
        let b = Buffer::new(10);
        assert!(b.push(item(0)));
        b.close();
        assert!(!b.push(item(1)));
        assert_eq!(b.dropped(), 1);
        b.finish();
        assert_eq!(
            b.dropped(),
            2,
            "the item left in the ring counts once finished"
        );
    }

    #[tokio::test]
    async fn a_sleeping_sender_wakes_when_enough_items_arrive() {
        let b = Arc::new(Buffer::new(100));
        let waiter = {
            let b = b.clone();
            tokio::spawn(async move { b.wait(5, None).await })
        };
        // Wait until the sender is asleep (it publishes the flag before sleeping).
        while !b.sleeping.load(Ordering::SeqCst) {
            tokio::task::yield_now().await;
        }
        for i in 0..4 {
            b.push(item(i));
        }
        b.push(item(4));
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .unwrap();
    }
}
