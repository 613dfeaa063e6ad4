//! Which files are taken: a file is read once, under the stream of the path where it
//! was first seen.
//!
//! When `include` also matches rotated names (`app.log*`), `app.log` renamed to
//! `app.log.1` is still being drained by the stream of `app.log`; it must not become the
//! first file of a second stream `app.log.1`. So the registry knows every file a stream
//! holds open (its *claims*; an open file's inode cannot be reused, so `(dev, inode)` is
//! enough) and the last `RELEASED_MEMORY` (1024) files let go, with their size when released.
//! A released file counts as taken while it has the same inode, the same first bytes and
//! the same size: a rotated file no longer grows, while a new file that happens to get
//! its inode number does (and is read once it differs).
//!
//! The released memory is not persisted: after a restart, a rotated file matching the
//! globs is read as a new stream. Exclude rotated names (`exclude = ["*.1"]`).

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::sync::Arc;

use super::identity::FileIdentity;

/// How many released files are remembered.
pub(crate) const RELEASED_MEMORY: usize = 1024;

#[derive(Debug, Default)]
pub(crate) struct Registry {
    claims: HashMap<(u64, u64), Arc<str>>,
    released: VecDeque<(FileIdentity, u64)>,
}

impl Registry {
    /// `stream` holds the file `key` open.
    pub fn claim(&mut self, key: (u64, u64), stream: &Arc<str>) {
        self.claims.insert(key, stream.clone());
    }

    /// The file is let go after being read to its end at `size` bytes.
    pub fn release(&mut self, identity: FileIdentity, size: u64) {
        self.claims.remove(&identity.inode_key());
        if self.released.len() >= RELEASED_MEMORY {
            self.released.pop_front();
        }
        self.released.push_back((identity, size));
    }

    /// Whether the open `file` (with `identity`) is held by a stream, or is a file
    /// released earlier.
    pub fn is_taken(&self, file: &File, identity: &FileIdentity) -> bool {
        let key = identity.inode_key();
        if self.claims.contains_key(&key) {
            return true;
        }
        let Ok(size) = file.metadata().map(|m| m.len()) else {
            return false;
        };
        self.released.iter().any(|(r, rsize)| {
            r.inode_key() == key && *rsize == size && r.fingerprint.matches(file).unwrap_or(false)
        })
    }
}
