//! The conformance suite: the contracts of [`Store`] as tests any backend can run.
//!
//! A backend provides a [`Backend`]: a persistent place that can be opened, closed and
//! opened again, and a clock the suite can set. Its test file then expands
//! [`conformance_tests!`](crate::conformance_tests) with an expression that makes a
//! fresh backend, which yields one named `#[tokio::test]` per case:
//!
//! ```ignore
//! weir_store::conformance_tests!(weir_store::conformance::FjallBackend::new);
//! ```
//!
//! Each case is also a public `async fn(&dyn Backend)` here, for backends that need a
//! different harness. Cases panic (assert) on the first broken contract, naming it.

use std::future::Future;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use weir_core::{Descriptor, Envelope};
use weir_proto::lv2::{Log, envelope::Message as Body};

use crate::{
    AppendOutcome, AppendRequest, Appended, FjallConfig, FjallStore, FsyncPolicy, Owner,
    RegisterOutcome, Registration, Store, StoreError, StoredEntry, StreamState, TerminateOutcome,
};

/// A boxed, sendable future (what [`Backend::open`] returns).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A store backend under test: one persistent place, opened as often as the suite
/// likes, and a clock the suite controls.
pub trait Backend: Send + Sync {
    /// Opens the store on this backend's place. The first call creates it; a later call,
    /// after the previous store was closed and dropped, must see everything it held
    /// (that is how the suite checks restarts). Panics when the store cannot open.
    fn open(&self) -> BoxFuture<'_, Arc<dyn Store>>;

    /// Sets the ingest clock of the stores this backend opened or will open, Unix ns.
    fn set_time(&self, ns: i64);

    /// The width of a retention partition, ns: entries ingested in
    /// `[k·width, (k+1)·width)` are dropped together by `expire_before((k+1)·width)`.
    fn partition_ns(&self) -> i64;
}

/// One test per conformance case, each with a fresh backend from `$make` (an expression
/// callable with no arguments, returning a [`Backend`]).
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::conformance_tests!(@cases $make;
            resend_is_a_duplicate,
            partial_overlap_stores_only_the_new_part,
            conflict_writes_nothing,
            register_existing_keeps_the_first_descriptor,
            wrong_secret_is_refused,
            collector_and_producer_streams_do_not_mix,
            gap_is_refused,
            unregistered_stream_is_refused,
            appends_at_or_past_the_terminal_count_are_refused,
            terminate_zero_is_an_empty_complete_stream,
            terminate_is_idempotent_and_refuses_other_counts,
            terminate_below_written_is_refused,
            sequencer_numbers_and_resumes_after_reopen,
            read_ranges_across_chunks_and_limits,
            list_by_prefix_pages_with_after,
            index_at_time_finds_the_first_entry_ingested_then,
            retention_moves_the_low_water_mark,
            expire_stream_moves_one_low_water_mark,
            partitions_are_listed_oldest_first,
            subscribe_sees_appends_and_terminate,
            a_thousand_streams_appended_concurrently,
            closed_store_refuses_calls,
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let backend = ($make)();
                $crate::conformance::$case(&backend).await;
            }
        )*
    };
}

// ----- the fjall backend's harness ---------------------------------------------------

/// [`FjallStore`] in a temporary directory, with a settable clock.
pub struct FjallBackend {
    dir: tempfile::TempDir,
    clock: Arc<AtomicI64>,
    partition_secs: u64,
}

impl FjallBackend {
    /// A store in a new temporary directory, one-hour partitions, the clock at a fixed
    /// time.
    pub fn new() -> FjallBackend {
        FjallBackend {
            dir: tempfile::tempdir().expect("temporary directory"),
            clock: Arc::new(AtomicI64::new(1_700_000_000_000_000_000)),
            partition_secs: 3600,
        }
    }
}

impl Default for FjallBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl Backend for FjallBackend {
    fn open(&self) -> BoxFuture<'_, Arc<dyn Store>> {
        Box::pin(async move {
            let config = FjallConfig {
                data_dir: self.dir.path().to_path_buf(),
                fsync: FsyncPolicy::Interval,
                fsync_interval_ms: 50,
                partition_secs: self.partition_secs,
                ..FjallConfig::default()
            };
            let clock = self.clock.clone();
            let store = tokio::task::spawn_blocking(move || {
                FjallStore::open_with_clock(config, Arc::new(move || clock.load(Ordering::SeqCst)))
            })
            .await
            .expect("open task")
            .expect("open the fjall store");
            Arc::new(store) as Arc<dyn Store>
        })
    }

    fn set_time(&self, ns: i64) {
        self.clock.store(ns, Ordering::SeqCst);
    }

    fn partition_ns(&self) -> i64 {
        self.partition_secs as i64 * 1_000_000_000
    }
}

