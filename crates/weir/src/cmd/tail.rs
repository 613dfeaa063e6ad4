//! `weir tail`: live envelopes, or a stored stream followed.
//!
//! - `weir tail [--source ID]… [--type log,counter,…] [--shard ID] [--json]`: envelopes
//!   as they are stored, from `loggregator.v2.Egress/BatchedReceiver` (weir-client's
//!   `EnvelopeStreamConnector`, which reconnects when the collector restarts). One line
//!   per envelope (see [`super::format`]), or with `--json` one Loggregator protojson
//!   envelope per line (what `/v2/read` carries). Runs until interrupted.
//! - `weir tail -f PATH [--from N]`: one stored stream through `weir.v1.Streams/Follow`:
//!   its history from index N, then live entries; ends (exit 0) when the stream is
//!   terminated and every entry was printed. Lines as `weir cat` prints them (`--json`:
//!   one people-JSON object per entry).
//! - `weir tail -f PREFIX/`: every stream under the prefix, new ones included, each line
//!   labelled with its stream (`PATH: …`; in `--json` the `stream` field). Runs until
//!   interrupted.

use std::io::Write;

use anyhow::Context;
use clap::{Args, ValueEnum};
use tokio_util::sync::CancellationToken;
use weir_client::EnvelopeStreamConnector;
use weir_proto::lv2::selector::Message as Wants;
use weir_proto::lv2::{
    CounterSelector, EgressBatchRequest, EventSelector, GaugeSelector, LogSelector, Selector,
    TimerSelector,
};
use weir_proto::wv1::{FollowRequest, ReadResponse};

use super::conn::ConnArgs;
use super::format::envelope_line;
use super::read::{connect, status_error, write_human};

/// `weir tail`.
#[derive(Args, Debug)]
pub struct TailArgs {
    /// Only envelopes of this source id; repeat for more [default: every source].
    #[arg(long = "source", value_name = "ID", conflicts_with = "follow")]
    pub sources: Vec<String>,
    /// Only these kinds, comma-separated [default: all].
    #[arg(
        long = "type",
        value_name = "KINDS",
        value_enum,
        value_delimiter = ',',
        conflicts_with = "follow"
    )]
    pub types: Vec<Kind>,
    /// Join a shard group: tails with the same shard id (and selectors) split the
    /// envelopes between them; different ids each get everything.
    #[arg(long, value_name = "ID", default_value = "", conflicts_with = "follow")]
    pub shard: String,
    /// Follow a stored stream (PATH: history, then live, until it is terminated), or every
    /// stream under PREFIX/ (ending in `/`; new streams included, lines labelled).
    #[arg(short = 'f', long = "follow", value_name = "PATH")]
    pub follow: Option<String>,
    /// With -f: the first index wanted.
    #[arg(long, default_value_t = 0, requires = "follow")]
    pub from: u64,
    /// JSON lines: Loggregator protojson envelopes live, people-JSON entries with -f.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// An envelope kind, as `--type` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    Log,
    Counter,
    Gauge,
    Timer,
    Event,
}

impl Kind {
    fn wants(self) -> Wants {
        match self {
            Kind::Log => Wants::Log(LogSelector {}),
            Kind::Counter => Wants::Counter(CounterSelector::default()),
            Kind::Gauge => Wants::Gauge(GaugeSelector::default()),
            Kind::Timer => Wants::Timer(TimerSelector {}),
            Kind::Event => Wants::Event(EventSelector {}),
        }
    }
}

/// Runs `weir tail …` until interrupted (or, following one stream, until it ends).
pub async fn run(args: TailArgs) -> anyhow::Result<()> {
    let cancel = CancellationToken::new();
    let on_interrupt = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_interrupt.cancel();
        }
    });
    let result = match &args.follow {
        Some(target) => follow(&args, target, cancel).await,
        None => live(&args, cancel).await,
    };
    ignore_broken_pipe(result)
}

/// The `BatchedReceiver` request: every (source × kind) pair.
fn request(args: &TailArgs) -> EgressBatchRequest {
    let kinds: Vec<Kind> = if args.types.is_empty() {
        Kind::value_variants().to_vec()
    } else {
        args.types.clone()
    };
    let sources: Vec<String> = if args.sources.is_empty() {
        vec![String::new()]
    } else {
        args.sources.clone()
    };
    let selectors = sources
        .iter()
        .flat_map(|s| {
            kinds.iter().map(move |k| Selector {
                source_id: s.clone(),
                message: Some(k.wants()),
            })
        })
        .collect();
    EgressBatchRequest {
        shard_id: args.shard.clone(),
        selectors,
        use_preferred_tags: true,
        ..Default::default()
    }
}

