//! weir.v1 bundles: LogDog's `Collector.Process` (PROTOCOLS.md §5.5) with weir's
//! per-stream results (DESIGN.md, Contracts: bundle results).
//!
//! For each stream of a bundle, in this order (the first failing check decides the
//! result, and is the one counted):
//!
//! 1. The path must be a valid producer path (`StreamPath::parse_producer`; the
//!    `loggregator/` prefix is reserved, and so is `weir/` but for agents' event
//!    streams `weir/agent/<member>/+/events`): else `invalid` naming the rule (reason
//!    `invalid_path`).
//! 2. The secret must be present and at most [`MAX_SECRET_BYTES`]; the entries at most
//!    `limits.max_entries_per_append`; the indices must fit in a u64; a terminal count
//!    must not lie below the end of the append: else `invalid` (reason
//!    `invalid_request`). Contiguity inside one append is implied by the protocol
//!    (entry *i* has index `first_index + i`).
//! 3. Each envelope must pass `validate_envelope`: else
//!    `invalid("entry <index>: <problem>")`, where `<index>` is the entry's stream
//!    index (reason `invalid_envelope`). Nothing of the append is stored. An agent's
//!    event stream takes only `Event` envelopes.
//! 4. The stream is registered through the stream-state cache. A stream seen for the
//!    first time without a descriptor (or with an empty content type) gets
//!    [`DEFAULT_CONTENT_TYPE`]; a descriptor without a creation time gets the
//!    collector's clock.
//! 5. The entries are appended with the producer's secret. The store's answer maps to
//!    the result: `stored_next` (plus `duplicates`), `gap_expected`, `conflict_index`,
//!    `terminated_count`, `wrong_secret`, or `unavailable` for a store failure.
//!    What was newly stored (not the duplicates) is published to the live hub; of an
//!    agent's event stream it is instead handed to the collector's event queue
//!    ([`crate::events::Events::forward`]), so agents' events are listed with the
//!    collector's own (`GET /v1/events`, `weir events`) and published once, from there.
//! 6. With a terminal count, the stream is terminated: an incompatible count is
//!    `invalid` naming both counts, a wrong secret `wrong_secret`.
//!
//! An append with no entries and no terminal count registers the stream (when new) and
//! answers `stored_next` with the stream's next index. An append with no entries and a
//! terminal count is just a termination.
//!
//! Appends of one bundle for the same path are processed one after another in bundle
//! order (so overlaps between them are judged deterministically); different paths are
//! processed concurrently by up to `max_message_workers` workers.
//!
//! When the store answers `NotRegistered` (the stream vanished behind the cache), the
//! cache entry is dropped and the stream registered again; a termination is then
//! retried once, while an append, whose entries the store has consumed, answers
//! `unavailable` so the producer resends it.

use std::sync::{Arc, Mutex};

use weir_core::event_queue::Event;
use weir_core::path::StreamPath;
use weir_core::validate::validate_envelope;
use weir_core::{Descriptor, Envelope};
use weir_proto::wv1::{self, StreamResult, stream_result::Result as Outcome};
use weir_store::{
    AppendOutcome, AppendRequest, Owner, RegisterOutcome, Registration, StoreError,
    TerminateOutcome,
};

use super::Collector;
use crate::events::{fields, kind};
use crate::metrics::{RejectReason, protocol};

/// Content type given to a new stream registered without a descriptor.
pub const DEFAULT_CONTENT_TYPE: &str = "text/plain; charset=utf-8";

/// Longest producer secret accepted, in bytes.
pub const MAX_SECRET_BYTES: usize = 256;

/// Appends of one bundle for one path, with their positions in the bundle.
type Group = Vec<(usize, wv1::StreamAppend)>;

/// A refusal: the result to answer and the reason it is counted under.
struct Refusal(RejectReason, Outcome);

impl Refusal {
    fn invalid(reason: RejectReason, message: String) -> Self {
        Refusal(reason, Outcome::Invalid(message))
    }

