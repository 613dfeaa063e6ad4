//! Settings of the JetStream backend (`weir serve --store nats://…`, the `[nats]` table).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A `--store` value that is not a list of `nats://` URLs.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The value does not start with `nats://`.
    #[error("a NATS store is written nats://HOST:PORT[,HOST:PORT…], got {0:?}")]
    NotNats(String),
    /// A server address is empty.
    #[error("empty server address in {0:?}")]
    EmptyServer(String),
}

/// Where and how the JetStream backend keeps weir's streams.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsConfig {
    /// NATS servers to connect to (`nats://host:port`); the client fails over among them.
    pub servers: Vec<String>,
    /// Names every JetStream asset of this weir deployment: the entries stream
    /// `<prefix>_entries` on subjects `<prefix>.e.>`, and the KV buckets
    /// `<prefix>_registry` and `<prefix>_meta`. Several deployments can share a server
    /// under different prefixes. Letters, digits, `-` and `_`.
    pub prefix: String,
    /// Copies of every stream and bucket in a NATS cluster (1, or 3 in a 3-node cluster).
    /// Applies when the assets are created; existing assets keep theirs.
    pub replicas: usize,
    /// The server's deduplication window by message id, seconds. Exactly-once does not
    /// rest on it (see the crate docs); it only saves a round trip on quick resends.
    pub duplicate_window_secs: u64,
    /// Entries older than this (server time) are removed by JetStream itself; 0 keeps
    /// them until [`weir_store::Store::expire_before`] drops them.
    pub max_age_secs: u64,
    /// Width of a logical time partition (ingest time), seconds: the unit of
    /// [`weir_store::Store::expire_before`] and [`weir_store::Store::partitions`].
    pub partition_secs: u64,
    /// How long a JetStream request (publish acknowledgement, message get) may take.
    pub request_timeout_ms: u64,
}

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            servers: vec!["nats://127.0.0.1:4222".into()],
            prefix: "weir".into(),
            replicas: 1,
            duplicate_window_secs: 120,
            max_age_secs: 0,
            partition_secs: 3600,
            request_timeout_ms: 5000,
        }
    }
}

impl NatsConfig {
    /// Parses `nats://host:port[,host2:port…]` (later hosts may omit the scheme).
    pub fn parse_servers(url: &str) -> Result<Vec<String>, ConfigError> {
        let rest = url
            .strip_prefix("nats://")
            .ok_or_else(|| ConfigError::NotNats(url.to_string()))?;
        rest.split(',')
            .map(|s| {
                let s = s.trim();
                let host = s.strip_prefix("nats://").unwrap_or(s);
                if host.is_empty() {
                    Err(ConfigError::EmptyServer(url.to_string()))
                } else {
                    Ok(format!("nats://{host}"))
                }
            })
            .collect()
    }

    /// The deduplication window, never longer than `max_age` (the server refuses that).
    pub fn duplicate_window(&self) -> Duration {
        let window = self.duplicate_window_secs.max(1);
        let window = match self.max_age_secs {
            0 => window,
            age => window.min(age),
        };
        Duration::from_secs(window)
    }

    /// Width of a time partition in ns (at least one second).
    pub fn partition_ns(&self) -> i64 {
        i64::try_from(self.partition_secs.max(1))
            .unwrap_or(i64::MAX / 1_000_000_000)
            .saturating_mul(1_000_000_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_server_lists() {
        assert_eq!(
            NatsConfig::parse_servers("nats://a:4222,b:5222,nats://c:1").unwrap(),
            ["nats://a:4222", "nats://b:5222", "nats://c:1"]
        );
        assert!(NatsConfig::parse_servers("http://a:1").is_err());
        assert!(NatsConfig::parse_servers("nats://a:1,,b:2").is_err());
    }

    #[test]
    fn duplicate_window_is_capped_by_max_age() {
        let c = NatsConfig {
            duplicate_window_secs: 120,
            max_age_secs: 60,
            ..NatsConfig::default()
        };
        assert_eq!(c.duplicate_window(), Duration::from_secs(60));
    }
}
