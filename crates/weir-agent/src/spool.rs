//! The spool: a durable on-disk queue between the batcher and the flushers.
