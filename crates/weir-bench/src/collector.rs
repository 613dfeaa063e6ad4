//! Collector ingest benchmark: (a) Loggregator `BatchSender`, batches of 100 log
//! envelopes; (b) weir.v1 bundles of 100 entries per stream across 1,000 streams.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use prost::Message;
use weir_proto::lv2::{self, envelope::Message as Body, ingress_client::IngressClient};
use weir_proto::wv1::{self, ingest_client::IngestClient, stream_result::Result as R};

use crate::procstat::{self, ProcSnapshot};
use crate::serve::Collector;

/// Options of `weir-bench collector`.
#[derive(clap::Args)]
pub struct Args {
    /// Log lines to send as payloads (e.g. made by shared/bench/gen-logs.py); lines are
    /// reused in a cycle. Without it, synthetic 200-byte lines.
    #[arg(long)]
    lines: Option<PathBuf>,
    /// Envelopes to send per scenario.
    #[arg(long, default_value_t = 2_000_000)]
    envelopes: u64,
    /// Concurrent client connections.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Which scenarios: a (BatchSender), b (weir.v1 bundles).
    #[arg(long, default_value = "a,b")]
    scenarios: String,
    /// The weir binary.
    #[arg(long)]
    weir: Option<PathBuf>,
    /// Seconds to wait after the load before reading disk writes (lets flushes and
    /// compactions that the load caused happen).
    #[arg(long, default_value_t = 3)]
    settle_secs: u64,
}

pub(crate) fn load_lines(path: Option<&PathBuf>) -> anyhow::Result<Vec<bytes::Bytes>> {
    let lines: Vec<bytes::Bytes> = match path {
        Some(p) => std::fs::read(p)
            .with_context(|| format!("cannot read {}", p.display()))?
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .take(200_000)
            .map(bytes::Bytes::copy_from_slice)
            .collect(),
        None => (0..10_000)
            .map(|i| bytes::Bytes::from(format!("{i:08} {}", "x".repeat(191))))
            .collect(),
    };
    anyhow::ensure!(!lines.is_empty(), "no lines to send");
    Ok(lines)
}

