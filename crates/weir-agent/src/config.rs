//! The agent's configuration file (`weir agent --config agent.toml`), in the shape users
//! of Vector know: components named under `[sources.NAME]` and `[flushers.NAME]`, each
//! with a `type` that picks the component (see [`crate::sources::registry`] and
//! [`crate::flusher::registry`]) and the keys of that component's config struct.
//!
//! ```toml
//! data_dir = "./weir-agent-data"      # checkpoints, spool, secrets, stream numbering
//! shutdown_timeout_ms = 10000         # how long a shutdown may spend delivering
//!
//! [batch]                             # see batcher.rs for the defaults and why
//! max_entries = 4096
//! max_bytes = 1048576
//! max_wait_ms = 100
//!
//! [retry]                             # backoff of a flusher that fails
//! initial_backoff_ms = 100
//! max_backoff_ms = 30000
//!
//! [events]                            # the agent's own events (see events/mod.rs)
//! max_bytes = 1048576
//! rate_limit = "10s"
//!
//! [spool]                             # the durable queue of sources that cannot replay
//! max_bytes = 1073741824
//! when_full = "block"                 # or "drop_oldest"
//! fsync = "interval"                  # or "always", "never"
//!
//! [spill]                             # lanes of lagging flushers (see runtime/spill.rs)
//! after_ms = 200
//! max_bytes = 268435456               # per lane; the other settings are [spool]'s
//!
//! [sources.app]
//! type = "file"
//! include = ["/var/log/app/*.log"]
//!
//! [flushers.central]
//! type = "weir"
//! inputs = ["app"]                    # which sources feed it (default: all)
//! addr = "127.0.0.1:3458"
//! ```
//!
//! Unknown keys are errors, and every error names the key (`flushers.central.adr`,
//! `sources.app: unknown field …`) so that a typo never passes silently.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::batcher::BatchConfig;
use crate::events::EventsConfig;
use crate::flusher::registry::FlusherConfig;
use crate::runtime::{DeadLetterConfig, RetryConfig, SpillConfig};
use crate::sources::registry::SourceConfig;
use crate::spool::SpoolConfig;

/// Why a configuration was refused; the message names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Toml(String),
    #[error("{key}: {reason}")]
    Key { key: String, reason: String },
}

fn key_err(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Key {
        key: key.into(),
        reason: reason.into(),
    }
}

/// The whole agent configuration, validated.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Checkpoints, spool, secrets and stream numbering live here.
    pub data_dir: PathBuf,
    /// How long a shutdown may spend delivering what is in flight before it gives up
    /// (what is not delivered stays in the spool or behind the checkpoint).
    pub shutdown_timeout_ms: u64,
    pub batch: BatchConfig,
    pub retry: RetryConfig,
    pub spool: SpoolConfig,
    /// `[spill]`: the lanes of flushers that lag behind the others of a file source.
    pub spill: SpillConfig,
    pub dead_letters: DeadLetterConfig,
    /// `[events]`: the agent's own events (see [`crate::events`]).
    pub events: EventsConfig,
    /// Sources by name.
    pub sources: BTreeMap<String, SourceConfig>,
    /// Flushers by name.
    pub flushers: BTreeMap<String, FlusherSpec>,
}

/// One `[flushers.NAME]`.
#[derive(Debug, Clone)]
pub struct FlusherSpec {
    /// The sources that feed it (every source when `inputs` is not given).
    pub inputs: Vec<String>,
    pub config: FlusherConfig,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default = "default_data_dir")]
    data_dir: PathBuf,
    #[serde(default = "default_shutdown_timeout_ms")]
    shutdown_timeout_ms: u64,
    #[serde(default)]
    batch: BatchConfig,
    #[serde(default)]
    retry: RetryConfig,
    #[serde(default)]
    spool: SpoolConfig,
    #[serde(default)]
    spill: SpillConfig,
    #[serde(default)]
    dead_letters: DeadLetterConfig,
    #[serde(default)]
    events: EventsConfig,
    #[serde(default)]
    sources: BTreeMap<String, toml::Table>,
    #[serde(default)]
    flushers: BTreeMap<String, toml::Table>,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("./weir-agent-data")
}
fn default_shutdown_timeout_ms() -> u64 {
    10_000
}