// ----- helpers ---------------------------------------------------------------------

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef0123";
const OTHER_SECRET: &[u8] = b"0123456789abcdef0123456789abcdef0124";

fn producer() -> Owner {
    Owner::Producer(SECRET.to_vec())
}

fn impostor() -> Owner {
    Owner::Producer(OTHER_SECRET.to_vec())
}

/// A log envelope; `timestamp` is not part of the payload, so resends may differ in it.
fn log(payload: &str, timestamp: i64) -> Envelope {
    Envelope {
        timestamp,
        source_id: "conformance".into(),
        message: Some(Body::Log(Log {
            payload: payload.as_bytes().to_vec().into(),
            r#type: 0,
        })),
        ..Default::default()
    }
}

/// Entries `range` of a stream named `tag`: payload `"{tag}-{i}"`, timestamp `i + stamp`.
fn logs(tag: &str, range: Range<u64>, stamp: i64) -> Vec<Envelope> {
    range
        .map(|i| log(&format!("{tag}-{i}"), i as i64 + stamp))
        .collect()
}

fn payload(e: &Envelope) -> String {
    match &e.message {
        Some(Body::Log(l)) => String::from_utf8_lossy(&l.payload).into_owned(),
        other => panic!("not a log envelope: {other:?}"),
    }
}

fn descriptor(content_type: &str) -> Descriptor {
    Descriptor {
        content_type: content_type.into(),
        tags: [("k".to_string(), "v".to_string())].into(),
        created_ns: 42,
    }
}

async fn register(store: &dyn Store, path: &str, owner: Owner) -> RegisterOutcome {
    let reg = Registration {
        path: path.into(),
        owner,
        descriptor: descriptor("text/plain"),
    };
    store.register(reg).await.expect("register")
}

async fn registered(store: &dyn Store, path: &str, owner: Owner) -> StreamState {
    match register(store, path, owner).await {
        RegisterOutcome::Created(s) => s,
        other => panic!("registering {path}: {other:?}"),
    }
}

async fn append(
    store: &dyn Store,
    path: &str,
    owner: Owner,
    first_index: Option<u64>,
    entries: Vec<Envelope>,
) -> AppendOutcome {
    let req = AppendRequest {
        path: path.into(),
        owner,
        first_index,
        entries,
    };
    store.append(req).await.expect("append")
}

fn stored(first: u64, next: u64, duplicates: u64) -> AppendOutcome {
    AppendOutcome::Stored {
        first,
        next,
        duplicates,
    }
}

async fn state(store: &dyn Store, path: &str) -> StreamState {
    store
        .stream(path)
        .await
        .expect("stream")
        .unwrap_or_else(|| panic!("{path} is not registered"))
}

async fn read(store: &dyn Store, path: &str, from: u64, limit: usize) -> crate::ReadBatch {
    store
        .read(path, from, limit)
        .await
        .expect("read")
        .unwrap_or_else(|| panic!("{path} is not registered"))
}

/// Asserts that `entries` are indices `range` of stream `tag` with timestamps `i + stamp`.
fn assert_entries(entries: &[StoredEntry], tag: &str, range: Range<u64>, stamp: i64) {
    let got: Vec<(u64, String, i64)> = entries
        .iter()
        .map(|e| (e.index, payload(&e.envelope), e.envelope.timestamp))
        .collect();
    let want: Vec<(u64, String, i64)> = range
        .map(|i| (i, format!("{tag}-{i}"), i as i64 + stamp))
        .collect();
    assert_eq!(got, want);
}

async fn reopen(backend: &dyn Backend, store: Arc<dyn Store>) -> Arc<dyn Store> {
    store.close().await.expect("close");
    drop(store);
    backend.open().await
}

/// A time at the start of a partition, far from the backends' initial clocks.
fn partition_start(backend: &dyn Backend) -> i64 {
    let width = backend.partition_ns();
    (1_800_000_000_000_000_000 / width) * width
}

async fn next_notice(rx: &mut tokio::sync::broadcast::Receiver<Appended>) -> Appended {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("a notification within 10 s")
        .expect("notification channel open")
}

// ----- the cases -------------------------------------------------------------------

/// A resend of a stored append is acknowledged, counted as duplicates, and changes
/// nothing (timestamps are not compared; the first write is kept).
pub async fn resend_is_a_duplicate(backend: &dyn Backend) {
    let store = backend.open().await;
    let s = store.as_ref();
    registered(s, "dup/+/a", producer()).await;
    let first = append(s, "dup/+/a", producer(), Some(0), logs("a", 0..10, 0)).await;
    assert_eq!(first, stored(0, 10, 0));
    let again = append(s, "dup/+/a", producer(), Some(0), logs("a", 0..10, 500)).await;
    assert_eq!(again, stored(0, 10, 10));
    let batch = read(s, "dup/+/a", 0, 100).await;
    assert_entries(&batch.entries, "a", 0..10, 0);
    assert_eq!(batch.state.next_index, 10);
}

