//! The registry record of one stream, as stored under its path in the `registry`
//! keyspace, and the key layout of chunks in the entry partitions.

use std::collections::BTreeMap;

use prost::Message;
use weir_core::Descriptor;

use crate::{Owner, SecretHash, StoreError, StreamState};

/// Length of a chunk key: stream id and first index, both big-endian.
pub(super) const CHUNK_KEY_LEN: usize = 16;

/// A chunk's key: the stream id then the index of the chunk's first entry, big-endian,
/// so that a range scan reads one stream's chunks in index order.
pub(super) fn chunk_key(stream_id: u64, first_index: u64) -> [u8; CHUNK_KEY_LEN] {
    let mut key = [0u8; CHUNK_KEY_LEN];
    key[..8].copy_from_slice(&stream_id.to_be_bytes());
    key[8..].copy_from_slice(&first_index.to_be_bytes());
    key
}

/// The first index of a chunk key, or `Corrupt` when the key is not one.
pub(super) fn chunk_first_index(key: &[u8]) -> Result<u64, StoreError> {
    let tail: [u8; 8] = key
        .get(8..CHUNK_KEY_LEN)
        .and_then(|s| s.try_into().ok())
        .filter(|_| key.len() == CHUNK_KEY_LEN)
        .ok_or_else(|| StoreError::Corrupt(format!("chunk key of {} bytes", key.len())))?;
    Ok(u64::from_be_bytes(tail))
}

/// Where a stream's entries start in one time partition.
#[derive(Clone, Copy, PartialEq, Eq, Message)]
pub(super) struct PartitionStart {
    /// The partition's start, Unix seconds (its id).
    #[prost(uint64, tag = "1")]
    pub partition: u64,
    /// The first index of the stream written in that partition.
    #[prost(uint64, tag = "2")]
    pub first_index: u64,
}

/// A stream's registry record.
#[derive(Clone, PartialEq, Message)]
pub(super) struct StreamRecord {
    /// Numeric id, the prefix of the stream's chunk keys; never reused.
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// SHA-256 of the producer secret; empty for collector-owned streams.
    #[prost(bytes = "vec", tag = "2")]
    pub secret_hash: Vec<u8>,
    /// Whether the collector owns the stream.
    #[prost(bool, tag = "3")]
    pub collector_owned: bool,
    /// Descriptor: content type.
    #[prost(string, tag = "4")]
    pub content_type: String,
    /// Descriptor: tags.
    #[prost(btree_map = "string, string", tag = "5")]
    pub tags: BTreeMap<String, String>,
    /// Descriptor: creation time given by the producer, Unix ns.
    #[prost(int64, tag = "6")]
    pub created_ns: i64,
    /// When the store registered the stream, Unix ns.
    #[prost(int64, tag = "7")]
    pub registered_ns: i64,
    /// Entries `0..next_index` have been written.
    #[prost(uint64, tag = "8")]
    pub next_index: u64,
    /// Set once the stream is complete with this many entries.
    #[prost(uint64, optional, tag = "9")]
    pub terminal_count: Option<u64>,
    /// The partitions holding the stream's entries, oldest first, with the first index
    /// written in each (strictly increasing in both fields).
    #[prost(message, repeated, tag = "10")]
    pub partitions: Vec<PartitionStart>,
    /// The low-water mark as of the last write (retention may have moved it since).
    #[prost(uint64, tag = "11")]
    pub low_water: u64,
}

impl StreamRecord {
    /// A new record for a stream registered at `now_ns`.
    pub fn new(id: u64, owner: &Owner, descriptor: Descriptor, now_ns: i64) -> Self {
        let (secret_hash, collector_owned) = match owner {
            Owner::Producer(secret) => (SecretHash::of(secret).0.to_vec(), false),
            Owner::Collector => (Vec::new(), true),
        };
        StreamRecord {
            id,
            secret_hash,
            collector_owned,
            content_type: descriptor.content_type,
            tags: descriptor.tags,
            created_ns: descriptor.created_ns,
            registered_ns: now_ns,
            next_index: 0,
            terminal_count: None,
            partitions: Vec::new(),
            low_water: 0,
        }
    }

    /// Decodes and checks a stored record; `path` names it in errors.
    pub fn decode_checked(path: &[u8], bytes: &[u8]) -> Result<Self, StoreError> {
        let record = StreamRecord::decode(bytes).map_err(|e| {
            StoreError::Corrupt(format!(
                "registry record of {:?}: {e}",
                String::from_utf8_lossy(path)
            ))
        })?;
        record.check().map_err(|what| {
            StoreError::Corrupt(format!(
                "registry record of {:?}: {what}",
                String::from_utf8_lossy(path)
            ))
        })?;
        Ok(record)
    }

