//! The bytes on disk: segment file names and headers, record frames, cursor files.
//!
//! Everything is little-endian. The layout is described for people in the module docs
//! of [`spool`](super); this file is the one place that encodes and decodes it.

/// Format version written in every segment header and cursor file.
pub(crate) const FORMAT_VERSION: u8 = 1;

/// First bytes of every segment file: `WEIRSPL` and the format version.
pub(crate) const SEGMENT_MAGIC: [u8; 8] = *b"WEIRSPL\x01";
/// Length of [`SEGMENT_MAGIC`]; the first frame starts here.
pub(crate) const SEGMENT_HEADER_LEN: u64 = 8;

/// length (u32) + crc32c (u32) + record id (u64).
pub(crate) const FRAME_HEADER_LEN: usize = 16;

/// Largest payload the format takes. Also the bound that tells an "impossible length"
/// when reading, so that a corrupt length never makes the spool allocate gigabytes.
pub const MAX_RECORD_BYTES: usize = 64 << 20;

/// `WEIRCUR` + version, then `next` (u64), then crc32c of the first 16 bytes.
const CURSOR_MAGIC: [u8; 8] = *b"WEIRCUR\x01";
pub(crate) const CURSOR_FILE_LEN: usize = 20;

/// Name of the lock file held while a spool is open.
pub(crate) const LOCK_FILE: &str = "LOCK";
const SEGMENT_SUFFIX: &str = ".seg";
const CURSOR_SUFFIX: &str = ".cursor";
/// Suffix of a cursor file being written; such files are debris after a crash.
pub(crate) const TMP_SUFFIX: &str = ".tmp";

/// `00000000000000000042.seg` for the segment whose first record id is 42: the names
/// sort in id order and tell a segment's first id even when its content is damaged.
pub(crate) fn segment_file_name(first_id: u64) -> String {
    format!("{first_id:020}{SEGMENT_SUFFIX}")
}

/// The first record id of a segment file name, or `None` for any other file.
pub(crate) fn parse_segment_file_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(SEGMENT_SUFFIX)?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// `central.cursor` for the reader `central`.
pub(crate) fn cursor_file_name(reader: &str) -> String {
    format!("{reader}{CURSOR_SUFFIX}")
}

/// The reader name of a cursor file name, or `None` for any other file.
pub(crate) fn parse_cursor_file_name(name: &str) -> Option<&str> {
    name.strip_suffix(CURSOR_SUFFIX)
        .filter(|reader| valid_reader_name(reader))
}

/// Reader names become file names: 1 to 100 of `A-Z a-z 0-9 _ - .`, not starting
/// with a dot.
pub(crate) fn valid_reader_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// What the first bytes of a segment file say.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SegmentHeader {
    /// Our magic and version.
    Valid,
    /// Our magic, another version.
    OtherVersion(u8),
    /// Not a header at all (damaged).
    Damaged,
}

pub(crate) fn check_segment_header(bytes: &[u8; SEGMENT_HEADER_LEN as usize]) -> SegmentHeader {
    if *bytes == SEGMENT_MAGIC {
        SegmentHeader::Valid
    } else if bytes[..7] == SEGMENT_MAGIC[..7] {
        SegmentHeader::OtherVersion(bytes[7])
    } else {
        SegmentHeader::Damaged
    }
}

/// The fixed part of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameHeader {
    pub len: u32,
    pub crc: u32,
    pub id: u64,
}

impl FrameHeader {
    /// The header of the frame holding `payload` as record `id`.
    /// Panics never: callers bound `payload` by [`MAX_RECORD_BYTES`] first.
    pub(crate) fn for_payload(id: u64, payload: &[u8]) -> FrameHeader {
        let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
        FrameHeader {
            len,
            crc: frame_crc(len, id, payload),
            id,
        }
    }

    pub(crate) fn encode(&self) -> [u8; FRAME_HEADER_LEN] {
        let mut out = [0u8; FRAME_HEADER_LEN];
        out[0..4].copy_from_slice(&self.len.to_le_bytes());
        out[4..8].copy_from_slice(&self.crc.to_le_bytes());
        out[8..16].copy_from_slice(&self.id.to_le_bytes());
        out
    }

