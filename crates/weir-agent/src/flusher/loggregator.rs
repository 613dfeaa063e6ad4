//! `loggregator`: envelopes to any Loggregator v2 server (an Agent, or weir).
//!
//! Acknowledged = unary `Send` returned OK (`BatchSender` has no per-batch answer, so it
//! cannot acknowledge). `InvalidArgument` is permanent (dead letter); any other failure
//! is transient and the batch is retried.

use serde::{Deserialize, Serialize};
use weir_proto::lv2::{EnvelopeBatch, ingress_client::IngressClient};

use super::{Batch, Flusher, FlusherError, StreamAck, ack_all};

/// `[flushers.NAME] type = "loggregator"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoggregatorConfig {
    /// The server's gRPC address, `HOST:PORT` (or a URL).
    pub addr: String,
    /// Time allowed for one batch, milliseconds.
    pub timeout_ms: u64,
}

impl Default for LoggregatorConfig {
    fn default() -> Self {
        LoggregatorConfig {
            addr: "127.0.0.1:3458".into(),
            timeout_ms: 30_000,
        }
    }
}

/// Sends batches with `loggregator.v2.Ingress/Send`.
pub struct LoggregatorFlusher {
    config: LoggregatorConfig,
    client: Option<IngressClient<tonic::transport::Channel>>,
}

impl LoggregatorFlusher {
    pub fn new(config: LoggregatorConfig) -> Self {
        LoggregatorFlusher {
            config,
            client: None,
        }
    }

    fn name(&self) -> String {
        format!("loggregator {}", self.config.addr)
    }
}

#[async_trait::async_trait]
impl Flusher for LoggregatorFlusher {
    async fn init(&mut self) -> Result<(), FlusherError> {
        let channel = super::grpc_channel(&self.name(), &self.config.addr, self.config.timeout_ms)?;
        self.client = Some(IngressClient::new(channel));
        Ok(())
    }

    fn describe(&self) -> String {
        self.name()
    }

    fn is_ready(&self) -> bool {
        self.client.is_some()
    }

    async fn flush(&mut self, batch: &Batch) -> Result<Vec<StreamAck>, FlusherError> {
        let Some(mut client) = self.client.clone() else {
            return Err(FlusherError::Transient {
                flusher: self.name(),
                reason: "not initialised".into(),
            });
        };
        let envelopes = EnvelopeBatch {
            batch: batch
                .streams
                .iter()
                .flat_map(|s| s.entries.iter().map(std::borrow::Cow::into_owned))
                .collect(),
        };
        match client.send(envelopes).await {
            Ok(_) => Ok(ack_all(batch)),
            Err(s) if s.code() == tonic::Code::InvalidArgument => Ok(batch
                .streams
                .iter()
                .map(|_| StreamAck::DeadLetter {
                    reason: format!("server refused the batch: {}", s.message()),
                })
                .collect()),
            Err(s) => Err(FlusherError::Transient {
                flusher: self.name(),
                reason: format!("{:?}: {}", s.code(), s.message()),
            }),
        }
    }

    fn set_urgent(&mut self) {}

    async fn stop(&mut self) -> Result<(), FlusherError> {
        self.client = None;
        Ok(())
    }
}
