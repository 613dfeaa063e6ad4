//! The relay on core NATS: a publisher task, a plain subscription, one queue
//! subscription per local shard group, and the interest pings. See [`super`].

use std::collections::HashMap;
use std::sync::Arc;

use async_nats::{Client, ConnectOptions, Event, ServerAddr, Subscriber};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use prost::Message as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use weir_core::Envelope;
use weir_proto::lv2::EnvelopeBatch;

use super::interest::{INTEREST_INTERVAL, Interest};
use super::metrics::{RelayCopy, RelayDrop};
use super::{Pending, PendingKind};
use crate::config::EgressConfig;
use crate::hub::{GroupKey, Hub, Scope};
use crate::metrics::Metrics;

/// Messages each relay subscription may hold in the NATS client before it drops
/// (`weir_relay_slow_consumer_total`).
pub const SUBSCRIPTION_CAPACITY: usize = 256;

/// How long [`NatsRelay::close`] waits for its tasks (the publisher's last flush).
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Why the relay could not start.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// A server address does not parse.
    #[error("bad relay server address {addr:?}: {reason}")]
    Address { addr: String, reason: String },
    /// The subject prefix is not a plain NATS subject.
    #[error("relay subject prefix {0:?} must be non-empty tokens without spaces or wildcards")]
    Subject(String),
    /// No server could be reached.
    #[error("cannot connect to the relay at {urls}: {source}")]
    Connect {
        urls: String,
        source: async_nats::ConnectError,
    },
    /// A subscription was refused.
    #[error("cannot subscribe to {subject}: {source}")]
    Subscribe {
        subject: String,
        source: async_nats::SubscribeError,
    },
}

/// Envelopes handed to the publisher, holding their places in the queue.
struct Chunk {
    envs: Vec<Envelope>,
    _places: OwnedSemaphorePermit,
}

/// The relay over core NATS. See the [module docs](super).
pub struct NatsRelay {
    interest: Interest,
    /// Free places in the publish queue (`egress.relay_queue` envelopes).
    places: Arc<Semaphore>,
    tx: mpsc::UnboundedSender<Chunk>,
    metrics: Metrics,
    stop: CancellationToken,
    tasks: TaskTracker,
}

impl std::fmt::Debug for NatsRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsRelay")
            .field("interest", &self.interest.active())
            .finish_non_exhaustive()
    }
}

/// The relay's subjects.
#[derive(Clone)]
struct Subjects {
    env: String,
    interest: String,
}

impl Subjects {
    fn new(prefix: &str) -> Result<Subjects, RelayError> {
        let valid = !prefix.is_empty()
            && prefix.split('.').all(|t| {
                !t.is_empty()
                    && !t.contains(['*', '>'])
                    && !t.chars().any(|c| c.is_whitespace() || c.is_control())
            });
        if !valid {
            return Err(RelayError::Subject(prefix.to_string()));
        }
        Ok(Subjects {
            env: format!("{prefix}.env"),
            interest: format!("{prefix}.interest"),
        })
    }
}

/// Parses `nats://a:4222,nats://b:4222`; later (or all) servers may omit the scheme,
/// as in `weir serve --store nats://a:4222,b:4222`.
fn server_addrs(urls: &str) -> Result<Vec<ServerAddr>, RelayError> {
    let addrs: Vec<ServerAddr> = urls
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| {
            let url = if u.contains("://") {
                u.to_string()
            } else {
                format!("nats://{u}")
            };
            url.parse::<ServerAddr>().map_err(|e| RelayError::Address {
                addr: u.to_string(),
                reason: e.to_string(),
            })
        })
        .collect::<Result<_, _>>()?;
    if addrs.is_empty() {
        return Err(RelayError::Address {
            addr: urls.to_string(),
            reason: "no server given".into(),
        });
    }
    Ok(addrs)
}

