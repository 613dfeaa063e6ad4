//! Following one stream: catch up, then catch up again on every notification for it
//! (or on a lag), until it is complete. See the [module docs](super).

use std::sync::Arc;

use tokio::sync::broadcast::error::RecvError;
use weir_store::Store;

use super::{CaughtUp, Cursor, FollowError, Sink, catch_up};

/// Follows `path` from `from`; `Ok` when the stream is complete or the reader has gone.
pub(crate) async fn run(
    store: Arc<dyn Store>,
    path: &str,
    from: u64,
    sink: Sink<'_>,
) -> Result<(), FollowError> {
    // Subscribed before the first read: see the module docs.
    let mut notifications = store.subscribe();
    let mut cursor = Cursor::at(from);
    loop {
        match catch_up(&*store, path, &mut cursor, &sink).await? {
            CaughtUp::Yes => {}
            CaughtUp::ReaderGone => return Ok(()),
            CaughtUp::Missing => return Err(FollowError::NotFound(path.to_string())),
        }
        if cursor.done {
            return Ok(());
        }
        // Wait until the stream may have more.
        loop {
            match notifications.recv().await {
                Ok(a) if &*a.path == path => break,
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => break,
                Err(RecvError::Closed) => {
                    return Err(FollowError::Unavailable(
                        "the store stopped sending notifications".into(),
                    ));
                }
            }
        }
    }
}
