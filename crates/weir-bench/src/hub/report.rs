//! The tables: one line per run as it ends, then the medians over the repetitions.
//!
//! Columns: mode; load (`max`: closed-loop throughput, or the paced ingest rate);
//! subscribers; real envelopes each subscriber is sent; envelopes delivered per second, all subscribers together; p50 and p99
//! of ingest-to-delivery latency; drops as reported by the subscriptions (in-process) or
//! the collector (`weir_egress_dropped_envelopes_total`); envelopes sent but not
//! received; CPU of the collector and of this process (producer and subscribers) in
//! cores busy over the run (the machine's total is the number of its CPUs).

use super::{Load, Mode, RunResult};

fn load_name(load: Load) -> String {
    match load {
        Load::Throughput => "max".into(),
        Load::Rate(r) => format!("{r}/s"),
    }
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The column titles.
pub fn header() {
    println!(
        "{:<10} {:>8} {:>5} {:>9} {:>12} {:>8} {:>8} {:>7} {:>7} {:>9} {:>9}  note",
        "mode",
        "load",
        "subs",
        "per sub",
        "delivered/s",
        "p50 ms",
        "p99 ms",
        "drops",
        "missing",
        "srv cores",
        "cli cores"
    );
}

/// One run's line.
pub fn line(r: &RunResult) {
    let mut r = r.clone();
    let secs = r.elapsed.as_secs_f64().max(1e-9);
    let note = if r.stopped {
        "incomplete: ended on stall or timeout"
    } else {
        ""
    };
    println!(
        "{:<10} {:>8} {:>5} {:>9} {:>12.0} {:>8.2} {:>8.2} {:>7} {:>7} {:>9.2} {:>9.2}  {}",
        r.mode.name(),
        load_name(r.load),
        r.subscribers,
        r.per_sub,
        r.rate(),
        ms(r.latencies.quantile(0.5)),
        ms(r.latencies.quantile(0.99)),
        r.reported_drops,
        r.missing,
        r.collector_cpu / secs,
        r.bench_cpu / secs,
        note
    );
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// The medians of each scenario over its runs; drops and missing are the largest seen.
pub fn medians(all: &mut [RunResult], runs: usize) {
    let mut order: Vec<(Mode, Load, usize)> = Vec::new();
    for r in all.iter() {
        let key = (r.mode, r.load, r.subscribers);
        if !order.contains(&key) {
            order.push(key);
        }
    }
    println!();
    println!("medians of {runs} run(s) (drops, missing: the largest of any run)");
    header();
    for key in order {
        let rs: Vec<&mut RunResult> = all
            .iter_mut()
            .filter(|r| (r.mode, r.load, r.subscribers) == key)
            .collect();
        let first = &rs[0];
        let (mode, load, subs, per_sub) =
            (first.mode, first.load, first.subscribers, first.per_sub);
        let n = rs.len();
        let mut rate = Vec::new();
        let (mut p50, mut p99, mut srv, mut cli) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut drops, mut missing, mut stopped) = (0, 0, 0);
        for r in rs {
            let secs = r.elapsed.as_secs_f64().max(1e-9);
            rate.push(r.rate());
            p50.push(ms(r.latencies.quantile(0.5)));
            p99.push(ms(r.latencies.quantile(0.99)));
            srv.push(r.collector_cpu / secs);
            cli.push(r.bench_cpu / secs);
            drops = drops.max(r.reported_drops);
            missing = missing.max(r.missing);
            stopped += usize::from(r.stopped);
        }
        let note = if stopped > 0 {
            format!("{stopped} of {n} runs incomplete")
        } else {
            String::new()
        };
        println!(
            "{:<10} {:>8} {:>5} {:>9} {:>12.0} {:>8.2} {:>8.2} {:>7} {:>7} {:>9.2} {:>9.2}  {}",
            mode.name(),
            load_name(load),
            subs,
            per_sub,
            median(rate),
            median(p50),
            median(p99),
            drops,
            missing,
            median(srv),
            median(cli),
            note
        );
    }
}
