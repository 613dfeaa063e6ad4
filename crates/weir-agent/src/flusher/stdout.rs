//! `stdout`: one line per entry on standard output.

use std::io::Write;

use serde::{Deserialize, Serialize};

use super::{Batch, Flusher, FlusherError, LineEncoding, StreamAck, ack_all, encode_batch};

/// `[flushers.NAME] type = "stdout"`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StdoutConfig {
    /// `json` (default) or `raw`.
    pub encoding: LineEncoding,
}

/// Writes to standard output; acknowledged once written.
pub struct StdoutFlusher {
    config: StdoutConfig,
    buf: Vec<u8>,
}

impl StdoutFlusher {
    pub fn new(config: StdoutConfig) -> Self {
        StdoutFlusher {
            config,
            buf: Vec::new(),
        }
    }
}

fn io_error(e: std::io::Error) -> FlusherError {
    FlusherError::Transient {
        flusher: "stdout".into(),
        reason: e.to_string(),
    }
}

#[async_trait::async_trait]
impl Flusher for StdoutFlusher {
    async fn init(&mut self) -> Result<(), FlusherError> {
        Ok(())
    }
    fn describe(&self) -> String {
        "stdout".into()
    }
    fn is_ready(&self) -> bool {
        true
    }
    async fn flush(&mut self, batch: &Batch) -> Result<Vec<StreamAck>, FlusherError> {
        self.buf.clear();
        encode_batch(&mut self.buf, self.config.encoding, batch);
        let mut out = std::io::stdout().lock();
        out.write_all(&self.buf).map_err(io_error)?;
        out.flush().map_err(io_error)?;
        Ok(ack_all(batch))
    }
    fn set_urgent(&mut self) {}
    async fn stop(&mut self) -> Result<(), FlusherError> {
        std::io::stdout().flush().map_err(io_error)
    }
}
