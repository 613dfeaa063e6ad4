//! [`GroupKey`]: the name of one shard group (a filter and a shard id) that is the same
//! in every collector process, so that collectors sharing a live relay can agree on
//! which of them serves a group member (see [`crate::relay`]).

use crc::{CRC_64_GO_ISO, Crc};

use super::filter::{Filter, Names};
use super::route::GO_CRC64_ECMA;

const ISO: Crc<u64> = Crc::<u64>::new(&CRC_64_GO_ISO);

/// A stable 128-bit name of a shard group: two CRC-64s (XZ and GO-ISO) of a canonical,
/// length-prefixed encoding of (kind, source id, names, shard id). It does not depend on
/// the process, the platform or the Rust version; a collision of two groups' keys
/// (about 2⁻¹²⁸ per pair) would merge their splitting across collectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupKey(pub u128);

impl GroupKey {
    /// The key of the shard group `shard_id` at the node of `filter`.
    pub fn of(filter: &Filter, shard_id: &str) -> GroupKey {
        let mut buf = Vec::with_capacity(64);
        buf.push(filter.kind as u8);
        put(&mut buf, filter.source_id.as_bytes());
        match &filter.names {
            Names::Any => buf.push(0),
            Names::Counter(name) => {
                buf.push(1);
                put(&mut buf, name.as_bytes());
            }
            Names::Gauge(set) => {
                buf.push(2);
                buf.extend_from_slice(&(set.len() as u64).to_be_bytes());
                // A BTreeSet iterates in order: the same set always encodes the same.
                for name in set {
                    put(&mut buf, name.as_bytes());
                }
            }
        }
        put(&mut buf, shard_id.as_bytes());
        let hi = GO_CRC64_ECMA.checksum(&buf);
        let lo = ISO.checksum(&buf);
        GroupKey((u128::from(hi) << 64) | u128::from(lo))
    }

    /// The key as a NATS queue group name (`weir-` and 32 hex digits).
    pub fn queue_name(&self) -> String {
        format!("weir-{:032x}", self.0)
    }
}

fn put(buf: &mut Vec<u8>, bytes: &[u8]) {
    buf.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
    buf.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::Kind;

    fn filter(kind: Kind, source: &str, names: Names) -> Filter {
        Filter {
            kind,
            source_id: source.into(),
            names,
        }
    }

    #[test]
    fn keys_are_stable_and_distinguish_every_part() {
        let log = filter(Kind::Log, "app", Names::Any);
        let k = GroupKey::of(&log, "s");
        // The same on every run and every machine: pinned.
        assert_eq!(k, GroupKey::of(&log.clone(), "s"));
        assert_eq!(k.queue_name().len(), 5 + 32);
        assert!(k.queue_name().starts_with("weir-"));
        let others = [
            GroupKey::of(&log, "t"),
            GroupKey::of(&log, ""),
            GroupKey::of(&filter(Kind::Event, "app", Names::Any), "s"),
            GroupKey::of(&filter(Kind::Log, "ap", Names::Any), "s"),
            // Length prefixes: ("ap", "ps") and ("app", "s") must differ.
            GroupKey::of(&filter(Kind::Log, "ap", Names::Any), "ps"),
            GroupKey::of(
                &filter(Kind::Counter, "app", Names::Counter("s".into())),
                "s",
            ),
            GroupKey::of(&filter(Kind::Counter, "app", Names::Any), "s"),
            GroupKey::of(
                &filter(
                    Kind::Gauge,
                    "app",
                    Names::Gauge(["a", "b"].map(String::from).into()),
                ),
                "s",
            ),
            GroupKey::of(
                &filter(
                    Kind::Gauge,
                    "app",
                    Names::Gauge(["ab"].map(String::from).into()),
                ),
                "s",
            ),
        ];
        for (i, o) in others.iter().enumerate() {
            assert_ne!(*o, k, "key {i} collides");
            for (j, p) in others.iter().enumerate().skip(i + 1) {
                assert_ne!(o, p, "keys {i} and {j} collide");
            }
        }
    }

    #[test]
    fn key_is_pinned_across_builds() {
        // Collectors of different builds must agree: this value may never change.
        let k = GroupKey::of(&filter(Kind::Log, "app", Names::Any), "shard");
        assert_eq!(
            k,
            GroupKey::of(&filter(Kind::Log, "app", Names::Any), "shard")
        );
        let name = k.queue_name();
        assert_eq!(name, PINNED, "GroupKey encoding changed");
    }

    /// The queue name of (log, source "app", shard "shard").
    const PINNED: &str = "weir-22c6e30c946912761a169f573c28e222";
}
