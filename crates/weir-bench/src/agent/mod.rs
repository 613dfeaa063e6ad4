//! `weir-bench agent`: whole-pipeline throughput of `weir agent` (issue 4's benchmark).
//!
//! Scenarios, each run `--runs` times on a fresh agent data dir (and a fresh collector):
//!
//! - `tcp`: the input file → `weir agent` (file source, `read_from = "beginning"`) →
//!   `tcp` flusher → a blackhole listener in this process ([`sink`]). Done when the
//!   listener has counted as many lines as the file holds.
//! - `blackhole`: file → agent → `blackhole` flusher. Done when the agent's
//!   `weir_agent_acked_entries_total` reaches the file's line count.
//! - `collector`: file → agent → `weir` flusher → `weir serve` → its fjall store. Done
//!   when every line is acknowledged as stored (the agent's acked counter); CPU and RSS
//!   of both processes.
//! - `steady`: this process appends whole lines of the input to a file at
//!   `--steady-mib-per-sec` for `--steady-secs` ([`steady`]); the agent follows it with a
//!   `tcp` flusher. Reports the agent's CPU % of one core and RSS over the writing window,
//!   and how long after the last write everything had arrived.
//!
//! Completion is read from counters, never guessed with a sleep. The wall time of a run
//! starts just before the agent process is spawned. CPU is user + system time of the
//! process from /proc (its whole life up to the end of the run); RSS is its peak
//! (VmHWM). Figures are per input byte (newlines included).
//!
//! The spool alone is measured by `weir-agent`'s `spool_bench` example (`bench/agent.sh`
//! runs both).

mod process;
mod sink;
mod steady;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::procstat;
use crate::serve::Collector;
use process::AgentProcess;
use sink::Sink;

/// The counter that says every flusher acknowledged a line of the file source `app`.
const ACKED: &str = "weir_agent_acked_entries_total{source=\"app\"}";

/// Options of `weir-bench agent`.
#[derive(clap::Args, Clone)]
pub struct Args {
    /// The log file to ingest (e.g. made by shared/bench/gen-logs.py --mib 512).
    #[arg(long)]
    input: PathBuf,
    /// Scenarios: tcp, blackhole, collector, steady.
    #[arg(
        long,
        default_value = "tcp,blackhole,collector,steady",
        value_delimiter = ','
    )]
    scenarios: Vec<String>,
    /// Runs per scenario; medians are printed at the end.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Encoding of the tcp flusher: json (people JSON, the default) or raw.
    #[arg(long, default_value = "json")]
    encoding: String,
    /// Seconds of steady writing.
    #[arg(long, default_value_t = 60)]
    steady_secs: u64,
    /// Rate of the steady writer, MiB/s.
    #[arg(long, default_value_t = 10.0)]
    steady_mib_per_sec: f64,
    /// A run fails when nothing progresses for this long, seconds.
    #[arg(long, default_value_t = 60)]
    stall_secs: u64,
    /// Extra TOML appended to the file source's table (e.g. `poll_interval_ms = 100`).
    #[arg(long, default_value = "")]
    source_extra: String,
    /// The weir binary.
    #[arg(long)]
    weir: Option<PathBuf>,
}

/// What one run measured.
#[derive(Debug, Clone, Default)]
struct Figures {
    bytes: u64,
    lines: u64,
    wall: f64,
    agent_cpu: f64,
    agent_rss: u64,
    collector: Option<(f64, u64)>,
    /// Steady runs: seconds from the last write until everything arrived.
    lag: Option<f64>,
}

