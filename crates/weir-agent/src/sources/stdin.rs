//! The `stdin` source: lines of the agent's standard input, one stream.
//!
//! ```toml
//! [sources.input]
//! type = "stdin"
//! stream = "host/{hostname}/+/stdin"   # {hostname} and {source} are replaced
//! max_line_bytes = 1048576             # longer lines are cut into pieces
//! terminate = false                    # terminate the stream when the input ends
//! ```
//!
//! Standard input cannot be read again, so its lines are written to the spool before
//! anything else happens to them (DESIGN.md, Guarantee 2); the agent numbers them
//! (see `runtime::numbering`), and the numbering continues across restarts.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::mpsc;
use weir_core::path::{StreamPath, to_segment};

/// `[sources.NAME] type = "stdin"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StdinConfig {
    /// The stream path; `{hostname}` and `{source}` are replaced by valid segments.
    pub stream: String,
    /// Longest line in bytes; a longer one is cut into pieces of this size.
    pub max_line_bytes: usize,
    /// Terminate the stream (no more entries, ever) when the input ends. Default false:
    /// the next start continues the stream.
    pub terminate: bool,
    /// Mark entries as stderr output (`weir run` sets it for the command's stderr).
    pub stderr: bool,
}

impl Default for StdinConfig {
    fn default() -> Self {
        StdinConfig {
            stream: "host/{hostname}/+/stdin".into(),
            max_line_bytes: 1 << 20,
            terminate: false,
            stderr: false,
        }
    }
}

impl StdinConfig {
    /// The stream path for source `name`, checked.
    pub fn stream_path(&self, name: &str) -> Result<String, String> {
        let path = self
            .stream
            .replace("{hostname}", &to_segment(&super::file::hostname()))
            .replace("{source}", &to_segment(name));
        StreamPath::parse_producer(&path)
            .map_err(|e| format!("stream {:?} gives {path:?}: {e}", self.stream))?;
        if !(1..=64 << 20).contains(&self.max_line_bytes) {
            return Err(format!(
                "max_line_bytes = {} is outside 1..=67108864",
                self.max_line_bytes
            ));
        }
        Ok(path)
    }
}

/// Reads lines (without their `\n`) from `input` into `lines` until end of input or
/// until `lines` is closed; a last line without `\n` is sent too. Lines longer than
/// `max_line` are sent in pieces. Returns how many lines were split.
pub async fn read_lines<R: AsyncRead + Unpin, T: From<Bytes>>(
    input: R,
    max_line: usize,
    lines: mpsc::Sender<T>,
) -> std::io::Result<u64> {
    let mut reader = BufReader::with_capacity(64 << 10, input);
    let mut line = Vec::new();
    let mut split = 0;
    loop {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            if !line.is_empty() {
                let _ = lines
                    .send(Bytes::from(std::mem::take(&mut line)).into())
                    .await;
            }
            return Ok(split);
        }
        let newline = memchr::memchr(b'\n', buf);
        let room = max_line - line.len();
        match newline {
            Some(i) if i <= room => {
                line.extend_from_slice(&buf[..i]);
                reader.consume(i + 1);
            }
            _ => {
                let take = newline.unwrap_or(buf.len()).min(room);
                line.extend_from_slice(&buf[..take]);
                reader.consume(take);
                if line.len() < max_line {
                    continue;
                }
                split += 1;
            }
        }
        if lines
            .send(Bytes::from(std::mem::take(&mut line)).into())
            .await
            .is_err()
        {
            return Ok(split);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_pieces_and_last_line() {
        let (tx, mut rx) = mpsc::channel::<Bytes>(16);
        let input: &[u8] = b"a\nbcdefg\n\nxyz";
        let split = read_lines(input, 4, tx).await.unwrap();
        let mut got = Vec::new();
        while let Some(l) = rx.recv().await {
            got.push(String::from_utf8(l.to_vec()).unwrap());
        }
        assert_eq!(got, vec!["a", "bcde", "fg", "", "xyz"]);
        assert_eq!(split, 1);
    }

    #[test]
    fn stream_path_is_checked() {
        let c = StdinConfig::default();
        assert!(c.stream_path("in").unwrap().ends_with("/+/stdin"));
        let bad = StdinConfig {
            stream: "nope".into(),
            ..StdinConfig::default()
        };
        assert!(bad.stream_path("in").is_err());
    }
}