/// 0..100 stored, then 50..150 sent: only 100..150 is written, 50..100 keeps the first
/// write; the same after a reopen.
pub async fn partial_overlap_stores_only_the_new_part(backend: &dyn Backend) {
    let store = backend.open().await;
    registered(store.as_ref(), "ovl/+/a", producer()).await;
    let out = append(
        store.as_ref(),
        "ovl/+/a",
        producer(),
        Some(0),
        logs("a", 0..100, 0),
    )
    .await;
    assert_eq!(out, stored(0, 100, 0));
    let out = append(
        store.as_ref(),
        "ovl/+/a",
        producer(),
        Some(50),
        logs("a", 50..150, 0),
    )
    .await;
    assert_eq!(out, stored(50, 150, 50));
    // Sent again with other timestamps: entries 50..150 must keep their first write.
    let out = append(
        store.as_ref(),
        "ovl/+/a",
        producer(),
        Some(50),
        logs("a", 50..150, 7),
    )
    .await;
    assert_eq!(out, stored(50, 150, 100));
    let check = |batch: crate::ReadBatch| {
        assert_eq!(batch.state.next_index, 150);
        assert_eq!(batch.started_at, 0);
        assert!(!batch.below_low_water);
        assert_entries(&batch.entries, "a", 0..150, 0);
    };
    check(read(store.as_ref(), "ovl/+/a", 0, 1000).await);
    let store = reopen(backend, store).await;
    check(read(store.as_ref(), "ovl/+/a", 0, 1000).await);
}

/// A resend with one byte different in one payload is a conflict at that index, and
/// nothing of that append is written (not even its new entries).
pub async fn conflict_writes_nothing(backend: &dyn Backend) {
    let store = backend.open().await;
    let s = store.as_ref();
    registered(s, "cfl/+/a", producer()).await;
    append(s, "cfl/+/a", producer(), Some(0), logs("a", 0..10, 0)).await;
    let mut resend = logs("a", 5..15, 0);
    resend[2] = log("a-X", 7); // index 7: "a-7" -> "a-X"
    let out = append(s, "cfl/+/a", producer(), Some(5), resend).await;
    assert_eq!(out, AppendOutcome::Conflict { index: 7 });
    let batch = read(s, "cfl/+/a", 0, 100).await;
    assert_eq!(
        batch.state.next_index, 10,
        "the new part of a conflicting append was written"
    );
    assert_entries(&batch.entries, "a", 0..10, 0);
}

/// Registering an existing stream with its owner returns it unchanged.
pub async fn register_existing_keeps_the_first_descriptor(backend: &dyn Backend) {
    let store = backend.open().await;
    let s = store.as_ref();
    let created = registered(s, "reg/+/a", producer()).await;
    assert_eq!(created.path, "reg/+/a");
    assert_eq!(created.descriptor, descriptor("text/plain"));
    assert_eq!((created.next_index, created.low_water), (0, 0));
    assert_eq!(created.terminal_count, None);
    assert!(!created.collector_owned);
    let reg = Registration {
        path: "reg/+/a".into(),
        owner: producer(),
        descriptor: descriptor("application/json"),
    };
    match s.register(reg).await.expect("register") {
        RegisterOutcome::Existing(state) => assert_eq!(state, created),
        other => panic!("expected Existing, got {other:?}"),
    }
}

/// Register, append and terminate with another secret are refused and change nothing.
pub async fn wrong_secret_is_refused(backend: &dyn Backend) {
    let store = backend.open().await;
    let s = store.as_ref();
    registered(s, "sec/+/a", producer()).await;
    assert_eq!(
        register(s, "sec/+/a", impostor()).await,
        RegisterOutcome::WrongSecret
    );
    let out = append(s, "sec/+/a", impostor(), Some(0), logs("a", 0..3, 0)).await;
    assert_eq!(out, AppendOutcome::WrongSecret);
    let out = s
        .terminate("sec/+/a", &impostor(), 0)
        .await
        .expect("terminate");
    assert_eq!(out, TerminateOutcome::WrongSecret);
    let st = state(s, "sec/+/a").await;
    assert_eq!((st.next_index, st.terminal_count), (0, None));
}

