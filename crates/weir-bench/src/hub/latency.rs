//! Ingest-to-delivery latency: every envelope carries its send time (Unix nanoseconds)
//! in `timestamp`; the subscriber subtracts it from its clock when the envelope arrives.
//! Producer and subscribers run on the same host, so they share the clock.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Unix nanoseconds now.
pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Latency samples in microseconds.
#[derive(Debug, Default, Clone)]
pub struct Latencies(Vec<u32>);

impl Latencies {
    pub fn with_capacity(n: usize) -> Self {
        Latencies(Vec::with_capacity(n))
    }

    /// Records the latency of an envelope sent at `sent_ns` and received at `now_ns`.
    pub fn record(&mut self, sent_ns: i64, now_ns: i64) {
        let us = (now_ns - sent_ns).max(0) / 1_000;
        self.0.push(us.min(u32::MAX as i64) as u32);
    }

    pub fn merge(&mut self, other: Latencies) {
        self.0.extend(other.0);
    }

    /// The `q` quantile (0.0–1.0); zero without samples.
    pub fn quantile(&mut self, q: f64) -> Duration {
        if self.0.is_empty() {
            return Duration::ZERO;
        }
        self.0.sort_unstable();
        let i = ((self.0.len() - 1) as f64 * q).round() as usize;
        Duration::from_micros(u64::from(self.0[i]))
    }
}