    fn unavailable(e: impl std::fmt::Display) -> Self {
        Refusal(
            RejectReason::Unavailable,
            Outcome::Unavailable(e.to_string()),
        )
    }

    fn wrong_secret(path: &str) -> Self {
        Refusal(
            RejectReason::WrongSecret,
            Outcome::WrongSecret(format!(
                "the secret does not match the one stream {path} was registered with"
            )),
        )
    }
}

/// What one stream's append came to when it was not refused.
struct Accepted {
    next: u64,
    duplicates: u64,
}

impl Collector {
    /// Processes a bundle: one [`StreamResult`] per stream, in the order of
    /// `bundle.streams`. A bad stream never fails the others; see the module docs for
    /// the checks and results.
    pub async fn process(&self, bundle: wv1::Bundle) -> wv1::BundleResponse {
        let metrics = self.metrics();
        metrics.bundle();
        let received: usize = bundle.streams.iter().map(|s| s.entries.len()).sum();
        metrics.received(protocol::WEIR, received as u64);

        let count = bundle.streams.len();
        let Some(_token) = self.enter() else {
            return self.refuse_all(bundle, || {
                Refusal::unavailable("the collector is shutting down; retry")
            });
        };
        let limit = self.limits().max_streams_per_bundle;
        if count > limit {
            return self.refuse_all(bundle, || {
                Refusal::invalid(
                    RejectReason::InvalidRequest,
                    format!(
                        "bundle has {count} streams, over the limit of {limit} (limits.max_streams_per_bundle)"
                    ),
                )
            });
        }

        let groups = group_by_path(bundle.streams);
        let mut results: Vec<Option<StreamResult>> = vec![None; count];
        let workers = self.inner.workers.min(groups.len());
        if workers <= 1 {
            for group in groups {
                for (pos, append) in group {
                    results[pos] = Some(self.process_stream(append).await);
                }
            }
        } else {
            // A work pool: `workers - 1` spawned tasks and this one pull groups from a
            // shared queue (LogDog's MaxMessageWorkers).
            let queue = Arc::new(Mutex::new(groups.into_iter()));
            let mut handles = Vec::with_capacity(workers - 1);
            for _ in 1..workers {
                let this = self.clone();
                let queue = queue.clone();
                handles.push(
                    self.inner
                        .tracker
                        .spawn(async move { this.work(&queue).await }),
                );
            }
            for (pos, r) in self.work(&queue).await {
                results[pos] = Some(r);
            }
            for handle in handles {
                match handle.await {
                    Ok(done) => {
                        for (pos, r) in done {
                            results[pos] = Some(r);
                        }
                    }
                    Err(e) => tracing::error!("bundle worker failed: {e}"),
                }
            }
        }
        // A worker that panicked leaves holes: answer them `unavailable` (retry).
        let results = results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    self.refused(
                        String::new(),
                        Refusal::unavailable("internal error while processing the stream; retry"),
                    )
                })
            })
            .collect();
        wv1::BundleResponse { results }
    }

    /// One worker of the pool: takes groups off the queue until it is empty.
    async fn work(&self, queue: &Mutex<std::vec::IntoIter<Group>>) -> Vec<(usize, StreamResult)> {
        let mut done = Vec::new();
        loop {
            let next = queue
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .next();
            let Some(group) = next else { break };
            for (pos, append) in group {
                done.push((pos, self.process_stream(append).await));
            }
        }
        done
    }

    /// Answers every stream of `bundle` with the same refusal, each counted.
    fn refuse_all(
        &self,
        bundle: wv1::Bundle,
        refusal: impl Fn() -> Refusal,
    ) -> wv1::BundleResponse {
        let results = bundle
            .streams
            .into_iter()
            .map(|s| self.refused(s.path, refusal()))
            .collect();
        wv1::BundleResponse { results }
    }

    /// Counts a refusal and makes its result.
    fn refused(&self, path: String, Refusal(reason, outcome): Refusal) -> StreamResult {
        self.metrics().rejected(reason);
        match (&outcome, reason) {
            (Outcome::ConflictIndex(index), _) => self.events().add(
                kind::STREAM_CONFLICT,
                format!("append to {path} refused: a different payload is stored at index {index}"),
                fields([("stream", path.clone()), ("index", index.to_string())]),
            ),
            (_, RejectReason::WrongSecret) => self.events().add(
                kind::STREAM_WRONG_SECRET,
                format!("write to {path} refused: the secret does not match the stream's"),
                fields([("stream", path.clone())]),
            ),
            _ => {}
        }
        StreamResult {
            path,
            result: Some(outcome),
            duplicates: 0,
        }
    }

    /// One stream of a bundle.
    async fn process_stream(&self, mut append: wv1::StreamAppend) -> StreamResult {
        let path = std::mem::take(&mut append.path);
        match self.append_stream(&path, append).await {
            Ok(Accepted { next, duplicates }) => StreamResult {
                path,
                result: Some(Outcome::StoredNext(next)),
                duplicates,
            },
            Err(refusal) => self.refused(path, refusal),
        }
    }

    async fn append_stream(
        &self,
        path: &str,
        append: wv1::StreamAppend,
    ) -> Result<Accepted, Refusal> {
        let limits = self.limits();
        let agent_events = StreamPath::parse_producer(path)
            .map_err(|e| Refusal::invalid(RejectReason::InvalidPath, e.to_string()))?
            .is_agent_events();
        let wv1::StreamAppend {
            secret,
            descriptor,
            first_index,
            entries,
            terminal_count,
            ..
        } = append;
        let invalid = |m: String| Refusal::invalid(RejectReason::InvalidRequest, m);
        if secret.is_empty() {
            return Err(invalid(
                "secret is missing: every append must carry the stream's secret".into(),
            ));
        }
        if secret.len() > MAX_SECRET_BYTES {
            return Err(invalid(format!(
                "secret is {} bytes, over the limit of {MAX_SECRET_BYTES}",
                secret.len()
            )));
        }
        if entries.len() > limits.max_entries_per_append {
            return Err(invalid(format!(
                "append has {} entries, over the limit of {} (limits.max_entries_per_append)",
                entries.len(),
                limits.max_entries_per_append
            )));
        }
        let Some(end) = first_index.checked_add(entries.len() as u64) else {
            return Err(invalid(format!(
                "first_index {first_index} plus {} entries overflows the index range",
                entries.len()
            )));
        };
        if let Some(count) = terminal_count.filter(|c| *c < end) {
            return Err(invalid(format!(
                "terminal count {count} is below the end of this append (entries {first_index}..{end})"
            )));
        }
        for (i, env) in entries.iter().enumerate() {
            validate_envelope(env, limits).map_err(|e| {
                Refusal::invalid(
                    RejectReason::InvalidEnvelope,
                    format!("entry {}: {e}", first_index + i as u64),
                )
            })?;
            if agent_events && Event::from_envelope(env).is_none() {
                return Err(Refusal::invalid(
                    RejectReason::InvalidEnvelope,
                    format!(
                        "entry {}: an agent's event stream takes only Event envelopes",
                        first_index + i as u64
                    ),
                ));
            }
        }
        let owner = Owner::Producer(secret);
        // Built only by the caller that registers (a cache miss).
        let registration = || Registration {
            path: path.to_string(),
            owner: owner.clone(),
            descriptor: producer_descriptor(descriptor.clone()),
        };

        if entries.is_empty() && terminal_count.is_none() {
            return self.declare(registration()).await;
        }
        let mut accepted = None;
        if !entries.is_empty() {
            let a = self
                .append_entries(
                    path,
                    &owner,
                    &registration,
                    first_index,
                    entries,
                    agent_events,
                )
                .await?;
            accepted = Some(a);
        }
        if let Some(count) = terminal_count {
            self.terminate(path, &owner, &registration, count).await?;
        }
        match accepted {
            Some(a) => Ok(a),
            // A termination alone: answer the stream's next index.
            None => match self.store().stream(path).await {
                Ok(Some(state)) => Ok(Accepted {
                    next: state.next_index,
                    duplicates: 0,
                }),
                Ok(None) => Err(Refusal::unavailable(format!(
                    "stream {path} vanished from the store; retry"
                ))),
                Err(e) => Err(Refusal::unavailable(e)),
            },
        }
    }

    /// An append with neither entries nor a terminal count: register the stream when
    /// new and answer its next index.
    async fn declare(&self, reg: Registration) -> Result<Accepted, Refusal> {
        let path = reg.path.clone();
        match self.store().register(reg).await {
            Ok(RegisterOutcome::Created(state)) => {
                self.metrics().stream_registered();
                self.events().add(
                    kind::STREAM_REGISTERED,
                    format!("stream {path} registered"),
                    fields([("stream", path.clone())]),
                );
                Ok(Accepted {
                    next: state.next_index,
                    duplicates: 0,
                })
            }
            Ok(RegisterOutcome::Existing(state)) => Ok(Accepted {
                next: state.next_index,
                duplicates: 0,
            }),
            Ok(RegisterOutcome::WrongSecret) => Err(Refusal::wrong_secret(&path)),
            Err(e) => Err(Refusal::unavailable(e)),
        }
    }

    async fn register(
        &self,
        path: &str,
        registration: &impl Fn() -> Registration,
    ) -> Result<(), Refusal> {
        self.inner
            .cache
            .ensure_registered(path, registration)
            .await
            .map_err(Refusal::unavailable)
    }

    async fn append_entries(
        &self,
        path: &str,
        owner: &Owner,
        registration: &impl Fn() -> Registration,
        first_index: u64,
        entries: Vec<Envelope>,
        agent_events: bool,
    ) -> Result<Accepted, Refusal> {
        self.register(path, registration).await?;
        let len = entries.len() as u64;
        // An agent's events reach the hub through the event queue, not from here.
        let (live, forwarded) = if agent_events {
            let events: Vec<Event> = entries.iter().filter_map(Event::from_envelope).collect();
            (None, events)
        } else {
            (self.live_prepare(&entries), Vec::new())
        };
        let req = AppendRequest {
            path: path.to_string(),
            owner: owner.clone(),
            first_index: Some(first_index),
            entries,
        };
        let began = std::time::Instant::now();
        let answer = self.store().append(req).await;
        self.metrics().obs().append(len as usize, began.elapsed());
        match answer {
            Ok(AppendOutcome::Stored {
                next, duplicates, ..
            }) => {
                // The store reports the resent entries at the start of the append as
                // duplicates; only the ones after them are new.
                let fresh = usize::try_from(duplicates).unwrap_or(usize::MAX);
                if let Some(live) = live {
                    live.publish_from(fresh);
                }
                for event in forwarded.into_iter().skip(fresh) {
                    self.events().forward(event);
                }
                let metrics = self.metrics();
                metrics.stored(len.saturating_sub(duplicates));
                metrics.duplicates(duplicates);
                Ok(Accepted { next, duplicates })
            }
            Ok(AppendOutcome::Gap { expected }) => {
                Err(Refusal(RejectReason::Gap, Outcome::GapExpected(expected)))
            }
            Ok(AppendOutcome::Conflict { index }) => Err(Refusal(
                RejectReason::Conflict,
                Outcome::ConflictIndex(index),
            )),
            Ok(AppendOutcome::Terminated { count }) => Err(Refusal(
                RejectReason::Terminated,
                Outcome::TerminatedCount(count),
            )),
            Ok(AppendOutcome::WrongSecret) => Err(Refusal::wrong_secret(path)),
            Ok(AppendOutcome::NotRegistered) => {
                self.metrics().obs().retried("register");
                self.inner.cache.invalidate(path).await;
                self.register(path, registration).await?;
                Err(Refusal::unavailable(format!(
                    "stream {path} was missing from the store and has been registered again; resend"
                )))
            }
            Err(e) => Err(Refusal::unavailable(e)),
        }
    }

    async fn terminate(
        &self,
        path: &str,
        owner: &Owner,
        registration: &impl Fn() -> Registration,
        count: u64,
    ) -> Result<(), Refusal> {
        self.register(path, registration).await?;
        let mut retried = false;
        loop {
            let outcome = self
                .store()
                .terminate(path, owner, count)
                .await
                .map_err(Refusal::unavailable)?;
            return match outcome {
                TerminateOutcome::Terminated { count } => {
                    self.events().add(
                        kind::STREAM_TERMINATED,
                        format!("stream {path} terminated with {count} entries"),
                        fields([("stream", path.to_string()), ("count", count.to_string())]),
                    );
                    Ok(())
                }
                TerminateOutcome::Incompatible { existing } => Err(Refusal::invalid(
                    RejectReason::InvalidRequest,
                    format!(
                        "terminal count {count} differs from the stream's terminal count {existing}"
                    ),
                )),
                TerminateOutcome::BelowWritten { next } => Err(Refusal::invalid(
                    RejectReason::InvalidRequest,
                    format!(
                        "terminal count {count} is below the stream's {next} entries already written"
                    ),
                )),
                TerminateOutcome::WrongSecret => Err(Refusal::wrong_secret(path)),
                TerminateOutcome::NotRegistered if !retried => {
                    retried = true;
                    self.metrics().obs().retried("register");
                    self.inner.cache.invalidate(path).await;
                    self.register(path, registration).await?;
                    continue;
                }
                TerminateOutcome::NotRegistered => Err(Refusal::unavailable(
                    StoreError::Unavailable(format!("stream {path} is not registered; retry")),
                )),
            };
        }
    }
}