impl NatsRelay {
    /// Connects to the servers `urls`, subscribes, and starts the relay's tasks, feeding
    /// `hub` and counting into `metrics`. Fails when no server can be reached.
    pub async fn connect(
        urls: &str,
        config: &EgressConfig,
        hub: Hub,
        metrics: Metrics,
    ) -> Result<Arc<NatsRelay>, RelayError> {
        let subjects = Subjects::new(&config.relay_subject)?;
        let addrs = server_addrs(urls)?;
        let event_metrics = metrics.clone();
        let client = ConnectOptions::new()
            .name("weir-collector-relay")
            .subscription_capacity(SUBSCRIPTION_CAPACITY)
            .event_callback(move |event| {
                let metrics = event_metrics.clone();
                async move {
                    match event {
                        Event::SlowConsumer(_) => metrics.relay().slow_consumer(),
                        Event::Disconnected => tracing::warn!("live relay: NATS disconnected"),
                        Event::Connected => tracing::info!("live relay: NATS connected"),
                        other => tracing::debug!("live relay: {other}"),
                    }
                }
            })
            .connect(addrs)
            .await
            .map_err(|source| RelayError::Connect {
                urls: urls.to_string(),
                source,
            })?;

        let subscribe = |subject: String| {
            let client = client.clone();
            async move {
                client
                    .subscribe(subject.clone())
                    .await
                    .map_err(|source| RelayError::Subscribe { subject, source })
            }
        };
        let all = subscribe(subjects.env.clone()).await?;
        let pings = subscribe(subjects.interest.clone()).await?;

        let (tx, rx) = mpsc::unbounded_channel();
        let relay = Arc::new(NatsRelay {
            interest: Interest::new(),
            places: Arc::new(Semaphore::new(
                config.relay_queue.clamp(1, Semaphore::MAX_PERMITS),
            )),
            tx,
            metrics: metrics.clone(),
            stop: CancellationToken::new(),
            tasks: TaskTracker::new(),
        });
        let publisher = Publisher {
            client: client.clone(),
            subject: subjects.env.clone(),
            batch: config.relay_batch.max(1),
            metrics: metrics.clone(),
        };
        relay.tasks.spawn(publisher.run(rx, relay.stop.clone()));
        relay.tasks.spawn(receive(
            all,
            hub.clone(),
            Scope::Unsharded,
            metrics.clone(),
            relay.stop.clone(),
        ));
        relay.tasks.spawn(listen_pings(
            pings,
            Arc::downgrade(&relay),
            relay.stop.clone(),
        ));
        let control = Control {
            client,
            subjects,
            hub,
            metrics,
            stop: relay.stop.clone(),
            tasks: relay.tasks.clone(),
            groups: HashMap::new(),
        };
        relay.tasks.spawn(control.run());
        Ok(relay)
    }

    /// Whether some collector has live subscribers (a ping arrived lately).
    pub fn has_interest(&self) -> bool {
        self.interest.active()
    }

    /// See [`super::LiveRelay::prepare`]: clones `entries` while some collector has
    /// live subscribers.
    pub fn prepare(self: &Arc<Self>, entries: &[Envelope]) -> Option<Pending> {
        if entries.is_empty() || !self.interest.active() || self.stop.is_cancelled() {
            return None;
        }
        Some(Pending(PendingKind::Nats(self.clone(), entries.to_vec())))
    }

    /// Queues `envs` for publishing; drops (counted) what does not fit. Returns how many
    /// were queued.
    pub(super) fn enqueue(&self, envs: Vec<Envelope>) -> u64 {
        let n = envs.len() as u64;
        let places = u32::try_from(envs.len())
            .ok()
            .and_then(|k| self.places.clone().try_acquire_many_owned(k).ok());
        let Some(places) = places else {
            self.metrics.relay().dropped(RelayDrop::QueueFull, n);
            return 0;
        };
        match self.tx.send(Chunk {
            envs,
            _places: places,
        }) {
            Ok(()) => n,
            Err(_) => {
                // The publisher has stopped (closing).
                self.metrics.relay().dropped(RelayDrop::PublishFailed, n);
                0
            }
        }
    }

