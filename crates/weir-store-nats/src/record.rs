//! What is stored: the registry value (JSON in the KV bucket) and the entry record (one
//! JetStream message per append: headers say where it sits, the payload holds the
//! envelopes).
//!
//! Entry record headers:
//!
//! | header | value |
//! | --- | --- |
//! | `Weir-First` | index of the record's first entry (for a termination marker: the stream's next index) |
//! | `Weir-Count` | entries in the record (0 for a termination marker) |
//! | `Weir-Ingest` | ingest time, Unix ns; never below the previous record's |
//! | `Weir-Terminal` | the stream's terminal count, once it has one |
//! | `Weir-Path` | the path, only when the subject token is hashed |
//!
//! Payload: `count × (length: varint, Envelope protobuf)`.

use std::collections::BTreeMap;

use async_nats::HeaderMap;
use bytes::{Buf, Bytes};
use prost::Message;
use prost::encoding::{decode_varint, encode_varint, encoded_len_varint};
use serde::{Deserialize, Serialize};
use weir_core::{Descriptor, Envelope};
use weir_store::{Owner, SecretHash, StoreError};

pub const H_FIRST: &str = "Weir-First";
pub const H_COUNT: &str = "Weir-Count";
pub const H_INGEST: &str = "Weir-Ingest";
pub const H_TERMINAL: &str = "Weir-Terminal";
pub const H_PATH: &str = "Weir-Path";

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

/// A stream's registry value (KV bucket `<prefix>_registry`, key = the path's token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegRecord {
    /// The full path (needed for hashed tokens and listing).
    pub path: String,
    /// Hex SHA-256 of the producer secret; empty for collector-owned streams.
    pub secret_sha256: String,
    pub collector_owned: bool,
    pub content_type: String,
    pub tags: BTreeMap<String, String>,
    pub created_ns: i64,
    pub registered_ns: i64,
    /// The terminal count, once terminated (also in the entry records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminal: Option<u64>,
    /// At least this many entries were written (kept only with `max_age`, for when every
    /// record of the stream has aged out).
    #[serde(default)]
    pub next_hint: u64,
    /// Floor of the low-water mark set by `expire_stream`.
    #[serde(default)]
    pub low_floor: u64,
}

impl RegRecord {
    /// A new record for `owner`.
    pub fn new(path: &str, owner: &Owner, descriptor: Descriptor, registered_ns: i64) -> Self {
        let (secret_sha256, collector_owned) = match owner {
            Owner::Producer(secret) => (hex::encode(SecretHash::of(secret).0), false),
            Owner::Collector => (String::new(), true),
        };
        RegRecord {
            path: path.to_string(),
            secret_sha256,
            collector_owned,
            content_type: descriptor.content_type,
            tags: descriptor.tags,
            created_ns: descriptor.created_ns,
            registered_ns,
            terminal: None,
            next_hint: 0,
            low_floor: 0,
        }
    }

    /// Whether `owner` may write this stream.
    pub fn admits(&self, owner: &Owner) -> bool {
        match owner {
            Owner::Collector => self.collector_owned,
            Owner::Producer(secret) => {
                if self.collector_owned {
                    return false;
                }
                let Ok(bytes) = hex::decode(&self.secret_sha256) else {
                    return false;
                };
                let Ok(hash) = <[u8; 32]>::try_from(bytes.as_slice()) else {
                    return false;
                };
                SecretHash(hash).matches(secret)
            }
        }
    }

    /// The descriptor as registered.
    pub fn descriptor(&self) -> Descriptor {
        Descriptor {
            content_type: self.content_type.clone(),
            tags: self.tags.clone(),
            created_ns: self.created_ns,
        }
    }

    pub fn encode(&self) -> Bytes {
        // Serialising plain strings and integers cannot fail.
        Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        serde_json::from_slice(bytes).map_err(|e| corrupt(format!("registry value: {e}")))
    }
}

/// The header part of an entry record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHead {
    /// Stream sequence of the message.
    pub seq: u64,
    pub first: u64,
    pub count: u64,
    pub ingest_ns: i64,
    pub terminal: Option<u64>,
}

impl RecordHead {
    /// Index after the record's last entry.
    pub fn end(&self) -> u64 {
        self.first.saturating_add(self.count)
    }

