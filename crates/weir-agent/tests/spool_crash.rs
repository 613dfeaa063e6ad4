//! Property test of the spool's crash consistency.
//!
//! For random sequences of appends, reads, acknowledgements, syncs and clean restarts
//! (with segments small enough that they roll every few records), run on [`SimFs`],
//! which logs every write and fsync. Then, for **every** point of that log, build the
//! disks a power loss there could leave (only what was synced; everything written; and
//! random prefixes of each file's unsynced writes with the last one torn at a random
//! byte) and reopen the spool on each. Checked:
//!
//! - open succeeds (no panic, no error);
//! - no record that was acknowledged to its source is lost: under `always` every
//!   append that returned, under `interval` every append before the last completed sync,
//!   and, when everything written survives (a process crash, `kill -9`), every append
//!   that returned under every policy — unless the reader had acknowledged it;
//! - nothing a reader durably acknowledged comes back to it;
//! - what comes back is what was appended at that id, in id order, never invented;
//! - a record appended after the crash reaches every reader (ids are not reused
//!   behind a cursor);
//! - reopening once more delivers the same records (recovery is stable).
//!
//! Cases: `SPOOL_CRASH_CASES` (default 64).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use proptest::prelude::*;
use weir_agent::spool::io::{SimFs, Survivors};
use weir_agent::spool::{FsyncPolicy, RecordId, Spool, SpoolConfig, SpoolReader, WhenFull};

const DIR: &str = "/spool";
const READERS: [&str; 2] = ["fast", "slow"];

#[derive(Debug, Clone)]
enum Op {
    Append(usize),
    Read { reader: usize, n: usize },
    Ack { reader: usize, pick: usize },
    Sync,
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0usize..120).prop_map(Op::Append),
        3 => (0..2usize, 1..6usize).prop_map(|(reader, n)| Op::Read { reader, n }),
        3 => (0..2usize, 0..8usize).prop_map(|(reader, pick)| Op::Ack { reader, pick }),
        2 => Just(Op::Sync),
        1 => Just(Op::Restart),
    ]
}

fn policy() -> impl Strategy<Value = FsyncPolicy> {
    prop_oneof![
        2 => Just(FsyncPolicy::Always),
        2 => Just(FsyncPolicy::Interval),
        1 => Just(FsyncPolicy::Never),
    ]
}

fn payload(id: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (id.wrapping_mul(31).wrapping_add(i as u64 * 7)) as u8)
        .collect()
}

fn config(fsync: FsyncPolicy, segment_bytes: u64) -> SpoolConfig {
    SpoolConfig {
        max_bytes: 1 << 20,
        segment_bytes,
        when_full: WhenFull::Block,
        fsync,
        // the test syncs explicitly (Op::Sync); the timer never fires
        fsync_interval_ms: 3_600_000,
    }
}

/// What the model knows after a high-level operation, and where in the log it ended.
#[derive(Debug, Clone)]
struct Snap {
    /// Log length when the operation started and when it ended.
    start: usize,
    end: usize,
    /// Appends that returned Ok so far.
    appended: u64,
    /// Records that must survive a power loss.
    durable: BTreeSet<u64>,
    /// Per reader: acknowledged position known to be on disk.
    ack_durable: [u64; 2],
    /// Per reader: highest acknowledged position given to the spool.
    ack_given: [u64; 2],
}

struct Run {
    fs: SimFs,
    config: SpoolConfig,
    payloads: BTreeMap<u64, Vec<u8>>,
    snaps: Vec<Snap>,
}

async fn open(fs: &SimFs, config: &SpoolConfig) -> Result<Spool, TestCaseError> {
    Spool::open_with(Arc::new(fs.clone()), DIR, config.clone())
        .await
        .map_err(|e| TestCaseError::fail(format!("open failed: {e}")))
}

