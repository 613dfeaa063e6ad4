//! What a user writes under `[sources.NAME]` with `type = "file"`.
//!
//! ```toml
//! [sources.app]
//! type = "file"
//! include = ["/var/log/app/*.log"]
//! exclude = ["/var/log/app/*.gz"]
//! read_from = "beginning"        # or "end"
//! max_line_bytes = 1048576
//! stream = "host/{hostname}/+/file/{path}"
//! poll_interval_ms = 1000
//! inotify = true
//! fingerprint_bytes = 256
//! ```
//!
//! Every key but `include` has a default; unknown keys are refused (a typo must not be
//! silently ignored). See [`FileSourceConfig`] for each key.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::discover::Matcher;
use super::error::ConfigError;
use super::template::StreamTemplate;

/// Where to start reading a file that has no checkpoint and was already there when the
/// source first started.
///
/// Files that appear later (a new file matching the glob, a rotated successor) are always
/// read from their beginning, whatever this says: starting them at their end would lose
/// the lines written between their creation and the next poll. A stream with a checkpoint
/// always resumes from the checkpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadFrom {
    /// Read existing files from their first byte. The default, as in Vector's `file`
    /// source (`read_from = "beginning"`): the agent's first start ships what is already
    /// on disk, and nothing is lost by default (DESIGN.md, Guarantee 2). Users who do not
    /// want history choose `end`, as Fluent Bit users do with `read_from_head = false`.
    #[default]
    Beginning,
    /// Skip what existing files already hold: start after their last complete line, so a
    /// line being written at that moment is still read whole.
    End,
}

/// Config of one file source, as written in the agent's TOML:
///
/// ```toml
/// [sources.app]
/// type = "file"
/// include = ["/var/log/app/*.log"]   # required
/// exclude = ["/var/log/app/*.gz"]    # default []
/// read_from = "beginning"            # or "end"
/// max_line_bytes = 1048576
/// stream = "host/{hostname}/+/file/{path}"
/// poll_interval_ms = 1000
/// inotify = true
/// fingerprint_bytes = 256
/// max_unacknowledged_lines = 262144
/// max_streams = 4096
/// checkpoint_interval_ms = 1000
/// spool = false
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSourceConfig {
    /// Globs of files to read (`*`, `?`, `[...]`, and `**` for any depth of directories;
    /// `*` does not cross a `/` nor match a leading `.`, as in a shell). Required.
    pub include: Vec<String>,
    /// Globs of paths to leave out even when `include` matches them. Rotated names
    /// (`*.1`, `*.gz`) belong here when `include` would match them too: a rotated file is
    /// drained under the stream of the path it was read as, and a glob that also matches
    /// its new name would make it a second stream after a restart.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Where to start files found at the first start without a checkpoint. Default
    /// `beginning` (see [`ReadFrom`] for why).
    #[serde(default)]
    pub read_from: ReadFrom,
    /// Longest line, in bytes, without its newline. A longer line is emitted in pieces of
    /// exactly this size (the last piece shorter), each piece its own entry, counted in
    /// `lines_split`. Default 1 MiB; at most 64 MiB.
    #[serde(default = "default_max_line_bytes")]
    pub max_line_bytes: usize,
    /// Template of each file's stream path. Placeholders: `{hostname}`, `{path}` (the
    /// file's path, each directory a segment), `{file_name}`, `{source}` (this source's
    /// name); each is made a valid segment with `weir_core::path::to_segment`. The result
    /// must be a valid producer stream path (`prefix/+/name`). Default
    /// `host/{hostname}/+/file/{path}`, e.g. `host/web-1/+/file/var/log/app.log`.
    #[serde(default = "default_stream")]
    pub stream: String,
    /// How often to look at the files, in milliseconds: re-run the globs, stat the
    /// files being read, and read what was appended. Default 1000. Polling alone is
    /// enough to follow files and rotations. With `inotify` (the default), a look after
    /// a quiet interval happens as soon as a file changes, so this bounds a new line's
    /// wait only while files keep growing (they are then read once per interval, in
    /// bigger and cheaper batches) and where change events do not come (network file
    /// systems). A shorter interval lowers that wait and costs CPU: see the README.
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// Whether to ask the kernel (inotify, Linux) for change events so that a quiet
    /// file is read as soon as it is written, instead of at the next poll, and a busy
    /// file as soon as another program opens it (copytruncate's copier does, so less
    /// is lost to the truncation). Default true. Polling goes on either way.
    #[serde(default = "default_inotify")]
    pub inotify: bool,
    /// How many leading bytes of a file are checksummed into its identity, beside its
    /// device and inode numbers, so a new file that reuses a deleted file's inode number
    /// is told apart from it. Default 256.
    #[serde(default = "default_fingerprint_bytes")]
    pub fingerprint_bytes: usize,
    /// Lines handed out but not yet acknowledged, across all streams of this source.
    /// Each costs 8 bytes of memory (its end offset, kept to move the checkpoint on
    /// acknowledgement). At the bound the source stops reading until acknowledgements
    /// arrive. Default 262144 (2 MiB).
    #[serde(default = "default_max_unacknowledged_lines")]
    pub max_unacknowledged_lines: usize,
    /// Most paths (streams) this source follows at once; further matches are skipped,
    /// counted and logged. Each followed file holds one open file descriptor. Default 4096.
    #[serde(default = "default_max_streams")]
    pub max_streams: usize,
    /// How often, at most, acknowledged positions are written to the checkpoint file
    /// (and synced), in milliseconds. Default 1000. A crash loses at most this much of
    /// checkpoint progress: those lines are read and sent again with the same indices,
    /// so the collector stores them once (the `tcp`, `http` and `file` flushers, being
    /// at-least-once, may write them twice). A stream's first position and every file
    /// it starts are written at once regardless.
    #[serde(default = "default_checkpoint_interval_ms")]
    pub checkpoint_interval_ms: u64,
    /// Also copy this source's lines to the agent's spool (DESIGN.md, Agent). Read by
    /// the agent, not by the source itself. Default false.
    #[serde(default)]
    pub spool: bool,
}