    /// Reads the headers of a stored message.
    pub fn parse(seq: u64, headers: Option<&HeaderMap>) -> Result<Self, StoreError> {
        let headers = headers.ok_or_else(|| corrupt(format!("record {seq} has no headers")))?;
        let num = |name: &str| -> Result<Option<&str>, StoreError> {
            Ok(headers.get(name).map(|v| v.as_str()))
        };
        let req_u64 = |name: &str| -> Result<u64, StoreError> {
            num(name)?
                .ok_or_else(|| corrupt(format!("record {seq}: no {name}")))?
                .parse::<u64>()
                .map_err(|e| corrupt(format!("record {seq}: {name}: {e}")))
        };
        let ingest_ns = num(H_INGEST)?
            .ok_or_else(|| corrupt(format!("record {seq}: no {H_INGEST}")))?
            .parse::<i64>()
            .map_err(|e| corrupt(format!("record {seq}: {H_INGEST}: {e}")))?;
        let terminal = match num(H_TERMINAL)? {
            Some(t) => Some(
                t.parse::<u64>()
                    .map_err(|e| corrupt(format!("record {seq}: {H_TERMINAL}: {e}")))?,
            ),
            None => None,
        };
        Ok(RecordHead {
            seq,
            first: req_u64(H_FIRST)?,
            count: req_u64(H_COUNT)?,
            ingest_ns,
            terminal,
        })
    }

    /// The headers of a new record (`path` only for hashed tokens).
    pub fn headers(&self, path: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(H_FIRST, self.first.to_string().as_str());
        h.insert(H_COUNT, self.count.to_string().as_str());
        h.insert(H_INGEST, self.ingest_ns.to_string().as_str());
        if let Some(t) = self.terminal {
            h.insert(H_TERMINAL, t.to_string().as_str());
        }
        if let Some(p) = path {
            h.insert(H_PATH, p);
        }
        h
    }
}

/// Encoded size of `e` in a record payload.
pub fn framed_len(e: &Envelope) -> usize {
    let len = e.encoded_len();
    encoded_len_varint(len as u64) + len
}

/// Encodes envelopes as a record payload.
pub fn encode_entries(entries: &[Envelope]) -> Bytes {
    let mut buf = Vec::with_capacity(entries.iter().map(framed_len).sum());
    for e in entries {
        encode_varint(e.encoded_len() as u64, &mut buf);
        e.encode_raw(&mut buf);
    }
    Bytes::from(buf)
}

/// Decodes a record payload that must hold exactly `count` envelopes.
pub fn decode_entries(mut payload: Bytes, count: u64) -> Result<Vec<Envelope>, StoreError> {
    let mut out = Vec::with_capacity(usize::try_from(count).unwrap_or(0).min(1 << 16));
    while payload.has_remaining() {
        let len = decode_varint(&mut payload).map_err(|e| corrupt(format!("entry length: {e}")))?;
        let len = usize::try_from(len).map_err(|_| corrupt("entry length"))?;
        if len > payload.remaining() {
            return Err(corrupt("entry longer than its record"));
        }
        let bytes = payload.split_to(len);
        out.push(Envelope::decode(bytes).map_err(|e| corrupt(format!("entry: {e}")))?);
    }
    if out.len() as u64 != count {
        return Err(corrupt(format!(
            "record holds {} entries, its header says {count}",
            out.len()
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_proto::lv2::{Log, envelope::Message as Body};

    fn log(p: &str) -> Envelope {
        Envelope {
            message: Some(Body::Log(Log {
                payload: p.as_bytes().to_vec().into(),
                r#type: 0,
            })),
            ..Default::default()
        }
    }

    #[test]
    fn entries_round_trip_and_bad_counts_are_corrupt() {
        let es = vec![log("a"), log("bb"), log("")];
        let enc = encode_entries(&es);
        assert_eq!(decode_entries(enc.clone(), 3).unwrap(), es);
        assert!(matches!(
            decode_entries(enc.clone(), 2),
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(
            decode_entries(enc.slice(..enc.len() - 1), 3),
            Err(StoreError::Corrupt(_))
        ));
    }

    #[test]
    fn heads_round_trip() {
        let head = RecordHead {
            seq: 7,
            first: 10,
            count: 5,
            ingest_ns: -3,
            terminal: Some(20),
        };
        let h = head.headers(None);
        assert_eq!(RecordHead::parse(7, Some(&h)).unwrap(), head);
        assert!(RecordHead::parse(7, None).is_err());
    }

    #[test]
    fn owners_are_checked() {
        let rec = RegRecord::new(
            "a/+/b",
            &Owner::Producer(b"s".to_vec()),
            Descriptor::default(),
            0,
        );
        assert!(rec.admits(&Owner::Producer(b"s".to_vec())));
        assert!(!rec.admits(&Owner::Producer(b"t".to_vec())));
        assert!(!rec.admits(&Owner::Collector));
        let back = RegRecord::decode(&rec.encode()).unwrap();
        assert_eq!(back, rec);
    }
}