/// A component name: it becomes part of file names and metric labels.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn take_type(key: &str, table: &mut toml::Table) -> Result<String, ConfigError> {
    match table.remove("type") {
        Some(toml::Value::String(s)) => Ok(s),
        Some(_) => Err(key_err(format!("{key}.type"), "must be a string")),
        None => Err(key_err(
            format!("{key}.type"),
            "missing: say which kind of component this is",
        )),
    }
}

impl AgentConfig {
    /// Parses and validates TOML text.
    pub fn parse(text: &str) -> Result<AgentConfig, ConfigError> {
        let raw: Raw = toml::from_str(text).map_err(|e| ConfigError::Toml(e.to_string()))?;
        raw.batch.validate().map_err(|r| key_err("batch", r))?;
        raw.retry.validate().map_err(|r| key_err("retry", r))?;
        raw.spool
            .validate()
            .map_err(|e| key_err("spool", e.to_string()))?;
        raw.spill
            .validate(&raw.spool)
            .map_err(|r| key_err("spill", r))?;
        raw.events.validate().map_err(|r| key_err("events", r))?;
        if !(1..=3_600_000).contains(&raw.shutdown_timeout_ms) {
            return Err(key_err("shutdown_timeout_ms", "outside 1..=3600000"));
        }
        let mut sources = BTreeMap::new();
        for (name, mut table) in raw.sources {
            let key = format!("sources.{name}");
            if !valid_name(&name) {
                return Err(key_err(
                    key,
                    "a name is 1 to 64 of A-Z a-z 0-9 _ - and starts with a letter or digit",
                ));
            }
            let kind = take_type(&key, &mut table)?;
            let config = SourceConfig::parse(&kind, table).map_err(|r| key_err(&key, r))?;
            sources.insert(name, config);
        }
        let mut flushers = BTreeMap::new();
        for (name, mut table) in raw.flushers {
            let key = format!("flushers.{name}");
            if !valid_name(&name) {
                return Err(key_err(
                    key,
                    "a name is 1 to 64 of A-Z a-z 0-9 _ - and starts with a letter or digit",
                ));
            }
            let kind = take_type(&key, &mut table)?;
            let inputs = match table.remove("inputs") {
                None => sources.keys().cloned().collect(),
                Some(toml::Value::Array(items)) => {
                    let mut inputs = Vec::new();
                    for item in items {
                        let toml::Value::String(s) = item else {
                            return Err(key_err(
                                format!("{key}.inputs"),
                                "must be a list of source names",
                            ));
                        };
                        if !sources.contains_key(&s) {
                            return Err(key_err(
                                format!("{key}.inputs"),
                                format!("no source is named {s:?}"),
                            ));
                        }
                        if !inputs.contains(&s) {
                            inputs.push(s);
                        }
                    }
                    inputs
                }
                Some(_) => {
                    return Err(key_err(
                        format!("{key}.inputs"),
                        "must be a list of source names",
                    ));
                }
            };
            let config = FlusherConfig::parse(&kind, table).map_err(|r| key_err(&key, r))?;
            flushers.insert(name, FlusherSpec { inputs, config });
        }
        if sources.is_empty() {
            return Err(key_err("sources", "configure at least one source"));
        }
        if flushers.is_empty() {
            return Err(key_err("flushers", "configure at least one flusher"));
        }
        for name in sources.keys() {
            if !flushers.values().any(|f| f.inputs.contains(name)) {
                return Err(key_err(
                    format!("sources.{name}"),
                    "no flusher takes this source as an input (its data would never be acknowledged)",
                ));
            }
        }
        let config = AgentConfig {
            data_dir: raw.data_dir,
            shutdown_timeout_ms: raw.shutdown_timeout_ms,
            batch: raw.batch,
            retry: raw.retry,
            spool: raw.spool,
            spill: raw.spill,
            dead_letters: raw.dead_letters,
            events: raw.events,
            sources,
            flushers,
        };
        config
            .events
            .ship_flusher(&config)
            .map_err(|r| key_err("events.ship_via", r))?;
        Ok(config)
    }