fn default_max_line_bytes() -> usize {
    1024 * 1024
}
fn default_stream() -> String {
    "host/{hostname}/+/file/{path}".to_string()
}
fn default_poll_interval_ms() -> u64 {
    1000
}
fn default_inotify() -> bool {
    true
}
fn default_checkpoint_interval_ms() -> u64 {
    1000
}
fn default_fingerprint_bytes() -> usize {
    256
}
fn default_max_unacknowledged_lines() -> usize {
    262_144
}
fn default_max_streams() -> usize {
    4096
}

impl FileSourceConfig {
    /// A config reading `include` with every other key at its default.
    pub fn new<S: Into<String>>(include: impl IntoIterator<Item = S>) -> Self {
        FileSourceConfig {
            include: include.into_iter().map(Into::into).collect(),
            exclude: Vec::new(),
            read_from: ReadFrom::default(),
            max_line_bytes: default_max_line_bytes(),
            stream: default_stream(),
            poll_interval_ms: default_poll_interval_ms(),
            inotify: default_inotify(),
            fingerprint_bytes: default_fingerprint_bytes(),
            max_unacknowledged_lines: default_max_unacknowledged_lines(),
            max_streams: default_max_streams(),
            checkpoint_interval_ms: default_checkpoint_interval_ms(),
            spool: false,
        }
    }

