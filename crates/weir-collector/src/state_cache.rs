//! The stream-state cache in front of the store's registry (LogDog's Coordinator
//! cache, PROTOCOLS.md §5.6).
//!
//! An entry means "this stream is registered": once a path is cached, appends go
//! straight to the store. The cache is bounded (`state_cache.max_entries`, least
//! recently used evicted first) and entries expire `state_cache.expiry_secs` after they
//! were made, so a stream removed from the store behind the collector's back is
//! registered again at the latest then (and at once when an append answers
//! `NotRegistered`: the caller invalidates the entry and registers again).
//!
//! Concurrent callers for one stream share one registration (moka's `try_get_with`, the
//! analogue of LogDog's promise): the first caller's owner and descriptor are the ones
//! registered. Errors are not cached, so after a transient failure the next caller
//! tries again.
//!
//! Unlike LogDog, a registration answered `WrongSecret` is cached as "registered" too:
//! the stream exists, and whether a caller holds its secret is decided by the store on
//! every append and termination, never by this cache. A wrong first caller therefore
//! cannot lock the rightful owner out for the life of the entry.

use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;
use moka::notification::RemovalCause;
use weir_store::{RegisterOutcome, Registration, Store, StoreError};

use crate::config::StateCacheConfig;
use crate::events::{Events, fields, kind};
use crate::metrics::Metrics;

/// LogDog's default expiry, used when `expiry_secs` is 0.
const DEFAULT_EXPIRY: Duration = Duration::from_secs(600);

/// Registered streams, bounded and expiring. Cheap to clone.
#[derive(Clone)]
pub struct StateCache {
    cache: Cache<String, ()>,
    store: Arc<dyn Store>,
    metrics: Metrics,
    events: Arc<Events>,
}

impl StateCache {
    /// An empty cache registering through `store`; its size is reported in
    /// `weir_stream_state_cache_entries`, each stream it newly registers in `events`.
    pub fn new(
        store: Arc<dyn Store>,
        config: &StateCacheConfig,
        metrics: Metrics,
        events: Arc<Events>,
    ) -> Self {
        let gauge = metrics.clone();
        let expiry = match config.expiry_secs {
            0 => DEFAULT_EXPIRY,
            s => Duration::from_secs(s),
        };
        let cache = Cache::builder()
            .max_capacity(config.max_entries)
            .time_to_live(expiry)
            .eviction_listener(move |_path, _value, cause| {
                // A replaced entry is still one entry; every other cause removes one.
                if cause != RemovalCause::Replaced {
                    gauge.cached_streams_add(-1);
                }
            })
            .build();
        StateCache {
            cache,
            store,
            metrics,
            events,
        }
    }

    /// Makes sure the stream at `path` is registered, registering it with what `reg`
    /// builds when the cache does not know it. `reg` is called only by the caller that
    /// performs the registration.
    pub async fn ensure_registered(
        &self,
        path: &str,
        reg: impl FnOnce() -> Registration,
    ) -> Result<(), Arc<StoreError>> {
        // `get` (unlike `contains_key`) refreshes the entry's place in the LRU order,
        // so busy streams stay cached.
        if self.cache.get(path).await.is_some() {
            return Ok(());
        }
        let store = &self.store;
        let metrics = &self.metrics;
        let events = &self.events;
        self.cache
            .try_get_with_by_ref(path, async move {
                match store.register(reg()).await? {
                    RegisterOutcome::Created(_) => {
                        metrics.stream_registered();
                        events.add(
                            kind::STREAM_REGISTERED,
                            format!("stream {path} registered"),
                            fields([("stream", path.to_string())]),
                        );
                    }
                    RegisterOutcome::Existing(_) | RegisterOutcome::WrongSecret => {}
                }
                metrics.cached_streams_add(1);
                Ok::<(), StoreError>(())
            })
            .await
    }

    /// Forgets `path` (its stream vanished from the store).
    pub async fn invalidate(&self, path: &str) {
        self.cache.invalidate(path).await;
    }

    /// Whether `path` is cached now.
    pub fn contains(&self, path: &str) -> bool {
        self.cache.contains_key(path)
    }
}