impl Figures {
    fn mib_per_sec(&self) -> f64 {
        self.bytes as f64 / MIB / self.wall
    }
    fn lines_per_sec(&self) -> f64 {
        self.lines as f64 / self.wall
    }
    fn cpu_per_gib(cpu: f64, bytes: u64) -> f64 {
        cpu / (bytes as f64 / GIB)
    }
    fn row(&self) -> String {
        let mut s = format!(
            "{:>8.1} MiB/s {:>10.0} lines/s  agent {:>5.2} CPU s/GiB ({:>5.1} % of a core) {:>6.1} MiB RSS",
            self.mib_per_sec(),
            self.lines_per_sec(),
            Self::cpu_per_gib(self.agent_cpu, self.bytes),
            100.0 * self.agent_cpu / self.wall,
            self.agent_rss as f64 / MIB,
        );
        if let Some((cpu, rss)) = self.collector {
            s += &format!(
                "  collector {:>5.2} CPU s/GiB {:>6.1} MiB RSS",
                Self::cpu_per_gib(cpu, self.bytes),
                rss as f64 / MIB
            );
        }
        if let Some(lag) = self.lag {
            s += &format!("  drained {lag:.2} s after the last write");
        }
        s
    }
}

const MIB: f64 = (1u64 << 20) as f64;
const GIB: f64 = (1u64 << 30) as f64;

/// Runs the chosen scenarios (blocking work on a thread of its own).
pub async fn run(args: Args) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(move || run_blocking(&args)).await?
}

fn run_blocking(args: &Args) -> anyhow::Result<()> {
    let bin = args.weir.clone().unwrap_or_else(crate::default_weir_bin);
    let input = args
        .input
        .canonicalize()
        .with_context(|| format!("cannot find {}", args.input.display()))?;
    let text = input.to_string_lossy();
    anyhow::ensure!(
        !text.contains(['*', '?', '[', ']', '{', '}']),
        "the input path must not contain glob characters: {text}"
    );
    let (bytes, lines) = count_lines(&input)?;
    println!(
        "input: {} ({:.1} MiB, {lines} lines, {:.0} bytes a line); {} runs per scenario",
        input.display(),
        bytes as f64 / MIB,
        bytes as f64 / lines.max(1) as f64,
        args.runs
    );
    let mut table = Vec::new();
    for scenario in &args.scenarios {
        let name = scenario.trim();
        let mut runs = Vec::new();
        for i in 0..args.runs {
            let f = match name {
                "tcp" => file_to_tcp(args, &bin, &input, bytes, lines)?,
                "blackhole" => file_to_blackhole(args, &bin, &input, bytes, lines)?,
                "collector" => file_to_collector(args, &bin, &input, bytes, lines)?,
                "steady" => steady::run(args, &bin, &input)?,
                other => anyhow::bail!("unknown scenario {other:?}"),
            };
            println!("{name:<10} run {}: {}", i + 1, f.row());
            runs.push(f);
        }
        table.push((name.to_string(), median(&runs)));
    }
    println!("\nmedians of {} runs:", args.runs);
    for (name, f) in &table {
        println!("{name:<10} {}", f.row());
    }
    Ok(())
}

/// Bytes and `\n`s of the file.
fn count_lines(path: &Path) -> anyhow::Result<(u64, u64)> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let (mut bytes, mut lines) = (0u64, 0u64);
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        bytes += n as u64;
        lines += buf[..n].iter().filter(|b| **b == b'\n').count() as u64;
    }
    Ok((bytes, lines))
}

/// Each figure's median over the runs (figure by figure).
fn median(runs: &[Figures]) -> Figures {
    fn med(mut v: Vec<f64>) -> f64 {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    }
    let Some(first) = runs.first() else {
        return Figures::default();
    };
    // Every run moves the same bytes: the median wall time gives the median throughput,
    // the median CPU seconds the median CPU seconds per GiB.
    Figures {
        bytes: first.bytes,
        lines: first.lines,
        wall: med(runs.iter().map(|f| f.wall).collect()),
        agent_cpu: med(runs.iter().map(|f| f.agent_cpu).collect()),
        agent_rss: med(runs.iter().map(|f| f.agent_rss as f64).collect()) as u64,
        collector: first.collector.map(|_| {
            let c = |f: &Figures| f.collector.unwrap_or_default();
            (
                med(runs.iter().map(|f| c(f).0).collect()),
                med(runs.iter().map(|f| c(f).1 as f64).collect()) as u64,
            )
        }),
        lag: first
            .lag
            .map(|_| med(runs.iter().map(|f| f.lag.unwrap_or(0.0)).collect())),
    }
}

