//! The spool's everyday behaviour on real files: order, segment rolls, cursors,
//! restarts, deletion, the API's refusals, config.

use std::path::Path;

use weir_agent::spool::{
    FsyncPolicy, RecordId, Spool, SpoolConfig, SpoolError, SpoolReader, WhenFull,
};

/// 116-byte frames: three per 400-byte segment.
fn small(fsync: FsyncPolicy) -> SpoolConfig {
    SpoolConfig {
        max_bytes: 1 << 20,
        segment_bytes: 400,
        when_full: WhenFull::Block,
        fsync,
        fsync_interval_ms: 50,
    }
}

fn payload(i: u64) -> Vec<u8> {
    let mut p = format!("record {i:04} ").into_bytes();
    p.resize(100, b'a' + (i % 26) as u8);
    p
}

fn segment_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".seg"))
        .collect();
    names.sort();
    names
}

async fn append_n(spool: &Spool, range: std::ops::Range<u64>) {
    for i in range {
        assert_eq!(spool.append(payload(i)).await.unwrap(), RecordId(i));
    }
}

/// Reads `n` records and checks they are the ids `from..from+n` with their payloads.
async fn expect_next(reader: &mut SpoolReader, from: u64, n: u64) {
    for i in from..from + n {
        let r = reader
            .try_next()
            .await
            .unwrap_or_else(|| panic!("record {i} missing"));
        assert_eq!(r.id, RecordId(i));
        assert_eq!(r.payload, payload(i));
    }
}

#[tokio::test]
async fn append_read_ack_across_segment_rolls() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), small(FsyncPolicy::Interval))
        .await
        .unwrap();
    let mut reader = spool.reader("central").await.unwrap();
    append_n(&spool, 0..20).await;
    assert_eq!(segment_files(dir.path()).len(), 7, "3 records per segment");
    let stats = spool.stats();
    assert_eq!(
        (stats.records, stats.segments, stats.next_id),
        (20, 7, RecordId(20))
    );
    expect_next(&mut reader, 0, 20).await;
    assert!(reader.try_next().await.is_none());
    reader.ack(RecordId(19)).await.unwrap();
    // every sealed segment is acknowledged: only the active one is left
    assert_eq!(segment_files(dir.path()), ["00000000000000000018.seg"]);
    let stats = spool.stats();
    assert_eq!(stats.cursors[0].lag_records, 0);
    assert_eq!(stats.first_retained, RecordId(18));
    spool.close().await.unwrap();
}

#[tokio::test]
async fn next_waits_for_the_next_append() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), small(FsyncPolicy::Never))
        .await
        .unwrap();
    let mut reader = spool.reader("central").await.unwrap();
    let waiting = tokio::spawn(async move { reader.next().await });
    tokio::task::yield_now().await;
    spool.append(payload(0)).await.unwrap();
    let record = waiting.await.unwrap().unwrap();
    assert_eq!(record.payload, payload(0));
}

#[tokio::test]
async fn close_ends_waiting_readers_and_refuses_appends() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), small(FsyncPolicy::Interval))
        .await
        .unwrap();
    let mut reader = spool.reader("central").await.unwrap();
    let waiting = tokio::spawn(async move { reader.next().await });
    tokio::task::yield_now().await;
    spool.close().await.unwrap();
    assert!(waiting.await.unwrap().is_none());
    assert!(matches!(
        spool.append(payload(0)).await,
        Err(SpoolError::Closed)
    ));
}

