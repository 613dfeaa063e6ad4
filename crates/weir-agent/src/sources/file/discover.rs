//! Which paths the source follows: `include` globs minus `exclude` globs.
//!
//! The globs are re-run at every poll, so files created later are picked up. Only
//! regular files are kept (a symlink counts when it points at one). Patterns follow the
//! shell: `*` and `?` stay within one path segment and do not match a leading `.`;
//! `**` matches any depth of directories.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use glob::{MatchOptions, Pattern};

use super::error::ConfigError;

const OPTIONS: MatchOptions = MatchOptions {
    case_sensitive: true,
    require_literal_separator: true,
    require_literal_leading_dot: true,
};

/// Compiled `include` and `exclude` globs.
#[derive(Debug, Clone)]
pub(crate) struct Matcher {
    include: Vec<(String, Pattern)>,
    exclude: Vec<Pattern>,
}

/// What a scan found, and what it could not look at.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    pub paths: BTreeSet<PathBuf>,
    /// Directory entries the glob walk could not read (permission, vanished).
    pub errors: Vec<glob::GlobError>,
}

impl Matcher {
    pub fn new(include: &[String], exclude: &[String]) -> Result<Self, ConfigError> {
        if include.is_empty() {
            return Err(ConfigError::NoInclude);
        }
        let compile = |p: &String| {
            Pattern::new(p).map_err(|source| ConfigError::BadPattern {
                pattern: p.clone(),
                source,
            })
        };
        Ok(Matcher {
            include: include
                .iter()
                .map(|p| Ok((p.clone(), compile(p)?)))
                .collect::<Result<_, ConfigError>>()?,
            exclude: exclude.iter().map(compile).collect::<Result<_, _>>()?,
        })
    }

    /// Whether `path` is one this source follows (judged by name alone; the file need
    /// not exist).
    pub fn matches(&self, path: &Path) -> bool {
        self.include
            .iter()
            .any(|(_, p)| p.matches_path_with(path, OPTIONS))
            && !self.excluded(path)
    }

    fn excluded(&self, path: &Path) -> bool {
        self.exclude
            .iter()
            .any(|p| p.matches_path_with(path, OPTIONS))
    }

    /// The directories where new matching paths can appear without any directory
    /// being created first: each `include` pattern's leading directories up to the
    /// first wildcard (for `/var/log/app/*.log`, `/var/log/app`).
    pub fn base_dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = Vec::new();
        for (text, _) in &self.include {
            let mut base = PathBuf::new();
            let mut wild = false;
            for part in Path::new(text).components() {
                if part.as_os_str().to_string_lossy().contains(['*', '?', '[']) {
                    wild = true;
                    break;
                }
                base.push(part);
            }
            // A pattern without a wildcard names one file: its directory.
            let dir = if wild {
                Some(base)
            } else {
                base.parent().map(Path::to_path_buf)
            };
            if let Some(dir) = dir.filter(|d| !d.as_os_str().is_empty())
                && !dirs.contains(&dir)
            {
                dirs.push(dir);
            }
        }
        dirs
    }

    /// Walks the file system for regular files matching the globs, at most `limit` of
    /// them (the rest are left for when the source follows fewer paths).
    pub fn scan(&self, limit: usize) -> Scan {
        let mut scan = Scan::default();
        for (text, _) in &self.include {
            // The pattern compiled once already; glob_with only fails on a bad pattern.
            let Ok(entries) = glob::glob_with(text, OPTIONS) else {
                continue;
            };
            for entry in entries {
                match entry {
                    Ok(path) => {
                        if scan.paths.len() >= limit {
                            return scan;
                        }
                        if !self.excluded(&path) && path.is_file() {
                            scan.paths.insert(path);
                        }
                    }
                    Err(e) => scan.errors.push(e),
                }
            }
        }
        scan
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn include_minus_exclude_regular_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for f in ["a.log", "b.log", "c.txt", ".hidden.log", "b.log.1"] {
            std::fs::write(d.join(f), b"x").unwrap();
        }
        std::fs::create_dir(d.join("sub.log")).unwrap();
        std::fs::create_dir(d.join("deep")).unwrap();
        std::fs::write(d.join("deep/d.log"), b"x").unwrap();
        let m = Matcher::new(
            &[format!("{}/**/*.log", d.display())],
            &[format!("{}/b.*", d.display())],
        )
        .unwrap();
        let found: Vec<_> = m.scan(100).paths.into_iter().collect();
        assert_eq!(found, vec![d.join("a.log"), d.join("deep/d.log")]);
        assert!(m.matches(&d.join("gone.log")));
        assert!(!m.matches(&d.join("b.log")));
        assert_eq!(m.scan(1).paths.len(), 1);
    }

    #[test]
    fn base_dirs_stop_at_the_first_wildcard() {
        let m = Matcher::new(
            &[
                "/var/log/app/*.log".to_string(),
                "/var/log/**/x.log".to_string(),
                "/srv/one.log".to_string(),
                "/var/log/app/b?.log".to_string(),
                "rel/[ab].log".to_string(),
            ],
            &[],
        )
        .unwrap();
        assert_eq!(
            m.base_dirs(),
            vec![
                PathBuf::from("/var/log/app"),
                PathBuf::from("/var/log"),
                PathBuf::from("/srv"),
                PathBuf::from("rel"),
            ]
        );
    }
}
