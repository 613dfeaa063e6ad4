//! Flushers by name: what `type = "…"` under `[flushers.NAME]` may say, how its table is
//! read into that flusher's config struct, and how the flusher is built.
//!
//! | `type` | config | acknowledged when |
//! | --- | --- | --- |
//! | `weir` | [`WeirConfig`] | the collector answered `stored` |
//! | `loggregator` | [`LoggregatorConfig`] | unary `Send` returned OK |
//! | `tcp` | [`TcpConfig`] | the write returned |
//! | `http` | [`HttpConfig`] | a 2xx answer |
//! | `file` | [`FileConfig`] | written (and synced with `fsync = "always"`) |
//! | `stdout` | [`StdoutConfig`] | written |
//! | `blackhole` | [`BlackholeConfig`] | at once |

use crate::component_table::{read, unknown_type};
use std::path::Path;
use std::sync::Arc;

use super::Flusher;
use super::blackhole::{BlackholeConfig, BlackholeCounters, BlackholeFlusher};
use super::file::{FileConfig, FileFlusher};
use super::http::{HttpConfig, HttpFlusher};
use super::loggregator::{LoggregatorConfig, LoggregatorFlusher};
use super::stdout::{StdoutConfig, StdoutFlusher};
use super::tcp::{TcpConfig, TcpFlusher};
use super::weir::{WeirConfig, WeirFlusher};

/// The types a flusher may have.
pub const TYPES: [&str; 7] = [
    "weir",
    "loggregator",
    "tcp",
    "http",
    "file",
    "stdout",
    "blackhole",
];

/// One flusher's configuration, by type.
#[derive(Debug, Clone, PartialEq)]
pub enum FlusherConfig {
    Weir(WeirConfig),
    Loggregator(LoggregatorConfig),
    Tcp(TcpConfig),
    Http(HttpConfig),
    File(FileConfig),
    Stdout(StdoutConfig),
    Blackhole(BlackholeConfig),
}

impl FlusherConfig {
    /// Reads the table of a flusher of type `kind` (without its `type` and `inputs`
    /// keys). The error is serde's (it names an unknown or mistyped key).
    pub fn parse(kind: &str, table: toml::Table) -> Result<Self, String> {
        Ok(match kind {
            "weir" => FlusherConfig::Weir(read(table)?),
            "loggregator" => FlusherConfig::Loggregator(read(table)?),
            "tcp" => FlusherConfig::Tcp(read(table)?),
            "http" => FlusherConfig::Http(read(table)?),
            "file" => FlusherConfig::File(read(table)?),
            "stdout" => FlusherConfig::Stdout(read(table)?),
            "blackhole" => FlusherConfig::Blackhole(read(table)?),
            other => return Err(unknown_type("flusher", other, &TYPES)),
        })
    }

    /// The flusher, not yet initialised. `dir` is the flusher's own directory under the
    /// agent's data dir (the `weir` flusher keeps its stream secrets there).
    pub fn build(&self, dir: &Path) -> Box<dyn Flusher> {
        match self.clone() {
            FlusherConfig::Weir(c) => Box::new(WeirFlusher::new(c, dir.to_path_buf())),
            FlusherConfig::Loggregator(c) => Box::new(LoggregatorFlusher::new(c)),
            FlusherConfig::Tcp(c) => Box::new(TcpFlusher::new(c)),
            FlusherConfig::Http(c) => Box::new(HttpFlusher::new(c)),
            FlusherConfig::File(c) => Box::new(FileFlusher::new(c)),
            FlusherConfig::Stdout(c) => Box::new(StdoutFlusher::new(c)),
            FlusherConfig::Blackhole(c) => Box::new(BlackholeFlusher::new(
                c,
                Arc::new(BlackholeCounters::default()),
            )),
        }
    }
}
