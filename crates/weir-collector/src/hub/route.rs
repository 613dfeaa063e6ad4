//! The hub's routing table: which subscriber diodes an envelope goes to, with
//! Loggregator's shard semantics (PROTOCOLS.md §2.3, from Doppler's `go-pubsub` tree).
//!
//! # Shape
//!
//! ```text
//! Table ── kind (log, counter, gauge, timer, event)
//!            ├── any_source: [Node]            selectors with an empty source_id
//!            └── by_source[source_id]: [Node]  selectors naming that source
//! Node  = one distinct filter (kind, source_id, counter name / gauge name set)
//!            └── groups: one per shard_id among the node's subscriptions
//! Group = shard_id, members (one per selector that asked for this filter and shard)
//! ```
//!
//! An envelope is offered to every node whose filter it matches (at most two lookups:
//! its source and "any source"), and within a node to every group:
//!
//! - shard id `""`: to **every** member;
//! - any other shard id: to **exactly one** member, picked uniformly at random per
//!   envelope; or, when some member of the group gave a `deterministic_name`, member
//!   number `hash % len` of the group sorted by deterministic name, where `hash` is
//!   [`shard_hash`]: the same counter or gauge name then always lands on the same
//!   member while membership is unchanged.
//!
//! Because groups live inside nodes, subscribers sharing a shard id split the data only
//! when they use the same selector; each distinct shard id, and each distinct
//! selector, gets its own full copy.
//!
//! The table is immutable: the hub builds a new one whenever a subscriber comes or goes
//! and swaps it in, so publishing reads it without locks held (see [`super::Hub`]).
//!
//! Every shard group is also indexed by its [`GroupKey`], so that an envelope relayed
//! to this collector for one group alone ([`Scope::Group`], see [`crate::relay`]) goes
//! to that group only; [`Scope::Unsharded`] offers an envelope to the unsharded groups
//! only.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crc::{CRC_64_XZ, Crc};
use weir_core::Envelope;
use weir_proto::lv2::envelope::Message;

use super::filter::{Filter, Kind, Names};
use super::key::GroupKey;
use super::subscriber::Shared;

/// Which groups an envelope is offered to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every group: unsharded ones to every member, sharded ones to one member each
    /// (the in-process hub).
    All,
    /// Only the unsharded groups (the relay's copy that every collector receives).
    Unsharded,
    /// Only the shard group with this key (the relay's copy for that group, which one
    /// collector of the group receives).
    Group(GroupKey),
}

/// Go's `crc64.Checksum(b, crc64.MakeTable(crc64.ECMA))`, which upstream uses to route
/// deterministically.
///
/// Go's `hash/crc64` works on the *reflected* ECMA-182 polynomial (`0xC96C5795D7870F42`)
/// and inverts the register before and after (init and xorout all ones): that is the
/// catalogue's **CRC-64/XZ**, not `CRC_64_ECMA_182` (which is unreflected with a zero
/// init and gives other values). Checked against Go's own golden vectors in the tests
/// below: `"a"` → `0x330284772e652b05`, `"123456789"` → `0x995dc9bbdf1939fa`.
pub const GO_CRC64_ECMA: Crc<u64> = Crc::<u64>::new(&CRC_64_XZ);

/// The deterministic routing hash of an envelope: CRC-64 of a counter's name, the
/// (wrapping) sum of the CRC-64s of a gauge's metric names; `None` for logs, timers and
/// events, which upstream spreads randomly even in deterministic groups.
pub fn shard_hash(env: &Envelope) -> Option<u64> {
    match env.message.as_ref()? {
        Message::Counter(c) => Some(GO_CRC64_ECMA.checksum(c.name.as_bytes())),
        Message::Gauge(g) => Some(
            g.metrics
                .keys()
                .map(|k| GO_CRC64_ECMA.checksum(k.as_bytes()))
                .fold(0u64, u64::wrapping_add),
        ),
        _ => None,
    }
}

/// One subscriber's registration: its filters (one per selector), shard id and
/// deterministic name.
pub(crate) struct Entry {
    pub sub: Arc<Shared>,
    pub filters: Vec<Filter>,
    pub shard_id: String,
    pub deterministic_name: String,
}

/// See the module docs.
#[derive(Default)]
pub(crate) struct Table {
    kinds: [KindRoutes; Kind::COUNT],
    subscriptions: usize,
    /// Every sharded group by its key, with its node's filter.
    keyed: HashMap<GroupKey, (Filter, Group)>,
}

#[derive(Default)]
struct KindRoutes {
    any_source: Vec<Node>,
    by_source: HashMap<String, Vec<Node>>,
}

struct Node {
    names: Names,
    groups: Vec<Group>,
}

#[derive(Clone)]
struct Group {
    /// Empty: every member gets everything.
    sharded: bool,
    /// Some member gave a deterministic name: pick by [`shard_hash`].
    deterministic: bool,
    /// Sorted by (deterministic name, subscriber id) when `deterministic`.
    members: Vec<Arc<Shared>>,
}