    /// Stops the relay: publishes what is queued, flushes, and ends every task (waiting
    /// at most a few seconds). Idempotent.
    pub async fn close(&self) {
        self.stop.cancel();
        self.tasks.close();
        if tokio::time::timeout(CLOSE_GRACE, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("live relay: tasks still running after {CLOSE_GRACE:?}");
        }
    }
}

/// Takes queued envelopes, packs them into messages and publishes them.
struct Publisher {
    client: Client,
    subject: String,
    batch: usize,
    metrics: Metrics,
}

impl Publisher {
    async fn run(self, mut rx: mpsc::UnboundedReceiver<Chunk>, stop: CancellationToken) {
        let mut pending: Vec<Chunk> = Vec::new();
        loop {
            let first = tokio::select! {
                chunk = rx.recv() => chunk,
                () = stop.cancelled() => None,
            };
            let Some(first) = first else { break };
            pending.push(first);
            let mut count = pending[0].envs.len();
            while count < self.batch {
                match rx.try_recv() {
                    Ok(c) => {
                        count += c.envs.len();
                        pending.push(c);
                    }
                    Err(_) => break,
                }
            }
            self.publish(&mut pending).await;
        }
        // Closing: publish what is still queued, then flush.
        rx.close();
        while let Ok(c) = rx.try_recv() {
            pending.push(c);
        }
        self.publish(&mut pending).await;
        if let Err(e) = self.client.flush().await {
            tracing::debug!("live relay: final flush failed: {e}");
        }
    }

    /// Publishes the envelopes of `chunks` in messages of at most `batch` envelopes and
    /// below the server's `max_payload`; empties `chunks` (freeing their places).
    async fn publish(&self, chunks: &mut Vec<Chunk>) {
        let max_payload = self.client.server_info().max_payload.max(1024);
        let mut buf = BytesMut::new();
        let mut in_buf = 0usize;
        for chunk in chunks.iter() {
            for env in &chunk.envs {
                let len = prost::encoding::message::encoded_len(1, env);
                if len > max_payload {
                    self.metrics.relay().dropped(RelayDrop::TooLarge, 1);
                    continue;
                }
                if in_buf > 0 && (in_buf >= self.batch || buf.len() + len > max_payload) {
                    self.send(buf.split().freeze(), in_buf).await;
                    in_buf = 0;
                }
                prost::encoding::message::encode(1, env, &mut buf);
                in_buf += 1;
            }
        }
        if in_buf > 0 {
            self.send(buf.split().freeze(), in_buf).await;
        }
        chunks.clear();
    }

    async fn send(&self, payload: Bytes, envelopes: usize) {
        let n = envelopes as u64;
        match self.client.publish(self.subject.clone(), payload).await {
            Ok(()) => self.metrics.relay().published(n),
            Err(e) => {
                tracing::debug!("live relay: publish failed: {e}");
                self.metrics.relay().dropped(RelayDrop::PublishFailed, n);
            }
        }
    }
}

/// Feeds the hub from one subscription until `stop`; then unsubscribes.
async fn receive(
    mut sub: Subscriber,
    hub: Hub,
    scope: Scope,
    metrics: Metrics,
    stop: CancellationToken,
) {
    let copy = match scope {
        Scope::Group(_) => RelayCopy::Group,
        _ => RelayCopy::All,
    };
    loop {
        let msg = tokio::select! {
            m = sub.next() => m,
            () = stop.cancelled() => None,
        };
        let Some(msg) = msg else { break };
        match EnvelopeBatch::decode(msg.payload) {
            Ok(batch) => {
                metrics.relay().received(copy, batch.batch.len() as u64);
                let envs: Vec<Arc<Envelope>> = batch.batch.into_iter().map(Arc::new).collect();
                hub.publish_scoped(&envs, scope);
            }
            Err(e) => {
                tracing::warn!("live relay: undecodable message on {}: {e}", msg.subject);
                metrics.relay().dropped(RelayDrop::DecodeFailed, 1);
            }
        }
    }
    if let Err(e) = sub.unsubscribe().await {
        tracing::debug!("live relay: unsubscribe failed: {e}");
    }
}

