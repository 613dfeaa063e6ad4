//! One open file being read: its descriptor, identity, read offset and held bytes.
//!
//! Reads are positional (`pread` at the splitter's offset), so the descriptor's own
//! offset never matters and a copytruncate restart is just a new offset. The descriptor
//! is what keeps a rotated or deleted file readable: the source follows a file by its
//! open descriptor, never by re-opening its name.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

use super::identity::{FileIdentity, Fingerprint};
use super::lines::{Piece, Splitter};
use super::read_buffers::ReadBuffers;

/// A file being read.
#[derive(Debug)]
pub(crate) struct TailedFile {
    pub file: File,
    pub identity: FileIdentity,
    pub splitter: Splitter,
    /// Read to the end, then release: its successor has data, or it was deleted.
    pub draining: bool,
    /// Found shorter than what was read, or with new first bytes: read again from 0.
    pub replaced: bool,
    /// Size at the last poll.
    pub last_size: u64,
    /// Check that the file is still the one being read before the next read: set when
    /// a read found its end, and when the source waited on back-pressure.
    pub recheck: bool,
}

impl TailedFile {
    /// Opens `path` and takes its identity.
    pub fn open(path: &Path, fingerprint_bytes: usize, max_line: usize) -> io::Result<Self> {
        let file = File::open(path)?;
        let identity = FileIdentity::of(&file, fingerprint_bytes)?;
        Ok(Self::new(file, identity, 0, max_line))
    }

    /// A file to read from `offset` (the start of a line or of a piece of one).
    pub fn new(file: File, identity: FileIdentity, offset: u64, max_line: usize) -> Self {
        TailedFile {
            file,
            identity,
            splitter: Splitter::new(max_line, offset),
            draining: false,
            replaced: false,
            last_size: 0,
            recheck: false,
        }
    }

    /// Offset of the next byte to read.
    pub fn offset(&self) -> u64 {
        self.splitter.offset()
    }

    /// `(dev, inode)`.
    pub fn key(&self) -> (u64, u64) {
        self.identity.inode_key()
    }

    /// Reads the next chunk and splits it into `out`; returns the bytes read (0 at the
    /// end of the file).
    ///
    /// A read after a pause (the previous read found the end, or the source waited on
    /// back-pressure) first checks that the file is still the one being read: not
    /// shorter than the offset, same first bytes. So a file truncated and written again
    /// meanwhile is restarted at 0 rather than read on from the old offset in the middle
    /// of its new content. Polls check that too; this closes the gap between two polls.
    pub fn read_chunk(&mut self, buffers: &ReadBuffers, out: &mut Vec<Piece>) -> io::Result<usize> {
        if self.recheck && !self.replaced {
            let size = self.file.metadata()?.len();
            let fp = self.identity.fingerprint;
            if size < self.offset() || (fp.bytes > 0 && !fp.matches(&self.file)?) {
                self.replaced = true;
                return Ok(0);
            }
        }
        let mut buf = buffers.take();
        let n = loop {
            match self.file.read_at(&mut buf, self.offset()) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    buffers.give_back(buf);
                    return Err(e);
                }
            }
        };
        self.recheck = n == 0;
        if n == 0 {
            buffers.give_back(buf);
        } else {
            let chunk = buffers.freeze(buf, n);
            self.splitter.push(&chunk, out);
        }
        Ok(n)
    }

    /// Stats the open file: flags it replaced when it shrank below the read offset or
    /// its first bytes changed, flags it draining when it was deleted, and lengthens its
    /// fingerprint while it is shorter than `fingerprint_bytes`. Returns whether the
    /// identity changed (a longer fingerprint).
    pub fn check(&mut self, fingerprint_bytes: usize) -> io::Result<bool> {
        let meta = self.file.metadata()?;
        let size = meta.len();
        if meta.nlink() == 0 {
            self.draining = true;
        }
        let grew_or_shrank = size != self.last_size;
        self.last_size = size;
        if size < self.offset() {
            self.replaced = true;
            return Ok(false);
        }
        if !grew_or_shrank {
            return Ok(false);
        }
        let fp = self.identity.fingerprint;
        if fp.bytes > 0 && !fp.matches(&self.file)? {
            self.replaced = true;
            return Ok(false);
        }
        if (fp.bytes as usize) < fingerprint_bytes && size > u64::from(fp.bytes) {
            self.identity.fingerprint = Fingerprint::of(&self.file, fingerprint_bytes)?;
            return Ok(true);
        }
        Ok(false)
    }

    /// After [`replaced`](Self::replaced): start over at offset 0 with a new identity.
    /// Held bytes are dropped; take them first.
    pub fn restart(&mut self, fingerprint_bytes: usize) -> io::Result<()> {
        self.identity = FileIdentity::of(&self.file, fingerprint_bytes)?;
        self.splitter.reset(0);
        self.replaced = false;
        self.last_size = 0;
        self.recheck = false;
        Ok(())
    }
}

/// Where `read_from = "end"` starts in `file`: just after its last `\n`, so a line
/// being written is read whole. When no `\n` is among the last `window` bytes, the
/// start of a file no longer than that, else its end.
pub(crate) fn end_offset(file: &File, window: usize) -> io::Result<u64> {
    let size = file.metadata()?.len();
    let take = size.min(window as u64);
    let from = size - take;
    let mut buf = vec![0u8; take as usize];
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], from + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(filled);
    Ok(match memchr::memrchr(b'\n', &buf) {
        Some(i) => from + i as u64 + 1,
        None if from == 0 => 0,
        None => size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_offset_is_after_the_last_complete_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        for (content, want) in [(&b""[..], 0), (b"abc", 0), (b"a\nb\n", 4), (b"a\nbc", 2)] {
            std::fs::write(&p, content).unwrap();
            assert_eq!(end_offset(&File::open(&p).unwrap(), 16).unwrap(), want);
        }
        std::fs::write(&p, [b'x'; 40]).unwrap();
        assert_eq!(end_offset(&File::open(&p).unwrap(), 16).unwrap(), 40);
    }
}
