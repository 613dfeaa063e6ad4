//! Reading frames out of a segment, and finding the way back to good frames after
//! damage. Used both by recovery at open and by readers.
//!
//! A frame at offset `p` is accepted when its length is possible (at most
//! [`MAX_RECORD_BYTES`] and inside the readable end), its id is the one expected (ids in
//! a segment are consecutive from the segment's first id), and its CRC32C over length,
//! id and payload checks.
//!
//! When the frame at `p` is not accepted, [`Scanner::next`] *resynchronises*: it tries
//! every later offset `q = p+1, p+2, …` for a frame that is accepted with an id above
//! the expected one and below the segment's id limit (and below what could possibly fit
//! in the remaining bytes). Those cheap header checks reject almost every offset before
//! a CRC is computed, so the scan costs about one pass over the damaged region. If a
//! frame is found, the bytes and ids in between are reported as skipped; if none is
//! found, the rest of the segment is a tail of garbage (a torn write, at the end of the
//! last segment).

use std::io;

use bytes::Bytes;

use super::format::{FRAME_HEADER_LEN, FrameHeader, MAX_RECORD_BYTES};
use super::io::SpoolFile;

/// Bytes read from the file at a time (more when a frame is bigger).
const WINDOW: usize = 256 << 10;

/// What lies at an offset of a segment.
#[derive(Debug)]
pub(crate) enum Item {
    /// A good frame.
    Record {
        id: u64,
        payload: Bytes,
        /// Offset just past the frame.
        next_offset: u64,
    },
    /// Damage from the offset asked for to `resume_offset`, where a good frame with id
    /// `resume_id` starts.
    Skip { resume_offset: u64, resume_id: u64 },
    /// No good frame from the offset asked for to the end.
    Tail,
}

/// Reads frames of one segment through a window buffer.
pub(crate) struct Scanner<'a> {
    file: &'a dyn SpoolFile,
    /// Readable end: nothing at or past it is read.
    end: u64,
    /// Every id in the segment is below this.
    id_limit: u64,
    window_start: u64,
    window: Vec<u8>,
    /// Whether `Item::Record` carries the payload (recovery only checks frames).
    copy_payloads: bool,
}

impl<'a> Scanner<'a> {
    pub(crate) fn new(file: &'a dyn SpoolFile, end: u64, id_limit: u64) -> Scanner<'a> {
        Scanner {
            file,
            end,
            id_limit,
            window_start: 0,
            window: Vec::new(),
            copy_payloads: true,
        }
    }

    /// Checks frames without copying payloads out (`Item::Record::payload` is empty).
    pub(crate) fn verify_only(mut self) -> Scanner<'a> {
        self.copy_payloads = false;
        self
    }

    /// `len` bytes at `offset`, or `None` if they pass the readable end.
    fn view(&mut self, offset: u64, len: usize) -> io::Result<Option<&[u8]>> {
        let Some(stop) = offset
            .checked_add(len as u64)
            .filter(|&stop| stop <= self.end)
        else {
            return Ok(None);
        };
        let loaded = self.window_start + self.window.len() as u64;
        if offset < self.window_start || stop > loaded {
            let want = (len.max(WINDOW) as u64).min(self.end - offset) as usize;
            self.window.resize(want, 0);
            if let Err(e) = self.file.read_exact_at(&mut self.window, offset) {
                self.window.clear();
                return Err(e);
            }
            self.window_start = offset;
        }
        let start = (offset - self.window_start) as usize;
        Ok(self.window.get(start..start + len))
    }

    /// The frame at `offset` if it is accepted with an id for which `id_ok` holds:
    /// its id, its payload (copied only if `copy`) and the offset past it.
    fn frame_at(
        &mut self,
        offset: u64,
        id_ok: impl Fn(u64) -> bool,
        copy: bool,
    ) -> io::Result<Option<(u64, Bytes, u64)>> {
        let Some(head) = self.view(offset, FRAME_HEADER_LEN)? else {
            return Ok(None);
        };
        let Ok(head) = <&[u8; FRAME_HEADER_LEN]>::try_from(head) else {
            return Ok(None);
        };
        let header = FrameHeader::decode(head);
        if header.len as usize > MAX_RECORD_BYTES || !id_ok(header.id) {
            return Ok(None);
        }
        let total = FRAME_HEADER_LEN + header.len as usize;
        let Some(frame) = self.view(offset, total)? else {
            return Ok(None);
        };
        let payload = &frame[FRAME_HEADER_LEN..];
        if !header.matches(payload) {
            return Ok(None);
        }
        let payload = if copy {
            Bytes::copy_from_slice(payload)
        } else {
            Bytes::new()
        };
        Ok(Some((header.id, payload, offset + total as u64)))
    }

