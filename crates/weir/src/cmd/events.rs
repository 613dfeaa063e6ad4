//! `weir events [--type T] [--since 10m] [-f]`: the collector's own events (started,
//! stream refused, subscriber dropping, retention, event queue paused, …), read over
//! HTTP from `GET /v1/events` (the HTTP listener's address, not gRPC's). Agents' events
//! are there too (member = the agent's name). With `--tls-ca` (and `--tls-cert` /
//! `--tls-key` for mutual TLS) it speaks HTTPS to a collector serving TLS.

use std::io::Write;

use anyhow::{Context, bail};
use clap::Args;
use serde_json::Value;
use weir_client::tls::ClientTls;

/// Flags of `weir events`.
#[derive(Args, Debug)]
pub struct EventsArgs {
    /// Only events of this type (e.g. `stream_conflict`, `subscriber_dropping`).
    #[arg(long = "type", short = 't', value_name = "TYPE")]
    pub kind: Option<String>,
    /// Only events of the last DURATION (`10m`, `24h`, `7d`) [default: all retained].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub since: Option<std::time::Duration>,
    /// Keep printing new events as they happen.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// One event per line as JSON (the form of `GET /v1/events`).
    #[arg(long)]
    pub json: bool,
    /// Collector HTTP address, HOST:PORT.
    #[arg(long, env = "WEIR_HTTP_ADDR", default_value = "127.0.0.1:8088")]
    pub http_addr: String,
    /// CA certificate (PEM) that the collector's certificate must chain to; turns
    /// HTTPS on.
    #[arg(long, env = "WEIR_TLS_CA", value_name = "FILE")]
    pub tls_ca: Option<std::path::PathBuf>,
    /// Client certificate (PEM), for a collector that requires mutual TLS.
    #[arg(
        long,
        env = "WEIR_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key",
        requires = "tls_ca"
    )]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, env = "WEIR_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    weir_core::duration::parse(s).map_err(|e| e.to_string())
}

impl EventsArgs {
    /// The HTTP client: plain, or trusting `--tls-ca` (and presenting `--tls-cert`).
    fn client(&self) -> anyhow::Result<reqwest::Client> {
        let Some(ca) = &self.tls_ca else {
            return Ok(reqwest::Client::new());
        };
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => ClientTls::mutual(ca, cert, key)?,
            _ => ClientTls::server_only(ca)?,
        };
        Ok(tls.apply_http(reqwest::Client::builder())?.build()?)
    }

    fn url(&self, from: Option<u64>) -> String {
        let base = if self.http_addr.contains("://") {
            self.http_addr.clone()
        } else if self.tls_ca.is_some() {
            format!("https://{}", self.http_addr)
        } else {
            format!("http://{}", self.http_addr)
        };
        let mut q = form_query(&[
            ("type", self.kind.clone()),
            (
                "since",
                self.since.map(|d| {
                    weir_core::now_ns()
                        .saturating_sub(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
                        .to_string()
                }),
            ),
            ("from", from.map(|f| f.to_string())),
        ]);
        if self.follow {
            q.push_str(if q.is_empty() {
                "follow=true"
            } else {
                "&follow=true"
            });
        }
        format!("{}/v1/events?{q}", base.trim_end_matches('/'))
    }
}

/// `k=v&…` of the pairs that have a value; values are percent-encoded.
fn form_query(pairs: &[(&str, Option<String>)]) -> String {
    pairs
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", encode(v))))
        .collect::<Vec<_>>()
        .join("&")
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// One event as a line: time, type, member, message, then the fields as `k=v`.
fn line(event: &Value, json: bool) -> String {
    if json {
        return event.to_string();
    }
    let s = |k: &str| event[k].as_str().unwrap_or("").to_string();
    let mut out = format!(
        "{} {} {} {}",
        s("timestamp"),
        s("type"),
        s("member"),
        s("message")
    );
    if let Some(fields) = event["fields"].as_object() {
        for (k, v) in fields {
            out.push_str(&format!(" {k}={}", v.as_str().unwrap_or("")));
        }
    }
    out
}

async fn error_of(resp: reqwest::Response) -> anyhow::Error {
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    anyhow::anyhow!(
        "the collector answered {status}: {}",
        body["message"].as_str().unwrap_or("no reason given")
    )
}

/// Prints the events, then (with `-f`) new ones until the collector ends the stream.
pub async fn run(args: EventsArgs) -> anyhow::Result<()> {
    let client = args.client()?;
    let unreachable = || {
        format!(
            "cannot reach the collector's HTTP listener at {} (is `weir serve` running? set --http-addr or WEIR_HTTP_ADDR)",
            args.http_addr
        )
    };
    let stdout = std::io::stdout();
    if args.follow {
        let mut resp = client
            .get(args.url(None))
            .send()
            .await
            .with_context(unreachable)?;
        if !resp.status().is_success() {
            return Err(error_of(resp).await);
        }
        let mut buf = String::new();
        while let Some(chunk) = resp.chunk().await.context("reading events")? {
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let event: String = buf.drain(..end + 2).collect();
                let event = event.trim_end();
                if let Some(data) = event.strip_prefix("data: ") {
                    let value: Value = serde_json::from_str(data).context("event JSON")?;
                    writeln!(stdout.lock(), "{}", line(&value, args.json))?;
                } else if let Some(err) = event.strip_prefix("event: error\ndata: ") {
                    bail!("the collector ended the event stream: {err}");
                }
            }
        }
        return Ok(());
    }
    let mut from = None;
    loop {
        let resp = client
            .get(args.url(from))
            .send()
            .await
            .with_context(unreachable)?;
        if !resp.status().is_success() {
            return Err(error_of(resp).await);
        }
        let page: Value = resp.json().await.context("reading events")?;
        let mut out = stdout.lock();
        for event in page["events"].as_array().into_iter().flatten() {
            writeln!(out, "{}", line(event, args.json))?;
        }
        let next = page["next"].as_u64();
        if next.is_none() || next == from {
            return Ok(());
        }
        from = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_carries_the_filters() {
        let args = EventsArgs {
            kind: Some("stream_conflict".into()),
            since: None,
            follow: true,
            json: false,
            http_addr: "127.0.0.1:9".into(),
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
        };
        assert_eq!(
            args.url(Some(4)),
            "http://127.0.0.1:9/v1/events?type=stream_conflict&from=4&follow=true"
        );
        let tls = EventsArgs {
            tls_ca: Some("ca.pem".into()),
            follow: false,
            ..args
        };
        assert_eq!(
            tls.url(None),
            "https://127.0.0.1:9/v1/events?type=stream_conflict"
        );
    }

    #[test]
    fn line_names_type_member_and_fields() {
        let v = serde_json::json!({
            "timestamp": "2026-01-01T00:00:00Z", "type": "stream_conflict",
            "member": "n1", "message": "refused", "fields": {"stream": "a/+/b"}
        });
        assert_eq!(
            line(&v, false),
            "2026-01-01T00:00:00Z stream_conflict n1 refused stream=a/+/b"
        );
    }
}
