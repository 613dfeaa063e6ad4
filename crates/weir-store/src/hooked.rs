//! A [`Store`] in front of another that calls a [`Hook`] before each operation.
//!
//! For fault injection and ordering in tests (a store that fails on demand, an append
//! held at a gate) over the real backend, without writing out the whole trait each
//! time: the hook sees which operation is about to run and may delay it or fail it.

use std::sync::Arc;

use async_trait::async_trait;

use crate::{
    AppendOutcome, AppendRequest, Appended, Owner, PartitionUsage, ReadBatch, RegisterOutcome,
    Registration, RetentionReport, Store, StoreError, StreamState, TerminateOutcome,
};

/// The operation a [`HookedStore`] is about to pass on, with the stream path (or list
/// prefix) it concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation<'a> {
    Register(&'a str),
    Append(&'a str),
    Terminate(&'a str),
    Stream(&'a str),
    List(&'a str),
    Read(&'a str),
    IndexAtTime(&'a str),
    ExpireBefore,
    ExpireStream(&'a str),
    Partitions,
    Close,
}

/// Called before each operation of a [`HookedStore`]; an error is returned to the
/// caller instead of running the operation.
#[async_trait]
pub trait Hook: Send + Sync + 'static {
    /// Runs before `op`; may wait, or fail it.
    async fn before(&self, op: Operation<'_>) -> Result<(), StoreError>;
}

/// `inner` with `hook` called before every operation (see the module docs).
pub struct HookedStore<H> {
    inner: Arc<dyn Store>,
    hook: H,
}

impl<H: Hook> HookedStore<H> {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Store>, hook: H) -> Self {
        HookedStore { inner, hook }
    }

    /// The hook, to change its state from the test.
    pub fn hook(&self) -> &H {
        &self.hook
    }
}

#[async_trait]
impl<H: Hook> Store for HookedStore<H> {
    async fn register(&self, reg: Registration) -> Result<RegisterOutcome, StoreError> {
        self.hook.before(Operation::Register(&reg.path)).await?;
        self.inner.register(reg).await
    }
    async fn append(&self, req: AppendRequest) -> Result<AppendOutcome, StoreError> {
        self.hook.before(Operation::Append(&req.path)).await?;
        self.inner.append(req).await
    }
    async fn terminate(
        &self,
        path: &str,
        owner: &Owner,
        count: u64,
    ) -> Result<TerminateOutcome, StoreError> {
        self.hook.before(Operation::Terminate(path)).await?;
        self.inner.terminate(path, owner, count).await
    }
    async fn stream(&self, path: &str) -> Result<Option<StreamState>, StoreError> {
        self.hook.before(Operation::Stream(path)).await?;
        self.inner.stream(path).await
    }
    async fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StreamState>, StoreError> {
        self.hook.before(Operation::List(prefix)).await?;
        self.inner.list(prefix, after, limit).await
    }
    async fn read(
        &self,
        path: &str,
        from: u64,
        limit: usize,
    ) -> Result<Option<ReadBatch>, StoreError> {
        self.hook.before(Operation::Read(path)).await?;
        self.inner.read(path, from, limit).await
    }
    async fn index_at_time(&self, path: &str, time_ns: i64) -> Result<Option<u64>, StoreError> {
        self.hook.before(Operation::IndexAtTime(path)).await?;
        self.inner.index_at_time(path, time_ns).await
    }
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Appended> {
        self.inner.subscribe()
    }
    async fn expire_before(&self, cutoff_ns: i64) -> Result<RetentionReport, StoreError> {
        self.hook.before(Operation::ExpireBefore).await?;
        self.inner.expire_before(cutoff_ns).await
    }
    async fn expire_stream(&self, path: &str, low_water: u64) -> Result<Option<u64>, StoreError> {
        self.hook.before(Operation::ExpireStream(path)).await?;
        self.inner.expire_stream(path, low_water).await
    }
    async fn partitions(&self) -> Result<Vec<PartitionUsage>, StoreError> {
        self.hook.before(Operation::Partitions).await?;
        self.inner.partitions().await
    }
    async fn close(&self) -> Result<(), StoreError> {
        self.hook.before(Operation::Close).await?;
        self.inner.close().await
    }
}
