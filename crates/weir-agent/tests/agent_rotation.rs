//! Rotation while the agent runs and a writer keeps writing, end to end into a real
//! collector: rename rotation loses no line and duplicates none; copytruncate loses at
//! most its documented window (lines written after the source's last read and before
//! the truncation, which only the copy holds) and duplicates none.

mod agent_support;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use agent_support::*;

const STREAM: &str = "test/+/app.log";

fn toml(data: &std::path::Path, logs: &std::path::Path, collector: &str) -> String {
    format!(
        "data_dir = {}\n[batch]\nmax_entries = 256\nmax_wait_ms = 20\n\
         [sources.app]\ntype = \"file\"\ninclude = [{}]\nexclude = [{}]\nstream = \"test/+/{{file_name}}\"\npoll_interval_ms = 10\n\
         [flushers.central]\ntype = \"weir\"\naddr = \"{collector}\"\n",
        lit(data),
        lit(&logs.join("app.log*")),
        lit(&logs.join("*.copy*")),
    )
}

/// An agent following an empty `app.log` into `c`.
struct Following {
    logs: tempfile::TempDir,
    _data: tempfile::TempDir,
    path: std::path::PathBuf,
    agent: weir_agent::runtime::Agent,
}

/// Starts an agent on an empty `app.log` and waits until it follows the file.
async fn following(c: &Collector) -> Following {
    let logs = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let path = logs.path().join("app.log");
    fs::write(&path, b"").unwrap();
    let agent = agent(&toml(data.path(), logs.path(), &c.addr)).await;
    let ck = agent.checkpoints("app").unwrap();
    wait_for("app.log followed", || ck.checkpoint(STREAM).is_some()).await;
    Following {
        logs,
        _data: data,
        path,
        agent,
    }
}

fn open_append(path: &std::path::Path) -> fs::File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
}

/// A writer appends continuously and rotates five times as logrotate does (rename, the
/// application writes a little more to the old file, then reopens the path). Every line
/// reaches the collector once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_rotation_while_running_loses_nothing() {
    const LINES: usize = 30_000;
    const ROTATIONS: usize = 5;
    let c = Collector::start().await;
    let Following {
        logs: _logs,
        _data,
        path,
        agent,
    } = following(&c).await;
    let ck = agent.checkpoints("app").unwrap();

    let writer_path = path.clone();
    let writer = std::thread::spawn(move || {
        let mut f = open_append(&writer_path);
        let per_file = LINES / (ROTATIONS + 1);
        let (mut rotations, mut reopen_after) = (0, None);
        for i in 0..LINES {
            writeln!(f, "line {i} {}", "p".repeat(i % 40)).unwrap();
            if reopen_after == Some(i) {
                f = open_append(&writer_path);
                reopen_after = None;
            }
            if i % per_file == per_file - 1 && rotations < ROTATIONS {
                rotations += 1;
                let rotated = writer_path.with_extension(format!("log.{rotations}"));
                fs::rename(&writer_path, &rotated).unwrap();
                fs::write(&writer_path, b"").unwrap(); // logrotate's `create`
                // A file must be at its path during a poll to be followed: wait until
                // the stream knows the new file (queued or started).
                let ino = fs::metadata(&writer_path).unwrap().ino();
                let deadline = Instant::now() + TIMEOUT;
                loop {
                    let known = ck.checkpoint(STREAM).is_some_and(|c| {
                        c.file.inode_key().1 == ino
                            || c.successors.iter().any(|s| s.file.inode_key().1 == ino)
                    });
                    if known {
                        break;
                    }
                    assert!(Instant::now() < deadline, "successor not seen");
                    std::thread::sleep(Duration::from_millis(1));
                }
                // The application writes 20 more lines to the old file, then reopens.
                reopen_after = Some(i + 20);
            }
        }
    });
    tokio::task::spawn_blocking(move || writer.join().unwrap())
        .await
        .unwrap();
    let lines = c.wait_lines(STREAM, LINES).await;
    let want: Vec<String> = (0..LINES)
        .map(|i| format!("line {i} {}", "p".repeat(i % 40)))
        .collect();
    assert_eq!(lines.len(), LINES);
    assert!(lines == want, "every line once, in order");
    // The rotated names match the glob but are no streams of their own.
    for r in 1..=ROTATIONS {
        assert!(c.lines(&format!("test/+/app.log.{r}")).await.is_empty());
    }
    agent.shutdown().await.unwrap();
    c.stop().await;
}