#[tokio::test]
async fn restart_resumes_every_cursor() {
    let dir = tempfile::tempdir().unwrap();
    for fsync in [
        FsyncPolicy::Always,
        FsyncPolicy::Interval,
        FsyncPolicy::Never,
    ] {
        let dir = dir.path().join(format!("{fsync:?}"));
        let spool = Spool::open(&dir, small(fsync)).await.unwrap();
        let mut a = spool.reader("a").await.unwrap();
        let mut b = spool.reader("b").await.unwrap();
        append_n(&spool, 0..30).await;
        expect_next(&mut a, 0, 25).await;
        a.ack(RecordId(19)).await.unwrap();
        expect_next(&mut b, 0, 8).await;
        b.ack(RecordId(4)).await.unwrap();
        drop((a, b));
        spool.close().await.unwrap();
        drop(spool);

        let spool = Spool::open(&dir, small(fsync)).await.unwrap();
        let mut a = spool.reader("a").await.unwrap();
        let mut b = spool.reader("b").await.unwrap();
        // unacknowledged records come again, acknowledged ones do not
        expect_next(&mut a, 20, 10).await;
        expect_next(&mut b, 5, 25).await;
        assert!(a.try_next().await.is_none() && b.try_next().await.is_none());
        // ids go on where they were
        assert_eq!(spool.append(payload(30)).await.unwrap(), RecordId(30));
        expect_next(&mut a, 30, 1).await;
        let stats = spool.stats();
        assert_eq!(stats.cursors[0].acked_next, RecordId(20), "{fsync:?}");
        assert_eq!(stats.cursors[1].acked_next, RecordId(5), "{fsync:?}");
    }
}

#[tokio::test]
async fn segment_is_deleted_only_when_both_cursors_are_past_it() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), small(FsyncPolicy::Always))
        .await
        .unwrap();
    let mut fast = spool.reader("fast").await.unwrap();
    let mut slow = spool.reader("slow").await.unwrap();
    append_n(&spool, 0..9).await;
    let all = segment_files(dir.path());
    assert_eq!(all.len(), 3);

    expect_next(&mut fast, 0, 9).await;
    fast.ack(RecordId(8)).await.unwrap();
    assert_eq!(
        segment_files(dir.path()),
        all,
        "slow has acknowledged nothing"
    );

    expect_next(&mut slow, 0, 3).await;
    slow.ack(RecordId(1)).await.unwrap();
    assert_eq!(
        segment_files(dir.path()),
        all,
        "slow is inside the first segment"
    );
    slow.ack(RecordId(2)).await.unwrap();
    assert_eq!(
        segment_files(dir.path()),
        all[1..],
        "both are past the first segment"
    );

    // the slow reader is not held back by the fast one, nor the reverse
    expect_next(&mut slow, 3, 6).await;
    append_n(&spool, 9..10).await;
    expect_next(&mut fast, 9, 1).await;
    expect_next(&mut slow, 9, 1).await;
}

#[tokio::test]
async fn rewind_gives_the_unacknowledged_records_again() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), small(FsyncPolicy::Never))
        .await
        .unwrap();
    let mut reader = spool.reader("central").await.unwrap();
    append_n(&spool, 0..10).await;
    expect_next(&mut reader, 0, 6).await;
    reader.ack(RecordId(2)).await.unwrap();
    reader.rewind();
    expect_next(&mut reader, 3, 7).await;
}

#[tokio::test]
async fn acker_acknowledges_from_another_task() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), small(FsyncPolicy::Always))
        .await
        .unwrap();
    let mut reader = spool.reader("central").await.unwrap();
    append_n(&spool, 0..4).await;
    expect_next(&mut reader, 0, 4).await;
    let acker = reader.acker();
    tokio::spawn(async move { acker.ack(RecordId(3)).await })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(spool.stats().cursors[0].acked_next, RecordId(4));
}

