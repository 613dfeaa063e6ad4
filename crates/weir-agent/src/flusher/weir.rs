//! `weir`: bundles to the collector over gRPC (`weir.v1.Ingest/Send`), exactly once.
//!
//! Every stream is sent with its secret (see [`super::secrets`]) and the agent's stream
//! indices, so a resend after any crash is recognised by the collector as duplicates.
//! Acknowledged = the collector answered `stored`. Results map to [`StreamAck`] as
//! DESIGN.md's Contracts table says: `stored_next` acknowledges; `gap_expected` and
//! `unavailable` are retried (transient); `invalid`, `terminated_count` and
//! `conflict_index` are permanent (dead letter); `wrong_secret` opens a new generation of
//! the path and retries at once.

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use weir_proto::wv1::{self, ingest_client::IngestClient, stream_result::Result as R};

use super::secrets::{SecretBook, StreamSecret};
use super::{Batch, Flusher, FlusherError, StreamAck, StreamBatch};

/// `[flushers.NAME] type = "weir"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WeirConfig {
    /// The collector's gRPC address, `HOST:PORT` (or a URL).
    pub addr: String,
    /// Time allowed for one bundle, milliseconds.
    pub timeout_ms: u64,
    /// Content type registered for new streams.
    pub content_type: String,
}

impl Default for WeirConfig {
    fn default() -> Self {
        WeirConfig {
            addr: "127.0.0.1:3458".into(),
            timeout_ms: 30_000,
            content_type: "text/plain; charset=utf-8".into(),
        }
    }
}

/// Sends bundles to a weir collector.
pub struct WeirFlusher {
    config: WeirConfig,
    data_dir: PathBuf,
    secrets: Option<Arc<SecretBook>>,
    client: Option<IngestClient<tonic::transport::Channel>>,
}

impl WeirFlusher {
    /// A flusher keeping its secrets under `data_dir`.
    pub fn new(config: WeirConfig, data_dir: PathBuf) -> Self {
        WeirFlusher {
            config,
            data_dir,
            secrets: None,
            client: None,
        }
    }

    fn name(&self) -> String {
        format!("weir {}", self.config.addr)
    }

    fn transient(&self, reason: String) -> FlusherError {
        FlusherError::Transient {
            flusher: self.name(),
            reason,
        }
    }

    /// The append for one stream under its current generation, or why it cannot be sent.
    fn append_for(
        &self,
        s: &StreamBatch,
        secret: &StreamSecret,
    ) -> Result<wv1::StreamAppend, String> {
        if s.first_index < secret.base {
            return Err(format!(
                "entries {}..{} predate generation {} of {} (which starts at {})",
                s.first_index,
                s.end_index(),
                secret.generation,
                s.stream,
                secret.base
            ));
        }
        Ok(wv1::StreamAppend {
            path: secret.path(&s.stream),
            secret: secret.bytes(),
            descriptor: Some(wv1::StreamDescriptor {
                content_type: self.config.content_type.clone(),
                tags: Default::default(),
                created_ns: 0,
            }),
            first_index: s.first_index - secret.base,
            entries: s.entries.clone(),
            terminal_count: s.terminal_count.map(|c| c.saturating_sub(secret.base)),
        })
    }
}

#[async_trait::async_trait]
impl Flusher for WeirFlusher {
    async fn init(&mut self) -> Result<(), FlusherError> {
        let book = SecretBook::open(&self.data_dir).map_err(|e| FlusherError::Config {
            flusher: self.name(),
            reason: e.to_string(),
        })?;
        self.secrets = Some(Arc::new(book));
        let channel = super::grpc_channel(&self.name(), &self.config.addr, self.config.timeout_ms)?;
        self.client = Some(IngestClient::new(channel).max_decoding_message_size(64 << 20));
        Ok(())
    }

    fn describe(&self) -> String {
        self.name()
    }

    fn is_ready(&self) -> bool {
        self.client.is_some()
    }

    async fn flush(&mut self, batch: &Batch) -> Result<Vec<StreamAck>, FlusherError> {
        let (Some(book), Some(client)) = (self.secrets.clone(), self.client.clone()) else {
            return Err(self.transient("not initialised".into()));
        };
        let mut acks: Vec<Option<StreamAck>> = vec![None; batch.streams.len()];
        let mut bundle = wv1::Bundle::default();
        let mut sent: Vec<usize> = Vec::new();
        for (i, s) in batch.streams.iter().enumerate() {
            let secret = book
                .get(&s.stream)
                .map_err(|e| self.transient(e.to_string()))?;
            match self.append_for(s, &secret) {
                Ok(a) => {
                    bundle.streams.push(a);
                    sent.push(i);
                }
                Err(reason) => acks[i] = Some(StreamAck::DeadLetter { reason }),
            }
        }
        if !bundle.streams.is_empty() {
            let mut client = client;
            let resp = client
                .send(bundle)
                .await
                .map_err(|s| self.transient(format!("{:?}: {}", s.code(), s.message())))?
                .into_inner();
            for (k, &i) in sent.iter().enumerate() {
                let s = &batch.streams[i];
                let secret = book
                    .get(&s.stream)
                    .map_err(|e| self.transient(e.to_string()))?;
                let result = resp.results.get(k).and_then(|r| r.result.clone());
                acks[i] = Some(match result {
                    Some(R::StoredNext(n)) => StreamAck::Acked {
                        next: n + secret.base,
                    },
                    Some(R::GapExpected(e)) => StreamAck::Retry {
                        from: e + secret.base,
                        reason: format!("collector expects index {e} first"),
                    },
                    Some(R::Unavailable(r)) => StreamAck::Retry {
                        from: s.first_index,
                        reason: format!("collector unavailable: {r}"),
                    },
                    Some(R::WrongSecret(r)) => {
                        let next = book
                            .next_generation(&s.stream, s.first_index)
                            .map_err(|e| self.transient(e.to_string()))?;
                        tracing::warn!(
                            stream = %s.stream,
                            new_path = %next.path(&s.stream),
                            "collector refused our secret ({r}); the data dir was probably lost: opening a new generation"
                        );
                        StreamAck::Retry {
                            from: s.first_index,
                            reason: format!(
                                "wrong secret ({r}); moved to {}",
                                next.path(&s.stream)
                            ),
                        }
                    }
                    Some(R::Invalid(r)) => StreamAck::DeadLetter {
                        reason: format!("invalid: {r}"),
                    },
                    Some(R::TerminatedCount(c)) => StreamAck::DeadLetter {
                        reason: format!("stream is complete with {c} entries"),
                    },
                    Some(R::ConflictIndex(i)) => StreamAck::DeadLetter {
                        reason: format!("a different entry is stored at index {i}"),
                    },
                    None => StreamAck::Retry {
                        from: s.first_index,
                        reason: "collector gave no result for this stream".into(),
                    },
                });
            }
        }
        Ok(acks
            .into_iter()
            .map(|a| {
                a.unwrap_or(StreamAck::DeadLetter {
                    reason: "not sent".into(),
                })
            })
            .collect())
    }

    fn set_urgent(&mut self) {}

    async fn stop(&mut self) -> Result<(), FlusherError> {
        self.client = None;
        Ok(())
    }
}
