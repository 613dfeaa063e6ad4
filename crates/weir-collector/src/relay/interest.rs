//! Whether some collector on the relay has live subscribers, learned from pings.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How often a collector with live subscribers pings `<prefix>.interest` (it also
/// pings at once whenever its subscribers change).
pub const INTEREST_INTERVAL: Duration = Duration::from_secs(1);

/// How long after the last ping a collector keeps publishing: three intervals, so one
/// or two lost pings do not interrupt the flow.
pub const INTEREST_TTL: Duration = Duration::from_secs(3);

/// A deadline, in milliseconds since `origin`, until which envelopes are published.
#[derive(Debug)]
pub(crate) struct Interest {
    origin: Instant,
    until_ms: AtomicU64,
}

impl Interest {
    /// No interest yet.
    pub fn new() -> Self {
        Interest {
            origin: Instant::now(),
            until_ms: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether a ping arrived within the last [`INTEREST_TTL`].
    pub fn active(&self) -> bool {
        self.now_ms() < self.until_ms.load(Ordering::Relaxed)
    }

    /// A ping arrived.
    pub fn ping(&self) {
        let ttl = u64::try_from(INTEREST_TTL.as_millis()).unwrap_or(u64::MAX);
        let until = self.now_ms().saturating_add(ttl);
        self.until_ms.fetch_max(until, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ping_opens_interest() {
        let i = Interest::new();
        assert!(!i.active());
        i.ping();
        assert!(i.active());
    }
}