async fn readers(spool: &Spool) -> Result<Vec<SpoolReader>, TestCaseError> {
    let mut out = Vec::new();
    for name in READERS {
        out.push(
            spool
                .reader(name)
                .await
                .map_err(|e| TestCaseError::fail(format!("reader {name}: {e}")))?,
        );
    }
    Ok(out)
}

/// Runs `ops`, recording the model after each.
async fn run(ops: &[Op], config: SpoolConfig) -> Result<Run, TestCaseError> {
    let fs = SimFs::new();
    let policy = config.fsync;
    let mut spool = open(&fs, &config).await?;
    let mut rdrs = readers(&spool).await?;
    let mut payloads = BTreeMap::new();
    let mut snap = Snap {
        start: 0,
        end: 0,
        appended: 0,
        durable: BTreeSet::new(),
        ack_durable: [0; 2],
        ack_given: [0; 2],
    };
    // before and after setup (open, create the readers)
    let mut snaps = vec![snap.clone()];
    snap.end = fs.ops();
    snaps.push(snap.clone());
    let mut in_flight: [Vec<u64>; 2] = [Vec::new(), Vec::new()];
    let mut last_delivered: [Option<u64>; 2] = [None, None];
    for op in ops {
        snap.start = fs.ops();
        match *op {
            Op::Append(len) => {
                let id = snap.appended;
                let bytes = payload(id, len);
                payloads.insert(id, bytes.clone());
                let got = spool
                    .append(bytes)
                    .await
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(got, RecordId(id));
                snap.appended += 1;
                if policy == FsyncPolicy::Always {
                    snap.durable.insert(id);
                }
            }
            Op::Read { reader, n } => {
                for _ in 0..n {
                    let Some(r) = rdrs[reader].try_next().await else {
                        break;
                    };
                    prop_assert!(last_delivered[reader].is_none_or(|last| r.id.0 > last));
                    prop_assert_eq!(Some(&r.payload.to_vec()), payloads.get(&r.id.0));
                    last_delivered[reader] = Some(r.id.0);
                    in_flight[reader].push(r.id.0);
                }
            }
            Op::Ack { reader, pick } => {
                if !in_flight[reader].is_empty() {
                    let up_to = in_flight[reader][pick % in_flight[reader].len()];
                    rdrs[reader]
                        .ack(RecordId(up_to))
                        .await
                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
                    in_flight[reader].retain(|&id| id > up_to);
                    snap.ack_given[reader] = snap.ack_given[reader].max(up_to + 1);
                    match policy {
                        FsyncPolicy::Always => snap.ack_durable[reader] = snap.ack_given[reader],
                        // an unsynced rename may reach the disk before the data it names:
                        // under `never` a power loss can bring acknowledged records back
                        FsyncPolicy::Never => snap.ack_durable[reader] = 0,
                        FsyncPolicy::Interval => {}
                    }
                }
            }
            Op::Sync => {
                spool
                    .sync()
                    .await
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                snap.durable.extend(0..snap.appended);
                snap.ack_durable = snap.ack_given;
            }
            Op::Restart => {
                drop(rdrs);
                spool
                    .close()
                    .await
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                drop(spool);
                if policy == FsyncPolicy::Interval {
                    snap.durable.extend(0..snap.appended);
                    snap.ack_durable = snap.ack_given;
                }
                spool = open(&fs, &config).await?;
                rdrs = readers(&spool).await?;
                in_flight = [Vec::new(), Vec::new()];
                last_delivered = [None, None];
            }
        }
        snap.end = fs.ops();
        snaps.push(snap.clone());
    }
    drop(rdrs);
    drop(spool);
    Ok(Run {
        fs,
        config,
        payloads,
        snaps,
    })
}

/// Reads everything each reader gets now.
async fn drain(readers: &mut [SpoolReader]) -> Vec<Vec<(u64, Vec<u8>)>> {
    let mut out = Vec::new();
    for r in readers.iter_mut() {
        let mut got = Vec::new();
        while let Some(rec) = r.try_next().await {
            got.push((rec.id.0, rec.payload.to_vec()));
        }
        out.push(got);
    }
    out
}