    /// The invariants a decoded record must keep.
    fn check(&self) -> Result<(), &'static str> {
        if !self.collector_owned && self.secret_hash.len() != 32 {
            return Err("producer stream without a 32-byte secret hash");
        }
        let ordered = self
            .partitions
            .windows(2)
            .all(|w| w[0].partition < w[1].partition && w[0].first_index < w[1].first_index);
        if !ordered {
            return Err("partition list out of order");
        }
        let within = self
            .partitions
            .last()
            .is_none_or(|p| p.first_index < self.next_index);
        if !within || self.low_water > self.next_index {
            return Err("indices past next_index");
        }
        Ok(())
    }

    /// Whether `owner` may write this stream.
    pub fn admits(&self, owner: &Owner) -> bool {
        match owner {
            Owner::Collector => self.collector_owned,
            Owner::Producer(secret) => {
                !self.collector_owned
                    && <[u8; 32]>::try_from(self.secret_hash.as_slice())
                        .is_ok_and(|hash| SecretHash(hash).matches(secret))
            }
        }
    }

    /// The low-water mark given the predicate telling which partitions are still live:
    /// the first index of the oldest live partition the stream wrote in, the next index
    /// when none is live, and never below the recorded mark.
    pub fn low_water(&self, is_live: impl Fn(u64) -> bool) -> u64 {
        let derived = self
            .partitions
            .iter()
            .find(|p| is_live(p.partition))
            .map_or(self.next_index, |p| p.first_index);
        derived.max(self.low_water)
    }

    /// Entries `[first, end)` held by each partition the stream wrote in.
    pub fn partition_ranges(&self) -> impl Iterator<Item = (u64, u64, u64)> + '_ {
        self.partitions.iter().enumerate().map(|(i, p)| {
            let end = self
                .partitions
                .get(i + 1)
                .map_or(self.next_index, |n| n.first_index);
            (p.partition, p.first_index, end)
        })
    }

    /// The state readers see.
    pub fn state(&self, path: &str, low_water: u64) -> StreamState {
        StreamState {
            path: path.to_owned(),
            descriptor: Descriptor {
                content_type: self.content_type.clone(),
                tags: self.tags.clone(),
                created_ns: self.created_ns,
            },
            registered_ns: self.registered_ns,
            next_index: self.next_index,
            low_water,
            terminal_count: self.terminal_count,
            collector_owned: self.collector_owned,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(owner: &Owner) -> StreamRecord {
        StreamRecord::new(7, owner, Descriptor::default(), 1)
    }

    #[test]
    fn round_trips() {
        let mut r = record(&Owner::Producer(b"s".to_vec()));
        r.next_index = 30;
        r.terminal_count = Some(40);
        r.partitions = vec![
            PartitionStart {
                partition: 0,
                first_index: 0,
            },
            PartitionStart {
                partition: 3600,
                first_index: 10,
            },
        ];
        let bytes = r.encode_to_vec();
        assert_eq!(StreamRecord::decode_checked(b"p", &bytes).unwrap(), r);
    }

    #[test]
    fn garbage_is_corrupt() {
        let err = StreamRecord::decode_checked(b"p", &[0xff, 0xff, 0xff]).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    }

    #[test]
    fn producer_record_without_hash_is_corrupt() {
        let mut r = record(&Owner::Producer(b"s".to_vec()));
        r.secret_hash.clear();
        let err = StreamRecord::decode_checked(b"p", &r.encode_to_vec()).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    }

    #[test]
    fn admits_only_the_owner() {
        let p = record(&Owner::Producer(b"s".to_vec()));
        assert!(p.admits(&Owner::Producer(b"s".to_vec())));
        assert!(!p.admits(&Owner::Producer(b"t".to_vec())));
        assert!(!p.admits(&Owner::Collector));
        let c = record(&Owner::Collector);
        assert!(c.admits(&Owner::Collector));
        assert!(!c.admits(&Owner::Producer(Vec::new())));
    }

    #[test]
    fn low_water_follows_live_partitions() {
        let mut r = record(&Owner::Collector);
        r.next_index = 30;
        r.partitions = vec![
            PartitionStart {
                partition: 0,
                first_index: 0,
            },
            PartitionStart {
                partition: 10,
                first_index: 10,
            },
        ];
        assert_eq!(r.low_water(|_| true), 0);
        assert_eq!(r.low_water(|p| p >= 10), 10);
        assert_eq!(r.low_water(|_| false), 30);
    }

    #[test]
    fn chunk_keys_sort_by_stream_then_index() {
        assert!(chunk_key(1, 500) < chunk_key(2, 0));
        assert!(chunk_key(1, 255) < chunk_key(1, 256));
        assert_eq!(chunk_first_index(&chunk_key(3, 99)).unwrap(), 99);
        assert!(chunk_first_index(&[1, 2, 3]).is_err());
    }
}
