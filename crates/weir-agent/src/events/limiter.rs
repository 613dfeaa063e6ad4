//! [`Limiter`]: at most one event per key per interval, counting what it held back.
//!
//! A flapping flusher or a spool that stays full would otherwise write the same event
//! again and again. Each key (`flusher_failing/central`, `spool_full`, …) may pass once
//! per interval; the events held back meanwhile are counted, and the next event that
//! passes carries that count (the field `suppressed`).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Most keys remembered; past it the oldest half is forgotten (keys are per component,
/// so this is never reached by a sane configuration).
const MAX_KEYS: usize = 4096;

/// See the module docs.
#[derive(Debug)]
pub struct Limiter {
    interval: Duration,
    keys: Mutex<HashMap<String, (Instant, u64)>>,
}

impl Limiter {
    /// A limiter letting one event per key pass every `interval` (zero: every event).
    pub fn new(interval: Duration) -> Self {
        Limiter {
            interval,
            keys: Mutex::new(HashMap::new()),
        }
    }

    /// Whether an event of `key` may pass now: `Some(held back since the last one that
    /// passed)`, or `None` (held back, counted).
    pub fn check(&self, key: &str) -> Option<u64> {
        self.pass(key, true)
    }

    /// [`check`](Self::check) without counting a held-back event: for a caller whose
    /// next event carries the whole count itself.
    pub fn check_quiet(&self, key: &str) -> bool {
        self.pass(key, false).is_some()
    }

    fn pass(&self, key: &str, count: bool) -> Option<u64> {
        let now = Instant::now();
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        match keys.get_mut(key) {
            Some((last, held)) if now.duration_since(*last) < self.interval => {
                if count {
                    *held += 1;
                }
                None
            }
            Some((last, held)) => {
                *last = now;
                Some(std::mem::take(held))
            }
            None => {
                if keys.len() >= MAX_KEYS {
                    let mut by_age: Vec<(String, Instant)> =
                        keys.iter().map(|(k, (t, _))| (k.clone(), *t)).collect();
                    by_age.sort_by_key(|(_, t)| *t);
                    for (k, _) in by_age.into_iter().take(MAX_KEYS / 2) {
                        keys.remove(&k);
                    }
                }
                keys.insert(key.to_string(), (now, 0));
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_per_key_per_interval_with_the_count_held_back() {
        let l = Limiter::new(Duration::from_secs(3600));
        assert_eq!(l.check("a"), Some(0));
        assert_eq!(l.check("a"), None);
        assert_eq!(l.check("a"), None);
        assert_eq!(l.check("b"), Some(0));
        let l = Limiter::new(Duration::ZERO);
        assert_eq!(l.check("a"), Some(0));
        assert_eq!(l.check("a"), Some(0));
    }

    #[test]
    fn the_next_one_that_passes_carries_the_count() {
        let long = Limiter::new(Duration::from_secs(3600));
        assert_eq!(long.check("a"), Some(0));
        assert_eq!(long.check("a"), None);
        assert_eq!(long.check("a"), None);
        {
            // Age the key past the interval.
            let mut keys = long.keys.lock().unwrap();
            let entry = keys.get_mut("a").unwrap();
            entry.0 = Instant::now() - Duration::from_secs(7200);
        }
        assert_eq!(long.check("a"), Some(2));
        assert_eq!(long.check("a"), None);
    }
}
