//! Retention: a periodic task that expires streams by age and keeps the store under an
//! optional size cap (the `[retention]` table).
//!
//! Each round, at time `now`:
//!
//! 1. **Age, whole partitions.** Time partitions whose range ended before
//!    `now - longest`, `longest` being the longest max age of the default and every
//!    rule, are dropped ([`Store::expire_before`]); this frees the disk.
//! 2. **Age, per prefix.** When some stream's max age is shorter than `longest` (a rule
//!    shorter than the default, or a default shorter than some rule), every stream is
//!    listed and each one whose max age is shorter has its entries ingested before
//!    `now - max_age` expired ([`Store::expire_stream`]: its low-water mark moves;
//!    the bytes go when their partition is dropped in step 1 or 3). A stream's max age is
//!    that of the rule with the longest matching prefix, else `max_age`.
//! 3. **Size.** With `max_store_bytes`, while the live partitions take more than that,
//!    the oldest is dropped (never the newest one, which is being written).
//!
//! Each step that removed something writes an event (`retention_expired`,
//! `retention_size_cap`) and counts into `weir_retention_*`; the round sets
//! `weir_store_bytes` and `weir_store_partitions`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use weir_core::duration::format as human;
use weir_store::{Store, StoreError};

use crate::events::{Events, fields, kind};
use crate::obs_metrics::{ObsMetrics, RetentionReason};

/// Streams listed per page in step 2.
const LIST_PAGE: usize = 1000;

/// One `[[retention.rules]]` entry: streams whose path starts with `prefix` keep their
/// entries for `max_age`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionRule {
    /// Path prefix, e.g. `host/` (the longest matching rule applies).
    pub prefix: String,
    /// How long entries are kept (`"2d"`; units ms, s, m, h, d).
    #[serde(with = "weir_core::duration::serde_human")]
    pub max_age: Duration,
}

/// The `[retention]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// How long entries are kept when no rule matches (default `"7d"`).
    #[serde(with = "weir_core::duration::serde_human")]
    pub max_age: Duration,
    /// Per-prefix max ages.
    pub rules: Vec<RetentionRule>,
    /// When set, the oldest time partitions are dropped while the store is larger.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_store_bytes: Option<u64>,
    /// How often a round runs (default `"5m"`).
    #[serde(with = "weir_core::duration::serde_human")]
    pub interval: Duration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            max_age: Duration::from_secs(7 * 86_400),
            rules: Vec::new(),
            max_store_bytes: None,
            interval: Duration::from_secs(300),
        }
    }
}

impl RetentionConfig {
    /// The max age of the stream at `path`: the longest matching rule's, else the
    /// default.
    pub fn max_age_of(&self, path: &str) -> Duration {
        self.rules
            .iter()
            .filter(|r| path.starts_with(&r.prefix))
            .max_by_key(|r| r.prefix.len())
            .map_or(self.max_age, |r| r.max_age)
    }

    /// The longest max age of the default and every rule.
    pub fn longest(&self) -> Duration {
        self.rules
            .iter()
            .map(|r| r.max_age)
            .fold(self.max_age, Duration::max)
    }
}

/// What one round removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoundReport {
    /// Partitions dropped for age (step 1).
    pub age_partitions: u64,
    /// Entries in them.
    pub age_partition_entries: u64,
    /// Entries expired per stream (step 2), by the prefix of the rule that applied
    /// (`""` for the default).
    pub by_prefix: BTreeMap<String, (u64, u64)>,
    /// Partitions dropped for size (step 3).
    pub size_partitions: u64,
    /// Entries in them.
    pub size_entries: u64,
    /// Bytes of the live partitions after the round.
    pub bytes_after: u64,
}

/// The retention task's state. See the module docs.
pub struct Retention {
    store: Arc<dyn Store>,
    config: RetentionConfig,
    metrics: ObsMetrics,
    events: Arc<Events>,
}

