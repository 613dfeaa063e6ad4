//! Sources by name: what `type = "…"` under `[sources.NAME]` may say and how its table is
//! read into that source's config struct.
//!
//! | `type` | config | replays? |
//! | --- | --- | --- |
//! | `file` | [`FileSourceConfig`] | yes: its checkpoint moves on acknowledgement |
//! | `stdin` | [`StdinConfig`] | no: its lines go to the spool first |
//! | `socket` | [`SocketConfig`] | no: metrics go to the spool before the reply |

use super::file::FileSourceConfig;
use super::socket::SocketConfig;
use super::stdin::StdinConfig;
use crate::component_table::{read, unknown_type};

/// The types a source may have.
pub const TYPES: [&str; 3] = ["file", "stdin", "socket"];

/// One source's configuration, by type.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceConfig {
    File(FileSourceConfig),
    Stdin(StdinConfig),
    Socket(SocketConfig),
}

impl SourceConfig {
    /// Reads the table of a source of type `kind` (without its `type` key). The error is
    /// serde's (it names an unknown or mistyped key) or the source's own validation.
    pub fn parse(kind: &str, table: toml::Table) -> Result<Self, String> {
        Ok(match kind {
            "file" => {
                let c: FileSourceConfig = read(table)?;
                c.validate().map_err(|e| e.to_string())?;
                SourceConfig::File(c)
            }
            "stdin" => {
                let c: StdinConfig = read(table)?;
                c.stream_path("example")?;
                SourceConfig::Stdin(c)
            }
            "socket" => {
                let c: SocketConfig = read(table)?;
                c.stream_path("example")?;
                SourceConfig::Socket(c)
            }
            other => return Err(unknown_type("source", other, &TYPES)),
        })
    }
}
