//! `weir-bench jetstream`: collector ingest on NATS JetStream (issue 6's benchmark)
//! beside the embedded fjall store, in one run.
//!
//! Setups (`--setups`, default `fjall,js1x1,js1x2,js3x1,js3x2`):
//!
//! - `fjall`: one `weir serve` on its embedded store in a temporary dir;
//! - `js<N>x<K>`: `N` `nats-server` nodes with JetStream (`N > 1`: a cluster, the store's
//!   replicas set to `N` with `--replicas-flag`) and `K` `weir serve --store nats://…`
//!   collectors on it; the client's connections are spread over the collectors.
//!
//! Every run starts everything fresh (temporary dirs, ephemeral ports), drives the
//! ingest scenario of `weir-bench collector` (`a`: Loggregator `BatchSender`; `b`:
//! weir.v1 bundles, every result checked), and stops everything. Each setup runs
//! `--runs` times; the table shows medians: envelopes/s, MiB/s (encoded envelopes),
//! CPU seconds per GiB of the collectors and of the NATS servers, the collectors' peak
//! RSS.
//!
//! With `--live`, one `BatchedReceiver` subscriber (every log) on the last collector
//! reads during the load, so ingest pays for live egress: in-process with fjall, the
//! NATS live relay with JetStream (what one collector ingests reaches a subscriber on
//! another). The share of envelopes it received is printed (below 100 %: dropped by a
//! bound, counted by the collector).

mod nats;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;

use crate::collector::{batch_sender, bundles, load_lines};
use crate::procstat;
use crate::serve::Collector;

/// Options of `weir-bench jetstream`.
#[derive(clap::Args)]
pub struct Args {
    /// Log lines to send as payloads; without it, synthetic 200-byte lines.
    #[arg(long)]
    lines: Option<PathBuf>,
    /// Envelopes per run.
    #[arg(long, default_value_t = 200_000)]
    envelopes: u64,
    /// Concurrent client connections (spread over the collectors).
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Runs per setup (the table shows medians).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Ingest scenario: a (Loggregator BatchSender) or b (weir.v1 bundles).
    #[arg(long, default_value = "b")]
    scenario: String,
    /// Setups: fjall, js<nodes>x<collectors>.
    #[arg(
        long,
        default_value = "fjall,js1x1,js1x2,js3x1,js3x2",
        value_delimiter = ','
    )]
    setups: Vec<String>,
    /// The weir binary.
    #[arg(long)]
    weir: Option<PathBuf>,
    /// The nats-server binary.
    #[arg(long, default_value = "nats-server")]
    nats_server: PathBuf,
    /// The `weir serve` flag that sets the JetStream replicas (given the node count in
    /// a cluster); empty: none is passed.
    #[arg(long, default_value = "--nats-replicas")]
    replicas_flag: String,
    /// Keep one live subscriber on the last collector during the load.
    #[arg(long)]
    live: bool,
}

/// What a setup is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Setup {
    Fjall,
    JetStream { nodes: usize, collectors: usize },
}

impl Setup {
    fn parse(s: &str) -> anyhow::Result<Setup> {
        let s = s.trim();
        if s == "fjall" {
            return Ok(Setup::Fjall);
        }
        let bad = || anyhow::anyhow!("unknown setup {s:?}: fjall or js<nodes>x<collectors>");
        let (n, k) = s
            .strip_prefix("js")
            .and_then(|r| r.split_once('x'))
            .ok_or_else(bad)?;
        let nodes: usize = n.parse().map_err(|_| bad())?;
        let collectors: usize = k.parse().map_err(|_| bad())?;
        anyhow::ensure!(
            nodes >= 1 && collectors >= 1,
            "{s}: counts must be positive"
        );
        Ok(Setup::JetStream { nodes, collectors })
    }

    fn label(&self) -> String {
        match self {
            Setup::Fjall => "fjall, 1 collector".into(),
            Setup::JetStream { nodes, collectors } => format!(
                "JetStream {nodes} node{} (R{nodes}), {collectors} collector{}",
                if *nodes == 1 { "" } else { "s" },
                if *collectors == 1 { "" } else { "s" },
            ),
        }
    }
}