/// Only the collector writes collector-owned streams, and it cannot write producers'.
pub async fn collector_and_producer_streams_do_not_mix(backend: &dyn Backend) {
    let store = backend.open().await;
    let s = store.as_ref();
    let c = registered(s, "loggregator/app/+/0", Owner::Collector).await;
    assert!(c.collector_owned);
    assert_eq!(
        register(s, "loggregator/app/+/0", producer()).await,
        RegisterOutcome::WrongSecret
    );
    let out = append(
        s,
        "loggregator/app/+/0",
        producer(),
        None,
        logs("a", 0..1, 0),
    )
    .await;
    assert_eq!(out, AppendOutcome::WrongSecret);
    let out = s
        .terminate("loggregator/app/+/0", &Owner::Producer(Vec::new()), 0)
        .await
        .expect("terminate");
    assert_eq!(out, TerminateOutcome::WrongSecret);

    registered(s, "mix/+/p", producer()).await;
    assert_eq!(
        register(s, "mix/+/p", Owner::Collector).await,
        RegisterOutcome::WrongSecret
    );
    let out = append(s, "mix/+/p", Owner::Collector, None, logs("a", 0..1, 0)).await;
    assert_eq!(out, AppendOutcome::WrongSecret);
    let out = s
        .terminate("mix/+/p", &Owner::Collector, 0)
        .await
        .expect("terminate");
    assert_eq!(out, TerminateOutcome::WrongSecret);
    assert_eq!(state(s, "mix/+/p").await.next_index, 0);
    assert_eq!(state(s, "loggregator/app/+/0").await.next_index, 0);
}

/// An append that starts past the next index is refused with the expected index.
pub async fn gap_is_refused(backend: &dyn Backend) {
    let store = backend.open().await;
    let s = store.as_ref();
    registered(s, "gap/+/a", producer()).await;
    append(s, "gap/+/a", producer(), Some(0), logs("a", 0..5, 0)).await;
    let out = append(s, "gap/+/a", producer(), Some(7), logs("a", 7..9, 0)).await;
    assert_eq!(out, AppendOutcome::Gap { expected: 5 });
    assert_eq!(state(s, "gap/+/a").await.next_index, 5);
    let out = append(s, "gap/+/a", producer(), Some(5), logs("a", 5..9, 0)).await;
    assert_eq!(out, stored(5, 9, 0));
}

/// Nothing can be done to a path that was never registered.
pub async fn unregistered_stream_is_refused(backend: &dyn Backend) {
    let store = backend.open().await;
    let s = store.as_ref();
    let out = append(s, "none/+/a", producer(), Some(0), logs("a", 0..1, 0)).await;
    assert_eq!(out, AppendOutcome::NotRegistered);
    let out = append(s, "none/+/a", Owner::Collector, None, logs("a", 0..1, 0)).await;
    assert_eq!(out, AppendOutcome::NotRegistered);
    let out = s
        .terminate("none/+/a", &producer(), 1)
        .await
        .expect("terminate");
    assert_eq!(out, TerminateOutcome::NotRegistered);
    assert_eq!(s.stream("none/+/a").await.expect("stream"), None);
    assert_eq!(s.read("none/+/a", 0, 10).await.expect("read"), None);
    assert_eq!(s.index_at_time("none/+/a", 0).await.expect("index"), None);
    assert!(s.list("none/", None, 10).await.expect("list").is_empty());
}

/// After terminate(count), appends reaching `count` are refused; below it they work.
pub async fn appends_at_or_past_the_terminal_count_are_refused(backend: &dyn Backend) {
    let store = backend.open().await;
    let s = store.as_ref();
    registered(s, "term/+/a", producer()).await;
    append(s, "term/+/a", producer(), Some(0), logs("a", 0..5, 0)).await;
    let out = s
        .terminate("term/+/a", &producer(), 8)
        .await
        .expect("terminate");
    assert_eq!(out, TerminateOutcome::Terminated { count: 8 });
    let out = append(s, "term/+/a", producer(), Some(5), logs("a", 5..8, 0)).await;
    assert_eq!(out, stored(5, 8, 0));
    let out = append(s, "term/+/a", producer(), Some(8), logs("a", 8..9, 0)).await;
    assert_eq!(out, AppendOutcome::Terminated { count: 8 });
    let out = append(s, "term/+/a", producer(), Some(6), logs("a", 6..9, 0)).await;
    assert_eq!(out, AppendOutcome::Terminated { count: 8 });
    let out = append(s, "term/+/a", producer(), None, logs("a", 8..9, 0)).await;
    assert_eq!(out, AppendOutcome::Terminated { count: 8 });
    let out = append(s, "term/+/a", producer(), Some(0), logs("a", 0..8, 0)).await;
    assert_eq!(
        out,
        stored(0, 8, 8),
        "a resend below the count is a duplicate"
    );
    let st = state(s, "term/+/a").await;
    assert_eq!((st.next_index, st.terminal_count), (8, Some(8)));
    assert_entries(&read(s, "term/+/a", 0, 100).await.entries, "a", 0..8, 0);
}

