//! Read buffers that come back: a small pool of [`CHUNK_BYTES`] buffers the source reads
//! into, each handed out as the [`Bytes`] its lines are sliced from and returned to the
//! pool when the last of those lines is dropped.
//!
//! Why not a fresh `BytesMut` per read: the lines of a read are still in flight (being
//! batched, encoded, sent) when the next read comes, so each read allocated a new
//! buffer, zeroed it, and the allocator gave the pages back and faulted them in again:
//! under a steady load, zeroing and page faults were about 5 % of the agent's CPU. A
//! pooled buffer was zeroed once, when it was made, and its pages stay.
//!
//! A short read (under [`COPY_BELOW`] bytes, the common case for a quiet file) is copied
//! into a buffer of its own size instead, so a few lines never pin a whole chunk while
//! they wait for an acknowledgement.

use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;

/// Bytes read from a file at a time (and at most per file per round of the source).
pub(crate) const CHUNK_BYTES: usize = 128 * 1024;
/// Reads shorter than this are copied out, and their buffer read into again.
pub(crate) const COPY_BELOW: usize = CHUNK_BYTES / 8;
/// Most idle buffers the pool keeps (4 MiB); more are freed when they come back.
const MAX_IDLE: usize = 32;

/// The idle buffers of one file source.
#[derive(Debug, Clone, Default)]
pub(crate) struct ReadBuffers {
    idle: Arc<Mutex<Vec<Box<[u8]>>>>,
}

impl ReadBuffers {
    /// An idle buffer, or a new zeroed one.
    pub fn take(&self) -> Box<[u8]> {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        idle.unwrap_or_else(|| vec![0u8; CHUNK_BYTES].into_boxed_slice())
    }

    /// Gives `buf` back (freed when the pool already keeps enough).
    pub fn give_back(&self, buf: Box<[u8]>) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < MAX_IDLE {
            idle.push(buf);
        }
    }

    /// The first `len` bytes of `buf` as shared bytes. A long read keeps `buf` (it
    /// comes back when the last slice is dropped); a short one is copied out and `buf`
    /// given back at once.
    pub fn freeze(&self, buf: Box<[u8]>, len: usize) -> Bytes {
        let len = len.min(buf.len());
        if len < COPY_BELOW {
            let bytes = Bytes::copy_from_slice(&buf[..len]);
            self.give_back(buf);
            return bytes;
        }
        Bytes::from_owner(Filled {
            buf: Some(buf),
            len,
            pool: self.clone(),
        })
    }

    /// Idle buffers now (for tests).
    #[cfg(test)]
    fn idle(&self) -> usize {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// A pooled buffer with `len` bytes read into it: the owner behind a read's [`Bytes`].
struct Filled {
    /// Always `Some` until dropped.
    buf: Option<Box<[u8]>>,
    len: usize,
    pool: ReadBuffers,
}

impl AsRef<[u8]> for Filled {
    fn as_ref(&self) -> &[u8] {
        self.buf.as_deref().map_or(&[], |b| &b[..self.len])
    }
}

impl Drop for Filled {
    fn drop(&mut self) {
        if let Some(buf) = self.buf.take() {
            self.pool.give_back(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_comes_back_when_its_last_slice_is_dropped() {
        let pool = ReadBuffers::default();
        let mut buf = pool.take();
        buf[..5].copy_from_slice(b"ab\ncd");
        let ptr = buf.as_ptr();
        let bytes = pool.freeze(buf, COPY_BELOW + 1);
        let first = bytes.slice(0..2);
        drop(bytes);
        assert_eq!(pool.idle(), 0, "a slice still uses it");
        assert_eq!(&first[..], b"ab");
        drop(first);
        assert_eq!(pool.idle(), 1);
        let again = pool.take();
        assert_eq!(again.as_ptr(), ptr, "the same buffer is read into again");
    }

    #[test]
    fn a_short_read_is_copied_and_its_buffer_kept() {
        let pool = ReadBuffers::default();
        let mut buf = pool.take();
        buf[..3].copy_from_slice(b"x\ny");
        let bytes = pool.freeze(buf, 3);
        assert_eq!(&bytes[..], b"x\ny");
        assert_eq!(pool.idle(), 1, "the buffer is free while the copy lives");
    }

    #[test]
    fn the_pool_keeps_a_bounded_number() {
        let pool = ReadBuffers::default();
        let many: Vec<Bytes> = (0..MAX_IDLE + 5)
            .map(|_| pool.freeze(pool.take(), CHUNK_BYTES))
            .collect();
        drop(many);
        assert_eq!(pool.idle(), MAX_IDLE);
    }
}
