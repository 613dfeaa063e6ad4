//! Envelopes of Loggregator v2 clients (and other clients without streams).
//!
//! Each envelope goes to the collector-owned stream
//! `loggregator/<source_id>/+/<instance_id, or 0>` (`weir_core::path::loggregator_path`),
//! numbered by the store on arrival (a sequencer that resumes after a crash). As the
//! Loggregator Agent does (PROTOCOLS.md §1.3, §2.1), an empty `source_id` is filled from
//! `tags["origin"]`, or else from the text of `deprecated_tags["origin"]`.
//!
//! Each envelope is validated alone: a bad one is dropped and counted
//! (`weir_dropped_envelopes_total{reason="invalid_envelope"}`), never failing the
//! others. The rest are grouped by stream, keeping arrival order, and each group is one
//! store append. A store failure is reported so the gRPC layer can answer `Unavailable`.
//! What the store stored is then published to the live hub.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};

use weir_core::descriptor::LOGGREGATOR_CONTENT_TYPE;
use weir_core::path::loggregator_path;
use weir_core::validate::validate_envelope;
use weir_core::{Descriptor, Envelope};
use weir_proto::lv2::value::Data;
use weir_store::{AppendOutcome, AppendRequest, Owner, Registration};

use super::Collector;
use crate::metrics::DropReason;

/// What became of a call of [`Collector::ingest_envelopes`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestReport {
    /// Envelopes received.
    pub received: u64,
    /// Envelopes written to the store.
    pub stored: u64,
    /// Envelopes dropped as invalid.
    pub invalid: u64,
    /// Valid envelopes not stored (store failure, shutting down, refused).
    pub not_stored: u64,
    /// Set when some envelopes were not stored for a transient reason (store failing,
    /// collector shutting down): the client should be answered `Unavailable`.
    pub unavailable: Option<String>,
}

impl Collector {
    /// Stores envelopes of a Loggregator client arriving over `protocol` (a label of
    /// `weir_received_envelopes_total`, see [`crate::metrics::protocol`]). See the
    /// module docs.
    pub async fn ingest_envelopes(
        &self,
        envs: Vec<Envelope>,
        protocol: &'static str,
    ) -> IngestReport {
        let metrics = self.metrics();
        let received = envs.len() as u64;
        metrics.received(protocol, received);
        let mut report = IngestReport {
            received,
            ..IngestReport::default()
        };
        let Some(_token) = self.enter() else {
            metrics.dropped(DropReason::Unavailable, received);
            report.not_stored = received;
            report.unavailable = Some("the collector is shutting down".into());
            return report;
        };

        let mut grouper = Grouper::default();
        for mut env in envs {
            fill_source_id(&mut env);
            if let Err(e) = validate_envelope(&env, self.limits()) {
                tracing::debug!(source_id = %env.source_id, "dropped envelope: {e}");
                report.invalid += 1;
                continue;
            }
            grouper.push(env);
        }
        metrics.dropped(DropReason::InvalidEnvelope, report.invalid);

        for group in grouper.groups {
            self.append_group(group, &mut report).await;
        }
        report
    }

    /// Appends one group; counts and reports what was not stored.
    async fn append_group(&self, group: Group, report: &mut IngestReport) {
        let metrics = self.metrics();
        let len = group.envs.len() as u64;
        match self.try_append_group(group).await {
            Ok(duplicates) => {
                let stored = len.saturating_sub(duplicates);
                metrics.stored(stored);
                metrics.duplicates(duplicates);
                report.stored += stored;
            }
            Err((reason, why)) => {
                metrics.dropped(reason, len);
                report.not_stored += len;
                if reason == DropReason::Unavailable {
                    report.unavailable.get_or_insert(why);
                } else {
                    tracing::warn!("dropped {len} envelopes: {why}");
                }
            }
        }
    }

