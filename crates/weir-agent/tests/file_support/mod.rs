//! Shared helpers of the file source tests: temp dirs, a source with a short poll
//! interval, bounded waits for lines and counters, and a small file system that reuses
//! inode numbers.
#![allow(dead_code)]

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tokio::sync::mpsc;
use weir_agent::sources::file::{
    FileSource, FileSourceConfig, FileSourceHandle, FileSourceStatsSnapshot, Line,
};

/// Upper bound of every wait in these tests.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// A config following `glob` with a 10 ms poll and streams named `test/+/<file name>`.
pub fn config(glob: &Path) -> FileSourceConfig {
    let mut c = FileSourceConfig::new([glob.to_string_lossy()]);
    c.poll_interval_ms = 10;
    c.stream = "test/+/{file_name}".into();
    c
}

/// The stream of `file_name` under [`config`].
pub fn stream(file_name: &str) -> String {
    format!("test/+/{file_name}")
}

/// A started source and its channel.
pub struct Running {
    pub handle: FileSourceHandle,
    pub rx: mpsc::Receiver<Line>,
}

pub fn start(config: FileSourceConfig, data_dir: &Path, capacity: usize) -> Running {
    let (tx, rx) = mpsc::channel(capacity);
    let handle = FileSource::start("test", config, data_dir, tx).expect("source starts");
    Running { handle, rx }
}

impl Running {
    /// The next `n` lines, failing after [`TIMEOUT`].
    pub async fn recv(&mut self, n: usize) -> Vec<Line> {
        let mut out = Vec::with_capacity(n);
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        while out.len() < n {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(line)) => out.push(line),
                Ok(None) => panic!("channel closed after {} of {n} lines", out.len()),
                Err(_) => panic!(
                    "timed out after {} of {n} lines; last: {:?}; stats {:?}",
                    out.len(),
                    out.last(),
                    self.stats()
                ),
            }
        }
        out
    }

    /// Lines of `stream` only, until `n` of them arrived; lines of other streams fail.
    pub async fn recv_stream(&mut self, stream: &str, n: usize) -> Vec<Line> {
        let lines = self.recv(n).await;
        for l in &lines {
            assert_eq!(&*l.stream, stream, "line of another stream: {l:?}");
        }
        lines
    }

    pub fn stats(&self) -> FileSourceStatsSnapshot {
        self.handle.stats().snapshot()
    }

    /// Waits until `cond` holds of the counters, failing after [`TIMEOUT`].
    pub async fn wait_stats(&self, what: &str, cond: impl Fn(&FileSourceStatsSnapshot) -> bool) {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            let s = self.stats();
            if cond(&s) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}; stats {s:?}"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Waits for `n` more poll rounds. A round that ends after a write began is
    /// followed by a read of everything readable, unless the source is held back, so
    /// two rounds after a write every line of it has been handed out.
    pub async fn polls(&self, n: u64) {
        let from = self.stats().polls;
        self.wait_stats("poll rounds", |s| s.polls >= from + n)
            .await;
    }

    /// Asserts that no line is waiting in the channel.
    pub fn assert_nothing_more(&mut self) {
        if let Ok(line) = self.rx.try_recv() {
            panic!("unexpected line {line:?}");
        }
    }

    /// Acknowledges lines as every flusher would have.
    pub fn ack(&self, stream: &str, next_index: u64) {
        self.handle
            .checkpoints()
            .acknowledge(stream, next_index)
            .expect("acknowledge");
    }

    pub async fn stop(self) {
        self.handle.stop().await.expect("source stops cleanly");
    }
}

/// The text of each line.
pub fn texts(lines: &[Line]) -> Vec<String> {
    lines
        .iter()
        .map(|l| String::from_utf8_lossy(&l.bytes).into_owned())
        .collect()
}

/// The index of each line.
pub fn indices(lines: &[Line]) -> Vec<u64> {
    lines.iter().map(|l| l.index).collect()
}

/// Appends `text` to `path`, creating it.
pub fn append(path: &Path, text: &str) {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open for append");
    f.write_all(text.as_bytes()).expect("append");
}

/// `"{prefix} {i}\n"` for each i in `range`.
pub fn numbered(prefix: &str, range: std::ops::Range<usize>) -> String {
    range.map(|i| format!("{prefix} {i}\n")).collect()
}

/// `(dev, inode)` of `path`.
pub fn inode(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(path).expect("stat").ino()
}

/// A small, real file system mounted on a temp dir, on which a deleted file's inode
/// number is given to the next file created. Unmounted on drop.
///
/// A small tmpfs is tried first; since Linux 5.9 tmpfs numbers inodes from a counter
/// per mount and does not reuse them, so when the probe sees no reuse, a 4 MiB ext4
/// image on a loop device is used instead (ext4 gives out the lowest free inode).
pub struct SmallFs {
    pub dir: tempfile::TempDir,
    _image_dir: Option<tempfile::TempDir>,
    pub kind: &'static str,
}

impl SmallFs {
    /// Mounts one, or says why it cannot (not root, no loop devices, no mkfs.ext4).
    pub fn mount() -> Result<SmallFs, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        run(
            "mount",
            &["-t", "tmpfs", "-o", "size=1m,nr_inodes=64", "tmpfs"],
            dir.path(),
        )?;
        let fs = SmallFs {
            dir,
            _image_dir: None,
            kind: "tmpfs",
        };
        if fs.reuses_inodes()? {
            return Ok(fs);
        }
        drop(fs);
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let image_dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let image = image_dir.path().join("fs.img");
        fs::File::create(&image)
            .and_then(|f| f.set_len(4 << 20))
            .map_err(|e| e.to_string())?;
        let status = Command::new("mkfs.ext4")
            .args(["-q", "-F", "-N", "64"])
            .arg(&image)
            .status()
            .map_err(|e| format!("mkfs.ext4: {e}"))?;
        if !status.success() {
            return Err(format!("mkfs.ext4 failed: {status}"));
        }
        run(
            "mount",
            &["-o", "loop", &image.to_string_lossy()],
            dir.path(),
        )?;
        let fs = SmallFs {
            dir,
            _image_dir: Some(image_dir),
            kind: "ext4 image",
        };
        if fs.reuses_inodes()? {
            Ok(fs)
        } else {
            Err("neither a tmpfs nor an ext4 image reused an inode number".into())
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    fn reuses_inodes(&self) -> Result<bool, String> {
        let probe = self.path().join("probe");
        fs::write(&probe, b"a").map_err(|e| e.to_string())?;
        let first = inode(&probe);
        fs::remove_file(&probe).map_err(|e| e.to_string())?;
        fs::write(&probe, b"b").map_err(|e| e.to_string())?;
        let second = inode(&probe);
        fs::remove_file(&probe).map_err(|e| e.to_string())?;
        Ok(first == second)
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

fn run(cmd: &str, args: &[&str], target: &Path) -> Result<(), String> {
    let out = Command::new(cmd)
        .args(args)
        .arg(target)
        .output()
        .map_err(|e| format!("{cmd}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