/// terminate(0) on a new stream makes an empty, complete stream.
pub async fn terminate_zero_is_an_empty_complete_stream(backend: &dyn Backend) {
    let store = backend.open().await;
    let s = store.as_ref();
    registered(s, "empty/+/a", producer()).await;
    let out = s
        .terminate("empty/+/a", &producer(), 0)
        .await
        .expect("terminate");
    assert_eq!(out, TerminateOutcome::Terminated { count: 0 });
    let st = state(s, "empty/+/a").await;
    assert_eq!((st.next_index, st.terminal_count), (0, Some(0)));
    let out = append(s, "empty/+/a", producer(), Some(0), logs("a", 0..1, 0)).await;
    assert_eq!(out, AppendOutcome::Terminated { count: 0 });
    assert!(read(s, "empty/+/a", 0, 10).await.entries.is_empty());
}

/// The same count again is fine; another count is incompatible.
pub async fn terminate_is_idempotent_and_refuses_other_counts(backend: &dyn Backend) {
    let store = backend.open().await;
    let s = store.as_ref();
    registered(s, "idem/+/a", producer()).await;
    append(s, "idem/+/a", producer(), Some(0), logs("a", 0..3, 0)).await;
    for _ in 0..2 {
        let out = s
            .terminate("idem/+/a", &producer(), 3)
            .await
            .expect("terminate");
        assert_eq!(out, TerminateOutcome::Terminated { count: 3 });
    }
    for other in [2, 4] {
        let out = s
            .terminate("idem/+/a", &producer(), other)
            .await
            .expect("terminate");
        assert_eq!(out, TerminateOutcome::Incompatible { existing: 3 });
    }
    assert_eq!(state(s, "idem/+/a").await.terminal_count, Some(3));
}

/// A count below what is written is refused and leaves the stream open.
pub async fn terminate_below_written_is_refused(backend: &dyn Backend) {
    let store = backend.open().await;
    let s = store.as_ref();
    registered(s, "below/+/a", producer()).await;
    append(s, "below/+/a", producer(), Some(0), logs("a", 0..10, 0)).await;
    let out = s
        .terminate("below/+/a", &producer(), 5)
        .await
        .expect("terminate");
    assert_eq!(out, TerminateOutcome::BelowWritten { next: 10 });
    assert_eq!(state(s, "below/+/a").await.terminal_count, None);
    let out = s
        .terminate("below/+/a", &producer(), 10)
        .await
        .expect("terminate");
    assert_eq!(out, TerminateOutcome::Terminated { count: 10 });
}

/// Without a first index the store numbers entries from the next index, and carries on
/// after a reopen.
pub async fn sequencer_numbers_and_resumes_after_reopen(backend: &dyn Backend) {
    let store = backend.open().await;
    let path = "loggregator/seq/+/0";
    registered(store.as_ref(), path, Owner::Collector).await;
    for k in 0..3u64 {
        let out = append(
            store.as_ref(),
            path,
            Owner::Collector,
            None,
            logs("a", k * 4..k * 4 + 4, 0),
        )
        .await;
        assert_eq!(out, stored(k * 4, k * 4 + 4, 0));
    }
    let store = reopen(backend, store).await;
    let out = append(
        store.as_ref(),
        path,
        Owner::Collector,
        None,
        logs("a", 12..16, 0),
    )
    .await;
    assert_eq!(out, stored(12, 16, 0));
    assert_entries(
        &read(store.as_ref(), path, 0, 100).await.entries,
        "a",
        0..16,
        0,
    );
}

/// Reads start anywhere, cross chunk boundaries, stop at the limit and at the end, and
/// carry the ingest time.
pub async fn read_ranges_across_chunks_and_limits(backend: &dyn Backend) {
    let store = backend.open().await;
    let s = store.as_ref();
    let t = partition_start(backend);
    registered(s, "rd/+/a", producer()).await;
    for k in 0..50u64 {
        backend.set_time(t + k as i64);
        let out = append(
            s,
            "rd/+/a",
            producer(),
            Some(k * 7),
            logs("a", k * 7..k * 7 + 7, 0),
        )
        .await;
        assert_eq!(out, stored(k * 7, k * 7 + 7, 0));
    }
    let all = read(s, "rd/+/a", 0, 1000).await;
    assert_entries(&all.entries, "a", 0..350, 0);
    for e in &all.entries {
        assert_eq!(
            e.ingest_ns,
            t + (e.index / 7) as i64,
            "ingest time of {}",
            e.index
        );
    }
    let mid = read(s, "rd/+/a", 33, 20).await;
    assert_eq!(mid.started_at, 33);
    assert_entries(&mid.entries, "a", 33..53, 0);
    // From every index: in the first chunk, the one after it, and every other.
    for from in 0..350 {
        let got = read(s, "rd/+/a", from, 3).await;
        assert_entries(&got.entries, "a", from..(from + 3).min(350), 0);
    }
    assert_entries(&read(s, "rd/+/a", 349, 10).await.entries, "a", 349..350, 0);
    let end = read(s, "rd/+/a", 350, 10).await;
    assert!(end.entries.is_empty());
    assert_eq!((end.started_at, end.below_low_water), (350, false));
    assert!(read(s, "rd/+/a", 10, 0).await.entries.is_empty());
    let mut paged = Vec::new();
    let mut from = 0;
    loop {
        let batch = read(s, "rd/+/a", from, 64).await;
        let Some(last) = batch.entries.last() else {
            break;
        };
        from = last.index + 1;
        paged.extend(batch.entries);
    }
    assert_entries(&paged, "a", 0..350, 0);
}

