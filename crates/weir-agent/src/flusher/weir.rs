//! `weir`: bundles to the collector over gRPC (`weir.v1.Ingest/Send`), exactly once.
//!
//! Every stream is sent with its secret (see [`super::secrets`]) and the agent's stream
//! indices, so a resend after any crash is recognised by the collector as duplicates.
//! Acknowledged = the collector answered `stored`. Results map to [`StreamAck`] as
//! DESIGN.md's Contracts table says: `stored_next` acknowledges; `gap_expected` and
//! `unavailable` are retried (transient); `invalid`, `terminated_count` and
//! `conflict_index` are permanent (dead letter); `wrong_secret` opens a new generation of
//! the path and retries at once. A `gap_expected` below the batch's first index cannot be
//! filled by a resend when the entries between were dropped before reaching this flusher
//! (a `drop_oldest` spool, a damaged spool record; counted there), so it opens a new
//! generation too, after terminating the old one where the collector is (a departure
//! from "retry from `expected`", which would wait forever). A hole made by a run this
//! flusher dead-lettered itself is waited for instead, as the README says: `weir
//! replay-dead-letters` can fill it once the cause is fixed.
//!
//! TLS: with `tls_ca` the flusher speaks TLS and trusts only that CA; with `tls_cert`
//! and `tls_key` as well it presents that certificate (mutual TLS, as `weir serve
//! --tls-client-ca` asks). The server's certificate is checked against
//! `tls_server_name`, by default the host of `addr`. The files are read and checked at
//! `init`, so a bad one stops the agent at start with an error naming the file.

use std::collections::HashMap;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use weir_proto::wv1::{self, ingest_client::IngestClient, stream_result::Result as R};

use super::secrets::{SecretBook, StreamSecret};
use super::{Batch, Flusher, FlusherError, StreamAck, StreamBatch};

/// Dead-lettered runs remembered per stream (the oldest forgotten first; bounded).
const MAX_DEAD_LETTER_RUNS: usize = 64;

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
    /// PEM file of the CA to trust; setting it turns TLS on.
    pub tls_ca: Option<PathBuf>,
    /// PEM certificate to present (mutual TLS); needs `tls_key` and `tls_ca`.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Name the collector's certificate is checked against (default: the host of
    /// `addr`).
    pub tls_server_name: Option<String>,
}

impl WeirConfig {
    /// The TLS settings, read and checked; `None` without `tls_ca`.
    pub fn client_tls(&self) -> Result<Option<tonic::transport::ClientTlsConfig>, String> {
        let Some(ca) = &self.tls_ca else {
            if self.tls_cert.is_some() || self.tls_key.is_some() {
                return Err("tls_cert and tls_key need tls_ca".into());
            }
            return Ok(None);
        };
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => weir_client::tls::ClientTls::mutual(ca, cert, key),
            (None, None) => weir_client::tls::ClientTls::server_only(ca),
            _ => return Err("tls_cert and tls_key go together".into()),
        }
        .map_err(|e| e.to_string())?;
        let name = match &self.tls_server_name {
            Some(n) => n.clone(),
            None => host_of(&self.addr).to_string(),
        };
        Ok(Some(tls.grpc_config(&name)))
    }
}

/// The host of `HOST:PORT` or of a URL (brackets of an IPv6 address removed).
fn host_of(addr: &str) -> &str {
    let authority = addr.split_once("://").map_or(addr, |(_, rest)| rest);
    let authority = authority.split('/').next().unwrap_or(authority);
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    };
    host.trim_start_matches('[').trim_end_matches(']')
}

impl Default for WeirConfig {
    fn default() -> Self {
        WeirConfig {
            addr: "127.0.0.1:3458".into(),
            timeout_ms: 30_000,
            content_type: "text/plain; charset=utf-8".into(),
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            tls_server_name: None,
        }
    }
}

/// Sends bundles to a weir collector.
pub struct WeirFlusher {
    config: WeirConfig,
    data_dir: PathBuf,
    secrets: Option<Arc<SecretBook>>,
    client: Option<IngestClient<tonic::transport::Channel>>,
    /// Index ranges this flusher dead-lettered since it started, per stream: a hole
    /// made by one of them is waited for (`weir replay-dead-letters` can fill it), not
    /// skipped.
    dead_lettered: HashMap<Arc<str>, Vec<Range<u64>>>,
}

impl WeirFlusher {
    /// A flusher keeping its secrets under `data_dir`.
    pub fn new(config: WeirConfig, data_dir: PathBuf) -> Self {
        WeirFlusher {
            config,
            data_dir,
            secrets: None,
            client: None,
            dead_lettered: HashMap::new(),
        }
    }

