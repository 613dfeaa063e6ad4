//! Watches the spool's loss counters and reports them as events: `spool_full` when
//! appends had to wait for room (`when_full = "block"`), `spool_dropped` with the
//! number of records `when_full = "drop_oldest"` removed before every flusher had them.
//!
//! The spool counts these itself ([`crate::spool::SpoolStats`]) and signals when they
//! grow ([`Spool::loss_grew`]); the watcher then reports what grew, at most once per
//! rate-limit interval per type, the count carrying everything since the last report.
//! While a report is held back by the rate limit, it looks again every
//! [`RETRY_HELD_EVERY`]; otherwise it only wakes when the spool signals.

use std::time::Duration;

use super::{AgentEvents, fields, kind};
use crate::spool::Spool;

/// How often a report held back by the rate limit is tried again.
pub const RETRY_HELD_EVERY: Duration = Duration::from_millis(500);

/// Runs until aborted. `name` tells which spool in the events: `spool` for the agent's
/// spool, `spill/<source>/<flusher>` for a flusher's spill spool.
pub async fn watch(spool: Spool, name: String, events: AgentEvents) {
    let first = spool.stats();
    let (mut blocked, mut dropped) = (first.blocked_appends, first.dropped_records);
    let mut held = false;
    loop {
        if held {
            tokio::select! {
                () = spool.loss_grew() => {}
                () = tokio::time::sleep(RETRY_HELD_EVERY) => {}
            }
        } else {
            spool.loss_grew().await;
        }
        let s = spool.stats();
        if s.blocked_appends > blocked {
            let waits = s.blocked_appends - blocked;
            let reported = events.add_quiet_limited(
                &format!("spool_full:{name}"),
                kind::SPOOL_FULL,
                format!(
                    "{name} full ({} of {} bytes): {waits} appends waited for flushers to acknowledge (when_full = block); sources are held back",
                    s.bytes, s.max_bytes
                ),
                fields([
                    ("spool", name.clone()),
                    ("blocked_appends", waits.to_string()),
                    ("bytes", s.bytes.to_string()),
                    ("max_bytes", s.max_bytes.to_string()),
                ]),
            );
            if reported {
                blocked = s.blocked_appends;
            }
        }
        if s.dropped_records > dropped {
            let lost = s.dropped_records - dropped;
            let reported = events.add_quiet_limited(
                &format!("spool_dropped:{name}"),
                kind::SPOOL_DROPPED,
                format!(
                    "{name} full: dropped the {lost} oldest records before every flusher had them (when_full = drop_oldest)"
                ),
                fields([
                    ("spool", name.clone()),
                    ("count", lost.to_string()),
                    ("total", s.dropped_records.to_string()),
                    ("max_bytes", s.max_bytes.to_string()),
                ]),
            );
            if reported {
                dropped = s.dropped_records;
            }
        }
        held = s.blocked_appends > blocked || s.dropped_records > dropped;
    }
}