async fn live(args: &TailArgs, cancel: CancellationToken) -> anyhow::Result<()> {
    // Fail fast when the collector cannot be reached at all; later breaks reconnect.
    drop(args.conn.channel().await?);
    let connector = EnvelopeStreamConnector::new(&args.conn.addr, args.conn.client_tls()?)
        .context("cannot set up the egress client")?;
    let mut stream = connector.stream(cancel, request(args));
    let stdout = std::io::stdout();
    while let Some(batch) = stream.next().await {
        let mut out = stdout.lock();
        for env in &batch {
            if args.json {
                writeln!(out, "{}", weir_core::json::envelope_to_json(env))?;
            } else {
                writeln!(out, "{}", envelope_line(env))?;
            }
        }
        out.flush()?;
    }
    Ok(())
}

async fn follow(args: &TailArgs, target: &str, cancel: CancellationToken) -> anyhow::Result<()> {
    let prefix_follow = target.ends_with('/');
    let request = if prefix_follow {
        FollowRequest {
            prefix: target.to_string(),
            from: args.from,
            ..Default::default()
        }
    } else {
        FollowRequest {
            path: target.to_string(),
            from: args.from,
            ..Default::default()
        }
    };
    let mut client = connect(&args.conn).await?;
    let mut responses = client
        .follow(request)
        .await
        .map_err(|s| status_error(&format!("following {target}"), s))?
        .into_inner();
    let stdout = std::io::stdout();
    loop {
        let message = tokio::select! {
            () = cancel.cancelled() => return Ok(()),
            m = responses.message() => m,
        };
        match message {
            Ok(Some(response)) => {
                let mut out = stdout.lock();
                print_response(&mut out, &response, prefix_follow, args.json)?;
                out.flush()?;
            }
            // The stream was terminated and everything was sent.
            Ok(None) => return Ok(()),
            Err(s) => return Err(status_error(&format!("following {target}"), s)),
        }
    }
}

/// Prints the entries of one follow response (and a note when reading started above the
/// requested index because older entries expired).
fn print_response(
    out: &mut impl Write,
    response: &ReadResponse,
    label: bool,
    json: bool,
) -> std::io::Result<()> {
    let stream = response.stream.as_ref().map(|s| s.path.as_str());
    if response.below_low_water {
        eprintln!(
            "weir: entries below {} of {} have expired; starting there",
            response.started_at,
            stream.unwrap_or("the stream")
        );
    }
    for entry in &response.entries {
        let Some(env) = &entry.envelope else { continue };
        let path = if entry.path.is_empty() {
            stream.unwrap_or_default()
        } else {
            &entry.path
        };
        if json {
            let v = weir_core::json::people_entry(path, entry.index, entry.ingest_ns, env);
            writeln!(out, "{v}")?;
        } else {
            if label {
                write!(out, "{path}: ")?;
            }
            write_human(out, env)?;
        }
    }
    Ok(())
}

/// A closed stdout (`weir tail | head`) ends the command quietly.
fn ignore_broken_pipe(result: anyhow::Result<()>) -> anyhow::Result<()> {
    match result {
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            Ok(())
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        tail: TailArgs,
    }

    #[test]
    fn selectors_cross_sources_and_kinds() {
        let cli = Cli::parse_from([
            "tail",
            "--source",
            "a",
            "--source",
            "b",
            "--type",
            "log,counter",
            "--shard",
            "g",
        ]);
        let r = request(&cli.tail);
        assert_eq!(r.shard_id, "g");
        assert_eq!(r.selectors.len(), 4);
        assert!(r.use_preferred_tags);
        let all = request(&Cli::parse_from(["tail"]).tail);
        assert_eq!(all.selectors.len(), 5);
        assert!(all.selectors.iter().all(|s| s.source_id.is_empty()));
    }

    #[test]
    fn follow_excludes_live_filters() {
        assert!(Cli::try_parse_from(["tail", "-f", "a/+/b", "--type", "log"]).is_err());
        assert!(Cli::try_parse_from(["tail", "--from", "3"]).is_err());
        let cli = Cli::try_parse_from(["tail", "-f", "a/+/b", "--from", "3"]).unwrap();
        assert_eq!(cli.tail.from, 3);
    }
}
