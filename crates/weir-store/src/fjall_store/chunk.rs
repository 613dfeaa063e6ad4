//! The chunk: the value stored for one append's new entries.
//!
//! ```text
//! version: u8 (= 1) | ingest_ns: i64 little-endian | count: varint
//! | count × (length: varint, Envelope protobuf bytes)
//! ```
//!
//! The key (stream id, first index) says where the chunk's entries start; the chunk says
//! how many there are and when they were stored. Parsing walks the length prefixes once
//! to check that they describe exactly the bytes present, so a truncated or padded value
//! is [`StoreError::Corrupt`] before any entry is decoded.

use bytes::{Buf, Bytes};
use prost::Message;
use prost::encoding::{decode_varint, encode_varint, encoded_len_varint};
use weir_core::Envelope;

use crate::StoreError;

/// The format version written in the first byte.
const VERSION: u8 = 1;
/// Version byte and ingest time.
const FIXED_HEADER: usize = 1 + 8;

/// Encodes `entries` stored at `ingest_ns` as one chunk.
pub(super) fn encode(ingest_ns: i64, entries: &[Envelope]) -> Vec<u8> {
    let body: usize = entries
        .iter()
        .map(|e| {
            let len = e.encoded_len();
            encoded_len_varint(len as u64) + len
        })
        .sum();
    let mut buf = Vec::with_capacity(FIXED_HEADER + 10 + body);
    buf.push(VERSION);
    buf.extend_from_slice(&ingest_ns.to_le_bytes());
    encode_varint(entries.len() as u64, &mut buf);
    for e in entries {
        // Writing into a Vec cannot run out of capacity.
        let len = e.encoded_len();
        encode_varint(len as u64, &mut buf);
        e.encode_raw(&mut buf);
    }
    buf
}

/// The ingest time in a stored chunk's header, without parsing the rest.
pub(super) fn ingest_ns(bytes: &[u8]) -> Result<i64, StoreError> {
    match bytes.get(..FIXED_HEADER) {
        Some([VERSION, time @ ..]) => <[u8; 8]>::try_from(time)
            .map(i64::from_le_bytes)
            .map_err(|_| corrupt("chunk header".into())),
        _ => Err(corrupt(format!("chunk header of {} bytes", bytes.len()))),
    }
}

/// A parsed chunk whose envelopes are decoded on demand.
#[derive(Debug, Clone)]
pub(super) struct Chunk {
    /// When the store wrote it, Unix ns.
    pub ingest_ns: i64,
    /// Number of entries.
    pub count: u64,
    /// The length-prefixed envelopes.
    body: Bytes,
}

impl Chunk {
    /// Parses a stored chunk value and checks its framing.
    pub fn parse(mut bytes: Bytes) -> Result<Chunk, StoreError> {
        if bytes.len() < FIXED_HEADER {
            return Err(corrupt(format!("chunk of {} bytes", bytes.len())));
        }
        let version = bytes.get_u8();
        if version != VERSION {
            return Err(corrupt(format!("chunk version {version}")));
        }
        let ingest_ns = bytes.get_i64_le();
        let count = decode_varint(&mut bytes).map_err(|e| corrupt(format!("chunk count: {e}")))?;
        let chunk = Chunk {
            ingest_ns,
            count,
            body: bytes,
        };
        chunk.check_framing()?;
        Ok(chunk)
    }

    /// Checks that `count` length-prefixed records fill the body exactly.
    fn check_framing(&self) -> Result<(), StoreError> {
        let mut body = self.body.clone();
        for _ in 0..self.count {
            skip_one(&mut body)?;
        }
        if body.has_remaining() {
            return Err(corrupt(format!(
                "chunk has {} bytes after its {} entries",
                body.remaining(),
                self.count
            )));
        }
        Ok(())
    }

    /// Decodes up to `take` envelopes after skipping the first `skip`.
    pub fn envelopes(&self, skip: u64, take: u64) -> Result<Vec<Envelope>, StoreError> {
        let mut body = self.body.clone();
        for _ in 0..skip.min(self.count) {
            skip_one(&mut body)?;
        }
        let n = take.min(self.count.saturating_sub(skip));
        let mut out = Vec::with_capacity(usize::try_from(n).unwrap_or(0));
        for _ in 0..n {
            let env = Envelope::decode_length_delimited(&mut body)
                .map_err(|e| corrupt(format!("chunk entry: {e}")))?;
            out.push(env);
        }
        Ok(out)
    }
}

