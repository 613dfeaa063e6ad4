//! [`StreamEventStore`]: the event queue's [`EventStore`] on the collector's own
//! [`Store`], as the collector-owned stream [`EVENTS_PATH`].
//!
//! Each event is one entry: a Loggregator `Event` envelope ([`super::codec`]), numbered
//! by the store like any collector-owned stream. Going through the `Store` trait (not a
//! backend's private keyspace) means every backend keeps events as it keeps streams,
//! durably and with the same retention. After an event is stored it is published to the
//! live hub, so egress subscribers selecting events (source id `weir`) see it.
//!
//! Purging moves the stream's low-water mark ([`Store::expire_stream`]) to the first
//! entry *ingested* at or after the cutoff; ingest follows the event's own time within
//! moments, except for `event_queue_paused`, which is written once the store is back.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use weir_core::Descriptor;
use weir_core::event_queue::{Event, EventStore, EventStoreError};
use weir_store::{AppendOutcome, AppendRequest, Owner, RegisterOutcome, Registration, Store};

use super::EVENTS_PATH;
use super::codec::to_envelope;
use crate::hub::Hub;

/// Content type of the events stream.
pub const EVENTS_CONTENT_TYPE: &str = "application/x-loggregator-v2-envelope; kind=event";

/// The event store on the collector's [`Store`]. See the module docs.
pub struct StreamEventStore {
    store: Arc<dyn Store>,
    hub: Option<Hub>,
    registered: AtomicBool,
}

impl StreamEventStore {
    /// Events kept in `store`; published to `hub` once stored, when given.
    pub fn new(store: Arc<dyn Store>, hub: Option<Hub>) -> Self {
        StreamEventStore {
            store,
            hub,
            registered: AtomicBool::new(false),
        }
    }

    /// Registers [`EVENTS_PATH`] as a collector-owned stream (once; again after the
    /// store forgot it).
    pub async fn ensure_registered(&self) -> Result<(), EventStoreError> {
        if self.registered.load(Ordering::Acquire) {
            return Ok(());
        }
        let reg = Registration {
            path: EVENTS_PATH.to_string(),
            owner: Owner::Collector,
            descriptor: Descriptor {
                content_type: EVENTS_CONTENT_TYPE.to_string(),
                tags: Default::default(),
                created_ns: weir_core::now_ns(),
            },
        };
        match self.store.register(reg).await.map_err(store_error)? {
            RegisterOutcome::Created(_) | RegisterOutcome::Existing(_) => {
                self.registered.store(true, Ordering::Release);
                Ok(())
            }
            RegisterOutcome::WrongSecret => Err(EventStoreError(format!(
                "{EVENTS_PATH} is registered by a producer, not the collector"
            ))),
        }
    }
}

fn store_error(e: weir_store::StoreError) -> EventStoreError {
    EventStoreError(e.to_string())
}

#[async_trait::async_trait]
impl EventStore for StreamEventStore {
    async fn put(&self, events: Vec<Event>) -> Result<(), EventStoreError> {
        self.ensure_registered().await?;
        let envelopes: Vec<_> = events.iter().map(to_envelope).collect();
        let live: Vec<_> = match &self.hub {
            Some(hub) if hub.has_subscribers() => envelopes.iter().cloned().map(Arc::new).collect(),
            _ => Vec::new(),
        };
        let req = AppendRequest {
            path: EVENTS_PATH.to_string(),
            owner: Owner::Collector,
            first_index: None,
            entries: envelopes,
        };
        match self.store.append(req).await.map_err(store_error)? {
            AppendOutcome::Stored { .. } => {
                if let Some(hub) = self.hub.as_ref().filter(|_| !live.is_empty()) {
                    hub.publish(&live);
                }
                Ok(())
            }
            AppendOutcome::NotRegistered => {
                // Registered again by the next write.
                self.registered.store(false, Ordering::Release);
                Err(EventStoreError(format!("{EVENTS_PATH} is not registered")))
            }
            other => Err(EventStoreError(format!(
                "the store refused events: {other:?}"
            ))),
        }
    }

    async fn healthy(&self) -> bool {
        self.ensure_registered().await.is_ok()
            && self
                .store
                .stream(EVENTS_PATH)
                .await
                .is_ok_and(|s| s.is_some())
    }

    async fn purge_before(&self, cutoff_ns: i64) -> Result<u64, EventStoreError> {
        let Some(index) = self
            .store
            .index_at_time(EVENTS_PATH, cutoff_ns)
            .await
            .map_err(store_error)?
        else {
            return Ok(0);
        };
        let expired = self
            .store
            .expire_stream(EVENTS_PATH, index)
            .await
            .map_err(store_error)?;
        Ok(expired.unwrap_or(0))
    }
}
