//! Write amplification of the fjall store: disk bytes written per ingested byte.
//!
//! Appends about 200 MB (first argument, in MB) of ~200-byte log envelopes, 100 per
//! append, across 1,000 streams from 8 concurrent tasks, then closes the store (which
//! flushes the memtables) and prints `write_bytes` from `/proc/self/io` divided by the
//! ingested bytes (the envelopes' encoded size). The second argument picks the payloads:
//! `text` (default: log lines, which compress) or `random` (incompressible bytes, the
//! worst case). The data directory is a temporary directory inside the third argument
//! (default: the system temp dir); it must be on a real disk, not tmpfs, for
//! `write_bytes` to mean anything.
//!
//! ```text
//! cargo run --release -p weir-store --example write_amp -- 200 text
//! cargo run --release -p weir-store --example write_amp -- 200 random
//! ```

use std::error::Error;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use prost::Message;
use weir_core::{Descriptor, Envelope};
use weir_proto::lv2::{Log, envelope::Message as Body};
use weir_store::{
    AppendOutcome, AppendRequest, FjallConfig, FjallStore, Owner, Registration, Store,
};

const STREAMS: u64 = 1000;
const TASKS: u64 = 8;
const PER_APPEND: u64 = 100;
const WORDS: [&str; 8] = [
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
];

/// A small deterministic PRNG (xorshift64*), so the example needs no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// A log line of about 200 bytes once encoded: fixed text, numbers and random ids; or,
/// with `random`, the same length of random bytes (incompressible, the worst case).
fn envelope(rng: &mut Rng, stream: u64, index: u64, random: bool) -> Envelope {
    let line = format!(
        "2025-01-{:02}T12:{:02}:{:02}.{:03}Z INFO [req-{:016x}] GET /api/v1/items/{} \
         status={} bytes={} dur_ms={} user={} trace={:016x}{:016x} host=web-{}",
        rng.next() % 28 + 1,
        rng.next() % 60,
        rng.next() % 60,
        rng.next() % 1000,
        rng.next(),
        rng.next() % 100_000,
        [200, 201, 404, 500][(rng.next() % 4) as usize],
        rng.next() % 65_536,
        rng.next() % 2000,
        WORDS[(rng.next() % 8) as usize],
        rng.next(),
        rng.next(),
        rng.next() % 64,
    );
    let payload: Vec<u8> = if random {
        (0..line.len()).map(|_| rng.next() as u8).collect()
    } else {
        line.into_bytes()
    };
    Envelope {
        timestamp: 1_700_000_000_000_000_000 + index as i64,
        source_id: format!("app-{stream}"),
        instance_id: "0".into(),
        message: Some(Body::Log(Log {
            payload: payload.into(),
            r#type: 0,
        })),
        ..Default::default()
    }
}

/// `write_bytes` of this process from `/proc/self/io`.
fn write_bytes() -> Result<u64, Box<dyn Error>> {
    let io = std::fs::read_to_string("/proc/self/io")?;
    let line = io
        .lines()
        .find_map(|l| l.strip_prefix("write_bytes:"))
        .ok_or("no write_bytes in /proc/self/io")?;
    Ok(line.trim().parse()?)
}

/// Appends `rounds` batches to each stream `task, task + TASKS, …`; returns the bytes.
async fn writer(
    store: Arc<FjallStore>,
    task: u64,
    rounds: u64,
    random: bool,
) -> Result<u64, String> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (task + 1));
    let mut bytes = 0u64;
    for round in 0..rounds {
        for stream in (task..STREAMS).step_by(TASKS as usize) {
            let first = round * PER_APPEND;
            let entries: Vec<Envelope> = (first..first + PER_APPEND)
                .map(|i| envelope(&mut rng, stream, i, random))
                .collect();
            bytes += entries.iter().map(|e| e.encoded_len() as u64).sum::<u64>();
            let req = AppendRequest {
                path: format!("bench/+/s{stream}"),
                owner: Owner::Collector,
                first_index: Some(first),
                entries,
            };
            match store.append(req).await {
                Ok(AppendOutcome::Stored { .. }) => {}
                other => return Err(format!("append to s{stream}: {other:?}")),
            }
        }
    }
    Ok(bytes)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let target_mb: u64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(200);
    let random = args.next().is_some_and(|a| a == "random");
    let parent = args.next().map_or_else(std::env::temp_dir, Into::into);
    let dir = tempfile::tempdir_in(parent)?;
    let config = FjallConfig {
        data_dir: dir.path().to_path_buf(),
        ..FjallConfig::default()
    };
    let store = Arc::new(FjallStore::open(config)?);
    for stream in 0..STREAMS {
        let reg = Registration {
            path: format!("bench/+/s{stream}"),
            owner: Owner::Collector,
            descriptor: Descriptor::default(),
        };
        store.register(reg).await?;
    }
    let sample = envelope(&mut Rng(1), 0, 0, random).encoded_len() as u64;
    let rounds = (target_mb * 1_000_000).div_ceil(STREAMS * PER_APPEND * sample);

    let before = write_bytes()?;
    let started = Instant::now();
    let ingested = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..TASKS {
        let (store, ingested) = (store.clone(), ingested.clone());
        tasks.spawn(async move {
            let bytes = writer(store, task, rounds, random).await?;
            ingested.fetch_add(bytes, Ordering::Relaxed);
            Ok::<_, String>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let during = write_bytes()? - before;
    store.close().await?;
    let total = write_bytes()? - before;

    let ingested = ingested.load(Ordering::Relaxed) as f64;
    let envelopes = (rounds * STREAMS * PER_APPEND) as f64;
    println!(
        "ingested {:.1} MB: {} envelopes of {:.0} bytes on average, in {} appends of {PER_APPEND}",
        ingested / 1e6,
        envelopes,
        ingested / envelopes,
        rounds * STREAMS,
    );
    println!(
        "ingest took {elapsed:.2} s: {:.0} envelopes/s, {:.1} MB/s",
        envelopes / elapsed,
        ingested / 1e6 / elapsed
    );
    println!(
        "disk bytes written while ingesting: {:.1} MB ({:.2} per ingested byte)",
        during as f64 / 1e6,
        during as f64 / ingested
    );
    println!(
        "disk bytes written including close (memtables flushed): {:.1} MB",
        total as f64 / 1e6
    );
    println!("write amplification: {:.2}", total as f64 / ingested);
    Ok(())
}