impl Table {
    /// The table of these registrations.
    pub fn build<'a>(entries: impl IntoIterator<Item = &'a Entry>) -> Table {
        // filter → shard id → members (deterministic name, id, subscriber)
        type Members = Vec<(String, u64, Arc<Shared>)>;
        let mut nodes: BTreeMap<&Filter, BTreeMap<&str, Members>> = BTreeMap::new();
        let mut subscriptions = 0;
        for e in entries {
            for f in &e.filters {
                subscriptions += 1;
                nodes
                    .entry(f)
                    .or_default()
                    .entry(e.shard_id.as_str())
                    .or_default()
                    .push((e.deterministic_name.clone(), e.sub.id(), e.sub.clone()));
            }
        }
        let mut table = Table {
            subscriptions,
            ..Table::default()
        };
        for (filter, shards) in nodes {
            let mut groups = Vec::with_capacity(shards.len());
            for (shard_id, mut members) in shards {
                let deterministic = members.iter().any(|(name, _, _)| !name.is_empty());
                if deterministic {
                    members.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
                }
                let group = Group {
                    sharded: !shard_id.is_empty(),
                    deterministic,
                    members: members.into_iter().map(|(_, _, s)| s).collect(),
                };
                if group.sharded {
                    table.keyed.insert(
                        GroupKey::of(filter, shard_id),
                        (filter.clone(), group.clone()),
                    );
                }
                groups.push(group);
            }
            let node = Node {
                names: filter.names.clone(),
                groups,
            };
            let routes = &mut table.kinds[filter.kind as usize];
            if filter.source_id.is_empty() {
                routes.any_source.push(node);
            } else {
                routes
                    .by_source
                    .entry(filter.source_id.clone())
                    .or_default()
                    .push(node);
            }
        }
        table
    }

    /// Whether no subscription exists.
    pub fn is_empty(&self) -> bool {
        self.subscriptions == 0
    }

    /// How many subscriptions (selectors of all subscribers) the table holds.
    pub fn subscriptions(&self) -> usize {
        self.subscriptions
    }

    /// The nodes whose kind and source fit `env` (names not checked yet).
    fn candidates<'a>(&'a self, env: &Envelope) -> impl Iterator<Item = &'a Node> + 'a {
        let routes = Kind::of(env).map(|k| &self.kinds[k as usize]);
        let any = routes.into_iter().flat_map(|r| r.any_source.iter());
        let by_source = routes
            .and_then(|r| r.by_source.get(env.source_id.as_str()))
            .into_iter()
            .flatten();
        any.chain(by_source)
    }

    /// The keys of every shard group.
    pub fn group_keys(&self) -> impl Iterator<Item = GroupKey> + '_ {
        self.keyed.keys().copied()
    }

    /// Whether some subscription wants `env`.
    pub fn wants(&self, env: &Envelope) -> bool {
        self.candidates(env).any(|n| n.names.accept(env))
    }

    /// Offers `env` to the diodes it is routed to; returns how many.
    pub fn route(&self, env: &Arc<Envelope>) -> usize {
        self.route_scoped(env, Scope::All)
    }

    /// Offers `env` to the diodes of the groups in `scope` it is routed to; returns how
    /// many.
    pub fn route_scoped(&self, env: &Arc<Envelope>, scope: Scope) -> usize {
        let mut hash: Option<Option<u64>> = None;
        if let Scope::Group(key) = scope {
            return match self.keyed.get(&key) {
                Some((filter, group)) if filter.matches(env) => group.offer(env, &mut hash),
                _ => 0,
            };
        }
        let mut offered = 0;
        for node in self.candidates(env) {
            if !node.names.accept(env) {
                continue;
            }
            for group in &node.groups {
                if group.sharded && scope == Scope::Unsharded {
                    continue;
                }
                offered += group.offer(env, &mut hash);
            }
        }
        offered
    }
}

impl Group {
    /// Offers `env` to every member (unsharded) or to one (sharded); returns how many.
    /// `hash` caches [`shard_hash`] across the groups of one envelope.
    fn offer(&self, env: &Arc<Envelope>, hash: &mut Option<Option<u64>>) -> usize {
        let n = self.members.len();
        if n == 0 {
            return 0;
        }
        if !self.sharded {
            for m in &self.members {
                m.offer(env.clone());
            }
            return n;
        }
        let pick = if self.deterministic {
            match *hash.get_or_insert_with(|| shard_hash(env)) {
                Some(h) => (h % n as u64) as usize,
                None => fastrand::usize(..n),
            }
        } else {
            fastrand::usize(..n)
        };
        self.members[pick].offer(env.clone());
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc64_is_gos_ecma_checksum() {
        // Go: hash/crc64 golden vectors (crc64_test.go), outECMA column.
        assert_eq!(GO_CRC64_ECMA.checksum(b""), 0);
        assert_eq!(GO_CRC64_ECMA.checksum(b"a"), 0x330284772e652b05);
        assert_eq!(GO_CRC64_ECMA.checksum(b"abc"), 0x2cd8094a1a277627);
        assert_eq!(GO_CRC64_ECMA.checksum(b"123456789"), 0x995dc9bbdf1939fa);
        // And not the unreflected ECMA-182 variant.
        let ecma182 = Crc::<u64>::new(&crc::CRC_64_ECMA_182);
        assert_ne!(ecma182.checksum(b"a"), 0x330284772e652b05);
    }

    #[test]
    fn gauge_hash_is_order_free_sum() {
        use weir_proto::lv2::{Gauge, GaugeValue};
        let env = Envelope {
            message: Some(Message::Gauge(Gauge {
                metrics: [("cpu", 1.0), ("mem", 2.0)]
                    .into_iter()
                    .map(|(k, v)| {
                        (
                            k.to_string(),
                            GaugeValue {
                                unit: String::new(),
                                value: v,
                            },
                        )
                    })
                    .collect(),
            })),
            ..Default::default()
        };
        let want = GO_CRC64_ECMA
            .checksum(b"cpu")
            .wrapping_add(GO_CRC64_ECMA.checksum(b"mem"));
        assert_eq!(shard_hash(&env), Some(want));
    }
}
