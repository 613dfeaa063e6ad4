//! `tcp`: newline-delimited lines (people JSON or raw) over a TCP connection.
//!
//! Acknowledged when the write returned: at-least-once, and a connection reset can lose
//! what the kernel still held (DESIGN.md, Contracts). After a failed write the batch is
//! not acknowledged and the next flush reconnects, with exponential backoff between
//! attempts (not ready while waiting).

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::{
    Batch, Flusher, FlusherError, LineEncoding, StreamAck, ack_all, encode_run, json_line,
};

/// Entries encoded per write (about 100 KiB of people JSON for log lines).
const WRITE_ENTRIES: usize = 256;

/// `[flushers.NAME] type = "tcp"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TcpConfig {
    /// `HOST:PORT` to connect to.
    pub addr: String,
    /// `json` (default) or `raw`.
    pub encoding: LineEncoding,
    /// Connect timeout, milliseconds.
    pub connect_timeout_ms: u64,
    /// Write timeout for one batch, milliseconds.
    pub write_timeout_ms: u64,
}

impl Default for TcpConfig {
    fn default() -> Self {
        TcpConfig {
            addr: "127.0.0.1:9000".into(),
            encoding: LineEncoding::Json,
            connect_timeout_ms: 3000,
            write_timeout_ms: 10_000,
        }
    }
}

/// Writes batches to a TCP peer.
pub struct TcpFlusher {
    config: TcpConfig,
    conn: Option<TcpStream>,
    buf: Vec<u8>,
    failures: u32,
    next_attempt: Option<Instant>,
}

impl TcpFlusher {
    pub fn new(config: TcpConfig) -> Self {
        TcpFlusher {
            config,
            conn: None,
            buf: Vec::new(),
            failures: 0,
            next_attempt: None,
        }
    }

    fn err(&self, reason: String) -> FlusherError {
        FlusherError::Transient {
            flusher: format!("tcp {}", self.config.addr),
            reason,
        }
    }

    fn failed(&mut self, reason: String) -> FlusherError {
        self.conn = None;
        self.failures = self.failures.saturating_add(1);
        let backoff =
            Duration::from_millis(100u64 << self.failures.min(6)).min(Duration::from_secs(5));
        self.next_attempt = Some(Instant::now() + backoff);
        self.err(reason)
    }

    async fn connect(&mut self) -> Result<(), FlusherError> {
        let timeout = Duration::from_millis(self.config.connect_timeout_ms);
        match tokio::time::timeout(timeout, TcpStream::connect(&self.config.addr)).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                self.conn = Some(s);
                Ok(())
            }
            Ok(Err(e)) => Err(self.failed(format!("cannot connect: {e}"))),
            Err(_) => Err(self.failed(format!("connect timed out after {timeout:?}"))),
        }
    }
}

#[async_trait::async_trait]
impl Flusher for TcpFlusher {
    async fn init(&mut self) -> Result<(), FlusherError> {
        if self.config.addr.is_empty() {
            return Err(FlusherError::Config {
                flusher: "tcp".into(),
                reason: "addr is required (HOST:PORT)".into(),
            });
        }
        // A peer that is down at start is not fatal: flushes retry.
        let _ = self.connect().await;
        Ok(())
    }
    fn describe(&self) -> String {
        format!("tcp {}", self.config.addr)
    }
    fn is_ready(&self) -> bool {
        self.next_attempt.is_none_or(|t| Instant::now() >= t)
    }
    async fn flush(&mut self, batch: &Batch) -> Result<Vec<StreamAck>, FlusherError> {
        if self.conn.is_none() {
            self.connect().await?;
        }
        let mut buf = std::mem::take(&mut self.buf);
        let encoding = self.config.encoding;
        let timeout = Duration::from_millis(self.config.write_timeout_ms);
        let result = match self.conn.as_mut() {
            // Encoded and written a piece at a time: the buffer stays small, and the
            // kernel sends one piece while the next is encoded.
            Some(conn) => {
                let write = async {
                    let mut json = json_line::Encoder::default();
                    for s in &batch.streams {
                        let n = s.entries.len();
                        for start in (0..n).step_by(WRITE_ENTRIES) {
                            buf.clear();
                            let end = (start + WRITE_ENTRIES).min(n);
                            encode_run(&mut buf, encoding, &mut json, s, start..end);
                            conn.write_all(&buf).await?;
                        }
                    }
                    std::io::Result::Ok(())
                };
                tokio::time::timeout(timeout, write).await
            }
            None => return Err(self.err("not connected".into())),
        };
        self.buf = buf;
        match result {
            Ok(Ok(())) => {
                self.failures = 0;
                self.next_attempt = None;
                Ok(ack_all(batch))
            }
            Ok(Err(e)) => Err(self.failed(format!("write failed: {e}"))),
            Err(_) => Err(self.failed(format!("write timed out after {timeout:?}"))),
        }
    }
    fn set_urgent(&mut self) {}
    async fn stop(&mut self) -> Result<(), FlusherError> {
        if let Some(mut c) = self.conn.take() {
            let _ = c.flush().await;
            let _ = c.shutdown().await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flusher::testing::batch;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn delivers_lines_to_a_listener_and_retries_after_it_returns() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut f = TcpFlusher::new(TcpConfig {
            addr: addr.to_string(),
            encoding: LineEncoding::Raw,
            ..TcpConfig::default()
        });
        f.init().await.unwrap();
        let (mut peer, _) = listener.accept().await.unwrap();
        assert_eq!(
            f.flush(&batch(2, 3, 0)).await.unwrap(),
            vec![StreamAck::Acked { next: 3 }, StreamAck::Acked { next: 3 }]
        );
        f.stop().await.unwrap();
        let mut got = String::new();
        peer.read_to_string(&mut got).await.unwrap();
        let lines: Vec<&str> = got.lines().collect();
        assert_eq!(lines.len(), 6);
        assert_eq!(lines[0], "s0 line 0");
        assert_eq!(lines[5], "s1 line 2");

        // Nobody listening: the flush fails and is not acknowledged.
        drop(listener);
        drop(peer);
        let mut g = TcpFlusher::new(TcpConfig {
            addr: addr.to_string(),
            ..TcpConfig::default()
        });
        g.init().await.unwrap();
        assert!(g.flush(&batch(1, 1, 0)).await.is_err());
        assert!(!g.is_ready(), "backs off after a failure");
    }
}