/// A writer appends continuously; five times the file is copied and truncated in place
/// (copytruncate). The delivered lines are in order with none twice, and every line not
/// delivered was written before a truncation and is in that copy's tail: the window.
///
/// The writer writes each line in three `write` calls (`writeln!` on an unbuffered
/// file), as careless programs do, so the source may have read the start of a line
/// when the file is truncated. That fragment is handed out as a line (stream.rs,
/// copytruncate): it must be the start of the first line of that copy's window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copytruncate_while_running_loses_at_most_the_window() {
    const LINES: usize = 30_000;
    const ROTATIONS: usize = 5;
    let c = Collector::start().await;
    let Following {
        logs,
        _data,
        path,
        agent,
    } = following(&c).await;

    let writer_path = path.clone();
    let copies_dir = logs.path().to_path_buf();
    let writer = std::thread::spawn(move || {
        let mut f = open_append(&writer_path);
        let per_file = LINES / (ROTATIONS + 1);
        let mut rotations = 0;
        for i in 0..LINES {
            writeln!(f, "line {i} end").unwrap();
            if i % 50 == 49 {
                // A steady writer (about 50,000 lines/s), not a synchronisation: the
                // window is what the source has not read at a truncation.
                std::thread::sleep(Duration::from_millis(1));
            }
            if i % per_file == per_file - 1 && rotations < ROTATIONS {
                rotations += 1;
                let copy = copies_dir.join(format!("app.copy{rotations}"));
                fs::copy(&writer_path, &copy).unwrap();
                OpenOptions::new()
                    .write(true)
                    .open(&writer_path)
                    .unwrap()
                    .set_len(0)
                    .unwrap();
            }
        }
    });
    tokio::task::spawn_blocking(move || writer.join().unwrap())
        .await
        .unwrap();
    // The last line is never in the window (no truncation follows it): once it is
    // stored, everything that will be delivered is.
    let last = format!("line {} end", LINES - 1);
    let deadline = Instant::now() + TIMEOUT;
    let lines = loop {
        let lines = c.lines(STREAM).await;
        if lines.last() == Some(&last) {
            break lines;
        }
        assert!(Instant::now() < deadline, "last line not delivered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let parse =
        |l: &str| -> Option<usize> { l.strip_prefix("line ")?.strip_suffix(" end")?.parse().ok() };
    let (complete, fragments): (Vec<&String>, Vec<&String>) =
        lines.iter().partition(|l| parse(l).is_some());
    let numbers: Vec<usize> = complete.iter().filter_map(|l| parse(l)).collect();
    assert!(
        numbers.windows(2).all(|w| w[0] < w[1]),
        "in order, none twice"
    );
    let delivered: std::collections::HashSet<usize> = numbers.iter().copied().collect();
    let mut lost = 0;
    let mut window_starts = Vec::new();
    for r in 1..=ROTATIONS {
        let copy = fs::read_to_string(logs.path().join(format!("app.copy{r}"))).unwrap();
        let in_copy: Vec<usize> = copy
            .lines()
            .map(|l| parse(l).expect("the copy holds whole lines"))
            .collect();
        // What this copy holds that was not delivered is a tail of it: lines written
        // after the last read before the truncation.
        let first_missing = in_copy.iter().position(|n| !delivered.contains(n));
        if let Some(k) = first_missing {
            assert!(
                in_copy[k..].iter().all(|n| !delivered.contains(n)),
                "copy {r}: a line missing before delivered ones"
            );
            lost += in_copy.len() - k;
            let first_lost = format!("line {} end", in_copy[k]);
            window_starts.push(first_lost);
        }
    }
    // Each fragment is the start of the first line of one copy's window.
    for fragment in &fragments {
        let at = window_starts
            .iter()
            .position(|w| w.starts_with(fragment.as_str()) && w != *fragment);
        assert!(
            at.is_some(),
            "{fragment:?} is neither a whole line nor the start of a window's first line \
             (windows start with {window_starts:?})"
        );
        if let Some(at) = at {
            window_starts.remove(at);
        }
    }
    assert_eq!(
        numbers.len() + lost,
        LINES,
        "every line not delivered is in a copy's tail"
    );
    eprintln!(
        "copytruncate: {lost} of {LINES} lines in the window, {} fragment(s) of one",
        fragments.len()
    );
    agent.shutdown().await.unwrap();
    c.stop().await;
}