    /// Registers (through the cache) and appends one group; `Ok(duplicates)`.
    async fn try_append_group(&self, group: Group) -> Result<u64, (DropReason, String)> {
        let path = loggregator_path(&group.source_id, &group.instance_id);
        let registration = || Registration {
            path: path.clone(),
            owner: Owner::Collector,
            descriptor: Descriptor {
                content_type: LOGGREGATOR_CONTENT_TYPE.to_string(),
                tags: [
                    ("source_id".to_string(), group.source_id.clone()),
                    ("instance_id".to_string(), group.instance_id.clone()),
                ]
                .into_iter()
                .collect(),
                created_ns: weir_core::now_ns(),
            },
        };
        let cache = &self.inner.cache;
        cache
            .ensure_registered(&path, &registration)
            .await
            .map_err(|e| (DropReason::Unavailable, e.to_string()))?;
        let live = self.live_prepare(&group.envs);
        let len = group.envs.len();
        let req = AppendRequest {
            path: path.clone(),
            owner: Owner::Collector,
            first_index: None,
            entries: group.envs,
        };
        let began = std::time::Instant::now();
        let answer = self.store().append(req).await;
        self.metrics().obs().append(len, began.elapsed());
        match answer {
            Ok(AppendOutcome::Stored { duplicates, .. }) => {
                if let Some(live) = live {
                    live.publish_from(usize::try_from(duplicates).unwrap_or(usize::MAX));
                }
                Ok(duplicates)
            }
            Ok(AppendOutcome::NotRegistered) => {
                // The stream vanished behind the cache: register it again for the
                // client's retry, and answer Unavailable for this batch.
                self.metrics().obs().retried("register");
                cache.invalidate(&path).await;
                let why = match cache.ensure_registered(&path, &registration).await {
                    Ok(()) => format!("stream {path} was missing from the store; retry"),
                    Err(e) => e.to_string(),
                };
                Err((DropReason::Unavailable, why))
            }
            Ok(other) => Err((
                DropReason::Refused,
                format!("the store refused the append to {path}: {other:?}"),
            )),
            Err(e) if e.is_transient() => Err((DropReason::Unavailable, e.to_string())),
            Err(e) => Err((DropReason::Refused, e.to_string())),
        }
    }
}

/// Fills an empty `source_id` from the `origin` tag (PROTOCOLS.md §1.3).
fn fill_source_id(env: &mut Envelope) {
    if !env.source_id.is_empty() {
        return;
    }
    if let Some(origin) = env.tags.get("origin") {
        env.source_id = origin.clone();
    } else if let Some(Data::Text(origin)) = env
        .deprecated_tags
        .get("origin")
        .and_then(|v| v.data.as_ref())
    {
        env.source_id = origin.clone();
    }
}

/// The envelopes of one stream, in arrival order.
struct Group {
    source_id: String,
    instance_id: String,
    envs: Vec<Envelope>,
}

/// Groups envelopes by (source id, instance id) without allocating per envelope: the
/// common case (the same source as the previous envelope) is one comparison, others one
/// hash lookup.
#[derive(Default)]
struct Grouper {
    groups: Vec<Group>,
    /// Hash of (source id, instance id) → groups with that hash.
    index: HashMap<u64, Vec<usize>>,
    hasher: RandomState,
    last: usize,
}

impl Grouper {
    fn push(&mut self, env: Envelope) {
        let same = |g: &Group| g.source_id == env.source_id && g.instance_id == env.instance_id;
        if self.groups.get(self.last).is_some_and(same) {
            self.groups[self.last].envs.push(env);
            return;
        }
        let hash = self
            .hasher
            .hash_one((env.source_id.as_str(), env.instance_id.as_str()));
        let candidates = self.index.entry(hash).or_default();
        if let Some(&g) = candidates.iter().find(|&&g| same(&self.groups[g])) {
            self.last = g;
            self.groups[g].envs.push(env);
            return;
        }
        let g = self.groups.len();
        candidates.push(g);
        self.last = g;
        self.groups.push(Group {
            source_id: env.source_id.clone(),
            instance_id: env.instance_id.clone(),
            envs: vec![env],
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_proto::lv2::Value;

    fn env(source: &str, instance: &str, ts: i64) -> Envelope {
        Envelope {
            source_id: source.into(),
            instance_id: instance.into(),
            timestamp: ts,
            ..Default::default()
        }
    }

    #[test]
    fn groups_by_source_and_instance_in_arrival_order() {
        let mut g = Grouper::default();
        for (s, i, t) in [
            ("a", "0", 1),
            ("b", "0", 2),
            ("a", "0", 3),
            ("a", "1", 4),
            ("b", "0", 5),
        ] {
            g.push(env(s, i, t));
        }
        let shape: Vec<(String, String, Vec<i64>)> = g
            .groups
            .into_iter()
            .map(|g| {
                (
                    g.source_id,
                    g.instance_id,
                    g.envs.iter().map(|e| e.timestamp).collect(),
                )
            })
            .collect();
        assert_eq!(
            shape,
            vec![
                ("a".into(), "0".into(), vec![1, 3]),
                ("b".into(), "0".into(), vec![2, 5]),
                ("a".into(), "1".into(), vec![4]),
            ]
        );
    }

    #[test]
    fn source_id_filled_from_origin() {
        let mut e = env("", "", 0);
        e.tags.insert("origin".into(), "router".into());
        fill_source_id(&mut e);
        assert_eq!(e.source_id, "router");

        let mut e = env("", "", 0);
        e.deprecated_tags.insert(
            "origin".into(),
            Value {
                data: Some(Data::Text("old".into())),
            },
        );
        fill_source_id(&mut e);
        assert_eq!(e.source_id, "old");

        let mut e = env("keep", "", 0);
        e.tags.insert("origin".into(), "router".into());
        fill_source_id(&mut e);
        assert_eq!(e.source_id, "keep");
    }
}
