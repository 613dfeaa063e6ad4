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
        fn read<T: serde::de::DeserializeOwned>(table: toml::Table) -> Result<T, String> {
            toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| e.message().to_string())
        }
        Ok(match kind {
            "file" => {
                let c: FileSourceConfig = read(table)?;
                c.validate().map_err(|e| e.to_string())?;
                if c.spool {
                    // Refused rather than ignored: the user asked for a guarantee the
                    // runtime does not give yet.
                    return Err("`spool = true` is not supported by this agent yet: a file \
                                source is its own spool (its checkpoint moves on \
                                acknowledgement)"
                        .into());
                }
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
            other => {
                return Err(format!(
                    "unknown source type {other:?}; one of {}",
                    TYPES.join(", ")
                ));
            }
        })
    }
}