fn ns(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

impl Retention {
    /// Retention of `store` by `config`, reporting to `metrics` and `events`.
    pub fn new(
        store: Arc<dyn Store>,
        config: RetentionConfig,
        metrics: ObsMetrics,
        events: Arc<Events>,
    ) -> Self {
        Retention {
            store,
            config,
            metrics,
            events,
        }
    }

    /// Runs a round every `interval` (the first at once) until `stop` is cancelled.
    pub async fn run(self, stop: CancellationToken) {
        let mut tick = tokio::time::interval(self.config.interval.max(Duration::from_secs(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = stop.cancelled() => return,
            }
            if let Err(e) = self.round(weir_core::now_ns()).await {
                tracing::warn!("retention round failed: {e}");
            }
        }
    }

    /// One round at time `now_ns`; counts it as ok or failed.
    pub async fn round(&self, now_ns: i64) -> Result<RoundReport, StoreError> {
        let result = self.round_inner(now_ns).await;
        self.metrics.retention_run(result.is_ok());
        result
    }

    async fn round_inner(&self, now_ns: i64) -> Result<RoundReport, StoreError> {
        let mut report = RoundReport::default();
        let longest = self.config.longest();
        let dropped = self
            .store
            .expire_before(now_ns.saturating_sub(ns(longest)))
            .await?;
        report.age_partitions = dropped.partitions_dropped;
        report.age_partition_entries = dropped.entries_dropped;
        self.metrics.retention_removed(
            RetentionReason::Age,
            dropped.partitions_dropped,
            dropped.entries_dropped,
        );
        if dropped.partitions_dropped > 0 {
            self.events.add(
                kind::RETENTION_EXPIRED,
                format!(
                    "retention dropped {} time partitions older than {} ({} entries)",
                    dropped.partitions_dropped,
                    human(longest),
                    dropped.entries_dropped
                ),
                fields([
                    ("prefix", String::new()),
                    ("max_age", human(longest)),
                    ("partitions", dropped.partitions_dropped.to_string()),
                    ("entries", dropped.entries_dropped.to_string()),
                ]),
            );
        }
        if self.config.rules.iter().any(|r| r.max_age != longest) || self.config.max_age != longest
        {
            self.expire_streams(now_ns, longest, &mut report).await?;
        }
        self.size_cap(&mut report).await?;
        Ok(report)
    }

    /// Step 2: per-stream expiry for streams whose max age is shorter than `longest`.
    async fn expire_streams(
        &self,
        now_ns: i64,
        longest: Duration,
        report: &mut RoundReport,
    ) -> Result<(), StoreError> {
        let mut after: Option<String> = None;
        loop {
            let page = self.store.list("", after.as_deref(), LIST_PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.path.clone());
            for state in &page {
                let max_age = self.config.max_age_of(&state.path);
                if max_age >= longest || state.low_water >= state.next_index {
                    continue;
                }
                let cutoff = now_ns.saturating_sub(ns(max_age));
                let Some(index) = self.store.index_at_time(&state.path, cutoff).await? else {
                    continue;
                };
                if index <= state.low_water {
                    continue;
                }
                let expired = self
                    .store
                    .expire_stream(&state.path, index)
                    .await?
                    .unwrap_or(0);
                if expired > 0 {
                    let prefix = self.rule_prefix(&state.path);
                    let slot = report.by_prefix.entry(prefix).or_default();
                    slot.0 += 1;
                    slot.1 += expired;
                }
            }
            if page.len() < LIST_PAGE {
                break;
            }
        }
        for (prefix, (streams, entries)) in &report.by_prefix {
            self.metrics
                .retention_removed(RetentionReason::Age, 0, *entries);
            let max_age = human(self.config.max_age_of(prefix));
            self.events.add(
                kind::RETENTION_EXPIRED,
                format!(
                    "retention expired {entries} entries older than {max_age} in {streams} streams{}",
                    if prefix.is_empty() {
                        String::new()
                    } else {
                        format!(" under {prefix}")
                    }
                ),
                fields([
                    ("prefix", prefix.clone()),
                    ("max_age", max_age),
                    ("streams", streams.to_string()),
                    ("entries", entries.to_string()),
                ]),
            );
        }
        Ok(())
    }

    /// The prefix of the rule that applies to `path` (`""`: the default).
    fn rule_prefix(&self, path: &str) -> String {
        self.config
            .rules
            .iter()
            .filter(|r| path.starts_with(&r.prefix))
            .max_by_key(|r| r.prefix.len())
            .map(|r| r.prefix.clone())
            .unwrap_or_default()
    }

    /// Step 3: drops the oldest partitions while the store is over its cap.
    async fn size_cap(&self, report: &mut RoundReport) -> Result<(), StoreError> {
        let mut parts = self.store.partitions().await?;
        let before: u64 = parts.iter().map(|p| p.bytes).sum();
        let mut total = before;
        if let Some(cap) = self.config.max_store_bytes {
            while total > cap && parts.len() > 1 {
                let oldest = parts.remove(0);
                let r = self.store.expire_before(oldest.end_ns).await?;
                report.size_partitions += r.partitions_dropped;
                report.size_entries += r.entries_dropped;
                total = total.saturating_sub(oldest.bytes);
            }
            if report.size_partitions > 0 {
                self.metrics.retention_removed(
                    RetentionReason::Size,
                    report.size_partitions,
                    report.size_entries,
                );
                self.events.add(
                    kind::RETENTION_SIZE_CAP,
                    format!(
                        "the store took {before} bytes, over its cap of {cap}: dropped the {} oldest time partitions ({} entries)",
                        report.size_partitions, report.size_entries
                    ),
                    fields([
                        ("partitions", report.size_partitions.to_string()),
                        ("entries", report.size_entries.to_string()),
                        ("bytes_before", before.to_string()),
                        ("max_bytes", cap.to_string()),
                    ]),
                );
            }
        }
        report.bytes_after = total;
        self.metrics.store_size(total, parts.len());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_matching_rule_wins() {
        let day = Duration::from_secs(86_400);
        let c = RetentionConfig {
            rules: vec![
                RetentionRule {
                    prefix: "host/".into(),
                    max_age: 2 * day,
                },
                RetentionRule {
                    prefix: "host/db/".into(),
                    max_age: 30 * day,
                },
            ],
            ..RetentionConfig::default()
        };
        assert_eq!(c.max_age_of("host/web/+/log"), 2 * day);
        assert_eq!(c.max_age_of("host/db/+/log"), 30 * day);
        assert_eq!(c.max_age_of("app/+/log"), 7 * day);
        assert_eq!(c.longest(), 30 * day);
    }

    #[test]
    fn config_reads_human_durations() {
        let c: RetentionConfig = serde_json::from_str(
            r#"{"max_age": "3d", "max_store_bytes": 1000, "rules": [{"prefix": "host/", "max_age": "2d"}]}"#,
        )
        .unwrap();
        assert_eq!(c.max_age, Duration::from_secs(3 * 86_400));
        assert_eq!(c.rules[0].max_age, Duration::from_secs(2 * 86_400));
        assert_eq!(c.max_store_bytes, Some(1000));
    }
}