    /// The poll interval as a [`Duration`].
    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_interval_ms)
    }

    /// Checks every key; the source refuses to start on the first problem found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.compile("example").map(|_| ())
    }

    /// Validates and prepares the parts the source runs with.
    pub(crate) fn compile(&self, source_name: &str) -> Result<Compiled, ConfigError> {
        range("max_line_bytes", self.max_line_bytes as u64, 1, 64 << 20)?;
        range("poll_interval_ms", self.poll_interval_ms, 1, 60_000)?;
        range(
            "checkpoint_interval_ms",
            self.checkpoint_interval_ms,
            1,
            60_000,
        )?;
        range(
            "fingerprint_bytes",
            self.fingerprint_bytes as u64,
            1,
            65_536,
        )?;
        range(
            "max_unacknowledged_lines",
            self.max_unacknowledged_lines as u64,
            1,
            1 << 30,
        )?;
        range("max_streams", self.max_streams as u64, 1, 1 << 20)?;
        let matcher = Matcher::new(&self.include, &self.exclude)?;
        let template = StreamTemplate::parse(&self.stream, source_name)?;
        Ok(Compiled { matcher, template })
    }
}

/// The parts of a validated config that need preparing.
pub(crate) struct Compiled {
    pub matcher: Matcher,
    pub template: StreamTemplate,
}

fn range(key: &'static str, value: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(ConfigError::OutOfRange {
            key,
            value,
            min,
            max,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape the agent's config will use: sources tagged by `type`.
    #[derive(Debug, Deserialize)]
    #[serde(tag = "type", rename_all = "lowercase")]
    enum AnySource {
        File(FileSourceConfig),
    }

    #[test]
    fn defaults_fill_everything_but_include() {
        let AnySource::File(c) =
            toml::from_str("type = \"file\"\ninclude = [\"/var/log/*.log\"]\n").unwrap();
        assert_eq!(c, FileSourceConfig::new(["/var/log/*.log"]));
        assert_eq!(c.read_from, ReadFrom::Beginning);
        assert_eq!(c.max_line_bytes, 1 << 20);
        assert_eq!(c.poll_interval_ms, 1000);
        assert_eq!(c.fingerprint_bytes, 256);
        c.validate().unwrap();
    }

    #[test]
    fn every_key_parses() {
        let AnySource::File(c) = toml::from_str(
            r#"
            type = "file"
            include = ["/a/*.log"]
            exclude = ["/a/x.log"]
            read_from = "end"
            max_line_bytes = 10
            stream = "app/{source}/+/{file_name}"
            poll_interval_ms = 5
            fingerprint_bytes = 64
            max_unacknowledged_lines = 100
            max_streams = 3
            spool = true
            "#,
        )
        .unwrap();
        assert_eq!(c.read_from, ReadFrom::End);
        assert!(c.spool);
        c.validate().unwrap();
    }

    #[test]
    fn unknown_keys_and_values_are_refused() {
        let e = toml::from_str::<AnySource>("type = \"file\"\ninclude = []\nreadfrom = \"end\"\n")
            .unwrap_err();
        assert!(e.to_string().contains("readfrom"), "{e}");
        assert!(
            toml::from_str::<AnySource>("type = \"file\"\ninclude = []\nread_from = \"middle\"\n")
                .is_err()
        );
        assert!(toml::from_str::<AnySource>("type = \"file\"\n").is_err());
    }

    #[test]
    fn validation_names_the_problem() {
        assert!(matches!(
            FileSourceConfig::new(Vec::<String>::new()).validate(),
            Err(ConfigError::NoInclude)
        ));
        let mut c = FileSourceConfig::new(["/a/[.log"]);
        assert!(matches!(c.validate(), Err(ConfigError::BadPattern { .. })));
        c = FileSourceConfig::new(["/a/*.log"]);
        c.max_line_bytes = 0;
        assert!(matches!(
            c.validate(),
            Err(ConfigError::OutOfRange {
                key: "max_line_bytes",
                ..
            })
        ));
        c = FileSourceConfig::new(["/a/*.log"]);
        c.stream = "no-separator-{path}".into();
        assert!(matches!(
            c.validate(),
            Err(ConfigError::BadStreamTemplate { .. })
        ));
    }
}