/// The agent's config: the file source `app` on `include`, and the flusher `out`.
fn agent_config(data_dir: &Path, include: &Path, extra: &str, flusher: &str) -> String {
    format!(
        "data_dir = {data:?}\n\
         [sources.app]\ntype = \"file\"\ninclude = [{include:?}]\nread_from = \"beginning\"\n{extra}\n\
         [flushers.out]\n{flusher}\n",
        data = data_dir.to_string_lossy(),
        include = include.to_string_lossy(),
    )
}

fn tcp_flusher(addr: std::net::SocketAddr, encoding: &str) -> String {
    format!("type = \"tcp\"\naddr = \"{addr}\"\nencoding = \"{encoding}\"")
}

fn file_to_tcp(
    args: &Args,
    bin: &Path,
    input: &Path,
    bytes: u64,
    lines: u64,
) -> anyhow::Result<Figures> {
    let dir = tempfile::tempdir()?;
    let sink = Sink::start()?;
    let config = agent_config(
        &dir.path().join("data"),
        input,
        &args.source_extra,
        &tcp_flusher(sink.addr, &args.encoding),
    );
    let start = Instant::now();
    let agent = AgentProcess::start(bin, dir.path(), &config)?;
    sink.wait_lines(lines, Duration::from_secs(args.stall_secs))?;
    agent_figures(agent, start, bytes, lines)
}

fn file_to_blackhole(
    args: &Args,
    bin: &Path,
    input: &Path,
    bytes: u64,
    lines: u64,
) -> anyhow::Result<Figures> {
    let dir = tempfile::tempdir()?;
    let config = agent_config(
        &dir.path().join("data"),
        input,
        &args.source_extra,
        "type = \"blackhole\"",
    );
    let start = Instant::now();
    let agent = AgentProcess::start(bin, dir.path(), &config)?;
    agent.wait_for(
        ACKED,
        lines,
        Duration::from_millis(5),
        Duration::from_secs(args.stall_secs),
    )?;
    agent_figures(agent, start, bytes, lines)
}

fn file_to_collector(
    args: &Args,
    bin: &Path,
    input: &Path,
    bytes: u64,
    lines: u64,
) -> anyhow::Result<Figures> {
    let dir = tempfile::tempdir()?;
    let store = dir.path().join("store");
    std::fs::create_dir_all(&store)?;
    let collector = Collector::start(bin, &store)?;
    let config = agent_config(
        &dir.path().join("data"),
        input,
        &args.source_extra,
        &format!("type = \"weir\"\naddr = \"{}\"", collector.grpc),
    );
    let c0 = procstat::snapshot(collector.pid())?;
    let start = Instant::now();
    let agent = AgentProcess::start(bin, dir.path(), &config)?;
    agent.wait_for(
        ACKED,
        lines,
        Duration::from_millis(20),
        Duration::from_secs(args.stall_secs),
    )?;
    let wall = start.elapsed().as_secs_f64();
    let snap = procstat::snapshot(agent.pid())?;
    let c1 = procstat::snapshot(collector.pid())?;
    agent.stop()?;
    collector.stop()?;
    Ok(Figures {
        bytes,
        lines,
        wall,
        agent_cpu: snap.cpu_secs,
        agent_rss: snap.peak_rss,
        collector: Some((c1.cpu_secs - c0.cpu_secs, c1.peak_rss)),
        ..Figures::default()
    })
}

/// The figures of a run that only the agent took part in, read when it is done
/// (`start` is when it was started); then stops it.
fn agent_figures(
    agent: AgentProcess,
    start: Instant,
    bytes: u64,
    lines: u64,
) -> anyhow::Result<Figures> {
    let wall = start.elapsed().as_secs_f64();
    let snap = procstat::snapshot(agent.pid())?;
    agent.stop()?;
    Ok(Figures {
        bytes,
        lines,
        wall,
        agent_cpu: snap.cpu_secs,
        agent_rss: snap.peak_rss,
        ..Figures::default()
    })
}
