//! The agent's stream secrets and generations, kept in `<data_dir>/secrets.json`.
//!
//! Each stream the agent writes gets a random 32-byte secret the first time it is sent;
//! the collector registers the stream with it and refuses any other writer. If the agent
//! loses its data dir, it makes new secrets, and the collector answers `wrong_secret` for
//! streams it already knows. The agent then does not fight the old stream: it opens a
//! new **generation** of the path — the name gets a last segment `gen-N` (N = 2, 3, …),
//! e.g. `host/web1/+/file/app.log/gen-2` — numbered from 0 again; the agent maps its own
//! indices onto it with a `base` (agent index − base = collector index).
//!
//! The file is rewritten atomically (temp file, fsync, rename, fsync of the folder)
//! whenever a stream is added or changes generation, before anything is sent with it.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// What the agent knows of one stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamSecret {
    /// Hex of the secret bytes.
    pub secret: String,
    /// 1 for the original path, 2, 3, … after `wrong_secret`.
    pub generation: u32,
    /// The agent's index that is index 0 of this generation.
    pub base: u64,
}

impl StreamSecret {
    /// The path this generation writes to.
    pub fn path(&self, stream: &str) -> String {
        if self.generation <= 1 {
            stream.to_string()
        } else {
            format!("{stream}/gen-{}", self.generation)
        }
    }

    /// The secret's bytes.
    pub fn bytes(&self) -> Vec<u8> {
        hex_decode(&self.secret)
    }
}

/// Errors of the secret book.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("secrets file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "secrets file {path} is not valid JSON ({source}); move it away to start new generations"
    )]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// The persistent map of stream → secret.
pub struct SecretBook {
    path: PathBuf,
    streams: Mutex<BTreeMap<String, StreamSecret>>,
}

impl SecretBook {
    /// Opens (or creates) `<dir>/secrets.json`.
    pub fn open(dir: &Path) -> Result<Self, SecretsError> {
        let path = dir.join("secrets.json");
        let io = |source| SecretsError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let streams = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| SecretsError::Parse {
                path: path.clone(),
                source,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(io(e)),
        };
        Ok(SecretBook {
            path,
            streams: Mutex::new(streams),
        })
    }

    /// The stream's secret, made (and persisted) on first use.
    pub fn get(&self, stream: &str) -> Result<StreamSecret, SecretsError> {
        let mut map = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = map.get(stream) {
            return Ok(s.clone());
        }
        let s = StreamSecret {
            secret: new_secret(),
            generation: 1,
            base: 0,
        };
        map.insert(stream.to_string(), s.clone());
        self.persist(&map)?;
        Ok(s)
    }

    /// Moves the stream to its next generation starting at the agent's index `base`.
    pub fn next_generation(&self, stream: &str, base: u64) -> Result<StreamSecret, SecretsError> {
        let mut map = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        let generation = map.get(stream).map_or(1, |s| s.generation) + 1;
        let s = StreamSecret {
            secret: new_secret(),
            generation,
            base,
        };
        map.insert(stream.to_string(), s.clone());
        self.persist(&map)?;
        Ok(s)
    }

    fn persist(&self, map: &BTreeMap<String, StreamSecret>) -> Result<(), SecretsError> {
        let io = |source| SecretsError::Io {
            path: self.path.clone(),
            source,
        };
        let tmp = self.path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(map).map_err(|e| io(std::io::Error::other(e)))?;
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(&bytes).map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io)?;
        }
        Ok(())
    }
}

fn new_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .filter_map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_persist_and_generations_advance() {
        let dir = tempfile::tempdir().unwrap();
        let book = SecretBook::open(dir.path()).unwrap();
        let a = book.get("h/+/a").unwrap();
        assert_eq!(a.bytes().len(), 32);
        assert_eq!(a.path("h/+/a"), "h/+/a");
        let g2 = book.next_generation("h/+/a", 500).unwrap();
        assert_eq!(g2.path("h/+/a"), "h/+/a/gen-2");
        assert_ne!(g2.secret, a.secret);
        drop(book);
        let book = SecretBook::open(dir.path()).unwrap();
        assert_eq!(book.get("h/+/a").unwrap(), g2);
        std::fs::write(dir.path().join("secrets.json"), b"{oops").unwrap();
        let err = SecretBook::open(dir.path()).err().unwrap().to_string();
        assert!(err.contains("not valid JSON"), "{err}");
    }
}
