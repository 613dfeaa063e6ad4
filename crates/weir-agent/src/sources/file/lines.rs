//! Cutting a file's bytes into lines, with a bound on line length.
//!
//! A line is the bytes before a `\n` (the `\n` is not part of it; a `\r` before it is
//! kept: the bytes are the file's, exactly). A line longer than `max` bytes is cut into
//! pieces of exactly `max` bytes, measured from the line's start, and a last piece of
//! 1..=`max` bytes; a line of exactly `k × max` bytes is `k` pieces, never an empty one.
//!
//! The cut points depend only on the file's contents, never on how reads happened to be
//! sized: a piece is cut only once byte `max + 1` of the line is seen. That is what makes
//! a re-read after a crash number the same pieces the same way, including a re-read that
//! resumes at a checkpoint between two pieces of one long line (the next piece starts
//! there, exactly as before).
//!
//! Bytes after the last `\n` are *held* (at most `max` of them): they may be a line
//! still being written. `Splitter::take_held` hands them out when the file is released.

use bytes::Bytes;

/// One line, or one piece of a long line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Piece {
    pub bytes: Bytes,
    /// File offset just past this piece (past its `\n`, when it ended with one).
    pub end_offset: u64,
    /// Whether the piece was cut at the length bound rather than ended by `\n`.
    pub split: bool,
}

/// Line splitter of one file, tracking the file offset of what it was given.
#[derive(Debug)]
pub(crate) struct Splitter {
    max: usize,
    /// Bytes of the current line not yet handed out; at most `max`.
    held: Vec<u8>,
    /// File offset just past the last byte pushed.
    offset: u64,
}

impl Splitter {
    /// A splitter for bytes starting at file offset `offset` (the start of a line, or of
    /// a piece of one).
    pub fn new(max: usize, offset: u64) -> Self {
        Splitter {
            max: max.max(1),
            held: Vec::new(),
            offset,
        }
    }

    /// File offset just past the last byte pushed (held bytes included).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Starts over at `offset`, dropping held bytes (call [`take_held`](Self::take_held)
    /// first to keep them).
    pub fn reset(&mut self, offset: u64) {
        self.held.clear();
        self.offset = offset;
    }

    /// Splits the next bytes of the file, appending complete lines and pieces to `out`.
    pub fn push(&mut self, chunk: &Bytes, out: &mut Vec<Piece>) {
        let base = self.offset;
        let mut pos = 0;
        while pos < chunk.len() {
            match memchr::memchr(b'\n', &chunk[pos..]) {
                Some(i) => {
                    let end = pos + i;
                    let start = self.cut_pieces(chunk, pos, end, base, out);
                    let bytes = self.join_held(chunk, start, end);
                    out.push(Piece {
                        bytes,
                        end_offset: base + end as u64 + 1,
                        split: false,
                    });
                    pos = end + 1;
                }
                None => {
                    let start = self.cut_pieces(chunk, pos, chunk.len(), base, out);
                    self.held.extend_from_slice(&chunk[start..]);
                    pos = chunk.len();
                }
            }
        }
        self.offset = base + chunk.len() as u64;
    }

    /// While the line so far (`held` + `chunk[start..end]`) is longer than `max`, cuts a
    /// piece of `max` bytes off its front. Returns where the rest starts in `chunk`.
    fn cut_pieces(
        &mut self,
        chunk: &Bytes,
        mut start: usize,
        end: usize,
        base: u64,
        out: &mut Vec<Piece>,
    ) -> usize {
        while self.held.len() + (end - start) > self.max {
            let need = self.max - self.held.len();
            let bytes = self.join_held(chunk, start, start + need);
            start += need;
            out.push(Piece {
                bytes,
                end_offset: base + start as u64,
                split: true,
            });
        }
        start
    }

    /// `held` + `chunk[start..end]` as one buffer, emptying `held`; no copy when nothing
    /// is held.
    fn join_held(&mut self, chunk: &Bytes, start: usize, end: usize) -> Bytes {
        if self.held.is_empty() {
            chunk.slice(start..end)
        } else {
            let mut v = std::mem::take(&mut self.held);
            v.extend_from_slice(&chunk[start..end]);
            Bytes::from(v)
        }
    }

    /// The held bytes after the last `\n`, as a last line: for when the file is released
    /// and nothing more will be appended to it.
    pub fn take_held(&mut self) -> Option<Piece> {
        if self.held.is_empty() {
            return None;
        }
        Some(Piece {
            bytes: Bytes::from(std::mem::take(&mut self.held)),
            end_offset: self.offset,
            split: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_in_chunks(data: &[u8], max: usize, chunk: usize, from: u64) -> Vec<Piece> {
        let mut s = Splitter::new(max, from);
        let mut out = Vec::new();
        for c in data[from as usize..].chunks(chunk) {
            s.push(&Bytes::copy_from_slice(c), &mut out);
        }
        out.extend(s.take_held());
        out
    }

    #[test]
    fn lines_pieces_and_held_tail() {
        let data = b"ab\n\nabcdefghij\nabcdefgh\nxyz";
        let got = split_in_chunks(data, 4, 1000, 0);
        let texts: Vec<&[u8]> = got.iter().map(|p| &p.bytes[..]).collect();
        assert_eq!(
            texts,
            vec![
                &b"ab"[..],
                b"",
                b"abcd",
                b"efgh",
                b"ij",
                b"abcd",
                b"efgh",
                b"xyz"
            ]
        );
        let splits: Vec<bool> = got.iter().map(|p| p.split).collect();
        assert_eq!(
            splits,
            vec![false, false, true, true, false, true, false, false]
        );
        let ends: Vec<u64> = got.iter().map(|p| p.end_offset).collect();
        assert_eq!(ends, vec![3, 4, 8, 12, 15, 19, 24, 27]);
    }

    /// The property re-reads rely on: the same pieces whatever the read sizes, and a
    /// restart at any piece boundary continues with exactly the pieces that followed it.
    #[test]
    fn pieces_do_not_depend_on_read_sizes_or_resume_point() {
        let mut data = Vec::new();
        for i in 0..60usize {
            data.extend(std::iter::repeat_n(b'a' + (i % 26) as u8, i));
            data.push(b'\n');
        }
        data.extend_from_slice(b"tail-without-newline");
        for max in [1, 2, 3, 7, 16, 100] {
            let whole = split_in_chunks(&data, max, data.len(), 0);
            for chunk in [1, 2, 5, 13, 64] {
                assert_eq!(
                    split_in_chunks(&data, max, chunk, 0),
                    whole,
                    "max {max} chunk {chunk}"
                );
            }
            for (i, p) in whole.iter().enumerate() {
                let resumed = split_in_chunks(&data, max, 3, p.end_offset);
                assert_eq!(resumed, whole[i + 1..], "max {max} resume after piece {i}");
            }
        }
    }
}
