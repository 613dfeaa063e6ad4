//! `[retry]`: how long a failing flusher waits before it tries again.
//!
//! Exponential backoff with jitter: attempt *n* waits a random time between half and
//! all of `initial_backoff_ms × 2ⁿ⁻¹`, capped at `max_backoff_ms`. The data stays where
//! it is meanwhile (behind the file checkpoint, or in the spool), and the flusher is
//! handed nothing else, so back-pressure reaches the sources.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Backoff between attempts of a failing flush.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    /// Wait after the first failure, milliseconds. Default 100.
    pub initial_backoff_ms: u64,
    /// Longest wait, milliseconds. Default 30,000: a collector back after an outage is
    /// found within half a minute, and a dead one costs two attempts a minute.
    pub max_backoff_ms: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            initial_backoff_ms: 100,
            max_backoff_ms: 30_000,
        }
    }
}

impl RetryConfig {
    /// Checks the ranges; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.initial_backoff_ms == 0 {
            return Err("retry.initial_backoff_ms must be above 0".into());
        }
        if self.max_backoff_ms < self.initial_backoff_ms {
            return Err(format!(
                "retry.max_backoff_ms = {} is below initial_backoff_ms = {}",
                self.max_backoff_ms, self.initial_backoff_ms
            ));
        }
        Ok(())
    }

    /// The wait before attempt `attempt + 1` (`attempt` ≥ 1 failures so far).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(32);
        let full = self
            .initial_backoff_ms
            .saturating_mul(1u64 << exp)
            .min(self.max_backoff_ms);
        let low = full / 2;
        Duration::from_millis(rand::random_range(low..=full))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_with_jitter_up_to_the_cap() {
        let r = RetryConfig::default();
        for _ in 0..100 {
            let d = r.backoff(1).as_millis();
            assert!((50..=100).contains(&d), "{d}");
            let d = r.backoff(4).as_millis();
            assert!((400..=800).contains(&d), "{d}");
            let d = r.backoff(40).as_millis();
            assert!((15_000..=30_000).contains(&d), "{d}");
        }
        assert!(
            RetryConfig {
                initial_backoff_ms: 10,
                max_backoff_ms: 5
            }
            .validate()
            .is_err()
        );
    }
}