    /// A config with no components, every setting at its default, in `data_dir`.
    pub fn empty(data_dir: PathBuf) -> AgentConfig {
        AgentConfig {
            data_dir,
            shutdown_timeout_ms: default_shutdown_timeout_ms(),
            batch: BatchConfig::default(),
            retry: RetryConfig::default(),
            spool: SpoolConfig::default(),
            spill: SpillConfig::default(),
            dead_letters: DeadLetterConfig::default(),
            events: EventsConfig::default(),
            sources: BTreeMap::new(),
            flushers: BTreeMap::new(),
        }
    }

    /// The flushers fed by source `name`, in name order.
    pub fn flushers_of(&self, source: &str) -> Vec<String> {
        self.flushers
            .iter()
            .filter(|(_, f)| f.inputs.iter().any(|i| i == source))
            .map(|(n, _)| n.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
        data_dir = "/tmp/x"
        [sources.app]
        type = "file"
        include = ["/var/log/app/*.log"]
        read_from = "end"
        [sources.other]
        type = "file"
        include = ["/var/log/o.log"]
        [flushers.central]
        type = "weir"
        inputs = ["app"]
        addr = "127.0.0.1:3458"
        [flushers.hole]
        type = "blackhole"
    "#;

    #[test]
    fn parses_components_and_defaults_inputs_to_all() {
        let c = AgentConfig::parse(GOOD).unwrap();
        assert_eq!(c.sources.len(), 2);
        assert_eq!(c.flushers["central"].inputs, vec!["app"]);
        assert_eq!(c.flushers["hole"].inputs, vec!["app", "other"]);
        assert_eq!(c.flushers_of("app"), vec!["central", "hole"]);
        assert_eq!(c.batch, BatchConfig::default());
        assert!(matches!(
            c.flushers["central"].config,
            FlusherConfig::Weir(_)
        ));
    }

    fn err(text: &str) -> String {
        AgentConfig::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn errors_name_the_key() {
        let e = err(&GOOD.replace("addr = ", "adr = "));
        assert!(e.contains("flushers.central") && e.contains("adr"), "{e}");
        let e = err(&GOOD.replace("read_from", "readfrom"));
        assert!(e.contains("sources.app") && e.contains("readfrom"), "{e}");
        let e = err(&GOOD.replace("type = \"blackhole\"", "type = \"blackhoe\""));
        assert!(e.contains("flushers.hole") && e.contains("blackhoe"), "{e}");
        let e = err(&GOOD.replace("inputs = [\"app\"]", "inputs = [\"ap\"]"));
        assert!(
            e.contains("flushers.central.inputs") && e.contains("\"ap\""),
            "{e}"
        );
        let e = err(&format!(
            "{GOOD}\n[sources.m]\ntype = \"socket\"\npath = \"/tmp/m.sock\"\n"
        ));
        assert!(e.contains("sources.m") && e.contains("metrics"), "{e}");
        let e = err(&format!("{GOOD}\nbogus = 1\n"));
        assert!(e.contains("bogus"), "{e}");
        let e = err(&GOOD.replace("[flushers.hole]\n        type = \"blackhole\"", ""));
        assert!(
            e.contains("sources.other") && e.contains("no flusher"),
            "{e}"
        );
        let e = err(&format!("{GOOD}\n[batch]\nmax_entries = 0\n"));
        assert!(e.contains("batch.max_entries"), "{e}");
        let e = err(&GOOD.replace(
            "[sources.app]\n        type = \"file\"\n",
            "[sources.app]\n",
        ));
        assert!(e.contains("sources.app.type"), "{e}");
        let e = err(&GOOD.replace("[sources.other]", "[sources.\"o/x\"]"));
        assert!(e.contains("sources.o/x"), "{e}");
    }
}
