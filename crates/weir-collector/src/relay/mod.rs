//! The live relay: how newly stored envelopes reach the live subscribers
//! (`loggregator.v2.Egress`, `GET /v2/read`) of **every** collector that shares a store,
//! not only of the one that ingested them.
//!
//! # The seam
//!
//! The ingest path calls [`LiveRelay::prepare`] before an append and
//! [`Pending::publish_from`] with the store's answer, whichever relay is in use:
//!
//! - [`LiveRelay::InProcess`] (the default): the collector's own [`Hub`]; what one
//!   collector ingests reaches only its own subscribers. Costs one routing-table lookup
//!   per envelope when nobody subscribes, as before.
//! - [`LiveRelay::Nats`] (`[egress] relay = "nats://…"`, set by
//!   `weir serve --store nats://…`): every collector publishes what it newly stored to
//!   core NATS, and feeds its hub only from its subscriptions, so its own ingest reaches
//!   its subscribers once, through the relay, like everybody else's. See [`NatsRelay`].
//!
//! # Wire
//!
//! ```text
//! <prefix>.env        a prost-encoded loggregator.v2.EnvelopeBatch (≤ relay_batch
//!                     envelopes, cut below the server's max_payload)
//! <prefix>.interest   an empty ping: "some collector has live subscribers"
//! ```
//!
//! `<prefix>` is `egress.relay_subject` (`weir.live`). Core NATS, not JetStream: live
//! egress is lossy by design (PROTOCOLS.md §2.2) and keeps no backlog, so the relay
//! neither stores nor acknowledges; the store is where history lives.
//!
//! # Who receives what
//!
//! Each collector holds, on `<prefix>.env`:
//!
//! - one **plain subscription**: every collector gets every message and offers it to its
//!   **unsharded** groups only ([`crate::hub::Scope::Unsharded`]);
//! - one **queue subscription per local shard group**, in the NATS queue group named by
//!   the group's [`GroupKey`] (a stable hash of the selector's filter and the shard id:
//!   `weir-<32 hex>`). NATS hands each message to exactly one member of each queue
//!   group, that is to one collector among those having members of the shard group;
//!   that collector offers it to that group only ([`crate::hub::Scope::Group`]) and the
//!   hub picks one local member per envelope. So the members of a shard group spread
//!   over several collectors together receive each envelope once, and groups stay per
//!   (selector, shard id) as upstream's (PROTOCOLS.md §2.3).
//!
//! Queue subscriptions follow the hub: joined when a collector gets its first member of
//! a group, left when it loses its last (watching [`Hub::changes`]).
//!
//! Limits of the design, all of them documented upstream behaviour or lossy-egress
//! trade-offs:
//!
//! - NATS picks a collector per **message** (a batch), the hub a member per envelope:
//!   with members on two collectors, each sees runs of envelopes rather than an
//!   envelope-by-envelope random spread. The once-per-group guarantee holds.
//! - `deterministic_name` pins a counter or gauge name to one member **within** the
//!   collector that received the batch; across collectors the pick is NATS's.
//! - While a collector joins or leaves a queue group (a subscriber comes or goes), a
//!   message may reach a collector whose last member just left, and is lost for the
//!   group; one that was in its subscription buffer when it left is lost too.
//! - A new subscriber sees envelopes ingested elsewhere once its collector's interest
//!   ping has reached the publisher (a round trip through NATS; see below).
//!
//! # Cost when nobody listens
//!
//! A collector with live subscribers publishes an empty ping on `<prefix>.interest`
//! at once when its subscribers change and then every [`INTEREST_INTERVAL`]. A
//! collector publishes envelopes only while it has seen a ping in the last
//! [`INTEREST_TTL`]: with no live subscriber anywhere, ingest clones, encodes and
//! publishes nothing.
//!
//! # Bounds and loss
//!
//! - Publishing never blocks ingest: envelopes wait in a queue of at most
//!   `egress.relay_queue` envelopes; beyond it they are dropped and counted
//!   (`weir_relay_dropped_envelopes_total{reason="queue_full"}`).
//! - Each subscription buffers at most [`SUBSCRIPTION_CAPACITY`] messages in the NATS
//!   client; beyond it the client drops and we count
//!   (`weir_relay_slow_consumer_total`). Receivers only decode and write to subscriber
//!   diodes, which never block, so they keep up.
//! - Each subscriber is bounded by its own diode as before ([`crate::hub`]).
//! - A lost NATS connection is re-established by the client; envelopes published
//!   meanwhile wait in its bounded buffer, then in our queue, then are dropped, counted.

mod interest;
mod metrics;
mod nats;

use std::sync::Arc;

use weir_core::Envelope;

use crate::hub::{Hub, Prepared};
pub use interest::{INTEREST_INTERVAL, INTEREST_TTL};
pub use metrics::{RelayCopy, RelayDrop, RelayMetrics};
pub use nats::{NatsRelay, RelayError, SUBSCRIPTION_CAPACITY};

#[cfg(doc)]
use crate::hub::GroupKey;

/// Where the ingest path hands newly stored envelopes. See the module docs.
#[derive(Clone, Debug)]
pub enum LiveRelay {
    /// This collector's hub only.
    InProcess(Hub),
    /// Every collector on the same NATS servers and subject prefix.
    Nats(Arc<NatsRelay>),
}

impl LiveRelay {
    /// Takes what must outlive the append of `entries` (the store consumes them) so that
    /// the stored ones can be published afterwards; `None` when nobody would receive
    /// any of them.
    pub fn prepare(&self, entries: &[Envelope]) -> Option<Pending> {
        match self {
            LiveRelay::InProcess(hub) => hub.prepare(entries).map(Pending::local),
            LiveRelay::Nats(relay) => relay.prepare(entries),
        }
    }
}

/// Envelopes of one append waiting for the store's answer; see [`LiveRelay::prepare`].
pub struct Pending(PendingKind);

enum PendingKind {
    Local(Prepared),
    Nats(Arc<NatsRelay>, Vec<Envelope>),
}

impl Pending {
    /// For the in-process hub.
    pub fn local(prepared: Prepared) -> Pending {
        Pending(PendingKind::Local(prepared))
    }

    /// Publishes the envelopes at positions `first_new..` of the append (the ones before
    /// are duplicates). Returns how many were handed on: published to local subscribers,
    /// or queued for the relay.
    pub fn publish_from(self, first_new: usize) -> u64 {
        match self.0 {
            PendingKind::Local(prepared) => prepared.publish_from(first_new),
            PendingKind::Nats(relay, mut envs) => {
                if first_new >= envs.len() {
                    return 0;
                }
                let new = envs.split_off(first_new);
                relay.enqueue(new)
            }
        }
    }
}
