//! `max_bytes`: `block` waits for acknowledgements, `drop_oldest` drops (counted) and
//! keeps the newest.

use std::future::Future;
use std::pin::Pin;

use weir_agent::spool::{FsyncPolicy, RecordId, Spool, SpoolConfig, SpoolError, WhenFull};

/// 116-byte frames, three per segment, at most ~8 segments.
fn full_at_1k(when_full: WhenFull) -> SpoolConfig {
    SpoolConfig {
        max_bytes: 1024,
        segment_bytes: 400,
        when_full,
        fsync: FsyncPolicy::Never,
        fsync_interval_ms: 200,
    }
}

fn payload(i: u64) -> Vec<u8> {
    let mut p = format!("record {i:04} ").into_bytes();
    p.resize(100, b'.');
    p
}

/// Resolves once `n` appends have found the spool full and are waiting.
async fn blocked(spool: &Spool, n: u64) {
    while spool.stats().blocked_appends < n {
        tokio::task::yield_now().await;
    }
}

type Append<'a> = Pin<Box<dyn Future<Output = Result<RecordId, SpoolError>> + Send + 'a>>;

/// Appends until one append blocks; returns how many went in and the blocked one.
async fn fill(spool: &Spool) -> (u64, Append<'_>) {
    let mut i = 0;
    loop {
        let mut append: Append<'_> = Box::pin(spool.append(payload(i)));
        tokio::select! {
            biased;
            id = &mut append => {
                assert_eq!(id.unwrap(), RecordId(i));
                i += 1;
                assert!(i < 100, "never blocked");
            }
            () = blocked(spool, 1) => return (i, append),
        }
    }
}

/// Whether `fut` is still pending after the runtime had a chance to run everything.
async fn still_pending(fut: &mut Append<'_>) -> bool {
    for _ in 0..50 {
        tokio::select! {
            biased;
            _ = &mut *fut => return false,
            () = tokio::task::yield_now() => {}
        }
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_waits_at_max_bytes_and_resumes_after_ack() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), full_at_1k(WhenFull::Block))
        .await
        .unwrap();
    let mut reader = spool.reader("central").await.unwrap();
    let (n, mut waiting) = fill(&spool).await;
    assert!(n >= 6, "filled {n}");
    let stats = spool.stats();
    assert!(stats.bytes <= 1024, "{stats:?}");
    assert!(
        still_pending(&mut waiting).await,
        "append must wait while full"
    );

    // acknowledging the first segment's records frees its space
    for i in 0..3 {
        assert_eq!(reader.next().await.unwrap().id, RecordId(i));
    }
    reader.ack(RecordId(2)).await.unwrap();
    assert_eq!(waiting.await.unwrap(), RecordId(n));
    // nothing was lost: the reader gets every record after the ones it acknowledged
    for i in 3..=n {
        let r = reader.next().await.unwrap();
        assert_eq!((r.id, r.payload.to_vec()), (RecordId(i), payload(i)));
    }
    let stats = spool.stats();
    assert_eq!(stats.dropped_records, 0);
    assert_eq!(stats.blocked_appends, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_frees_an_acknowledged_active_segment() {
    // max_bytes holds less than one full segment: only sealing the active segment
    // once everything is acknowledged can make room
    let dir = tempfile::tempdir().unwrap();
    let config = SpoolConfig {
        max_bytes: 300,
        segment_bytes: 300,
        ..full_at_1k(WhenFull::Block)
    };
    let spool = Spool::open(dir.path(), config).await.unwrap();
    let mut reader = spool.reader("central").await.unwrap();
    let (n, mut waiting) = fill(&spool).await;
    assert_eq!(n, 2);
    assert!(still_pending(&mut waiting).await);
    reader.next().await.unwrap();
    reader.next().await.unwrap();
    reader.ack(RecordId(1)).await.unwrap();
    assert_eq!(waiting.await.unwrap(), RecordId(2));
    assert_eq!(reader.next().await.unwrap().id, RecordId(2));
}

#[tokio::test]
async fn drop_oldest_counts_drops_and_delivers_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), full_at_1k(WhenFull::DropOldest))
        .await
        .unwrap();
    let mut reader = spool.reader("central").await.unwrap();
    let mut fast = spool.reader("fast").await.unwrap();
    for i in 0..50 {
        assert_eq!(spool.append(payload(i)).await.unwrap(), RecordId(i));
        // "fast" keeps up and acknowledges everything; "central" reads nothing
        assert_eq!(fast.next().await.unwrap().id, RecordId(i));
        fast.ack(RecordId(i)).await.unwrap();
    }
    let stats = spool.stats();
    assert!(stats.bytes <= 1024, "{stats:?}");
    assert!(stats.dropped_records > 0);
    assert_eq!(stats.blocked_appends, 0);
    // the reader jumps past the dropped records to the newest ones, all of them
    let mut got = Vec::new();
    while let Some(r) = reader.try_next().await {
        assert_eq!(r.payload, payload(r.id.0));
        got.push(r.id.0);
    }
    let first = got[0];
    assert_eq!(got, (first..50).collect::<Vec<_>>());
    assert_eq!(
        first, stats.dropped_records,
        "every record is delivered or counted"
    );
    let central = &stats.cursors[0];
    assert_eq!(central.name, "central");
    assert_eq!(central.dropped_records, first);
    assert_eq!(
        stats.cursors[1].dropped_records, 0,
        "fast had acknowledged them"
    );
    // after a restart the dropped records stay gone
    drop((reader, fast));
    spool.close().await.unwrap();
    drop(spool);
    let spool = Spool::open(dir.path(), full_at_1k(WhenFull::DropOldest))
        .await
        .unwrap();
    let mut reader = spool.reader("central").await.unwrap();
    assert_eq!(reader.try_next().await.unwrap().id, RecordId(first));
}