#[tokio::test]
async fn a_new_reader_starts_at_the_oldest_record_and_removing_one_frees_space() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), small(FsyncPolicy::Interval))
        .await
        .unwrap();
    // records appended before any reader exists are kept for it
    append_n(&spool, 0..6).await;
    let mut late = spool.reader("late").await.unwrap();
    expect_next(&mut late, 0, 6).await;
    late.ack(RecordId(5)).await.unwrap();
    // a reader that is gone from the config still holds what it has not acknowledged
    {
        let _gone = spool.reader("gone").await.unwrap();
    }
    append_n(&spool, 6..9).await;
    let mut late2 = late;
    expect_next(&mut late2, 6, 3).await;
    late2.ack(RecordId(8)).await.unwrap();
    assert!(segment_files(dir.path()).len() > 1, "'gone' holds segments");
    assert!(spool.remove_reader("gone").await.unwrap());
    assert!(!spool.remove_reader("gone").await.unwrap());
    assert_eq!(segment_files(dir.path()).len(), 1);
    assert!(matches!(
        spool.remove_reader("late").await,
        Err(SpoolError::ReaderInUse(_))
    ));
}

#[tokio::test]
async fn refusals_are_typed() {
    let dir = tempfile::tempdir().unwrap();
    let config = SpoolConfig {
        max_bytes: 4096,
        ..small(FsyncPolicy::Never)
    };
    let spool = Spool::open(dir.path(), config.clone()).await.unwrap();
    assert!(matches!(
        Spool::open(dir.path(), config.clone()).await,
        Err(SpoolError::Locked(_))
    ));
    assert!(matches!(
        spool.append(vec![0u8; 5000]).await,
        Err(SpoolError::RecordTooLarge { size: 5000, .. })
    ));
    for bad in ["", ".x", "a/b", "a b"] {
        assert!(matches!(
            spool.reader(bad).await,
            Err(SpoolError::InvalidReaderName(_))
        ));
    }
    let reader = spool.reader("central").await.unwrap();
    assert!(matches!(
        spool.reader("central").await,
        Err(SpoolError::ReaderInUse(_))
    ));
    spool.append(payload(0)).await.unwrap();
    assert!(matches!(
        reader.ack(RecordId(0)).await,
        Err(SpoolError::AckBeyondDelivered { .. })
    ));
    drop(reader);
    // the name is free again once the reader is dropped
    let _again = spool.reader("central").await.unwrap();
    drop(spool);
    drop(_again);
    // and the directory once the spool and its readers are dropped
    Spool::open(dir.path(), config).await.unwrap();
}

#[test]
fn config_has_defaults_and_refuses_unknown_fields() {
    let config: SpoolConfig = toml::from_str("").unwrap();
    assert_eq!(config, SpoolConfig::default());
    assert_eq!(config.fsync, FsyncPolicy::Interval);
    assert_eq!(config.when_full, WhenFull::Block);
    let config: SpoolConfig = toml::from_str(
        "max_bytes = 2048\nsegment_bytes = 1024\nwhen_full = \"drop_oldest\"\nfsync = \"always\"",
    )
    .unwrap();
    assert_eq!(config.when_full, WhenFull::DropOldest);
    assert_eq!(config.fsync, FsyncPolicy::Always);
    assert!(toml::from_str::<SpoolConfig>("max_byte = 1").is_err());
    assert!(toml::from_str::<SpoolConfig>("fsync = \"sometimes\"").is_err());
    let bad = SpoolConfig {
        max_bytes: 100,
        segment_bytes: 200,
        ..SpoolConfig::default()
    };
    assert!(matches!(bad.validate(), Err(SpoolError::Config(_))));
    let bad = SpoolConfig {
        fsync_interval_ms: 0,
        ..SpoolConfig::default()
    };
    assert!(matches!(bad.validate(), Err(SpoolError::Config(_))));
}

#[tokio::test]
async fn interval_sync_runs_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), small(FsyncPolicy::Interval))
        .await
        .unwrap();
    let reader = spool.reader("central").await.unwrap();
    append_n(&spool, 0..3).await;
    drop(reader);
    // the 50 ms timer makes the appends durable without anyone asking
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while spool.stats().durable_next < RecordId(3) {
        assert!(tokio::time::Instant::now() < deadline, "no background sync");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}