fn log_envelope(source: &str, payload: bytes::Bytes, ts: i64) -> lv2::Envelope {
    lv2::Envelope {
        timestamp: ts,
        source_id: source.to_string(),
        instance_id: "0".into(),
        message: Some(Body::Log(lv2::Log { payload, r#type: 0 })),
        ..Default::default()
    }
}

struct Outcome {
    envelopes: u64,
    bytes: u64,
    wall: Duration,
    client_cpu: f64,
    before: ProcSnapshot,
    after_load: ProcSnapshot,
    after_settle: ProcSnapshot,
    /// Disk bytes written over the collector's whole life, shutdown flush included.
    lifetime_written: u64,
}

fn report(name: &str, o: &Outcome) {
    let secs = o.wall.as_secs_f64();
    let gib = o.bytes as f64 / (1u64 << 30) as f64;
    let mib = o.bytes as f64 / (1u64 << 20) as f64;
    let server_cpu = o.after_load.cpu_secs - o.before.cpu_secs;
    let written = o
        .after_settle
        .write_bytes
        .saturating_sub(o.before.write_bytes);
    println!("== {name}");
    println!("envelopes            {}", o.envelopes);
    println!("ingested             {:.1} MiB (encoded envelopes)", mib);
    println!("wall                 {:.2} s", secs);
    println!("envelopes/s          {:.0}", o.envelopes as f64 / secs);
    println!("MiB/s                {:.1}", mib / secs);
    println!(
        "collector CPU        {:.2} s ({:.2} s/GiB)",
        server_cpu,
        server_cpu / gib
    );
    println!(
        "client CPU           {:.2} s ({:.2} s/GiB)",
        o.client_cpu,
        o.client_cpu / gib
    );
    println!(
        "total CPU/GiB        {:.2} s/GiB",
        (server_cpu + o.client_cpu) / gib
    );
    println!(
        "collector peak RSS   {:.1} MiB",
        o.after_settle.peak_rss as f64 / (1u64 << 20) as f64
    );
    println!(
        "disk written         {:.1} MiB = {:.2} bytes per ingested byte",
        written as f64 / (1u64 << 20) as f64,
        written as f64 / o.bytes as f64
    );
    println!(
        "disk written, with shutdown flush {:.1} MiB = {:.2} bytes per ingested byte",
        o.lifetime_written as f64 / (1u64 << 20) as f64,
        o.lifetime_written as f64 / o.bytes as f64
    );
}

/// Runs the chosen scenarios.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let lines = load_lines(args.lines.as_ref())?;
    let bin = args.weir.clone().unwrap_or_else(crate::default_weir_bin);
    let avg: f64 = lines.iter().map(|l| l.len()).sum::<usize>() as f64 / lines.len() as f64;
    println!(
        "input: {} distinct lines, {:.0} bytes on average; {} envelopes per scenario, {} connections",
        lines.len(),
        avg,
        args.envelopes,
        args.connections
    );
    for s in args.scenarios.split(',') {
        let dir = tempfile::tempdir()?;
        let children_written0 = procstat::waited_children_write_bytes();
        let collector = Collector::start(&bin, dir.path())?;
        let before = procstat::snapshot(collector.pid())?;
        let cpu0 = procstat::self_cpu_secs();
        let start = Instant::now();
        let (envelopes, bytes) = match s.trim() {
            "a" => {
                batch_sender(&[collector.grpc], args.envelopes, args.connections, &lines).await?
            }
            "b" => bundles(&[collector.grpc], args.envelopes, args.connections, &lines).await?,
            other => anyhow::bail!("unknown scenario {other:?} (a or b)"),
        };
        let wall = start.elapsed();
        let client_cpu = procstat::self_cpu_secs() - cpu0;
        let after_load = procstat::snapshot(collector.pid())?;
        tokio::time::sleep(Duration::from_secs(args.settle_secs)).await;
        let after_settle = procstat::snapshot(collector.pid())?;
        let name = match s.trim() {
            "a" => "(a) Loggregator BatchSender, batches of 100 log envelopes",
            _ => "(b) weir.v1 bundles: 10 streams x 100 entries per bundle, 1,000 streams",
        };
        collector.stop()?;
        let lifetime_written = procstat::waited_children_write_bytes() - children_written0;
        report(
            name,
            &Outcome {
                envelopes,
                bytes,
                wall,
                client_cpu,
                before,
                after_load,
                after_settle,
                lifetime_written,
            },
        );
    }
    Ok(())
}

/// (a): each connection streams batches of 100 over one BatchSender call; connection
/// `i` goes to collector `grpc[i % len]`. Returns (envelopes, encoded bytes).
pub(crate) async fn batch_sender(
    grpc: &[SocketAddr],
    envelopes: u64,
    connections: usize,
    lines: &[bytes::Bytes],
) -> anyhow::Result<(u64, u64)> {
    anyhow::ensure!(
        !grpc.is_empty() && connections > 0,
        "no collector or connection"
    );
    let per_conn = envelopes / connections as u64 / 100;
    let mut tasks = Vec::new();
    for conn in 0..connections {
        let uri = format!("http://{}", grpc[conn % grpc.len()]);
        let lines = lines.to_vec();
        tasks.push(tokio::spawn(async move {
            let mut client = IngressClient::connect(uri).await?;
            let source = format!("bench-{conn}");
            let (tx, rx) = tokio::sync::mpsc::channel::<lv2::EnvelopeBatch>(8);
            let producer = tokio::spawn(async move {
                let mut bytes = 0u64;
                let mut k = conn * 7919;
                for _ in 0..per_conn {
                    let batch = lv2::EnvelopeBatch {
                        batch: (0..100)
                            .map(|_| {
                                k += 1;
                                log_envelope(&source, lines[k % lines.len()].clone(), k as i64)
                            })
                            .collect(),
                    };
                    bytes += batch
                        .batch
                        .iter()
                        .map(|e| e.encoded_len() as u64)
                        .sum::<u64>();
                    if tx.send(batch).await.is_err() {
                        break;
                    }
                }
                bytes
            });
            client
                .batch_sender(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
                .context("BatchSender failed")?;
            let bytes = producer.await?;
            anyhow::Ok((per_conn * 100, bytes))
        }));
    }
    let mut total = (0, 0);
    for t in tasks {
        let (n, b) = t.await??;
        total.0 += n;
        total.1 += b;
    }
    Ok(total)
}

/// (b): each connection owns 1000/connections streams and sends bundles of 10 of them
/// with 100 entries each, checking every result; connection `i` goes to collector
/// `grpc[i % len]`. Returns (envelopes, encoded bytes).
pub(crate) async fn bundles(
    grpc: &[SocketAddr],
    envelopes: u64,
    connections: usize,
    lines: &[bytes::Bytes],
) -> anyhow::Result<(u64, u64)> {
    const STREAMS: usize = 1000;
    const PER_BUNDLE: usize = 10;
    const ENTRIES: u64 = 100;
    anyhow::ensure!(
        !grpc.is_empty() && connections > 0,
        "no collector or connection"
    );
    let bundles_per_conn = envelopes / connections as u64 / (PER_BUNDLE as u64 * ENTRIES);
    let mut tasks = Vec::new();
    for conn in 0..connections {
        let uri = format!("http://{}", grpc[conn % grpc.len()]);
        let lines = lines.to_vec();
        let owned: Vec<usize> = (conn..STREAMS).step_by(connections).collect();
        tasks.push(tokio::spawn(async move {
            let mut client = IngestClient::connect(uri)
                .await?
                .max_decoding_message_size(64 << 20);
            let secret = format!("bench-secret-{conn:030}").into_bytes();
            let mut next = vec![0u64; owned.len()];
            let mut cursor = 0usize;
            let mut k = conn * 104_729;
            let (mut n, mut bytes) = (0u64, 0u64);
            for _ in 0..bundles_per_conn {
                let mut bundle = wv1::Bundle::default();
                for _ in 0..PER_BUNDLE {
                    let slot = cursor % owned.len();
                    cursor += 1;
                    let entries: Vec<lv2::Envelope> = (0..ENTRIES)
                        .map(|_| {
                            k += 1;
                            log_envelope("bench", lines[k % lines.len()].clone(), k as i64)
                        })
                        .collect();
                    bytes += entries.iter().map(|e| e.encoded_len() as u64).sum::<u64>();
                    bundle.streams.push(wv1::StreamAppend {
                        path: format!("bench/host/+/stream{}", owned[slot]),
                        secret: secret.clone(),
                        descriptor: (next[slot] == 0).then(|| wv1::StreamDescriptor {
                            content_type: "text/plain; charset=utf-8".into(),
                            ..Default::default()
                        }),
                        first_index: next[slot],
                        entries,
                        terminal_count: None,
                    });
                    next[slot] += ENTRIES;
                }
                let resp = client
                    .send(bundle)
                    .await
                    .context("Ingest/Send failed")?
                    .into_inner();
                for r in resp.results {
                    match r.result {
                        Some(R::StoredNext(_)) => n += ENTRIES,
                        other => anyhow::bail!("{}: unexpected result {other:?}", r.path),
                    }
                }
            }
            anyhow::Ok((n, bytes))
        }));
    }
    let mut total = (0, 0);
    for t in tasks {
        let (n, b) = t.await??;
        total.0 += n;
        total.1 += b;
    }
    Ok(total)
}
