//! weir's [`Store`](weir_store::Store) on NATS JetStream: any number of stateless
//! collectors (`weir serve --store nats://…`) over one replicated store.
//!
//! # What is where
//!
//! - **Registry**: KV bucket `<prefix>_registry`, key = the path's token (see
//!   [`names`]), value = JSON ([`record::RegRecord`]): owner (SHA-256 of the secret, or
//!   collector-owned), descriptor, registration time, terminal count, an
//!   `expire_stream` floor, and (with `max_age`) a memory of the next index.
//!   Registration is a KV *create* (compare-and-set on "no revision"): two collectors
//!   racing to register a stream agree on one winner; the loser reads the winner's
//!   record and answers `Existing` or `WrongSecret`. Later changes (termination,
//!   `expire_stream`) are KV *updates* with the revision read.
//! - **Entries**: JetStream stream `<prefix>_entries`, one subject `<prefix>.e.<token>`
//!   per weir stream. Each append that stores something publishes one *record* (one
//!   message, or several when the new part exceeds the server's max payload) holding
//!   only the new entries; headers say `Weir-First` (index of its first entry),
//!   `Weir-Count`, `Weir-Ingest` (ingest time, never below the previous record's) and,
//!   once the stream is terminated, `Weir-Terminal`. Termination writes a marker record
//!   (count 0) too, so the subject alone says how far a stream is written and whether
//!   it is complete. See [`record`] for the format.
//! - **Meta**: KV bucket `<prefix>_meta`: `expired` (the retention cut-off, ns) and one
//!   key `p.<start_ns>` per logical time partition that received records.
//!
//! # Exactly once without trusting the dedupe window
//!
//! The 2.9 server has no atomic batch publish, deduplicates message ids only inside a
//! window (2 minutes by default, shorter than an agent's outage) and never compares
//! content. So an append does not rest on the message id:
//!
//! 1. read the subject's last record (`STREAM.MSG.GET` `last_by_subj`, at the leader):
//!    its stream sequence *s*, next index and terminal count;
//! 2. decide as the fjall backend does: terminated, gap, or an overlap with what is
//!    stored — which is read back and compared payload by payload (a difference is a
//!    `Conflict` and nothing is written; equal entries count as duplicates);
//! 3. publish the new part with `Nats-Expected-Last-Subject-Sequence: s` (a
//!    compare-and-set on the subject) and `Nats-Msg-Id: <stream id>:<first index>`;
//! 4. if the server answers "wrong last sequence", or "duplicate id", or nothing at all
//!    (timeout, connection lost), go back to 1: the record that got there first, ours
//!    or another collector's, is now part of the overlap and step 2 tells a duplicate
//!    from a conflict.
//!
//! The message id only spares a resend inside the window a second record; correctness
//! comes from the compare-and-set, which holds for any delay.
//!
//! # How an index is found
//!
//! JetStream numbers messages per stream, not per subject, and 2.9 cannot read "the
//! *n*-th message of a subject". Records on a subject are in index order (the
//! compare-and-set makes them tile `0..next` with no gap or overlap), and
//! `STREAM.MSG.GET` with `next_by_subj` gives the first record of a subject at or after
//! any stream sequence. Reading index *i* takes the subject's first record
//! (`next_by_subj` from 1) when it holds *i* — a read from the start, the common case —
//! else a binary search over the stream sequences after it, up to `s_last`, for the
//! first record whose `first + count > i` — O(log n) gets — and then `next_by_subj`
//! from there on. A read in the last record takes that record directly.
//! `index_at_time` is the same search on `Weir-Ingest`. All these gets go to the
//! stream leader, so they see every acknowledged write.
//!
//! # Notifications and follow
//!
//! [`Store::subscribe`](weir_store::Store::subscribe) is fed by one ordered push
//! consumer (headers only) on `<prefix>.e.>`: every collector hears of every record any
//! collector stored, only once it is stored. See [`notify`].
//!
//! # Retention (departures from the fjall backend)
//!
//! - Time partitions are logical: `expire_before(cutoff)` records the cut-off in meta,
//!   forgets the partitions, and then purges, per stream, the records ingested before
//!   it — always keeping a stream's last record, which carries its next index. Low-water
//!   marks are derived on read from the first record ingested at or after the cut-off.
//! - Settings changed since the assets were created (`replicas`, `max_age_secs`, the
//!   dedupe window) are applied to them when a collector starts (`js::apply_settings`).
//! - `max_age_secs` sets the stream's `max_age`: JetStream then removes records by
//!   server time on its own, including a stream's last record; the registry then keeps
//!   the next index and terminal count (updated after every append), so numbering never
//!   restarts.
//! - `partitions()` reports a size of 0 bytes per partition (JetStream does not account
//!   bytes per time range); cap the size with the stream's limits instead.
//! - `expire_stream` raises a floor in the registry; the bytes go with their partition.
//!
//! # Sizes
//!
//! An append's new part is split into records below the server's `max_payload` (1 MiB
//! by default). A single entry must fit one record: run `nats-server` with a
//! `max_payload` above the collector's `[limits] max_payload_bytes` plus envelope
//! overhead (for example `max_payload: 8MB` in its config file), otherwise such an
//! append fails as unavailable.
//!
//! # Failures
//!
//! Any NATS error is [`StoreError::Unavailable`](weir_store::StoreError::Unavailable)
//! (producers retry). With `replicas = 3` on a 3-node cluster, losing one node leaves a
//! quorum: writes continue after the leader moves, and the node catches up when it
//! returns. A collector holds no state, so losing one loses nothing acknowledged; its
//! producers resend to another, and resends are duplicates.

pub mod config;
mod js;
pub mod names;
mod notify;
pub mod record;
mod store;
#[cfg(feature = "test-support")]
pub mod test_support;

pub use config::{ConfigError, NatsConfig};
pub use store::NatsStore;