/// Listing is sorted by path, filtered by prefix, and pages with `after`.
pub async fn list_by_prefix_pages_with_after(backend: &dyn Backend) {
    let store = backend.open().await;
    let s = store.as_ref();
    let paths = [
        "app/+/s3",
        "app/+/s1",
        "apple/+/x",
        "app/+/s2",
        "b/+/y",
        "app/+/s4",
        "app/+/s5",
    ];
    for p in paths {
        registered(s, p, producer()).await;
    }
    append(s, "app/+/s2", producer(), Some(0), logs("a", 0..4, 0)).await;
    let names = |v: Vec<StreamState>| v.into_iter().map(|st| st.path).collect::<Vec<_>>();
    let all = s.list("app/", None, 100).await.expect("list");
    assert_eq!(
        all.iter()
            .find(|st| st.path == "app/+/s2")
            .map(|st| st.next_index),
        Some(4)
    );
    assert_eq!(
        names(all),
        ["app/+/s1", "app/+/s2", "app/+/s3", "app/+/s4", "app/+/s5"]
    );
    let mut pages = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = names(s.list("app/", after.as_deref(), 2).await.expect("list"));
        assert!(page.len() <= 2);
        let Some(last) = page.last().cloned() else {
            break;
        };
        pages.push(page);
        after = Some(last);
    }
    assert_eq!(
        pages,
        [
            vec!["app/+/s1", "app/+/s2"],
            vec!["app/+/s3", "app/+/s4"],
            vec!["app/+/s5"]
        ]
    );
    let everything = names(s.list("", None, 100).await.expect("list"));
    let mut sorted: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
    sorted.sort();
    assert_eq!(everything, sorted);
    assert!(s.list("zzz", None, 10).await.expect("list").is_empty());
    assert!(
        s.list("app/", Some("app/+/s5"), 10)
            .await
            .expect("list")
            .is_empty()
    );
}

/// index_at_time gives the first entry ingested at or after a time, or the next index.
pub async fn index_at_time_finds_the_first_entry_ingested_then(backend: &dyn Backend) {
    let store = backend.open().await;
    let s = store.as_ref();
    let t = partition_start(backend);
    let sec = 1_000_000_000;
    registered(s, "time/+/a", producer()).await;
    for (at, range) in [(t, 0..5), (t + 10 * sec, 5..10), (t + 20 * sec, 10..12)] {
        backend.set_time(at);
        let first = range.start;
        append(s, "time/+/a", producer(), Some(first), logs("a", range, 0)).await;
    }
    for (time, want) in [
        (0, 0),
        (t, 0),
        (t + 1, 5),
        (t + 10 * sec, 5),
        (t + 15 * sec, 10),
        (t + 20 * sec, 10),
        (t + 20 * sec + 1, 12),
        (t + 3600 * sec * 48, 12),
    ] {
        let got = s
            .index_at_time("time/+/a", time)
            .await
            .expect("index_at_time");
        assert_eq!(got, Some(want), "index at {time}");
    }
}