/// The descriptor a producer's stream is registered with (see the module docs).
fn producer_descriptor(d: Option<wv1::StreamDescriptor>) -> Descriptor {
    let mut d = d.map(Descriptor::from).unwrap_or_default();
    if d.content_type.is_empty() {
        d.content_type = DEFAULT_CONTENT_TYPE.to_string();
    }
    if d.created_ns == 0 {
        d.created_ns = weir_core::now_ns();
    }
    d
}

/// Splits a bundle's appends into groups of one path each, keeping bundle order inside
/// a group and the order of first appearance between groups.
fn group_by_path(streams: Vec<wv1::StreamAppend>) -> Vec<Group> {
    let mut group_of = Vec::with_capacity(streams.len());
    let mut count = 0;
    {
        let mut seen = std::collections::HashMap::with_capacity(streams.len());
        for s in &streams {
            let g = *seen.entry(s.path.as_str()).or_insert_with(|| {
                count += 1;
                count - 1
            });
            group_of.push(g);
        }
    }
    let mut groups: Vec<Group> = (0..count).map(|_| Vec::with_capacity(1)).collect();
    for (pos, (s, g)) in streams.into_iter().zip(group_of).enumerate() {
        groups[g].push((pos, s));
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    fn append(path: &str) -> wv1::StreamAppend {
        wv1::StreamAppend {
            path: path.into(),
            ..Default::default()
        }
    }

    #[test]
    fn groups_keep_bundle_order() {
        let groups = group_by_path(vec![append("a"), append("b"), append("a"), append("c")]);
        let shape: Vec<Vec<(usize, &str)>> = groups
            .iter()
            .map(|g| g.iter().map(|(p, s)| (*p, s.path.as_str())).collect())
            .collect();
        assert_eq!(
            shape,
            vec![vec![(0, "a"), (2, "a")], vec![(1, "b")], vec![(3, "c")]]
        );
    }

    #[test]
    fn missing_descriptor_gets_text_plain_and_a_time() {
        let d = producer_descriptor(None);
        assert_eq!(d.content_type, DEFAULT_CONTENT_TYPE);
        assert!(d.created_ns > 0);
        let d = producer_descriptor(Some(wv1::StreamDescriptor {
            content_type: "application/json".into(),
            tags: Default::default(),
            created_ns: 7,
        }));
        assert_eq!(
            (d.content_type.as_str(), d.created_ns),
            ("application/json", 7)
        );
    }
}
