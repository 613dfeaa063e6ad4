//! Retention on a real store: expiry by age per prefix and the size cap drop what is
//! expired and keep the rest, across a restart of the store, with events and metrics.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use weir_collector::Metrics;
use weir_collector::events::{Events, EventsConfig};
use weir_collector::hub::Hub;
use weir_collector::obs_metrics::RetentionReason;
use weir_collector::retention::{Retention, RetentionConfig, RetentionRule};
use weir_core::{Descriptor, Envelope};
use weir_proto::lv2::{Log, envelope::Message as Body};
use weir_store::{
    AppendOutcome, AppendRequest, FjallConfig, FjallStore, FsyncPolicy, Owner, Registration, Store,
};

const HOUR_NS: i64 = 3_600 * 1_000_000_000;
const DAY_NS: i64 = 24 * HOUR_NS;
/// A partition boundary far from now.
const T0: i64 = 1_800_000_000 / 3_600 * 3_600 * 1_000_000_000;

fn open(dir: &std::path::Path, clock: &Arc<AtomicI64>) -> Arc<dyn Store> {
    let config = FjallConfig {
        data_dir: dir.to_path_buf(),
        fsync: FsyncPolicy::Never,
        partition_secs: 3_600,
        ..FjallConfig::default()
    };
    let clock = clock.clone();
    let read = move || clock.load(Ordering::SeqCst);
    Arc::new(FjallStore::open_with_clock(config, Arc::new(read)).expect("open store"))
}

fn log(i: u64) -> Envelope {
    Envelope {
        message: Some(Body::Log(Log {
            payload: format!("entry {i} {}", "x".repeat(2_000))
                .into_bytes()
                .into(),
            r#type: 0,
        })),
        ..Default::default()
    }
}

/// Appends `n` entries to `path` (registering it first).
async fn write(store: &dyn Store, path: &str, n: u64) {
    let reg = Registration {
        path: path.into(),
        owner: Owner::Collector,
        descriptor: Descriptor::default(),
    };
    store.register(reg).await.expect("register");
    let req = AppendRequest {
        path: path.into(),
        owner: Owner::Collector,
        first_index: None,
        entries: (0..n).map(log).collect(),
    };
    let out = store.append(req).await.expect("append");
    assert!(matches!(out, AppendOutcome::Stored { .. }), "{out:?}");
}

/// (low-water mark, next index) of a stream.
async fn marks(store: &dyn Store, path: &str) -> (u64, u64) {
    let s = store.stream(path).await.expect("stream").expect("exists");
    (s.low_water, s.next_index)
}

fn retention(store: &Arc<dyn Store>, config: RetentionConfig) -> (Retention, Metrics) {
    let metrics = Metrics::new();
    let hub = Hub::new(Default::default(), metrics.clone());
    let events = Arc::new(Events::new(store.clone(), hub, &EventsConfig::default()));
    let r = Retention::new(store.clone(), config, metrics.obs().clone(), events);
    (r, metrics)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_drops_expired_data_and_keeps_the_rest_across_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = Arc::new(AtomicI64::new(T0 + 1));
    let store = open(dir.path(), &clock);
    // Day 0: both streams; day 3: host/ again; day 8: app/ again.
    write(store.as_ref(), "host/web/+/log", 5).await;
    write(store.as_ref(), "app/+/log", 5).await;
    clock.store(T0 + 3 * DAY_NS + 1, Ordering::SeqCst);
    write(store.as_ref(), "host/web/+/log", 3).await;
    store.close().await.expect("close");
    drop(store);

    let config = RetentionConfig {
        rules: vec![RetentionRule {
            prefix: "host/".into(),
            max_age: Duration::from_secs(2 * 86_400),
        }],
        ..RetentionConfig::default()
    };
    // Restart; at day 3 the host/ entries of day 0 are past 2 days, app/'s are not.
    let store = open(dir.path(), &clock);
    let (r, metrics) = retention(&store, config.clone());
    let report = r.round(T0 + 3 * DAY_NS + 2).await.expect("round");
    assert_eq!(report.by_prefix.get("host/"), Some(&(1, 5)), "{report:?}");
    assert_eq!(report.age_partitions, 0);
    assert_eq!(marks(store.as_ref(), "host/web/+/log").await, (5, 8));
    assert_eq!(marks(store.as_ref(), "app/+/log").await, (0, 5));
    let batch = store.read("app/+/log", 0, 100).await.unwrap().unwrap();
    assert_eq!(batch.entries.len(), 5);
    assert_eq!(
        metrics.obs().retention_entries_count(RetentionReason::Age),
        5
    );

    // Restart; the expiry holds. At day 8 the partition of day 0 (7-day default) goes.
    store.close().await.expect("close");
    drop((r, store));
    let store = open(dir.path(), &clock);
    assert_eq!(marks(store.as_ref(), "host/web/+/log").await, (5, 8));
    clock.store(T0 + 8 * DAY_NS, Ordering::SeqCst);
    write(store.as_ref(), "app/+/log", 2).await;
    let (r, metrics) = retention(&store, config.clone());
    let report = r.round(T0 + 8 * DAY_NS + 1).await.expect("round");
    assert_eq!(report.age_partitions, 1, "{report:?}");
    assert_eq!(marks(store.as_ref(), "app/+/log").await, (5, 7));
    let batch = store.read("app/+/log", 0, 100).await.unwrap().unwrap();
    assert_eq!((batch.started_at, batch.entries.len()), (5, 2));
    assert_eq!(
        metrics
            .obs()
            .retention_partitions_count(RetentionReason::Age),
        1
    );
    store.close().await.expect("close");
    drop((r, store));

    // Restart; a size cap of one byte drops every partition but the newest, oldest
    // first. (Closing flushed everything, so the sizes are on disk.)
    let store = open(dir.path(), &clock);
    let parts = store.partitions().await.expect("partitions");
    assert_eq!(parts.len(), 2, "{parts:?}");
    assert!(parts.iter().all(|p| p.bytes > 0), "{parts:?}");
    let capped = RetentionConfig {
        max_store_bytes: Some(1),
        ..config
    };
    let (r, metrics) = retention(&store, capped);
    let report = r.round(T0 + 8 * DAY_NS + 2).await.expect("round");
    assert_eq!((report.size_partitions, report.size_entries), (1, 3));
    assert_eq!(marks(store.as_ref(), "host/web/+/log").await, (8, 8));
    assert_eq!(marks(store.as_ref(), "app/+/log").await, (5, 7));
    assert_eq!(store.partitions().await.unwrap().len(), 1);
    assert_eq!(
        metrics
            .obs()
            .retention_partitions_count(RetentionReason::Size),
        1
    );
    let text = metrics.encode();
    assert!(
        text.contains("weir_retention_partitions_dropped_total{reason=\"size\"} 1"),
        "{text}"
    );
    store.close().await.expect("close");
    drop((r, store));
    let store = open(dir.path(), &clock);
    assert_eq!(marks(store.as_ref(), "app/+/log").await, (5, 7));
    assert_eq!(store.partitions().await.unwrap().len(), 1);
    store.close().await.expect("close");
}