/// Advances past one length-prefixed record.
fn skip_one(body: &mut Bytes) -> Result<(), StoreError> {
    let len = decode_varint(body).map_err(|e| corrupt(format!("chunk entry length: {e}")))?;
    let len = usize::try_from(len)
        .ok()
        .filter(|&l| l <= body.remaining())
        .ok_or_else(|| corrupt(format!("chunk entry of {len} bytes past the end")))?;
    body.advance(len);
    Ok(())
}

fn corrupt(what: String) -> StoreError {
    StoreError::Corrupt(what)
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_proto::lv2::{Counter, Log, envelope::Message as Body};

    fn log(payload: &str) -> Envelope {
        Envelope {
            timestamp: 42,
            source_id: "app".into(),
            message: Some(Body::Log(Log {
                payload: Bytes::copy_from_slice(payload.as_bytes()),
                r#type: 1,
            })),
            ..Default::default()
        }
    }

    fn sample() -> Vec<Envelope> {
        let counter = Envelope {
            message: Some(Body::Counter(Counter {
                name: "c".into(),
                delta: 1,
                total: 9,
            })),
            ..Default::default()
        };
        vec![log("one"), counter, log(""), log(&"x".repeat(300))]
    }

    #[test]
    fn round_trips() {
        let entries = sample();
        let chunk = Chunk::parse(Bytes::from(encode(-5, &entries))).unwrap();
        assert_eq!(chunk.ingest_ns, -5);
        assert_eq!(chunk.count, 4);
        assert_eq!(chunk.envelopes(0, u64::MAX).unwrap(), entries);
    }

    #[test]
    fn skips_and_takes() {
        let entries = sample();
        let chunk = Chunk::parse(Bytes::from(encode(1, &entries))).unwrap();
        assert_eq!(chunk.envelopes(1, 2).unwrap(), entries[1..3].to_vec());
        assert_eq!(chunk.envelopes(3, 10).unwrap(), entries[3..].to_vec());
        assert!(chunk.envelopes(4, 10).unwrap().is_empty());
        assert!(chunk.envelopes(9, 10).unwrap().is_empty());
    }

    #[test]
    fn empty_chunk_round_trips() {
        let chunk = Chunk::parse(Bytes::from(encode(7, &[]))).unwrap();
        assert_eq!(chunk.count, 0);
        assert!(chunk.envelopes(0, 1).unwrap().is_empty());
    }

    #[test]
    fn truncated_chunk_is_corrupt() {
        let bytes = encode(1, &sample());
        for cut in [0, 3, FIXED_HEADER, bytes.len() - 1] {
            let err = Chunk::parse(Bytes::copy_from_slice(&bytes[..cut])).unwrap_err();
            assert!(matches!(err, StoreError::Corrupt(_)), "cut {cut}: {err:?}");
        }
    }

    #[test]
    fn padded_chunk_and_bad_version_are_corrupt() {
        let mut bytes = encode(1, &sample());
        bytes.push(0);
        assert!(matches!(
            Chunk::parse(Bytes::from(bytes)),
            Err(StoreError::Corrupt(_))
        ));
        let mut bytes = encode(1, &sample());
        bytes[0] = 9;
        assert!(matches!(
            Chunk::parse(Bytes::from(bytes)),
            Err(StoreError::Corrupt(_))
        ));
    }

    #[test]
    fn undecodable_entry_is_corrupt_not_a_panic() {
        // One entry whose bytes are an invalid protobuf (field 0 is illegal).
        let mut bytes = vec![VERSION];
        bytes.extend_from_slice(&0i64.to_le_bytes());
        bytes.extend_from_slice(&[1, 2, 0x00, 0x00]);
        let chunk = Chunk::parse(Bytes::from(bytes)).unwrap();
        assert!(matches!(chunk.envelopes(0, 1), Err(StoreError::Corrupt(_))));
    }
}