/// Reopens the disk a crash after `at` log operations left, and checks it.
async fn check_crash(run: &Run, at: usize, survivors: Survivors) -> Result<(), TestCaseError> {
    let ctx = format!("crash after {at} ops, survivors {survivors:?}");
    // the last operation that completed before the crash, and the one in progress
    let done = run
        .snaps
        .iter()
        .rev()
        .find(|s| s.end <= at)
        .ok_or_else(|| TestCaseError::fail("no completed snapshot"))?;
    let in_progress = run.snaps.iter().find(|s| s.start < at && at < s.end);
    let ack_bound = in_progress.unwrap_or(done).ack_given;
    let mut required = done.durable.clone();
    if survivors == Survivors::Everything {
        required.extend(0..done.appended);
    }

    let image = run.fs.crash(at, survivors);
    let spool = open(&image, &run.config)
        .await
        .map_err(|e| TestCaseError::fail(format!("{ctx}: {e}")))?;
    let mut rdrs = readers(&spool).await?;
    let got = drain(&mut rdrs).await;
    for (reader, records) in got.iter().enumerate() {
        let name = READERS[reader];
        let ids: Vec<u64> = records.iter().map(|(id, _)| *id).collect();
        prop_assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "{ctx}: {name} out of order: {ids:?}"
        );
        for (id, bytes) in records {
            prop_assert_eq!(
                Some(bytes),
                run.payloads.get(id),
                "{}: {} got a record {} that was never appended so",
                ctx,
                name,
                id
            );
            prop_assert!(
                *id >= done.ack_durable[reader],
                "{ctx}: {name} got back record {id}, acknowledged durably below {}",
                done.ack_durable[reader]
            );
        }
        let delivered: BTreeSet<u64> = ids.iter().copied().collect();
        for &id in required.range(ack_bound[reader]..) {
            prop_assert!(
                delivered.contains(&id),
                "{ctx}: {name} lost record {id} (required {required:?}, acked < {}, got {ids:?}); model {:?}",
                ack_bound[reader],
                run.snaps
            );
        }
    }

    // a new record reaches every reader
    let fresh = spool
        .append(b"after the crash".to_vec())
        .await
        .map_err(|e| TestCaseError::fail(format!("{ctx}: append after crash: {e}")))?;
    for (reader, r) in rdrs.iter_mut().enumerate() {
        let rec = r.try_next().await;
        prop_assert_eq!(
            rec.map(|r| r.id),
            Some(fresh),
            "{}: {} does not get the record appended after the crash",
            ctx,
            READERS[reader]
        );
    }

    // stable: reopening delivers the same, plus the fresh record
    drop(rdrs);
    spool
        .close()
        .await
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    drop(spool);
    let again = open(&image, &run.config).await?;
    let mut rdrs = readers(&again).await?;
    let got_again = drain(&mut rdrs).await;
    for (reader, (first, second)) in got.iter().zip(&got_again).enumerate() {
        let mut expected = first.clone();
        expected.push((fresh.0, b"after the crash".to_vec()));
        prop_assert_eq!(
            &expected,
            second,
            "{}: {} reopen is not stable",
            ctx,
            READERS[reader]
        );
    }
    Ok(())
}

fn cases() -> u32 {
    std::env::var("SPOOL_CRASH_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn crash_at_every_write_boundary_loses_nothing_acknowledged(
        fsync in policy(),
        segment_bytes in 60u64..400,
        ops in proptest::collection::vec(op(), 1..40),
        seed in any::<u64>(),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let run = run(&ops, config(fsync, segment_bytes)).await?;
            for at in 0..=run.fs.ops() {
                for survivors in [
                    Survivors::Nothing,
                    Survivors::Everything,
                    Survivors::Random(seed ^ at as u64),
                ] {
                    check_crash(&run, at, survivors).await?;
                }
            }
            Ok::<(), TestCaseError>(())
        })?;
    }
}
