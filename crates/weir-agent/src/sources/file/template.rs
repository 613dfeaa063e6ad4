//! Naming a file's stream: the `stream` template.
//!
//! Placeholders `{hostname}`, `{path}`, `{file_name}` and `{source}` are replaced by
//! values made into valid segments with [`to_segment`]; `{path}` becomes one segment per
//! directory and the file name (`/var/log/app.log` → `var/log/app.log`), so no segment
//! is ever empty. The rendered path is checked with [`StreamPath::parse_producer`]; a
//! template is checked once at config time against a sample path, and every rendered
//! path again when a file is found.
//!
//! Two paths can map to one stream name (`/a/b c.log` and `/a/b_c.log` both give
//! `a/b_c.log`). A stream is fed by one path only, so the second is skipped and counted.

use std::path::{Component, Path};

use weir_core::path::{PathError, StreamPath, to_segment};

use super::error::ConfigError;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Hostname,
    Path,
    FileName,
    Source,
}

/// A parsed `stream` template, bound to the host and source names.
#[derive(Debug, Clone)]
pub(crate) struct StreamTemplate {
    parts: Vec<Part>,
    hostname: String,
    source: String,
}

impl StreamTemplate {
    /// Parses `template` and checks that it renders a valid path for a sample file.
    pub fn parse(template: &str, source_name: &str) -> Result<Self, ConfigError> {
        let bad = |reason: String| ConfigError::BadStreamTemplate {
            template: template.to_string(),
            reason,
        };
        let mut parts = Vec::new();
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Literal(rest[..open].to_string()));
            }
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| bad("a `{` is not closed".into()))?;
            let part = match &rest[open + 1..open + close] {
                "hostname" => Part::Hostname,
                "path" => Part::Path,
                "file_name" => Part::FileName,
                "source" => Part::Source,
                other => {
                    return Err(bad(format!(
                        "unknown placeholder {{{other}}} (known: {{hostname}}, {{path}}, \
                         {{file_name}}, {{source}})"
                    )));
                }
            };
            parts.push(part);
            rest = &rest[open + close + 1..];
        }
        if rest.contains('}') {
            return Err(bad("a `}` has no `{`".into()));
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_string()));
        }
        let t = StreamTemplate {
            parts,
            hostname: to_segment(&hostname()),
            source: to_segment(source_name),
        };
        t.render(Path::new("/var/log/app.log"))
            .map_err(|e| bad(format!("renders an invalid stream path: {e}")))?;
        Ok(t)
    }

    /// The stream path of the file at `path`.
    pub fn render(&self, path: &Path) -> Result<StreamPath, PathError> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Hostname => out.push_str(&self.hostname),
                Part::Source => out.push_str(&self.source),
                Part::FileName => out.push_str(&to_segment(
                    &path
                        .file_name()
                        .map(|n| n.to_string_lossy())
                        .unwrap_or_default(),
                )),
                Part::Path => out.push_str(&path_segments(path)),
            }
        }
        StreamPath::parse_producer(&out)
    }
}

/// `path` as `/`-joined segments, each made valid; never empty.
fn path_segments(path: &Path) -> String {
    let segments: Vec<String> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(to_segment(&s.to_string_lossy())),
            Component::ParentDir => Some(to_segment("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect();
    if segments.is_empty() {
        "unknown".to_string()
    } else {
        segments.join("/")
    }
}

/// This machine's host name (`uname -n`), as the default stream template uses it.
pub fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_template_names_host_and_path() {
        let t = StreamTemplate::parse("host/{hostname}/+/file/{path}", "app").unwrap();
        let p = t.render(Path::new("/var/log/my app/x.log")).unwrap();
        assert_eq!(
            p.as_str(),
            format!(
                "host/{}/+/file/var/log/my_app/x.log",
                to_segment(&hostname())
            )
        );
        let p = t.render(Path::new("./rel/../.hidden")).unwrap();
        assert_eq!(p.name(), "file/rel/x../x.hidden");
    }

    #[test]
    fn other_placeholders() {
        let t = StreamTemplate::parse("src/{source}/+/{file_name}", "my src").unwrap();
        assert_eq!(
            t.render(Path::new("/a/b.log")).unwrap().as_str(),
            "src/my_src/+/b.log"
        );
    }

    #[test]
    fn bad_templates_are_refused_with_a_reason() {
        for (t, why) in [
            ("a/+/{nope}", "unknown placeholder"),
            ("a/+/{path", "not closed"),
            ("a/+/path}", "has no"),
            ("{path}", "invalid stream path"),
            ("loggregator/x/+/{path}", "invalid stream path"),
        ] {
            let e = StreamTemplate::parse(t, "s").unwrap_err().to_string();
            assert!(e.contains(why), "{t}: {e}");
        }
    }
}
