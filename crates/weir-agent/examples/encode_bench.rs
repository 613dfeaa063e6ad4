//! People-JSON encoding rate of the `tcp`/`http`/`file`/`stdout` flushers, alone: the
//! lines of a file in runs of 4096 (as the file pipeline batches them), encoded 256
//! entries at a time (as the `tcp` flusher writes them).
//!
//! ```text
//! cargo run --release -p weir-agent --example encode_bench -- FILE [--runs 5] [--envelopes]
//! ```
//!
//! `--envelopes` builds the runs of envelopes instead of plain lines (the form of other
//! sources' entries), for comparison.
//!
//! Prints, per run and as the median, MiB/s of input lines, lines/s and CPU seconds per
//! GiB of input (thread CPU time: this benchmark is one thread).

use std::time::Instant;

use std::sync::Arc;

use bytes::Bytes;
use weir_agent::flusher::{Entries, LineEncoding, LogLine, StreamBatch, encode_run, json_line};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut path = None;
    let mut runs = 5usize;
    let mut envelopes = false;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--runs" => runs = args.next().ok_or("--runs N")?.parse()?,
            "--envelopes" => envelopes = true,
            _ => path = Some(a),
        }
    }
    let path = path.ok_or("usage: encode_bench FILE [--runs N]")?;
    let data = Bytes::from(std::fs::read(&path)?);
    let now = weir_core::now_ns();
    let source: Arc<str> = "app".into();
    let stream: Arc<str> = "host/h/+/file/var/log/app.log".into();
    let mut runs_of_lines = Vec::new();
    let mut entries = Entries::default();
    let mut first_index = 0u64;
    let mut start = 0;
    let mut lines = 0u64;
    let mut input = 0usize;
    for end in memchr::memchr_iter(b'\n', &data) {
        let line = LogLine {
            payload: data.slice(start..end),
            timestamp: now,
        };
        input += end - start;
        start = end + 1;
        entries.push_line(&source, line);
        if entries.len() == 4096 {
            let done = std::mem::take(&mut entries);
            let n = done.len() as u64;
            runs_of_lines.push(StreamBatch {
                stream: stream.clone(),
                first_index,
                entries: if envelopes {
                    Entries::Envelopes(done.to_envelopes())
                } else {
                    done
                },
                terminal_count: None,
            });
            first_index += n;
        }
        lines += 1;
    }
    let mib = input as f64 / (1 << 20) as f64;
    println!(
        "{path}: {mib:.1} MiB in {} runs, {lines} lines, as {}",
        runs_of_lines.len(),
        if envelopes { "envelopes" } else { "lines" }
    );
    let mut figures = Vec::new();
    for run in 1..=runs {
        let cpu0 = thread_cpu_seconds();
        let t0 = Instant::now();
        let mut out = Vec::with_capacity(256 << 10);
        let mut json = json_line::Encoder::default();
        let mut written = 0usize;
        for run in &runs_of_lines {
            let n = run.entries.len();
            for start in (0..n).step_by(256) {
                out.clear();
                encode_run(
                    &mut out,
                    LineEncoding::Json,
                    &mut json,
                    run,
                    start..(start + 256).min(n),
                );
                written += out.len();
            }
        }
        let secs = t0.elapsed().as_secs_f64();
        let cpu = thread_cpu_seconds() - cpu0;
        let rate = mib / secs;
        let per_gib = cpu / (mib / 1024.0);
        println!(
            "run {run}: {rate:8.1} MiB/s {:10.0} lines/s {per_gib:5.2} CPU s/GiB  output {:.2}x input",
            lines as f64 / secs,
            written as f64 / input as f64
        );
        figures.push((rate, per_gib));
    }
    figures.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (rate, _) = figures[figures.len() / 2];
    let mut cpus: Vec<f64> = figures.iter().map(|f| f.1).collect();
    cpus.sort_by(f64::total_cmp);
    println!(
        "median of {runs}: {rate:.1} MiB/s, {:.2} CPU s/GiB",
        cpus[cpus.len() / 2]
    );
    Ok(())
}

/// CPU time of this thread, seconds (from /proc; 0 when it cannot be read).
fn thread_cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/thread-self/stat") else {
        return 0.0;
    };
    // fields after the command's closing parenthesis; utime and stime are 14 and 15
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields
        .get(11..13)
        .map(|f| f.iter().filter_map(|v| v.parse::<f64>().ok()).sum())
        .unwrap_or(0.0);
    ticks / 100.0
}
