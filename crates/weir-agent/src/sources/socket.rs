//! The `socket` source: a unix socket where local programs send metrics as JSON lines,
//! one object per line:
//!
//! ```json
//! {"key": "requests", "value": 12.5, "time": 1700000000000000000, "labels": {"route": "/api"}}
//! ```
//!
//! `key` and `value` are required; `time` (Unix nanoseconds) defaults to now; `labels`
//! become the envelope's tags. Each metric is one gauge envelope of the source's stream.
//! Only the names listed in `metrics` are accepted: any other gets an error reply naming
//! it, and nothing of it is kept. Every line gets one reply line, in order:
//! `{"ok":true}` once the metric is in the spool (durable per the spool's fsync policy),
//! or `{"error":"…"}`.
//!
//! ```toml
//! [sources.metrics]
//! type = "socket"
//! path = "/run/weir/metrics.sock"
//! metrics = ["requests", "memory_bytes"]
//! stream = "host/{hostname}/+/metrics/{source}"
//! timeout_ms = 3000          # read and write timeout of a connection
//! max_connections = 64
//! max_line_bytes = 65536
//! ```

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Semaphore, mpsc, oneshot};
use weir_core::Envelope;
use weir_core::path::{StreamPath, to_segment};
use weir_proto::lv2::{Gauge, GaugeValue, envelope::Message as Body};

/// `[sources.NAME] type = "socket"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SocketConfig {
    /// The unix socket's path (a stale socket file there is replaced). Required.
    pub path: PathBuf,
    /// The metric names accepted. Required (at least one).
    pub metrics: BTreeSet<String>,
    /// The stream path; `{hostname}` and `{source}` are replaced by valid segments.
    pub stream: String,
    /// Read and write timeout of a connection, milliseconds. Default 3000.
    pub timeout_ms: u64,
    /// Connections served at once; more wait to be accepted. Default 64.
    pub max_connections: usize,
    /// Longest line; a longer one is refused and the connection closed. Default 64 KiB.
    pub max_line_bytes: usize,
}

impl Default for SocketConfig {
    fn default() -> Self {
        SocketConfig {
            path: PathBuf::new(),
            metrics: BTreeSet::new(),
            stream: "host/{hostname}/+/metrics/{source}".into(),
            timeout_ms: 3000,
            max_connections: 64,
            max_line_bytes: 64 << 10,
        }
    }
}

impl SocketConfig {
    /// Checks the config; returns the stream path for source `name`.
    pub fn stream_path(&self, name: &str) -> Result<String, String> {
        if self.path.as_os_str().is_empty() {
            return Err("`path` is required: the unix socket to listen on".into());
        }
        if self.metrics.is_empty() {
            return Err("`metrics` is empty: declare the metric names to accept".into());
        }
        if !(1..=600_000).contains(&self.timeout_ms) || self.max_connections == 0 {
            return Err("timeout_ms must be 1..=600000 and max_connections above 0".into());
        }
        if !(64..=16 << 20).contains(&self.max_line_bytes) {
            return Err("max_line_bytes must be 64..=16777216".into());
        }
        let path = self
            .stream
            .replace("{hostname}", &to_segment(&super::file::hostname()))
            .replace("{source}", &to_segment(name));
        StreamPath::parse_producer(&path)
            .map_err(|e| format!("stream {:?} gives {path:?}: {e}", self.stream))?;
        Ok(path)
    }
}

/// A metric accepted from the socket, and where to say whether it reached the spool.
pub type Accepted = (Envelope, oneshot::Sender<bool>);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Metric {
    key: String,
    value: f64,
    #[serde(default)]
    time: Option<i64>,
    #[serde(default)]
    labels: HashMap<String, String>,
}

/// Parses one line into an envelope, or the error to reply.
fn parse(line: &[u8], declared: &BTreeSet<String>, source: &str) -> Result<Envelope, String> {
    let m: Metric = serde_json::from_slice(line).map_err(|e| format!("bad metric line: {e}"))?;
    if !declared.contains(&m.key) {
        return Err(format!(
            "metric {:?} is not declared in this source's `metrics`",
            m.key
        ));
    }
    Ok(Envelope {
        timestamp: m.time.unwrap_or_else(weir_core::now_ns),
        source_id: source.to_string(),
        tags: m.labels,
        message: Some(Body::Gauge(Gauge {
            metrics: [(
                m.key,
                GaugeValue {
                    unit: String::new(),
                    value: m.value,
                },
            )]
            .into(),
        })),
        ..Default::default()
    })
}