    /// What lies at `offset`, where the record `expected` should start; `None` at the
    /// readable end.
    pub(crate) fn next(&mut self, offset: u64, expected: u64) -> io::Result<Option<Item>> {
        if offset >= self.end {
            return Ok(None);
        }
        if let Some((id, payload, next_offset)) =
            self.frame_at(offset, |id| id == expected, self.copy_payloads)?
        {
            return Ok(Some(Item::Record {
                id,
                payload,
                next_offset,
            }));
        }
        // Every frame takes at least FRAME_HEADER_LEN bytes, which bounds how many ids
        // the damaged bytes can have held.
        let room = (self.end - offset) / FRAME_HEADER_LEN as u64 + 1;
        let id_limit = self.id_limit.min(expected.saturating_add(room + 1));
        let mut q = offset + 1;
        while q + FRAME_HEADER_LEN as u64 <= self.end {
            if let Some((id, _, _)) =
                self.frame_at(q, |id| id > expected && id < id_limit, false)?
            {
                return Ok(Some(Item::Skip {
                    resume_offset: q,
                    resume_id: id,
                }));
            }
            q += 1;
        }
        Ok(Some(Item::Tail))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::spool::io::{SimFs, SpoolFs};

    fn frame(id: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = FrameHeader::for_payload(id, payload).encode().to_vec();
        out.extend_from_slice(payload);
        out
    }

    fn file_with(bytes: &[u8]) -> std::sync::Arc<dyn SpoolFile> {
        let fs = SimFs::new();
        let f = fs.create(Path::new("/s/f")).unwrap();
        f.write_all_at(bytes, 0).unwrap();
        f
    }

    fn items(bytes: &[u8], first: u64) -> Vec<String> {
        let f = file_with(bytes);
        let mut s = Scanner::new(&*f, bytes.len() as u64, u64::MAX);
        let (mut off, mut expected, mut out) = (0, first, Vec::new());
        while let Some(item) = s.next(off, expected).unwrap() {
            match item {
                Item::Record {
                    id, next_offset, ..
                } => {
                    out.push(format!("r{id}"));
                    off = next_offset;
                    expected = id + 1;
                }
                Item::Skip {
                    resume_offset,
                    resume_id,
                } => {
                    out.push(format!("skip{}", resume_id - expected));
                    off = resume_offset;
                    expected = resume_id;
                }
                Item::Tail => {
                    out.push(format!("tail@{off}"));
                    break;
                }
            }
        }
        out
    }

    #[test]
    fn reads_consecutive_frames() {
        let mut bytes = frame(5, b"a");
        bytes.extend(frame(6, b"bb"));
        assert_eq!(items(&bytes, 5), ["r5", "r6"]);
    }

    #[test]
    fn flipped_byte_skips_one_record_and_resyncs() {
        let mut bytes = frame(0, &[7u8; 100]);
        let second = bytes.len();
        bytes.extend(frame(1, &[8u8; 100]));
        bytes.extend(frame(2, &[9u8; 100]));
        for at in [second, second + 3, second + 8, second + 15, second + 50] {
            let mut bad = bytes.clone();
            bad[at] ^= 0x01;
            assert_eq!(items(&bad, 0), ["r0", "skip1", "r2"], "flip at {at}");
        }
    }

    #[test]
    fn torn_tail_is_a_tail() {
        let mut bytes = frame(0, b"whole");
        let cut = bytes.len() as u64;
        let torn = frame(1, b"torn record");
        bytes.extend_from_slice(&torn[..torn.len() - 3]);
        assert_eq!(
            items(&bytes, 0),
            [String::from("r0"), format!("tail@{cut}")]
        );
    }

    #[test]
    fn frame_with_unexpected_id_is_not_accepted() {
        // a good frame at the wrong id (2 where 1 is expected) is not accepted …
        let mut bytes = frame(0, b"x");
        bytes.extend(frame(2, b"y"));
        assert_eq!(items(&bytes, 0), ["r0", "tail@17"]);
        // … but after bytes that could have held record 1, it is where reading resumes
        let mut bytes = frame(0, b"x");
        bytes.extend_from_slice(&[0xEE; 20]);
        bytes.extend(frame(2, b"y"));
        assert_eq!(items(&bytes, 0), ["r0", "skip1", "r2"]);
        // … and past the segment's id limit it is not even a place to resume
        let f = file_with(&bytes);
        let mut s = Scanner::new(&*f, bytes.len() as u64, 2);
        let off = frame(0, b"x").len() as u64;
        assert!(matches!(s.next(off, 1).unwrap(), Some(Item::Tail)));
        // ids that the skipped bytes could not have held are not believed either
        let mut far = frame(0, b"x");
        far.extend(frame(9, b"y"));
        assert_eq!(items(&far, 0), [String::from("r0"), format!("tail@{off}")]);
    }

    #[test]
    fn impossible_length_is_damage_not_an_allocation() {
        let mut bytes = frame(0, b"x");
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        bytes.extend_from_slice(&[0u8; 12]);
        bytes.extend(frame(2, b"z"));
        assert_eq!(items(&bytes, 0), ["r0", "skip1", "r2"]);
    }
}
