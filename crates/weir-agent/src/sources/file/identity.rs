//! How a file is told apart from its rotated successor: more than its name.
//!
//! A name is not an identity: after `mv app.log app.log.1; touch app.log` the name
//! `app.log` means another file. The device and inode numbers are better (a rename keeps
//! them), but not enough either: once a file is deleted, its inode number is free, and
//! the file system may give it to the next file created — ext4 does so at once. So a
//! [`FileIdentity`] also holds a [`Fingerprint`]: a checksum of the file's first
//! `fingerprint_bytes` bytes (fewer while the file is shorter; the count is recorded).
//! Two identities denote the same file when device and inode are equal and the candidate
//! file still begins with the fingerprinted bytes.
//!
//! Limits, worth knowing: a file shorter than `fingerprint_bytes` has a weaker
//! fingerprint (an empty file's fingerprint matches any file on the same inode), and a
//! new file that reuses an inode *and* begins with the same bytes is taken for the old
//! one. Fingerprinting more bytes narrows the second case.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};

use serde::{Deserialize, Serialize};

/// A checksum (xxh3-64) of the first `bytes` bytes of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Fingerprint {
    /// How many leading bytes were checksummed (the file's size when it was shorter).
    pub bytes: u32,
    /// xxh3-64 of those bytes.
    pub hash: u64,
}

impl Fingerprint {
    /// Fingerprint of nothing (an empty file).
    pub const EMPTY: Fingerprint = Fingerprint {
        bytes: 0,
        hash: 0x2d06_8005_38d3_94c2, // xxh3_64 of the empty input
    };

    /// Checksums the first `limit` bytes of `file` (all of it when shorter).
    pub fn of(file: &File, limit: usize) -> io::Result<Fingerprint> {
        let head = read_head(file, limit)?;
        Ok(Fingerprint {
            bytes: u32::try_from(head.len()).unwrap_or(u32::MAX),
            hash: xxhash_rust::xxh3::xxh3_64(&head),
        })
    }

    /// Whether `file` still begins with the bytes this fingerprint was taken of.
    pub fn matches(&self, file: &File) -> io::Result<bool> {
        let head = read_head(file, self.bytes as usize)?;
        Ok(head.len() == self.bytes as usize && xxhash_rust::xxh3::xxh3_64(&head) == self.hash)
    }
}

/// Reads up to `limit` bytes from the start of `file` (positional: the file's own read
/// offset is untouched).
fn read_head(file: &File, limit: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; limit];
    let mut filled = 0;
    while filled < limit {
        match file.read_at(&mut buf[filled..], filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(filled);
    Ok(buf)
}

/// Which file a stream was reading: device and inode numbers plus a [`Fingerprint`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FileIdentity {
    /// Device number (`st_dev`).
    pub dev: u64,
    /// Inode number (`st_ino`).
    pub inode: u64,
    /// Checksum of the file's first bytes.
    pub fingerprint: Fingerprint,
}

impl FileIdentity {
    /// The identity of an open file, fingerprinting up to `limit` bytes.
    pub fn of(file: &File, limit: usize) -> io::Result<FileIdentity> {
        let meta = file.metadata()?;
        Ok(FileIdentity {
            dev: meta.dev(),
            inode: meta.ino(),
            fingerprint: Fingerprint::of(file, limit)?,
        })
    }

    /// `(dev, inode)`: what the kernel says; equal for a file and any later file that
    /// reuses its inode number.
    pub fn inode_key(&self) -> (u64, u64) {
        (self.dev, self.inode)
    }

    /// Whether the open `file` is this identity's file: same device and inode, and it
    /// still begins with the fingerprinted bytes.
    pub fn matches(&self, file: &File) -> io::Result<bool> {
        let meta = file.metadata()?;
        if (meta.dev(), meta.ino()) != self.inode_key() {
            return Ok(false);
        }
        self.fingerprint.matches(file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn empty_constant_is_the_hash_of_nothing() {
        assert_eq!(Fingerprint::EMPTY.hash, xxhash_rust::xxh3::xxh3_64(b""));
    }

    #[test]
    fn fingerprint_grows_with_the_file_and_still_matches() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut w = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        w.write_all(b"0123456789").unwrap();
        let r = File::open(&path).unwrap();
        let small = Fingerprint::of(&r, 256).unwrap();
        assert_eq!(small.bytes, 10);
        w.write_all(&[b'x'; 500]).unwrap();
        assert!(
            small.matches(&r).unwrap(),
            "an appended file is the same file"
        );
        let full = Fingerprint::of(&r, 256).unwrap();
        assert_eq!(full.bytes, 256);
        assert!(full.matches(&r).unwrap());
        // Same inode, new content: a copytruncate, or a reused inode.
        w.set_len(0).unwrap();
        assert!(!full.matches(&r).unwrap());
        w.write_all(b"9876543210").unwrap();
        let id = FileIdentity::of(&r, 256).unwrap();
        assert!(id.matches(&r).unwrap());
    }
}