/// One run's figures.
#[derive(Debug, Clone, Copy)]
struct Run {
    envelopes_per_sec: f64,
    mib_per_sec: f64,
    collector_cpu_per_gib: f64,
    nats_cpu_per_gib: f64,
    peak_rss_mib: f64,
    /// Share of the envelopes the live subscriber received (with `--live`).
    live_share: f64,
}

/// A live subscriber counting what it receives.
struct Live {
    cancel: tokio_util::sync::CancellationToken,
    got: std::sync::Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Live {
    fn start(grpc: std::net::SocketAddr) -> anyhow::Result<Live> {
        use weir_proto::lv2::{EgressBatchRequest, LogSelector, Selector, selector};
        let cancel = tokio_util::sync::CancellationToken::new();
        let got = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let connector = weir_client::EnvelopeStreamConnector::new(&grpc.to_string(), None)?;
        let request = EgressBatchRequest {
            selectors: vec![Selector {
                source_id: String::new(),
                message: Some(selector::Message::Log(LogSelector {})),
            }],
            use_preferred_tags: true,
            ..Default::default()
        };
        let mut stream = connector.stream(cancel.clone(), request);
        let counter = got.clone();
        let task = tokio::spawn(async move {
            while let Some(batch) = stream.next().await {
                counter.fetch_add(batch.len() as u64, std::sync::atomic::Ordering::Relaxed);
            }
        });
        Ok(Live { cancel, got, task })
    }

    fn count(&self) -> u64 {
        self.got.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits until the count stops growing (nothing for a second; at most 30 s), then
    /// stops; returns the count.
    async fn finish(self) -> u64 {
        let deadline = Instant::now() + std::time::Duration::from_secs(30);
        let mut last = self.count();
        while Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            let now = self.count();
            if now == last {
                break;
            }
            last = now;
        }
        self.cancel.cancel();
        let _ = self.task.await;
        last
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Runs every setup `--runs` times and prints each run and the medians.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let setups: Vec<Setup> = args
        .setups
        .iter()
        .map(|s| Setup::parse(s))
        .collect::<Result<_, _>>()?;
    anyhow::ensure!(
        matches!(args.scenario.as_str(), "a" | "b"),
        "--scenario is a or b"
    );
    anyhow::ensure!(args.runs >= 1, "--runs must be at least 1");
    let lines = load_lines(args.lines.as_ref())?;
    let bin = args.weir.clone().unwrap_or_else(crate::default_weir_bin);
    println!(
        "scenario {}, {} envelopes per run, {} connections, {} runs per setup",
        args.scenario, args.envelopes, args.connections, args.runs
    );
    let mut table = Vec::new();
    for setup in &setups {
        let mut runs = Vec::new();
        for i in 0..args.runs {
            let r = one_run(&args, &bin, *setup, &lines)
                .await
                .with_context(|| format!("{}, run {}", setup.label(), i + 1))?;
            println!(
                "{:<38} run {}: {:>9.0} envelopes/s {:>7.1} MiB/s  collectors {:>6.2} CPU s/GiB  NATS {:>6.2} CPU s/GiB  peak RSS {:>6.1} MiB{}",
                setup.label(),
                i + 1,
                r.envelopes_per_sec,
                r.mib_per_sec,
                r.collector_cpu_per_gib,
                r.nats_cpu_per_gib,
                r.peak_rss_mib,
                if args.live {
                    format!("  live {:.1} %", 100.0 * r.live_share)
                } else {
                    String::new()
                },
            );
            runs.push(r);
        }
        table.push((*setup, runs));
    }
    println!();
    println!(
        "medians of {} runs (scenario {}):",
        args.runs, args.scenario
    );
    println!(
        "| setup | envelopes/s | MiB/s | collectors CPU s/GiB | NATS CPU s/GiB | collector peak RSS MiB |{}",
        if args.live {
            " live subscriber received |"
        } else {
            ""
        }
    );
    println!(
        "| --- | ---: | ---: | ---: | ---: | ---: |{}",
        if args.live { " ---: |" } else { "" }
    );
    for (setup, runs) in &table {
        let m = |f: fn(&Run) -> f64| median(runs.iter().map(f).collect());
        println!(
            "| {} | {:.0} | {:.1} | {:.2} | {} | {:.1} |{}",
            setup.label(),
            m(|r| r.envelopes_per_sec),
            m(|r| r.mib_per_sec),
            m(|r| r.collector_cpu_per_gib),
            match setup {
                Setup::Fjall => "-".to_string(),
                _ => format!("{:.2}", m(|r| r.nats_cpu_per_gib)),
            },
            m(|r| r.peak_rss_mib),
            if args.live {
                format!(" {:.1} % |", 100.0 * m(|r| r.live_share))
            } else {
                String::new()
            },
        );
    }
    Ok(())
}

/// Starts a setup fresh, drives the load, stops everything.
async fn one_run(
    args: &Args,
    bin: &std::path::Path,
    setup: Setup,
    lines: &[bytes::Bytes],
) -> anyhow::Result<Run> {
    let dir = tempfile::tempdir()?;
    let (nats, collectors) = match setup {
        Setup::Fjall => (None, vec![Collector::start(bin, &dir.path().join("c0"))?]),
        Setup::JetStream { nodes, collectors } => {
            let nats = nats::Nats::start(&args.nats_server, nodes)?;
            let mut extra = vec!["--store".to_string(), nats.urls()];
            if nodes > 1 && !args.replicas_flag.is_empty() {
                extra.push(args.replicas_flag.clone());
                extra.push(nodes.to_string());
            }
            let mut started = Vec::new();
            for k in 0..collectors {
                started.push(Collector::start_with_args(
                    bin,
                    &dir.path().join(format!("c{k}")),
                    &extra,
                )?);
            }
            (Some(nats), started)
        }
    };
    let collector_pids: Vec<u32> = collectors.iter().map(Collector::pid).collect();
    let nats_pids: Vec<u32> = nats.as_ref().map(nats::Nats::pids).unwrap_or_default();
    let cpu = |pids: &[u32]| -> anyhow::Result<f64> {
        pids.iter()
            .map(|p| procstat::snapshot(*p).map(|s| s.cpu_secs))
            .sum()
    };
    let (c0, n0) = (cpu(&collector_pids)?, cpu(&nats_pids)?);
    let grpc: Vec<_> = collectors.iter().map(|c| c.grpc).collect();
    let live = match (args.live, grpc.last()) {
        (true, Some(addr)) => Some(Live::start(*addr)?),
        _ => None,
    };
    if let Some(live) = &live {
        // Until the subscriber is connected (and, with the relay, its interest known):
        // a probe envelope comes through.
        let deadline = Instant::now() + std::time::Duration::from_secs(30);
        while live.count() == 0 {
            anyhow::ensure!(Instant::now() < deadline, "the live subscriber got nothing");
            batch_sender(&grpc[..1], 100, 1, &lines[..1]).await?;
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    let probes = live.as_ref().map(Live::count).unwrap_or(0);
    let start = Instant::now();
    let (envelopes, bytes) = match args.scenario.as_str() {
        "a" => batch_sender(&grpc, args.envelopes, args.connections, lines).await?,
        _ => bundles(&grpc, args.envelopes, args.connections, lines).await?,
    };
    let secs = start.elapsed().as_secs_f64();
    let (c1, n1) = (cpu(&collector_pids)?, cpu(&nats_pids)?);
    let live_share = match live {
        Some(live) => {
            let got = live.finish().await.saturating_sub(probes);
            got as f64 / envelopes.max(1) as f64
        }
        None => f64::NAN,
    };
    let peak_rss = collector_pids
        .iter()
        .map(|p| procstat::snapshot(*p).map(|s| s.peak_rss))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .max()
        .unwrap_or(0);
    for c in collectors {
        c.stop()?;
    }
    drop(nats);
    let gib = bytes as f64 / (1u64 << 30) as f64;
    Ok(Run {
        envelopes_per_sec: envelopes as f64 / secs,
        mib_per_sec: bytes as f64 / (1u64 << 20) as f64 / secs,
        collector_cpu_per_gib: (c1 - c0) / gib,
        nats_cpu_per_gib: (n1 - n0) / gib,
        peak_rss_mib: peak_rss as f64 / (1u64 << 20) as f64,
        live_share,
    })
}
