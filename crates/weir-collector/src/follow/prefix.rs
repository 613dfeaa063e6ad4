//! Following every stream under a prefix, new ones included. See the
//! [module docs](super).
//!
//! The follower keeps one [`Cursor`] per stream it has seen under the prefix (finished
//! streams included, so a rescan never starts them over); that map grows with the
//! number of streams under the prefix, and nothing else does.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::broadcast::error::RecvError;
use weir_store::Store;

use super::{CaughtUp, Cursor, FollowError, LIST_PAGE, Sink, catch_up};

/// Follows every stream whose path starts with `prefix`: existing ones from `from`,
/// new ones from 0. Runs until the reader goes away (`Ok`) or the store fails.
pub(crate) async fn run(
    store: Arc<dyn Store>,
    prefix: &str,
    from: u64,
    sink: Sink<'_>,
) -> Result<(), FollowError> {
    // Subscribed before the first listing: a stream written after it is announced.
    let mut notifications = store.subscribe();
    let mut cursors: HashMap<String, Cursor> = HashMap::new();
    if !rescan(&*store, prefix, &mut cursors, from, &sink).await? {
        return Ok(());
    }
    loop {
        match notifications.recv().await {
            Ok(a) if a.path.starts_with(prefix) => {
                let cursor = cursors
                    .entry(a.path.to_string())
                    // Not seen in a listing: created after the follow began.
                    .or_insert_with(|| Cursor::at(0));
                if cursor.done {
                    continue;
                }
                match catch_up(&*store, &a.path, cursor, &sink).await? {
                    CaughtUp::Yes | CaughtUp::Missing => {}
                    CaughtUp::ReaderGone => return Ok(()),
                }
            }
            Ok(_) => {}
            Err(RecvError::Lagged(_)) => {
                if !rescan(&*store, prefix, &mut cursors, 0, &sink).await? {
                    return Ok(());
                }
            }
            Err(RecvError::Closed) => {
                return Err(FollowError::Unavailable(
                    "the store stopped sending notifications".into(),
                ));
            }
        }
    }
}

/// Lists every stream under `prefix` and catches up each one not finished; streams not
/// seen before start at `start`. `false` when the reader has gone.
async fn rescan(
    store: &dyn Store,
    prefix: &str,
    cursors: &mut HashMap<String, Cursor>,
    start: u64,
    sink: &Sink<'_>,
) -> Result<bool, FollowError> {
    let mut after: Option<String> = None;
    loop {
        let page = store.list(prefix, after.as_deref(), LIST_PAGE).await?;
        let full = page.len() == LIST_PAGE;
        let last = page.last().map(|s| s.path.clone());
        for state in page {
            let cursor = cursors
                .entry(state.path.clone())
                .or_insert_with(|| Cursor::at(start));
            // Nothing new since the last read of it: skip the read.
            let nothing_new = cursor.announced
                && state.next_index <= cursor.next
                && state.terminal_count.is_none_or(|c| cursor.next < c);
            if cursor.done || nothing_new {
                continue;
            }
            if catch_up(store, &state.path, cursor, sink).await? == CaughtUp::ReaderGone {
                return Ok(false);
            }
        }
        if !full {
            return Ok(true);
        }
        after = last;
    }
}