/// Opens the interest window on every ping until `stop`.
async fn listen_pings(
    mut sub: Subscriber,
    relay: std::sync::Weak<NatsRelay>,
    stop: CancellationToken,
) {
    loop {
        let msg = tokio::select! {
            m = sub.next() => m,
            () = stop.cancelled() => None,
        };
        if msg.is_none() {
            break;
        }
        match relay.upgrade() {
            Some(r) => r.interest.ping(),
            None => break,
        }
    }
    let _ = sub.unsubscribe().await;
}

/// Follows the hub: joins and leaves shard groups, sends interest pings.
struct Control {
    client: Client,
    subjects: Subjects,
    hub: Hub,
    metrics: Metrics,
    stop: CancellationToken,
    tasks: TaskTracker,
    /// Joined groups and the token that ends each one's receiver.
    groups: HashMap<GroupKey, CancellationToken>,
}

impl Control {
    async fn run(mut self) {
        let mut changes = self.hub.changes();
        let mut tick = tokio::time::interval(INTEREST_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                changed = changes.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    changes.mark_unchanged();
                    self.reconcile().await;
                    self.ping().await;
                }
                _ = tick.tick() => {
                    // Also retries joins that failed on a change.
                    self.reconcile().await;
                    self.ping().await;
                }
                () = self.stop.cancelled() => break,
            }
        }
        for token in self.groups.values() {
            token.cancel();
        }
    }

    /// Pings interest when the hub has subscribers.
    async fn ping(&self) {
        if !self.hub.has_subscribers() {
            return;
        }
        if let Err(e) = self
            .client
            .publish(self.subjects.interest.clone(), Bytes::new())
            .await
        {
            tracing::debug!("live relay: interest ping failed: {e}");
        }
    }

    /// Joins the queue group of every local shard group not joined yet and leaves the
    /// ones without local members.
    async fn reconcile(&mut self) {
        let wanted: std::collections::HashSet<GroupKey> =
            self.hub.group_keys().into_iter().collect();
        self.groups.retain(|key, token| {
            let keep = wanted.contains(key);
            if !keep {
                token.cancel();
            }
            keep
        });
        let mut joined_any = false;
        for key in wanted {
            if self.groups.contains_key(&key) {
                continue;
            }
            match self
                .client
                .queue_subscribe(self.subjects.env.clone(), key.queue_name())
                .await
            {
                Ok(sub) => {
                    let token = self.stop.child_token();
                    self.tasks.spawn(receive(
                        sub,
                        self.hub.clone(),
                        Scope::Group(key),
                        self.metrics.clone(),
                        token.clone(),
                    ));
                    self.groups.insert(key, token);
                    joined_any = true;
                }
                Err(e) => tracing::warn!(
                    "live relay: cannot join shard group {}: {e}",
                    key.queue_name()
                ),
            }
        }
        if joined_any {
            // Make sure the server has the subscriptions before others are told to
            // publish (the ping that follows).
            if let Err(e) = self.client.flush().await {
                tracing::debug!("live relay: flush after joining failed: {e}");
            }
        }
        self.metrics.relay().set_groups(self.groups.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_lists_parse_with_or_without_scheme() {
        let addrs = server_addrs("nats://127.0.0.1:4222, 127.0.0.1:4223,").expect("parse");
        assert_eq!(addrs.len(), 2);
        assert_eq!(addrs[1].port(), 4223);
        assert!(matches!(
            server_addrs(" , "),
            Err(RelayError::Address { .. })
        ));
    }

    #[test]
    fn subject_prefixes_are_plain_tokens() {
        let s = Subjects::new("weir.live").expect("valid");
        assert_eq!(s.env, "weir.live.env");
        assert_eq!(s.interest, "weir.live.interest");
        for bad in ["", "weir.", ".weir", "weir.*", "a.>", "we ir", "a..b"] {
            assert!(Subjects::new(bad).is_err(), "{bad:?} accepted");
        }
    }
}
