//! `weir emit log|counter|gauge|timer|event …`: send one envelope to a collector (or any
//! Loggregator v2 ingress) with weir-client's `IngressClient`, and wait until it is
//! confirmed.
//!
//! Logs, counters, gauges and timers go through the batching path (`emit_*`, then
//! `close_send`, which waits for the server's answer); events through the unary `Send`
//! (`emit_event`). Either way the command exits non-zero, saying how many envelopes were
//! dropped, when the collector did not confirm within `--timeout`.

mod parse;

use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use tokio_util::sync::CancellationToken;
use weir_client::{CounterValue, IngressClient, LogType, SourceInfo};

use super::conn::ConnArgs;
use parse::GaugeMetric;

/// `weir emit …`: one envelope of each kind.
#[derive(Subcommand, Debug)]
pub enum EmitCommand {
    /// A log line: `weir emit log 'hello' [--stderr]`.
    Log(LogArgs),
    /// A counter: `weir emit counter requests [--delta N | --total N]` (default delta 1).
    Counter(CounterArgs),
    /// A gauge: `weir emit gauge memory=1024:bytes cpu=12.5:percentage`.
    Gauge(GaugeArgs),
    /// A timer: `weir emit timer http START_NS STOP_NS` or `--duration 250ms` (ending now).
    Timer(TimerArgs),
    /// An event: `weir emit event 'deployed' 'v42'` (sent at once, unbatched).
    Event(EventArgs),
}