    /// Whether entries of `stream` in `hole` were dead-lettered by this flusher.
    fn hole_was_dead_lettered(&self, stream: &str, hole: Range<u64>) -> bool {
        self.dead_lettered.get(stream).is_some_and(|runs| {
            runs.iter()
                .any(|r| r.start < hole.end && hole.start < r.end)
        })
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

    /// The collector expects index `expected` (of the current generation) but this
    /// batch starts later, and the agent can never send what lies between: batches of a
    /// flusher go out in index order, one at a time, so those entries were dropped
    /// before reaching it (a `drop_oldest` spool, a damaged spool record, an earlier
    /// dead letter), and each drop was counted where it happened. Retrying would wait
    /// for ever, so the current generation is terminated at `expected` (readers see it
    /// complete, best effort) and a new generation of the path starts at this batch,
    /// which is then resent at once.
    async fn skip_hole(
        &self,
        mut client: IngestClient<tonic::transport::Channel>,
        book: &SecretBook,
        s: &StreamBatch,
        secret: &StreamSecret,
        expected: u64,
    ) -> Result<StreamAck, FlusherError> {
        let end = wv1::Bundle {
            streams: vec![wv1::StreamAppend {
                path: secret.path(&s.stream),
                secret: secret.bytes(),
                descriptor: None,
                first_index: expected,
                entries: Vec::new(),
                terminal_count: Some(expected),
            }],
        };
        if let Err(status) = client.send(end).await {
            tracing::warn!(stream = %s.stream, error = %status, "cannot terminate the generation left with a hole; opening the next one anyway");
        }
        let next = book
            .next_generation(&s.stream, s.first_index)
            .map_err(|e| self.transient(e.to_string()))?;
        tracing::warn!(
            stream = %s.stream,
            missing_from = expected + secret.base,
            missing_to = s.first_index,
            new_path = %next.path(&s.stream),
            "entries dropped before delivery left a hole the collector cannot accept: terminated the old generation, opening a new one"
        );
        Ok(StreamAck::Retry {
            from: s.first_index,
            reason: format!(
                "entries {}..{} were dropped before delivery; moved to {}",
                expected + secret.base,
                s.first_index,
                next.path(&s.stream)
            ),
        })
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
            entries: s.entries.to_envelopes(),
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
        let tls = self
            .config
            .client_tls()
            .map_err(|reason| FlusherError::Config {
                flusher: self.name(),
                reason,
            })?;
        let channel =
            super::grpc_channel_tls(&self.name(), &self.config.addr, self.config.timeout_ms, tls)?;
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
                    Some(R::GapExpected(e))
                        if e + secret.base < s.first_index
                            && !self.hole_was_dead_lettered(
                                &s.stream,
                                e + secret.base..s.first_index,
                            ) =>
                    {
                        self.skip_hole(client.clone(), &book, s, &secret, e).await?
                    }
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
        let acks: Vec<StreamAck> = acks
            .into_iter()
            .map(|a| {
                a.unwrap_or(StreamAck::DeadLetter {
                    reason: "not sent".into(),
                })
            })
            .collect();
        for (s, ack) in batch.streams.iter().zip(&acks) {
            if matches!(ack, StreamAck::DeadLetter { .. }) && !s.entries.is_empty() {
                let runs = self.dead_lettered.entry(s.stream.clone()).or_default();
                runs.push(s.first_index..s.end_index());
                if runs.len() > MAX_DEAD_LETTER_RUNS {
                    runs.remove(0);
                }
            }
        }
        Ok(acks)
    }

    fn set_urgent(&mut self) {}

    async fn stop(&mut self) -> Result<(), FlusherError> {
        self.client = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_name_defaults_to_the_host_of_addr() {
        assert_eq!(host_of("127.0.0.1:3458"), "127.0.0.1");
        assert_eq!(
            host_of("https://collector.example:443/x"),
            "collector.example"
        );
        assert_eq!(host_of("[::1]:3458"), "::1");
        assert_eq!(host_of("localhost"), "localhost");
    }

    #[test]
    fn tls_keys_are_checked() {
        let half = WeirConfig {
            tls_cert: Some("c.pem".into()),
            ..WeirConfig::default()
        };
        assert!(half.client_tls().unwrap_err().contains("tls_ca"));
        let missing = WeirConfig {
            tls_ca: Some("/does/not/exist.pem".into()),
            ..WeirConfig::default()
        };
        assert!(missing.client_tls().unwrap_err().contains("exist.pem"));
        assert!(WeirConfig::default().client_tls().unwrap().is_none());
    }
}
