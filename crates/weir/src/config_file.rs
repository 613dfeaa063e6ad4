//! Loading TOML configuration files with errors that name the file, the key and the line.

use std::path::Path;

use anyhow::Context;
use serde::de::DeserializeOwned;

/// Reads and parses `path`. Unknown keys are errors (every config struct denies them), and
/// the message of a bad value shows its line and key.
pub fn load<T: DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    parse(&text).with_context(|| format!("in config file {}", path.display()))
}

/// Parses TOML text.
pub fn parse<T: DeserializeOwned>(text: &str) -> anyhow::Result<T> {
    toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))
}
