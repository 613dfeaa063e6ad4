//! Configurable bounds on what producers may send. Every limit is checked before
//! anything is stored; a violation is an `invalid` result naming the limit.

use serde::{Deserialize, Serialize};

/// Bounds on envelopes and bundles. Set in the `[limits]` table of the collector's
/// config file; every key is optional.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest log payload (or encoded metric/event body), bytes.
    pub max_payload_bytes: usize,
    /// Most tags (`tags` plus `deprecated_tags`) on one envelope.
    pub max_tags: usize,
    /// Longest tag key, bytes.
    pub max_tag_key_bytes: usize,
    /// Longest tag value, bytes.
    pub max_tag_value_bytes: usize,
    /// Longest name: source id, instance id, counter, gauge or timer name, event title.
    pub max_name_bytes: usize,
    /// Most entries in one stream's append.
    pub max_entries_per_append: usize,
    /// Most streams in one bundle.
    pub max_streams_per_bundle: usize,
    /// Largest request (gRPC message or HTTP body), bytes.
    pub max_request_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            // LogDog allows 10 MiB entries; log lines are far smaller, and one entry is
            // held whole in memory on every path, so 1 MiB is the default.
            max_payload_bytes: 1 << 20,
            max_tags: 64,
            // LogDog's tag rules: key at most 64 bytes, value at most 4096.
            max_tag_key_bytes: 64,
            max_tag_value_bytes: 4096,
            max_name_bytes: 1024,
            max_entries_per_append: 10_000,
            max_streams_per_bundle: 10_000,
            // LogDog's bundle limit.
            max_request_bytes: 16 << 20,
        }
    }
}
