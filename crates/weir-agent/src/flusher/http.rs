//! `http`: NDJSON POSTs (one people JSON object per line), headers configurable.
//!
//! Acknowledged on a 2xx answer. 408, 429 and 5xx answers and transport errors are
//! transient (the batch is retried with backoff); any other 4xx means the receiver will
//! never take this data, so its streams go to the dead-letter file with the status and
//! the start of the answer as the reason.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Batch, Flusher, FlusherError, LineEncoding, StreamAck, ack_all, encode_batch};

/// `[flushers.NAME] type = "http"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Where to POST, e.g. `http://127.0.0.1:8080/ingest`.
    pub url: String,
    /// Extra request headers (e.g. `Authorization`).
    pub headers: BTreeMap<String, String>,
    /// Request timeout, milliseconds.
    pub timeout_ms: u64,
    /// `json` (default) or `raw`.
    pub encoding: LineEncoding,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            url: String::new(),
            headers: BTreeMap::new(),
            timeout_ms: 10_000,
            encoding: LineEncoding::Json,
        }
    }
}

/// POSTs batches.
pub struct HttpFlusher {
    config: HttpConfig,
    client: Option<reqwest::Client>,
}

impl HttpFlusher {
    pub fn new(config: HttpConfig) -> Self {
        HttpFlusher {
            config,
            client: None,
        }
    }

    fn config_error(&self, reason: String) -> FlusherError {
        FlusherError::Config {
            flusher: format!("http {}", self.config.url),
            reason,
        }
    }

    fn transient(&self, reason: String) -> FlusherError {
        FlusherError::Transient {
            flusher: format!("http {}", self.config.url),
            reason,
        }
    }
}

#[async_trait::async_trait]
impl Flusher for HttpFlusher {
    async fn init(&mut self) -> Result<(), FlusherError> {
        let url = reqwest::Url::parse(&self.config.url)
            .map_err(|e| self.config_error(format!("url {:?}: {e}", self.config.url)))?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(self.config_error(format!("url {:?} must be http(s)", self.config.url)));
        }
        let mut headers = reqwest::header::HeaderMap::new();
        for (k, v) in &self.config.headers {
            let name = reqwest::header::HeaderName::from_bytes(k.as_bytes())
                .map_err(|e| self.config_error(format!("header name {k:?}: {e}")))?;
            let value = reqwest::header::HeaderValue::from_str(v)
                .map_err(|e| self.config_error(format!("header {k:?} value: {e}")))?;
            headers.insert(name, value);
        }
        headers.insert(
            reqwest::header::CONTENT_TYPE,
            reqwest::header::HeaderValue::from_static("application/x-ndjson"),
        );
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(Duration::from_millis(self.config.timeout_ms))
            .build()
            .map_err(|e| self.config_error(format!("cannot build the HTTP client: {e}")))?;
        self.client = Some(client);
        Ok(())
    }
    fn describe(&self) -> String {
        format!("http {}", self.config.url)
    }
    fn is_ready(&self) -> bool {
        self.client.is_some()
    }
    async fn flush(&mut self, batch: &Batch) -> Result<Vec<StreamAck>, FlusherError> {
        let Some(client) = &self.client else {
            return Err(self.transient("not initialised".into()));
        };
        let mut body = Vec::new();
        encode_batch(&mut body, self.config.encoding, batch);
        let resp = client
            .post(&self.config.url)
            .body(body)
            .send()
            .await
            .map_err(|e| self.transient(format!("request failed: {e}")))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(ack_all(batch));
        }
        let text = resp.text().await.unwrap_or_default();
        let snippet: String = text.chars().take(200).collect();
        let reason = format!("answered {status}: {snippet}");
        if status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429 {
            return Err(self.transient(reason));
        }
        Ok(batch
            .streams
            .iter()
            .map(|_| StreamAck::DeadLetter {
                reason: reason.clone(),
            })
            .collect())
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
    use crate::flusher::testing::batch;
    use std::sync::{Arc, Mutex};

    /// Requests received: (Authorization header, body).
    type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

    /// A real HTTP server on loopback that records bodies and answers with `status`.
    async fn receiver(status: u16) -> (String, Received) {
        use axum::{Router, body::Bytes, http::HeaderMap, routing::post};
        let got: Received = Arc::default();
        let g = got.clone();
        let app = Router::new().route(
            "/ingest",
            post(move |headers: HeaderMap, body: Bytes| {
                let g = g.clone();
                async move {
                    let auth = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string();
                    g.lock().unwrap().push((auth, body.to_vec()));
                    axum::http::StatusCode::from_u16(status).unwrap()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}/ingest"), got)
    }

    fn config(url: String) -> HttpConfig {
        HttpConfig {
            url,
            headers: BTreeMap::from([("Authorization".into(), "Bearer t0k".into())]),
            ..HttpConfig::default()
        }
    }

    #[tokio::test]
    async fn posts_ndjson_with_headers() {
        let (url, got) = receiver(204).await;
        let mut f = HttpFlusher::new(config(url));
        f.init().await.unwrap();
        let acks = f.flush(&batch(1, 3, 10)).await.unwrap();
        assert_eq!(acks, vec![StreamAck::Acked { next: 13 }]);
        let got = got.lock().unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, "Bearer t0k");
        let lines: Vec<serde_json::Value> = got[0]
            .1
            .split(|c| *c == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[2]["message"], "s0 line 12");
    }

    #[tokio::test]
    async fn server_errors_retry_client_errors_dead_letter() {
        let (url, _) = receiver(503).await;
        let mut f = HttpFlusher::new(config(url));
        f.init().await.unwrap();
        assert!(matches!(
            f.flush(&batch(1, 1, 0)).await,
            Err(FlusherError::Transient { .. })
        ));
        let (url, _) = receiver(400).await;
        let mut f = HttpFlusher::new(config(url));
        f.init().await.unwrap();
        let acks = f.flush(&batch(2, 1, 0)).await.unwrap();
        assert!(
            acks.iter()
                .all(|a| matches!(a, StreamAck::DeadLetter { reason } if reason.contains("400")))
        );
    }

    #[tokio::test]
    async fn bad_url_is_a_config_error() {
        let mut f = HttpFlusher::new(config("ftp://x".into()));
        assert!(matches!(f.init().await, Err(FlusherError::Config { .. })));
    }
}