/// Binds the socket (replacing a stale socket file).
pub fn bind(config: &SocketConfig) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::FileTypeExt;
    if let Ok(meta) = std::fs::symlink_metadata(&config.path)
        && meta.file_type().is_socket()
    {
        std::fs::remove_file(&config.path)?;
    }
    UnixListener::bind(&config.path)
}

/// Serves connections until the task is dropped (aborting it ends every connection).
pub async fn serve(
    listener: UnixListener,
    config: SocketConfig,
    source: String,
    out: mpsc::Sender<Accepted>,
) {
    let limit = Arc::new(Semaphore::new(config.max_connections));
    let declared = Arc::new(config.metrics.clone());
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let Ok(permit) = limit.clone().acquire_owned().await else {
            return;
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(source = %source, error = %e, "socket accept failed");
                    continue;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
        };
        let (declared, out, source) = (declared.clone(), out.clone(), source.clone());
        let timeout = Duration::from_millis(config.timeout_ms);
        let max_line = config.max_line_bytes;
        conns.spawn(async move {
            connection(stream, declared, source, out, timeout, max_line).await;
            drop(permit);
        });
    }
}

/// One client: reads lines, hands accepted metrics on, replies in order.
async fn connection(
    stream: UnixStream,
    declared: Arc<BTreeSet<String>>,
    source: String,
    out: mpsc::Sender<Accepted>,
    timeout: Duration,
    max_line: usize,
) {
    let (read, mut write) = stream.into_split();
    let (replies_tx, mut replies) = mpsc::channel::<Result<oneshot::Receiver<bool>, String>>(1024);
    let writer = tokio::spawn(async move {
        while let Some(r) = replies.recv().await {
            let line = match r {
                Ok(done) => match done.await {
                    Ok(true) => "{\"ok\":true}\n".to_string(),
                    _ => "{\"error\":\"the agent could not keep this metric (spool failed or shutting down)\"}\n".to_string(),
                },
                Err(e) => format!("{}\n", serde_json::json!({ "error": e })),
            };
            match tokio::time::timeout(timeout, write.write_all(line.as_bytes())).await {
                Ok(Ok(())) => {}
                _ => return,
            }
        }
    });
    let mut reader = BufReader::new(read);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = match tokio::time::timeout(
            timeout,
            (&mut reader)
                .take(max_line as u64 + 1)
                .read_until(b'\n', &mut line),
        )
        .await
        {
            Ok(Ok(n)) => n,
            _ => break, // timeout or error: the connection is closed
        };
        if n == 0 {
            break;
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        } else if line.len() > max_line {
            let _ = replies_tx
                .send(Err(format!("line longer than {max_line} bytes")))
                .await;
            break;
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let reply = match parse(&line, &declared, &source) {
            Ok(env) => {
                let (done_tx, done_rx) = oneshot::channel();
                if out.send((env, done_tx)).await.is_err() {
                    break;
                }
                Ok(done_rx)
            }
            Err(e) => Err(e),
        };
        if replies_tx.send(reply).await.is_err() {
            break;
        }
    }
    drop(replies_tx);
    let _ = writer.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_declared_and_names_the_others() {
        let declared: BTreeSet<String> = ["requests".to_string()].into();
        let env = parse(
            br#"{"key":"requests","value":2.5,"time":7,"labels":{"a":"b"}}"#,
            &declared,
            "m",
        )
        .unwrap();
        assert_eq!(env.timestamp, 7);
        assert_eq!(env.tags["a"], "b");
        let e = parse(br#"{"key":"bogus","value":1}"#, &declared, "m").unwrap_err();
        assert!(e.contains("\"bogus\""), "{e}");
        assert!(parse(b"{nope", &declared, "m").is_err());
    }
}
