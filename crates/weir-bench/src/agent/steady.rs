//! The steady-load scenario: a writer appends whole lines to a file at a fixed rate
//! while the agent follows it into a `tcp` flusher.
//!
//! The writer appends every 10 ms what the rate allows since the start (whole lines,
//! taken in a cycle from the first 64 MiB of the input). The agent's CPU is measured
//! from the first write until everything written has arrived at the listener, and
//! divided by the writing time: the share of a core that the load costs.

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use super::process::AgentProcess;
use super::sink::Sink;
use super::{Args, Figures, agent_config, tcp_flusher};
use crate::procstat;

/// Most bytes of the input the writer cycles through.
const SAMPLE: usize = 64 << 20;
/// How often the writer appends.
const TICK: Duration = Duration::from_millis(10);

/// One steady run.
pub fn run(args: &Args, bin: &Path, input: &Path) -> anyhow::Result<Figures> {
    let sample = load_sample(input)?;
    let dir = tempfile::tempdir()?;
    let log = dir.path().join("steady.log");
    let mut file = std::fs::File::create(&log)?;
    let sink = Sink::start()?;
    let config = agent_config(
        &dir.path().join("data"),
        &log,
        &args.source_extra,
        &tcp_flusher(sink.addr, &args.encoding),
    );
    let agent = AgentProcess::start(bin, dir.path(), &config)?;
    let rate = args.steady_mib_per_sec * (1u64 << 20) as f64;
    let duration = Duration::from_secs(args.steady_secs);
    let c0 = procstat::snapshot(agent.pid())?;
    let start = Instant::now();
    let (mut written, mut lines, mut pos) = (0u64, 0u64, 0usize);
    let mut next = start;
    while start.elapsed() < duration {
        let due = (start.elapsed().as_secs_f64() * rate) as u64;
        if due > written {
            let want = (due - written) as usize;
            let (chunk, n) = whole_lines(&sample, &mut pos, want);
            file.write_all(chunk)?;
            written += chunk.len() as u64;
            lines += n;
        }
        next += TICK;
        if let Some(d) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
    }
    let wall = start.elapsed().as_secs_f64();
    let stopped = Instant::now();
    sink.wait_lines(lines, Duration::from_secs(args.stall_secs))?;
    let lag = stopped.elapsed().as_secs_f64();
    let c1 = procstat::snapshot(agent.pid())?;
    agent.stop()?;
    Ok(Figures {
        bytes: written,
        lines,
        wall,
        agent_cpu: c1.cpu_secs - c0.cpu_secs,
        agent_rss: c1.peak_rss,
        lag: Some(lag),
        ..Figures::default()
    })
}

/// The first [`SAMPLE`] bytes of the input, cut after its last `\n`.
fn load_sample(input: &Path) -> anyhow::Result<Vec<u8>> {
    let mut buf = Vec::new();
    std::fs::File::open(input)?
        .take(SAMPLE as u64)
        .read_to_end(&mut buf)?;
    let end = buf.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    buf.truncate(end);
    anyhow::ensure!(!buf.is_empty(), "the input has no complete line");
    Ok(buf)
}

/// At least `want` bytes of whole lines from `sample` at `pos` (up to its end, where the
/// cycle restarts), and how many lines they are.
fn whole_lines<'a>(sample: &'a [u8], pos: &mut usize, want: usize) -> (&'a [u8], u64) {
    if *pos >= sample.len() {
        *pos = 0;
    }
    let from = *pos;
    let target = (from + want).min(sample.len());
    let end = sample[target.saturating_sub(1)..]
        .iter()
        .position(|b| *b == b'\n')
        .map_or(sample.len(), |i| target.saturating_sub(1) + i + 1);
    let end = end.max(from);
    *pos = end;
    let chunk = &sample[from..end];
    let n = chunk.iter().filter(|b| **b == b'\n').count() as u64;
    (chunk, n)
}
