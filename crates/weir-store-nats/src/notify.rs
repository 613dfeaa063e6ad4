//! Notifications of every write, made by any collector on the same JetStream.
//!
//! One ordered push consumer (headers only, deliver new) on `<prefix>.e.>` sees every
//! record the stream stores, whoever wrote it, in stream order; each becomes an
//! [`Appended`] on a local broadcast channel. A record the server refused (a lost
//! compare-and-set, a duplicate id) is never delivered, so nothing is announced that was
//! not stored, and a record is delivered only once it is stored, so a subscriber that
//! hears of index *n* can read it. The ordered consumer recreates itself after a
//! connection loss from the last sequence it delivered, so no record is skipped.

use std::sync::Arc;

use async_nats::jetstream::consumer::{DeliverPolicy, ReplayPolicy, push};
use futures::StreamExt;
use tokio::sync::broadcast;
use weir_store::{Appended, StoreError};

use crate::js::{Js, unavailable};
use crate::names;
use crate::record::{H_PATH, RecordHead};

/// Starts the consumer (it exists when this returns) and the task feeding `tx`.
pub async fn start(
    js: &Js,
    tx: broadcast::Sender<Appended>,
) -> Result<tokio::task::JoinHandle<()>, StoreError> {
    let consumer = js
        .entries
        .create_consumer(push::OrderedConfig {
            deliver_subject: js.client.new_inbox(),
            filter_subject: format!("{}.e.>", js.prefix),
            headers_only: true,
            deliver_policy: DeliverPolicy::New,
            replay_policy: ReplayPolicy::Instant,
            ..Default::default()
        })
        .await
        .map_err(unavailable("creating the notification consumer"))?;
    let mut messages = consumer
        .messages()
        .await
        .map_err(unavailable("subscribing to notifications"))?;
    let prefix = js.prefix.clone();
    Ok(tokio::spawn(async move {
        while let Some(msg) = messages.next().await {
            let msg = match msg {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!("notification consumer: {e}");
                    continue;
                }
            };
            let Some(token) = names::token_of_subject(&prefix, msg.subject.as_str()) else {
                continue;
            };
            let path = if names::is_hashed(token) {
                msg.headers
                    .as_ref()
                    .and_then(|h| h.get(H_PATH))
                    .map(|v| v.as_str().to_string())
            } else {
                names::inline_path(token)
            };
            let (Some(path), Ok(head)) = (path, RecordHead::parse(0, msg.headers.as_ref())) else {
                tracing::warn!(subject = %msg.subject, "notification for an unreadable record");
                continue;
            };
            let _ = tx.send(Appended {
                path: Arc::from(path),
                next: head.end(),
                terminal_count: head.terminal,
            });
        }
        tracing::warn!("notification consumer ended: follows on this collector see no new writes");
    }))
}
