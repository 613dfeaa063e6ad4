//! Rotation: rename (the old file drained before its successor) and copytruncate.

mod file_support;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::time::Duration;

use file_support::*;

/// A writer appends continuously and rotates five times the way an application under
/// logrotate does: the file is renamed, the application writes a little more to the
/// old file (it has not reopened yet), then reopens the path and goes on. The glob also
/// matches the rotated names, which must not become streams of their own.
#[tokio::test]
async fn rename_rotation_under_a_continuous_writer_keeps_every_line_once_in_order() {
    const LINES: usize = 20_000;
    const ROTATIONS: usize = 5;
    let dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    fs::write(&path, b"").unwrap();
    let mut src = start(config(&dir.path().join("app.log*")), data.path(), 1024);

    // The writer starts once the source follows `app.log`: had the first rotation come
    // first, `app.log.1` would have been a path of its own from the start.
    src.wait_stats("app.log opened", |s| s.files_opened == 1)
        .await;
    let writer_path = path.clone();
    let stats = src.handle.stats();
    let writer = std::thread::spawn(move || -> std::io::Result<()> {
        let open = || {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&writer_path)
        };
        let mut f = open()?;
        let per_file = LINES / (ROTATIONS + 1);
        let (mut rotations, mut reopen_after) = (0, None);
        for i in 0..LINES {
            writeln!(f, "line {i} {}", "p".repeat(i % 50))?;
            if reopen_after == Some(i) {
                f = open()?;
                reopen_after = None;
            }
            if i % per_file == per_file - 1 && rotations < ROTATIONS {
                rotations += 1;
                let rotated = writer_path.with_extension(format!("log.{rotations}"));
                fs::rename(&writer_path, &rotated)?;
                fs::write(&writer_path, b"")?; // logrotate's `create`
                // A file must be at its path during a poll to be followed (see the
                // `stream` module): wait until the source has opened the new one.
                let deadline = std::time::Instant::now() + TIMEOUT;
                while stats.snapshot().files_opened < rotations as u64 + 1 {
                    assert!(std::time::Instant::now() < deadline, "successor not opened");
                    std::thread::sleep(Duration::from_millis(1));
                }
                // The application writes 20 more lines to the old file, then reopens.
                reopen_after = Some(i + 20);
            }
            if i % 1000 == 0 {
                std::thread::sleep(Duration::from_millis(1)); // pacing, so reads interleave
            }
        }
        Ok(())
    });
    let lines = src.recv_stream(&stream("app.log"), LINES).await;
    writer.join().unwrap().unwrap();
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l.index, i as u64);
        let want = format!("line {i} {}", "p".repeat(i % 50));
        assert_eq!(l.bytes, want.as_bytes(), "line {i}");
    }
    // Rotated files were released, none became a stream of its own.
    src.wait_stats("releases", |s| s.files_released == ROTATIONS as u64)
        .await;
    src.polls(3).await;
    src.assert_nothing_more();
    assert_eq!(src.stats().files_opened, ROTATIONS as u64 + 1);
    src.stop().await;
}

/// After a rename, lines the application still writes to the old file come before the
/// successor's, and the old file's unfinished last line is handed out when it is
/// released (its successor has data), before the successor's first line.
#[tokio::test]
async fn old_file_is_drained_before_its_successor_including_its_held_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    let mut old = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap();
    old.write_all(b"a 0\na 1\n").unwrap();
    let mut src = start(config(&dir.path().join("*.log")), data.path(), 64);
    assert_eq!(texts(&src.recv(2).await), ["a 0", "a 1"]);

    fs::rename(&path, dir.path().join("app.log.1")).unwrap();
    fs::write(&path, b"").unwrap();
    src.polls(2).await;
    // The writer has not reopened yet: more lines land in the old file.
    old.write_all(b"a 2\nheld").unwrap();
    let a2 = src.recv(1).await;
    assert_eq!((texts(&a2), a2[0].index), (vec!["a 2".to_string()], 2));
    src.polls(2).await;
    src.assert_nothing_more(); // the successor is empty: the old file may still grow
    append(&path, "b 0\nb 1\n");
    let rest = src.recv_stream(&stream("app.log"), 3).await;
    assert_eq!(texts(&rest), ["held", "b 0", "b 1"]);
    assert_eq!(indices(&rest), [3, 4, 5]);
    assert_ne!(rest[0].file_identity, rest[1].file_identity);
    src.stop().await;
}

/// copytruncate, made deterministic: the source has read everything, the file is
/// copied and truncated, then written again. The new lines are read from offset 0 and
/// continue the numbering; the unfinished line of the old content is handed out.
#[tokio::test]
async fn copytruncate_restarts_at_zero_and_numbering_continues() {
    let dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    append(&path, &(numbered("old", 0..10) + "part"));
    let mut src = start(config(&dir.path().join("*.log")), data.path(), 64);
    assert_eq!(indices(&src.recv(10).await), (0..10).collect::<Vec<_>>());
    src.polls(2).await; // read to the end: only the held "part" remains unread

    fs::copy(&path, dir.path().join("app.log.1")).unwrap();
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(0)
        .unwrap();
    append(&path, &numbered("new", 0..5));
    let lines = src.recv_stream(&stream("app.log"), 6).await;
    assert_eq!(
        texts(&lines),
        ["part", "new 0", "new 1", "new 2", "new 3", "new 4"]
    );
    assert_eq!(indices(&lines), (10..16).collect::<Vec<_>>());
    assert_eq!(lines[1].file_offset_end, 6);
    assert_eq!(src.stats().truncations, 1);
    src.stop().await;
}

/// copytruncate where the new content outgrows the old before the source looks again:
/// the size alone does not show it, the changed first bytes do. The source is held
/// back by a full channel while the file is replaced, so no poll can happen between
/// the truncation and the rewrite.
#[tokio::test]
async fn copytruncate_is_seen_by_fingerprint_when_the_file_regrew() {
    let dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    append(&path, &numbered("a", 0..10));
    let mut src = start(config(&dir.path().join("*.log")), data.path(), 1);
    src.wait_stats("the source held back", |s| s.backpressure_waits >= 1)
        .await;

    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(0)
        .unwrap();
    append(&path, &numbered("bbbbbbbbbbbbbbbb", 0..20));
    let old = src.recv(10).await;
    assert_eq!(
        texts(&old),
        numbered("a", 0..10).lines().collect::<Vec<_>>()
    );
    let new = src.recv_stream(&stream("app.log"), 20).await;
    assert_eq!(
        texts(&new),
        numbered("bbbbbbbbbbbbbbbb", 0..20)
            .lines()
            .collect::<Vec<_>>()
    );
    assert_eq!(indices(&new), (10..30).collect::<Vec<_>>());
    assert_eq!(src.stats().truncations, 1);
    src.stop().await;
}
