//! The open-or-closed state every backend keeps: its engine until
//! [`Store::close`](crate::Store::close), then [`StoreError::Closed`] for every call.

use std::sync::{Arc, PoisonError, RwLock};

use crate::StoreError;

/// A backend's engine while the store is open.
#[derive(Debug)]
pub struct OpenHandle<T> {
    inner: RwLock<Option<Arc<T>>>,
}

impl<T> OpenHandle<T> {
    /// An open store around `engine`.
    pub fn new(engine: T) -> Self {
        OpenHandle {
            inner: RwLock::new(Some(Arc::new(engine))),
        }
    }

    /// The engine, or [`StoreError::Closed`] once the store was closed.
    pub fn get(&self) -> Result<Arc<T>, StoreError> {
        self.inner
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or(StoreError::Closed)
    }

    /// Marks the store closed and hands out the engine to shut down; `None` when it was
    /// closed already. Calls in flight keep their own reference until they finish.
    pub fn close(&self) -> Option<Arc<T>> {
        self.inner
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_until_closed_once() {
        let h = OpenHandle::new(7u8);
        assert_eq!(*h.get().unwrap(), 7);
        assert_eq!(h.close().map(|e| *e), Some(7));
        assert!(matches!(h.get(), Err(StoreError::Closed)));
        assert!(h.close().is_none());
    }
}
