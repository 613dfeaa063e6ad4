//! Spool throughput: append + read + acknowledge, for each fsync policy.
//!
//! ```text
//! cargo run --release -p weir-agent --example spool_bench -- [--mib 1024] [--record-kib 256] [--runs 3] [--policy always,interval,never] [--dir DIR]
//! ```
//!
//! Two modes, each run for every policy:
//! - `ack`: one task appends `--mib` MiB in records of `--record-kib` KiB as fast as
//!   `append` returns; one reader task reads every record and acknowledges it (one ack
//!   per record, as a flusher acknowledges a batch), so segments are deleted as they go,
//!   as in a healthy agent. Timed from the first append to the last acknowledgement.
//!   Segments deleted before writeback never reach the disk, so this can pass the disk's
//!   speed.
//! - `backlog`: the receiver is down: a reader exists but reads nothing, every byte
//!   stays and must reach the disk. Timed from the first append to the end of a final
//!   `Spool::sync` (everything durable).
//!
//! Prints each run and the median of the runs: MiB/s and records/s of payload, and the
//! process's CPU seconds per GiB.

use std::path::PathBuf;
use std::time::Instant;

use bytes::Bytes;
use weir_agent::spool::{FsyncPolicy, Spool, SpoolConfig};

struct Args {
    mib: u64,
    record_kib: u64,
    runs: usize,
    policies: Vec<FsyncPolicy>,
    modes: Vec<Mode>,
    dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Ack,
    Backlog,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        mib: 1024,
        record_kib: 256,
        runs: 3,
        policies: vec![
            FsyncPolicy::Always,
            FsyncPolicy::Interval,
            FsyncPolicy::Never,
        ],
        modes: vec![Mode::Ack, Mode::Backlog],
        dir: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--mib" => args.mib = value()?.parse().map_err(|e| format!("--mib: {e}"))?,
            "--record-kib" => {
                args.record_kib = value()?.parse().map_err(|e| format!("--record-kib: {e}"))?
            }
            "--runs" => args.runs = value()?.parse().map_err(|e| format!("--runs: {e}"))?,
            "--dir" => args.dir = Some(value()?.into()),
            "--mode" => {
                args.modes = value()?
                    .split(',')
                    .map(|m| match m {
                        "ack" => Ok(Mode::Ack),
                        "backlog" => Ok(Mode::Backlog),
                        other => Err(format!("unknown mode {other}")),
                    })
                    .collect::<Result<_, _>>()?
            }
            "--policy" => {
                args.policies = value()?
                    .split(',')
                    .map(|p| match p {
                        "always" => Ok(FsyncPolicy::Always),
                        "interval" => Ok(FsyncPolicy::Interval),
                        "never" => Ok(FsyncPolicy::Never),
                        other => Err(format!("unknown policy {other}")),
                    })
                    .collect::<Result<_, _>>()?
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

/// CPU seconds (user + system) of this process so far, from /proc/self/stat.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // fields after the command: state is 0, utime is 11, stime is 12; 100 ticks/s
    (ticks(11) + ticks(12)) / 100.0
}

struct Run {
    mib_s: f64,
    records_s: f64,
    cpu_s_per_gib: f64,
}

async fn run_once(args: &Args, mode: Mode, policy: FsyncPolicy, dir: &std::path::Path) -> Run {
    let config = SpoolConfig {
        fsync: policy,
        // room for the whole backlog
        max_bytes: (args.mib + 64) << 20,
        ..SpoolConfig::default()
    };
    let spool = Spool::open(dir, config).await.expect("open spool");
    let mut reader = spool.reader("bench").await.expect("reader");
    let record_bytes = (args.record_kib * 1024) as usize;
    let records = args.mib * 1024 / args.record_kib;
    let payload = Bytes::from(
        (0..record_bytes)
            .map(|i| (i as u64).wrapping_mul(2_654_435_761) as u8)
            .collect::<Vec<u8>>(),
    );
    let cpu0 = cpu_seconds();
    let start = Instant::now();
    let consumer = tokio::spawn(async move {
        if mode == Mode::Ack {
            for i in 0..records {
                let record = reader.next().await.expect("record");
                assert_eq!(record.id.0, i);
                reader.ack(record.id).await.expect("ack");
            }
        }
        reader
    });
    for _ in 0..records {
        spool.append(payload.clone()).await.expect("append");
    }
    let reader = consumer.await.expect("consumer");
    if mode == Mode::Backlog {
        spool.sync().await.expect("sync");
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    drop(reader);
    spool.close().await.expect("close");
    let bytes = (records * record_bytes as u64) as f64;
    Run {
        mib_s: bytes / (1 << 20) as f64 / secs,
        records_s: records as f64 / secs,
        cpu_s_per_gib: cpu / (bytes / (1u64 << 30) as f64),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("spool_bench: {e}");
            std::process::exit(2);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "spool append+ack: {} MiB in {} KiB records, {} runs, 2 worker threads",
        args.mib, args.record_kib, args.runs
    );
    for &mode in &args.modes {
        for &policy in &args.policies {
            let mut runs = Vec::new();
            for i in 0..args.runs {
                let base = args.dir.clone().unwrap_or_else(std::env::temp_dir);
                let dir = tempfile::tempdir_in(base).expect("temp dir");
                let run = rt.block_on(run_once(&args, mode, policy, dir.path()));
                println!(
                    "  {mode:?} {policy:?} run {}: {:8.1} MiB/s {:9.0} records/s {:5.2} CPU s/GiB",
                    i + 1,
                    run.mib_s,
                    run.records_s,
                    run.cpu_s_per_gib
                );
                runs.push(run);
            }
            println!(
                "{:<17} median: {:8.1} MiB/s {:9.0} records/s {:5.2} CPU s/GiB",
                format!("{mode:?} {policy:?}"),
                median(runs.iter().map(|r| r.mib_s).collect()),
                median(runs.iter().map(|r| r.records_s).collect()),
                median(runs.iter().map(|r| r.cpu_s_per_gib).collect()),
            );
        }
    }
}