/// Expiring the older of two partitions moves low-water marks; numbering carries on;
/// reads from below the mark start at it and say so; all of it survives a reopen.
pub async fn retention_moves_the_low_water_mark(backend: &dyn Backend) {
    let store = backend.open().await;
    let width = backend.partition_ns();
    let t = partition_start(backend);
    backend.set_time(t + 1);
    registered(store.as_ref(), "ret/+/a", producer()).await;
    registered(store.as_ref(), "ret/+/b", producer()).await;
    append(
        store.as_ref(),
        "ret/+/a",
        producer(),
        Some(0),
        logs("a", 0..10, 0),
    )
    .await;
    append(
        store.as_ref(),
        "ret/+/b",
        producer(),
        Some(0),
        logs("b", 0..3, 0),
    )
    .await;
    backend.set_time(t + width + 1);
    append(
        store.as_ref(),
        "ret/+/a",
        producer(),
        Some(10),
        logs("a", 10..20, 0),
    )
    .await;

    let none = store.expire_before(t + width - 1).await.expect("expire");
    assert_eq!(
        none.partitions_dropped, 0,
        "dropped a partition not yet over"
    );
    assert_eq!(state(store.as_ref(), "ret/+/a").await.low_water, 0);
    let report = store.expire_before(t + width).await.expect("expire");
    assert!(report.partitions_dropped >= 1, "{report:?}");

    let check = |a: crate::ReadBatch, b: crate::ReadBatch, a_next: u64, b_next: u64| {
        assert_eq!((a.state.low_water, a.state.next_index), (10, a_next));
        assert_eq!((a.started_at, a.below_low_water), (10, true));
        assert_entries(&a.entries, "a", 10..a_next, 0);
        assert_eq!((b.state.low_water, b.state.next_index), (3, b_next));
        assert_eq!((b.started_at, b.below_low_water), (3, true));
        assert_entries(&b.entries, "b", 3..b_next, 0);
    };
    check(
        read(store.as_ref(), "ret/+/a", 0, 100).await,
        read(store.as_ref(), "ret/+/b", 0, 100).await,
        20,
        3,
    );
    let from_mark = read(store.as_ref(), "ret/+/a", 15, 100).await;
    assert_eq!(
        (from_mark.started_at, from_mark.below_low_water),
        (15, false)
    );
    assert_eq!(
        store.index_at_time("ret/+/a", 0).await.expect("index"),
        Some(10)
    );

    // Numbering continues; a resend reaching below the mark is acknowledged.
    let out = append(
        store.as_ref(),
        "ret/+/a",
        producer(),
        Some(5),
        logs("a", 5..25, 0),
    )
    .await;
    assert_eq!(out, stored(5, 25, 15));
    let out = append(
        store.as_ref(),
        "ret/+/b",
        producer(),
        None,
        logs("b", 3..5, 0),
    )
    .await;
    assert_eq!(out, stored(3, 5, 0));
    let out = append(
        store.as_ref(),
        "ret/+/b",
        producer(),
        Some(0),
        logs("b", 0..2, 0),
    )
    .await;
    assert_eq!(out, stored(0, 5, 2));

    let store = reopen(backend, store).await;
    check(
        read(store.as_ref(), "ret/+/a", 0, 100).await,
        read(store.as_ref(), "ret/+/b", 0, 100).await,
        25,
        5,
    );
}

/// Expiring one stream below an index moves only its low-water mark (never down, never
/// past its next index); reads start at the mark and say so, resends reaching below it
/// are duplicates, numbering carries on, and all of it survives a reopen.
pub async fn expire_stream_moves_one_low_water_mark(backend: &dyn Backend) {
    let store = backend.open().await;
    let s = store.as_ref();
    registered(s, "exp/+/a", producer()).await;
    registered(s, "exp/+/b", producer()).await;
    append(s, "exp/+/a", producer(), Some(0), logs("a", 0..10, 0)).await;
    append(s, "exp/+/b", producer(), Some(0), logs("b", 0..10, 0)).await;

    assert_eq!(
        s.expire_stream("exp/+/a", 4).await.expect("expire"),
        Some(4)
    );
    assert_eq!(
        s.expire_stream("exp/+/a", 2).await.expect("expire"),
        Some(0)
    );
    assert_eq!(
        s.expire_stream("exp/+/none", 2).await.expect("expire"),
        None
    );
    let a = read(s, "exp/+/a", 0, 100).await;
    assert_eq!(
        (a.state.low_water, a.started_at, a.below_low_water),
        (4, 4, true)
    );
    assert_entries(&a.entries, "a", 4..10, 0);
    let b = read(s, "exp/+/b", 0, 100).await;
    assert_eq!(
        (b.state.low_water, b.started_at),
        (0, 0),
        "another stream moved"
    );
    assert_entries(&b.entries, "b", 0..10, 0);

    // A resend below the mark is acknowledged; numbering continues.
    let out = append(s, "exp/+/a", producer(), Some(0), logs("a", 0..12, 0)).await;
    assert_eq!(out, stored(0, 12, 10));
    // Past the next index: every entry expires, the mark stops at the next index.
    assert_eq!(
        s.expire_stream("exp/+/b", 99).await.expect("expire"),
        Some(10)
    );
    assert_eq!(state(s, "exp/+/b").await.low_water, 10);

    let store = reopen(backend, store).await;
    let a = read(store.as_ref(), "exp/+/a", 0, 100).await;
    assert_eq!((a.state.low_water, a.state.next_index), (4, 12));
    assert_entries(&a.entries, "a", 4..12, 0);
    assert_eq!(state(store.as_ref(), "exp/+/b").await.low_water, 10);
    let out = append(
        store.as_ref(),
        "exp/+/b",
        producer(),
        None,
        logs("b", 10..11, 0),
    )
    .await;
    assert_eq!(out, stored(10, 11, 0));
    let b = read(store.as_ref(), "exp/+/b", 0, 100).await;
    assert_entries(&b.entries, "b", 10..11, 0);
}

