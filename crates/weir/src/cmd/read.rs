//! `weir ls` and `weir cat`: read streams from a running collector over gRPC
//! (`weir.v1.Streams`).

use std::io::Write;

use clap::Args;
use weir_core::Envelope;
use weir_proto::lv2::envelope::Message as Body;
use weir_proto::wv1::{self, streams_client::StreamsClient};

use super::conn::ConnArgs;

/// `weir ls [PREFIX]`.
#[derive(Args, Debug)]
pub struct LsArgs {
    /// Only streams whose path starts with this (e.g. `loggregator/` or `host/web1/`).
    #[arg(default_value = "")]
    pub prefix: String,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// `weir cat PATH`.
#[derive(Args, Debug)]
pub struct CatArgs {
    /// The stream's full path, `prefix/+/name`.
    pub path: String,
    /// First index to print.
    #[arg(long, default_value_t = 0)]
    pub from: u64,
    /// Print at most this many entries (default: all stored now).
    #[arg(long)]
    pub limit: Option<u64>,
    /// One entry per line as JSON (the same form as `GET /v1/entries`).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// A `weir.v1.Streams` client over a connected channel.
pub(crate) async fn connect(
    conn: &ConnArgs,
) -> anyhow::Result<StreamsClient<tonic::transport::Channel>> {
    let channel = conn.channel().await?;
    Ok(StreamsClient::new(channel).max_decoding_message_size(64 << 20))
}

/// A gRPC status as an error saying what failed.
pub(crate) fn status_error(what: &str, s: tonic::Status) -> anyhow::Error {
    // A transport failure (such as a refused TLS handshake) says why only in its source.
    let mut cause = std::error::Error::source(&s);
    let mut root = None;
    while let Some(c) = cause {
        root = Some(c.to_string());
        cause = c.source();
    }
    match root {
        Some(root) => anyhow::anyhow!("{what}: {} ({:?}): {root}", s.message(), s.code()),
        None => anyhow::anyhow!("{what}: {} ({:?})", s.message(), s.code()),
    }
}

/// Lists streams, one per line: path, entries, low-water mark, state.
pub async fn ls(args: LsArgs) -> anyhow::Result<()> {
    let mut client = connect(&args.conn).await?;
    let mut after = String::new();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    loop {
        let page = client
            .list(wv1::ListStreamsRequest {
                prefix: args.prefix.clone(),
                limit: 1000,
                after: after.clone(),
            })
            .await
            .map_err(|s| status_error("listing streams failed", s))?
            .into_inner();
        let Some(last) = page.streams.last() else {
            break;
        };
        after = last.path.clone();
        for s in &page.streams {
            let state = match s.terminal_count {
                Some(n) => format!("complete({n})"),
                None => "open".to_string(),
            };
            writeln!(
                out,
                "{}\tentries={}\tlow_water={}\t{}",
                s.path, s.next_index, s.low_water, state
            )?;
        }
    }
    Ok(())
}

/// Prints a stream's entries from `--from`, in pages, up to `--limit` or what is stored.
pub async fn cat(args: CatArgs) -> anyhow::Result<()> {
    let mut client = connect(&args.conn).await?;
    let mut from = args.from;
    let mut left = args.limit.unwrap_or(u64::MAX);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut first_page = true;
    while left > 0 {
        let page = client
            .read(wv1::ReadRequest {
                path: args.path.clone(),
                from,
                limit: left.min(10_000) as u32,
                from_time_ns: None,
            })
            .await
            .map_err(|s| status_error(&format!("reading {}", args.path), s))?
            .into_inner();
        if first_page && page.below_low_water {
            eprintln!(
                "weir: entries below {} of {} have expired; starting there",
                page.started_at, args.path
            );
        }
        first_page = false;
        if page.entries.is_empty() {
            break;
        }
        for entry in &page.entries {
            let Some(env) = &entry.envelope else { continue };
            if args.json {
                let v =
                    weir_core::json::people_entry(&args.path, entry.index, entry.ingest_ns, env);
                writeln!(out, "{v}")?;
            } else {
                write_human(&mut out, env)?;
            }
            from = entry.index + 1;
            left = left.saturating_sub(1);
        }
    }
    out.flush()?;
    Ok(())
}

/// A log as its payload (a newline added when missing); other kinds as one short line.
pub(crate) fn write_human(out: &mut impl Write, env: &Envelope) -> std::io::Result<()> {
    match &env.message {
        Some(Body::Log(l)) => {
            out.write_all(&l.payload)?;
            if !l.payload.ends_with(b"\n") {
                out.write_all(b"\n")?;
            }
            Ok(())
        }
        Some(Body::Counter(c)) => writeln!(
            out,
            "counter {} delta={} total={}",
            c.name, c.delta, c.total
        ),
        Some(Body::Gauge(g)) => {
            let mut names: Vec<_> = g.metrics.iter().collect();
            names.sort_by(|a, b| a.0.cmp(b.0));
            let parts: Vec<String> = names
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{k}={}{}",
                        v.value,
                        if v.unit.is_empty() {
                            String::new()
                        } else {
                            format!(" {}", v.unit)
                        }
                    )
                })
                .collect();
            writeln!(out, "gauge {}", parts.join(" "))
        }
        Some(Body::Timer(t)) => writeln!(
            out,
            "timer {} {} ms",
            t.name,
            (t.stop - t.start) as f64 / 1e6
        ),
        Some(Body::Event(e)) => writeln!(out, "event {}: {}", e.title, e.body),
        None => writeln!(out, "(empty envelope)"),
    }
}