    pub(crate) fn decode(bytes: &[u8; FRAME_HEADER_LEN]) -> FrameHeader {
        let [
            l0,
            l1,
            l2,
            l3,
            c0,
            c1,
            c2,
            c3,
            i0,
            i1,
            i2,
            i3,
            i4,
            i5,
            i6,
            i7,
        ] = *bytes;
        FrameHeader {
            len: u32::from_le_bytes([l0, l1, l2, l3]),
            crc: u32::from_le_bytes([c0, c1, c2, c3]),
            id: u64::from_le_bytes([i0, i1, i2, i3, i4, i5, i6, i7]),
        }
    }

    /// Whether `payload` is the one this header was written for.
    pub(crate) fn matches(&self, payload: &[u8]) -> bool {
        payload.len() == self.len as usize && frame_crc(self.len, self.id, payload) == self.crc
    }
}

/// CRC32C over the length, the id and the payload: a frame is only accepted whole and
/// at the id it was written with.
pub(crate) fn frame_crc(len: u32, id: u64, payload: &[u8]) -> u32 {
    let crc = crc32c::crc32c(&len.to_le_bytes());
    let crc = crc32c::crc32c_append(crc, &id.to_le_bytes());
    crc32c::crc32c_append(crc, payload)
}

/// The bytes of a cursor file saying "every record below `next` is acknowledged".
pub(crate) fn encode_cursor(next: u64) -> [u8; CURSOR_FILE_LEN] {
    let mut out = [0u8; CURSOR_FILE_LEN];
    out[..8].copy_from_slice(&CURSOR_MAGIC);
    out[8..16].copy_from_slice(&next.to_le_bytes());
    let crc = crc32c::crc32c(&out[..16]);
    out[16..].copy_from_slice(&crc.to_le_bytes());
    out
}

/// The `next` of a cursor file, or `None` if it is damaged.
pub(crate) fn decode_cursor(bytes: &[u8]) -> Option<u64> {
    let bytes: &[u8; CURSOR_FILE_LEN] = bytes.try_into().ok()?;
    let (body, crc) = bytes.split_at(16);
    let crc = u32::from_le_bytes(crc.try_into().ok()?);
    if body[..8] != CURSOR_MAGIC || crc32c::crc32c(body) != crc {
        return None;
    }
    Some(u64::from_le_bytes(body[8..16].try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_round_trip_and_sort() {
        assert_eq!(segment_file_name(42), "00000000000000000042.seg");
        assert_eq!(parse_segment_file_name(&segment_file_name(42)), Some(42));
        assert_eq!(
            parse_segment_file_name(&segment_file_name(u64::MAX)),
            Some(u64::MAX)
        );
        assert_eq!(parse_segment_file_name("42.seg"), None);
        assert_eq!(parse_segment_file_name("0000000000000000004x.seg"), None);
        assert!(segment_file_name(9) < segment_file_name(10));
    }

    #[test]
    fn frame_header_round_trips_and_checks_payload() {
        let h = FrameHeader::for_payload(7, b"hello");
        assert_eq!(FrameHeader::decode(&h.encode()), h);
        assert!(h.matches(b"hello"));
        assert!(!h.matches(b"hellp"));
        // the id is covered: the same payload at another id does not match
        let other = FrameHeader { id: 8, ..h };
        assert!(!other.matches(b"hello"));
    }

    #[test]
    fn cursor_round_trips_and_detects_damage() {
        let bytes = encode_cursor(1234);
        assert_eq!(decode_cursor(&bytes), Some(1234));
        for i in 0..bytes.len() {
            let mut bad = bytes;
            bad[i] ^= 0x40;
            assert_eq!(decode_cursor(&bad), None, "flip at {i}");
        }
        assert_eq!(decode_cursor(&bytes[..19]), None);
    }

    #[test]
    fn reader_names() {
        assert!(valid_reader_name("central"));
        assert!(valid_reader_name("a.b-c_9"));
        assert!(!valid_reader_name(""));
        assert!(!valid_reader_name(".hidden"));
        assert!(!valid_reader_name("a/b"));
        assert!(!valid_reader_name(&"x".repeat(101)));
        assert_eq!(parse_cursor_file_name("central.cursor"), Some("central"));
        assert_eq!(parse_cursor_file_name("central.cursor.tmp"), None);
    }

    #[test]
    fn segment_header_kinds() {
        assert_eq!(check_segment_header(&SEGMENT_MAGIC), SegmentHeader::Valid);
        assert_eq!(
            check_segment_header(b"WEIRSPL\x02"),
            SegmentHeader::OtherVersion(2)
        );
        assert_eq!(check_segment_header(b"WEIRSPX\x01"), SegmentHeader::Damaged);
    }
}
