//! The file source: one stream per path, numbering, exact bytes, the line-length bound,
//! the held last line, and where reading starts.

mod file_support;

use std::fs;

use file_support::*;
use weir_agent::sources::file::{FileSourceConfig, ReadFrom, hostname};
use weir_core::path::to_segment;

#[tokio::test]
async fn each_file_under_a_glob_is_its_own_stream_numbered_from_zero() {
    let dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    append(&dir.path().join("a.log"), &numbered("a", 0..3));
    append(&dir.path().join("b.log"), "b 0\r\n\nb 2 \u{e9}\n");
    append(&dir.path().join("c.txt"), "not matched\n");
    let mut src = start(config(&dir.path().join("*.log")), data.path(), 64);

    let mut lines = src.recv(6).await;
    lines.sort_by(|x, y| (&x.stream, x.index).cmp(&(&y.stream, y.index)));
    let a: Vec<_> = lines
        .iter()
        .filter(|l| *l.stream == stream("a.log"))
        .cloned()
        .collect();
    let b: Vec<_> = lines
        .iter()
        .filter(|l| *l.stream == stream("b.log"))
        .cloned()
        .collect();
    assert_eq!(texts(&a), ["a 0", "a 1", "a 2"]);
    assert_eq!(indices(&a), [0, 1, 2]);
    // Exact bytes: a `\r` is kept, an empty line is a line, UTF-8 untouched.
    assert_eq!(
        b.iter().map(|l| l.bytes.to_vec()).collect::<Vec<_>>(),
        [
            b"b 0\r".to_vec(),
            b"".to_vec(),
            "b 2 \u{e9}".as_bytes().to_vec()
        ]
    );
    assert_eq!(indices(&b), [0, 1, 2]);
    assert_eq!(
        b[2].file_offset_end,
        fs::metadata(dir.path().join("b.log")).unwrap().len()
    );

    // A file created later is picked up, from its beginning, as a new stream.
    append(&dir.path().join("d.log"), "d 0\n");
    let d = src.recv_stream(&stream("d.log"), 1).await;
    assert_eq!((texts(&d), d[0].index), (vec!["d 0".to_string()], 0));
    // More lines continue each stream's numbering.
    append(&dir.path().join("a.log"), "a 3\n");
    let a3 = src.recv_stream(&stream("a.log"), 1).await;
    assert_eq!((texts(&a3), a3[0].index), (vec!["a 3".to_string()], 3));
    // Counters are bumped just after a line is sent: wait for them, then check all.
    src.wait_stats("counters", |s| s.lines_read == 8).await;
    let s = src.stats();
    assert_eq!((s.lines_read, s.files_opened), (8, 3));
    // a: 3 × 3; b: "b 0\r", "", "b 2 é" ("é" is 2 bytes); d: 3; a 3: 3
    assert_eq!(s.bytes_read, 9 + 4 + 6 + 3 + 3);
    src.stop().await;
}

#[tokio::test]
async fn default_stream_name_is_host_and_path() {
    let dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let file = dir.path().join("my app.log");
    append(&file, "x\n");
    let mut c = FileSourceConfig::new([dir.path().join("*.log").to_string_lossy()]);
    c.poll_interval_ms = 10;
    let mut src = start(c, data.path(), 8);
    let line = src.recv(1).await.remove(0);
    let segments: Vec<String> = file
        .iter()
        .skip(1)
        .map(|s| to_segment(&s.to_string_lossy()))
        .collect();
    let want = format!(
        "host/{}/+/file/{}",
        to_segment(&hostname()),
        segments.join("/")
    );
    assert_eq!(&*line.stream, want);
    assert!(want.ends_with("/my_app.log"), "{want}");
    weir_core::StreamPath::parse_producer(&line.stream).unwrap();
    src.stop().await;
}

#[tokio::test]
async fn a_long_line_is_split_into_counted_pieces() {
    let dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.log");
    let x = "x".repeat(40);
    let y = "y".repeat(32);
    append(&file, &format!("short\n{x}\n{y}\nend\n"));
    let mut c = config(&file);
    c.max_line_bytes = 16;
    let mut src = start(c, data.path(), 64);
    let lines = src.recv_stream(&stream("app.log"), 7).await;
    assert_eq!(
        texts(&lines),
        [
            "short",
            &x[..16],
            &x[16..32],
            &x[32..],
            &y[..16],
            &y[16..],
            "end"
        ]
    );
    assert_eq!(indices(&lines), (0..7).collect::<Vec<_>>());
    let split: Vec<bool> = lines.iter().map(|l| l.split).collect();
    assert_eq!(split, [false, true, true, false, true, false, false]);
    assert_eq!(lines[1].file_offset_end, 6 + 16);
    src.wait_stats("counters", |s| s.lines_read == 7).await;
    assert_eq!(src.stats().lines_split, 3);
    src.stop().await;
}

#[tokio::test]
async fn a_last_line_without_newline_is_held_until_the_file_is_released() {
    let dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.log");
    append(&file, "one\ntwo\nthr");
    let mut src = start(config(&file), data.path(), 64);
    assert_eq!(texts(&src.recv(2).await), ["one", "two"]);
    // Read to the end twice over: the unfinished line stays held, even as it grows.
    src.polls(2).await;
    src.assert_nothing_more();
    append(&file, "ee");
    src.polls(2).await;
    src.assert_nothing_more();
    // Deleted: drained and released, so the held bytes are its last line.
    fs::remove_file(&file).unwrap();
    let last = src.recv(1).await.remove(0);
    assert_eq!((&last.bytes[..], last.index), (&b"three"[..], 2));
    assert_eq!(last.file_offset_end, 13);
    src.wait_stats("release", |s| s.files_released == 1).await;
    // A new file at the path continues the stream.
    append(&file, "four\n");
    let four = src.recv(1).await.remove(0);
    assert_eq!((&four.bytes[..], four.index), (&b"four"[..], 3));
    src.stop().await;
}

#[tokio::test]
async fn read_from_end_skips_history_of_files_found_at_start_only() {
    let dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.log");
    append(&file, "old 0\nold 1\npar");
    let mut c = config(&dir.path().join("*.log"));
    c.read_from = ReadFrom::End;
    let mut src = start(c, data.path(), 64);
    src.polls(2).await;
    src.assert_nothing_more();
    // The line being written when the source started is read whole.
    append(&file, "tial\nnew\n");
    let lines = src.recv_stream(&stream("a.log"), 2).await;
    assert_eq!(
        (texts(&lines), indices(&lines)),
        (vec!["partial".into(), "new".into()], vec![0, 1])
    );
    // A file that appears later is read from its beginning.
    append(&dir.path().join("b.log"), "b 0\nb 1\n");
    let b = src.recv_stream(&stream("b.log"), 2).await;
    assert_eq!(texts(&b), ["b 0", "b 1"]);
    src.stop().await;
}