/// What every kind takes: where from, tags, the collector, how long to wait.
#[derive(Args, Debug, Clone)]
pub struct EmitCommon {
    /// The envelope's source id (stored under `loggregator/<source id>/+/<instance id>`).
    #[arg(long, env = "WEIR_SOURCE_ID", default_value = "weir-cli")]
    pub source_id: String,
    /// The envelope's instance id (empty: stored as instance `0`).
    #[arg(long, default_value = "")]
    pub instance_id: String,
    /// A tag on the envelope; repeat for more.
    #[arg(long = "tag", value_name = "KEY=VALUE", value_parser = parse::tag)]
    pub tags: Vec<(String, String)>,
    /// Fail when the collector has not confirmed the envelope after this long.
    #[arg(long, default_value = "10s", value_parser = parse::duration)]
    pub timeout: Duration,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// `weir emit log`.
#[derive(Args, Debug)]
pub struct LogArgs {
    /// The payload.
    pub message: String,
    /// Mark the log as stderr (default stdout).
    #[arg(long)]
    pub stderr: bool,
    #[command(flatten)]
    pub common: EmitCommon,
}

/// `weir emit counter`.
#[derive(Args, Debug)]
pub struct CounterArgs {
    /// The counter's name.
    pub name: String,
    /// Increment since the last emit [default: 1].
    #[arg(long, conflicts_with = "total")]
    pub delta: Option<u64>,
    /// A running total instead (the delta is sent as 0).
    #[arg(long)]
    pub total: Option<u64>,
    #[command(flatten)]
    pub common: EmitCommon,
}

/// `weir emit gauge`.
#[derive(Args, Debug)]
pub struct GaugeArgs {
    /// One or more `NAME=VALUE[:UNIT]`; a repeated name keeps its last value.
    #[arg(required = true, value_name = "NAME=VALUE[:UNIT]", value_parser = parse::gauge)]
    pub metrics: Vec<GaugeMetric>,
    #[command(flatten)]
    pub common: EmitCommon,
}

/// `weir emit timer`.
#[derive(Args, Debug)]
pub struct TimerArgs {
    /// The timer's name.
    pub name: String,
    /// Start, Unix nanoseconds (with STOP).
    #[arg(requires = "stop", conflicts_with = "duration")]
    pub start: Option<i64>,
    /// Stop, Unix nanoseconds.
    pub stop: Option<i64>,
    /// Instead of START and STOP: a timer of this length ending now (e.g. `250ms`).
    #[arg(long, value_parser = parse::duration)]
    pub duration: Option<Duration>,
    #[command(flatten)]
    pub common: EmitCommon,
}

/// `weir emit event`.
#[derive(Args, Debug)]
pub struct EventArgs {
    /// The event's title.
    pub title: String,
    /// The event's body.
    pub body: String,
    #[command(flatten)]
    pub common: EmitCommon,
}

impl EmitCommand {
    fn common(&self) -> &EmitCommon {
        match self {
            EmitCommand::Log(a) => &a.common,
            EmitCommand::Counter(a) => &a.common,
            EmitCommand::Gauge(a) => &a.common,
            EmitCommand::Timer(a) => &a.common,
            EmitCommand::Event(a) => &a.common,
        }
    }
}

/// Runs `weir emit …`.
pub async fn run(cmd: EmitCommand) -> anyhow::Result<()> {
    let common = cmd.common().clone();
    // Fail fast, with a clear message, when the collector cannot be reached at all.
    drop(common.conn.channel().await?);
    let cancel = CancellationToken::new();
    let client = build(&common, cancel.clone())?;
    let queued = match &cmd {
        EmitCommand::Log(a) => {
            let kind = if a.stderr { LogType::Err } else { LogType::Out };
            client.emit_log(a.message.clone().into_bytes(), kind)
        }
        EmitCommand::Counter(a) => {
            let value = match (a.delta, a.total) {
                (_, Some(total)) => CounterValue::Total(total),
                (Some(delta), None) => CounterValue::Delta(delta),
                (None, None) => CounterValue::default(),
            };
            client.emit_counter(a.name.clone(), value)
        }
        EmitCommand::Gauge(a) => client.emit_gauge(
            a.metrics
                .iter()
                .map(|m| (m.name.clone(), m.value, m.unit.clone())),
        ),
        EmitCommand::Timer(a) => {
            let (start, stop) = timer_bounds(a)?;
            client.emit_timer(a.name.clone(), start, stop)
        }
        EmitCommand::Event(a) => {
            let sent = tokio::time::timeout(
                common.timeout,
                client.emit_event(a.title.clone(), a.body.clone()),
            )
            .await;
            cancel.cancel();
            return match sent {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e).context("the event was not delivered"),
                Err(_) => bail!(
                    "the event was not delivered: no answer from {} within {:?}",
                    common.conn.addr,
                    common.timeout
                ),
            };
        }
    };
    if !queued {
        bail!("the envelope was dropped before sending (1 dropped)");
    }
    match tokio::time::timeout(common.timeout, client.close_send()).await {
        Ok(Ok(())) if client.dropped() == 0 => Ok(()),
        Ok(Ok(())) => bail!("not delivered: {} dropped", client.dropped()),
        Ok(Err(e)) => Err(e).context(format!("not delivered: {} dropped", client.dropped())),
        Err(_) => {
            cancel.cancel();
            let _ = client.close_send().await;
            bail!(
                "not delivered: the collector at {} did not confirm within {:?} ({} dropped)",
                common.conn.addr,
                common.timeout,
                client.dropped().max(1)
            )
        }
    }
}

fn build(common: &EmitCommon, cancel: CancellationToken) -> anyhow::Result<IngressClient> {
    let mut builder = IngressClient::builder()
        .addr(common.conn.addr.clone())
        .source(SourceInfo::new(
            common.source_id.clone(),
            "",
            common.instance_id.clone(),
        ))
        .cancellation(cancel);
    if let Some(tls) = common.conn.client_tls()? {
        builder = builder.tls(tls);
    }
    for (k, v) in &common.tags {
        builder = builder.tag(k.clone(), v.clone());
    }
    builder.build().context("cannot build the ingress client")
}

/// A timer's start and stop in Unix nanoseconds: as given, or `--duration` ending now.
fn timer_bounds(a: &TimerArgs) -> anyhow::Result<(i64, i64)> {
    match (a.start, a.stop, a.duration) {
        (Some(start), Some(stop), None) => {
            anyhow::ensure!(stop >= start, "STOP ({stop}) is before START ({start})");
            Ok((start, stop))
        }
        (None, None, Some(d)) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .context("the clock is before 1970")?;
            let stop = i64::try_from(now.as_nanos()).context("the clock is past 2262")?;
            let length = i64::try_from(d.as_nanos()).context("--duration is too long")?;
            Ok((stop.saturating_sub(length), stop))
        }
        _ => bail!("give START and STOP (Unix nanoseconds) or --duration"),
    }
}