/// The live partitions are listed oldest first with their time ranges; after a partition
/// expires it is no longer listed.
pub async fn partitions_are_listed_oldest_first(backend: &dyn Backend) {
    let store = backend.open().await;
    let width = backend.partition_ns();
    let t = partition_start(backend);
    registered(store.as_ref(), "part/+/a", producer()).await;
    for k in 0..3 {
        backend.set_time(t + k * width + 1);
        let first = k as u64 * 5;
        append(
            store.as_ref(),
            "part/+/a",
            producer(),
            Some(first),
            logs("a", first..first + 5, 0),
        )
        .await;
    }
    let store = reopen(backend, store).await;
    let parts = store.partitions().await.expect("partitions");
    let ranges: Vec<(i64, i64)> = parts.iter().map(|p| (p.start_ns, p.end_ns)).collect();
    assert_eq!(
        ranges,
        (0..3)
            .map(|k| (t + k * width, t + (k + 1) * width))
            .collect::<Vec<_>>()
    );
    store.expire_before(parts[0].end_ns).await.expect("expire");
    let left = store.partitions().await.expect("partitions");
    assert_eq!(left.len(), 2);
    assert_eq!(left[0].start_ns, t + width);
    assert_eq!(state(store.as_ref(), "part/+/a").await.low_water, 5);
}

/// Subscribers hear of appends that stored something and of termination, in order.
pub async fn subscribe_sees_appends_and_terminate(backend: &dyn Backend) {
    let store = backend.open().await;
    let s = store.as_ref();
    let mut rx = s.subscribe();
    registered(s, "sub/+/a", producer()).await;
    append(s, "sub/+/a", producer(), Some(0), logs("a", 0..3, 0)).await;
    let n = next_notice(&mut rx).await;
    assert_eq!((&*n.path, n.next, n.terminal_count), ("sub/+/a", 3, None));
    // A pure resend stores nothing and announces nothing: the next notice is for 3..5.
    append(s, "sub/+/a", producer(), Some(0), logs("a", 0..3, 0)).await;
    append(s, "sub/+/a", producer(), Some(3), logs("a", 3..5, 0)).await;
    let n = next_notice(&mut rx).await;
    assert_eq!((&*n.path, n.next, n.terminal_count), ("sub/+/a", 5, None));
    s.terminate("sub/+/a", &producer(), 5)
        .await
        .expect("terminate");
    let n = next_notice(&mut rx).await;
    assert_eq!(
        (&*n.path, n.next, n.terminal_count),
        ("sub/+/a", 5, Some(5))
    );
}

/// A thousand streams written at once by concurrent tasks all end up complete and
/// correct.
pub async fn a_thousand_streams_appended_concurrently(backend: &dyn Backend) {
    const STREAMS: u64 = 1000;
    let store = backend.open().await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..STREAMS {
        let store = store.clone();
        tasks.spawn(async move {
            let path = format!("conc/+/s{i}");
            let tag = format!("s{i}");
            registered(store.as_ref(), &path, producer()).await;
            for k in 0..3u64 {
                let entries = logs(&tag, k * 5..k * 5 + 5, 0);
                let out = append(store.as_ref(), &path, producer(), Some(k * 5), entries).await;
                assert_eq!(out, stored(k * 5, k * 5 + 5, 0), "{path}");
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("task");
    }
    for i in 0..STREAMS {
        let batch = read(store.as_ref(), &format!("conc/+/s{i}"), 0, 100).await;
        assert_entries(&batch.entries, &format!("s{i}"), 0..15, 0);
    }
    assert_eq!(
        store.list("conc/", None, 5000).await.expect("list").len(),
        STREAMS as usize
    );
}

/// After close every call fails with `Closed` (closing again is harmless).
pub async fn closed_store_refuses_calls(backend: &dyn Backend) {
    let store = backend.open().await;
    let s = store.as_ref();
    registered(s, "cls/+/a", producer()).await;
    s.close().await.expect("close");
    let closed = |r: Result<(), StoreError>, what: &str| {
        assert!(
            matches!(r, Err(StoreError::Closed)),
            "{what} after close: {r:?}"
        );
    };
    let reg = Registration {
        path: "cls/+/b".into(),
        owner: producer(),
        descriptor: Descriptor::default(),
    };
    closed(s.register(reg).await.map(drop), "register");
    let req = AppendRequest {
        path: "cls/+/a".into(),
        owner: producer(),
        first_index: Some(0),
        entries: logs("a", 0..1, 0),
    };
    closed(s.append(req).await.map(drop), "append");
    closed(
        s.terminate("cls/+/a", &producer(), 0).await.map(drop),
        "terminate",
    );
    closed(s.stream("cls/+/a").await.map(drop), "stream");
    closed(s.list("", None, 10).await.map(drop), "list");
    closed(s.read("cls/+/a", 0, 10).await.map(drop), "read");
    closed(
        s.index_at_time("cls/+/a", 0).await.map(drop),
        "index_at_time",
    );
    closed(s.expire_before(0).await.map(drop), "expire_before");
    s.close().await.expect("closing twice");
}
