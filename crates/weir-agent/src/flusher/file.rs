//! `file`: NDJSON (or raw lines) to a file, rotating by size.
//!
//! Acknowledged = written and, with `fsync = "always"` (default), synced to disk before
//! `flush` returns; with `"never"`, written to the OS (survives a crash of the agent, not
//! of the machine). Rotation renames `path` to `path.1` (shifting `path.1` to `path.2`,
//! …, keeping `keep_files`) when the next write would pass `max_bytes`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio::fs::{File, OpenOptions};
use tokio::io::AsyncWriteExt;

use super::{Batch, Flusher, FlusherError, LineEncoding, StreamAck, ack_all, encode_batch};

/// When the file flusher syncs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileFsync {
    /// Before acknowledging each batch.
    #[default]
    Always,
    /// Never explicitly; the OS writes back.
    Never,
}

/// `[flushers.NAME] type = "file"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    /// The file written to.
    pub path: PathBuf,
    /// Rotate when the file would grow past this many bytes.
    pub max_bytes: u64,
    /// Rotated files kept (`path.1` … `path.N`).
    pub keep_files: u32,
    /// `json` (default) or `raw`.
    pub encoding: LineEncoding,
    /// `always` (default) or `never`.
    pub fsync: FileFsync,
}

impl Default for FileConfig {
    fn default() -> Self {
        FileConfig {
            path: PathBuf::from("weir-out.ndjson"),
            max_bytes: 100 << 20,
            keep_files: 5,
            encoding: LineEncoding::Json,
            fsync: FileFsync::Always,
        }
    }
}

/// Writes batches to a rotating file.
pub struct FileFlusher {
    config: FileConfig,
    file: Option<File>,
    size: u64,
    buf: Vec<u8>,
}

impl FileFlusher {
    pub fn new(config: FileConfig) -> Self {
        FileFlusher {
            config,
            file: None,
            size: 0,
            buf: Vec::new(),
        }
    }

    fn err(&self, what: &str, e: std::io::Error) -> FlusherError {
        FlusherError::Transient {
            flusher: format!("file {}", self.config.path.display()),
            reason: format!("{what}: {e}"),
        }
    }

    async fn open(&mut self) -> Result<(), FlusherError> {
        if let Some(dir) = self
            .config
            .path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| self.err("cannot create the folder", e))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.config.path)
            .await
            .map_err(|e| self.err("cannot open", e))?;
        self.size = file
            .metadata()
            .await
            .map_err(|e| self.err("cannot stat", e))?
            .len();
        self.file = Some(file);
        Ok(())
    }

    async fn rotate(&mut self) -> Result<(), FlusherError> {
        if let Some(f) = self.file.take() {
            f.sync_all().await.map_err(|e| self.err("cannot sync", e))?;
        }
        let numbered = |n: u32| -> PathBuf { suffixed(&self.config.path, n) };
        if self.config.keep_files == 0 {
            let _ = tokio::fs::remove_file(&self.config.path).await;
        } else {
            for n in (1..self.config.keep_files).rev() {
                let _ = tokio::fs::rename(numbered(n), numbered(n + 1)).await;
            }
            tokio::fs::rename(&self.config.path, numbered(1))
                .await
                .map_err(|e| self.err("cannot rotate", e))?;
        }
        self.open().await
    }
}

fn suffixed(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

#[async_trait::async_trait]
impl Flusher for FileFlusher {
    async fn init(&mut self) -> Result<(), FlusherError> {
        if self.config.max_bytes == 0 {
            return Err(FlusherError::Config {
                flusher: "file".into(),
                reason: "max_bytes must be above 0".into(),
            });
        }
        self.open().await
    }
    fn describe(&self) -> String {
        format!("file {}", self.config.path.display())
    }
    fn is_ready(&self) -> bool {
        true
    }
    async fn flush(&mut self, batch: &Batch) -> Result<Vec<StreamAck>, FlusherError> {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        encode_batch(&mut buf, self.config.encoding, batch);
        if self.file.is_none() {
            self.open().await?;
        }
        if self.size > 0 && self.size + buf.len() as u64 > self.config.max_bytes {
            self.rotate().await?;
        }
        let result = async {
            let file = self
                .file
                .as_mut()
                .ok_or_else(|| std::io::Error::other("file not open"))?;
            file.write_all(&buf).await?;
            if self.config.fsync == FileFsync::Always {
                file.sync_data().await?;
            }
            Ok::<(), std::io::Error>(())
        }
        .await;
        if let Err(e) = result {
            // Reopen next time; the batch is not acknowledged.
            self.file = None;
            return Err(self.err("cannot write", e));
        }
        self.size += buf.len() as u64;
        self.buf = buf;
        Ok(ack_all(batch))
    }
    fn set_urgent(&mut self) {}
    async fn stop(&mut self) -> Result<(), FlusherError> {
        if let Some(mut f) = self.file.take() {
            f.flush().await.map_err(|e| self.err("cannot flush", e))?;
            f.sync_all().await.map_err(|e| self.err("cannot sync", e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flusher::testing::batch;

    #[tokio::test]
    async fn writes_json_lines_and_rotates_by_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out/app.ndjson");
        let mut f = FileFlusher::new(FileConfig {
            path: path.clone(),
            max_bytes: 2000,
            keep_files: 2,
            ..FileConfig::default()
        });
        f.init().await.unwrap();
        let mut acked = 0;
        for round in 0..10 {
            let acks = f.flush(&batch(1, 5, round * 5)).await.unwrap();
            assert_eq!(
                acks,
                vec![StreamAck::Acked {
                    next: round * 5 + 5
                }]
            );
            acked += 5;
        }
        f.stop().await.unwrap();
        assert!(std::fs::metadata(&path).unwrap().len() <= 2000);
        assert!(suffixed(&path, 1).exists() && suffixed(&path, 2).exists());
        assert!(!suffixed(&path, 3).exists(), "keeps only keep_files");
        // The newest lines are in the current file, in order.
        let text = std::fs::read_to_string(&path).unwrap();
        let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        assert_eq!(last["index"], acked - 1);
        assert_eq!(last["message"], format!("s0 line {}", acked - 1));
    }
}
