//! Change events (inotify) bring a quiet source's next look forward. Each test polls
//! only once a minute, so a line, a new file or a deletion that is seen within the
//! tests' 20 s bound was seen through an event; each also checks the counter of looks
//! that events brought forward.

mod file_support;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use file_support::*;

/// A source over `dir/*.log` polling once a minute (the longest allowed), after its
/// first look; with `dir/app.log` created empty first (and opened by that look) when
/// `with_file`. Returns the source and that file's path.
async fn quiet_source(dir: &Path, with_file: bool) -> (Running, PathBuf) {
    let log = dir.join("app.log");
    if with_file {
        fs::write(&log, b"").unwrap();
    }
    let mut c = config(&dir.join("*.log"));
    c.poll_interval_ms = 60_000;
    let src = start(c, &dir.join("data"), 64);
    let files = u64::from(with_file);
    src.wait_stats("the first look", |s| {
        s.polls >= 1 && s.files_opened == files
    })
    .await;
    (src, log)
}

/// `dir/app.log`, opened for appending before any source watches it (so its writes
/// are changes, and no open by another program).
fn early_writer(dir: &Path) -> fs::File {
    fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("app.log"))
        .unwrap()
}

#[tokio::test]
async fn a_line_appended_to_a_quiet_file_is_read_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = early_writer(dir.path());
    let (mut src, _) = quiet_source(dir.path(), true).await;
    writer.write_all(b"one\n").unwrap();
    let got = src.recv_stream(&stream("app.log"), 1).await;
    assert_eq!(&got[0].bytes[..], b"one");
    assert_eq!(got[0].index, 0);
    assert!(src.stats().event_looks >= 1, "{:?}", src.stats());
    src.stop().await;
}

/// A line written in pieces, as a program writing without a buffer does: the look the
/// first piece brings forward reads only part of a line, so the event of the last
/// piece brings the next look, and the line goes out then, not at the next poll.
#[tokio::test]
async fn a_line_written_in_pieces_goes_out_with_its_last_piece() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = early_writer(dir.path());
    let (mut src, _) = quiet_source(dir.path(), true).await;
    writer.write_all(b"first ha").unwrap();
    src.wait_stats("the first piece's look", |s| s.event_looks >= 1)
        .await;
    writer.write_all(b"lf\n").unwrap();
    let got = src.recv_stream(&stream("app.log"), 1).await;
    assert_eq!(&got[0].bytes[..], b"first half");
    src.stop().await;
}

/// While a file keeps growing, its change events are set aside until the next poll
/// (a minute here), but another program opening it calls for a read at once: that is
/// how copytruncate starts (open, copy, truncate), so what was written before the open
/// is read instead of being lost to the truncation.
#[tokio::test]
async fn an_open_by_another_program_is_read_at_once_while_the_file_is_busy() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = early_writer(dir.path());
    let (mut src, log) = quiet_source(dir.path(), true).await;
    writer.write_all(b"first\n").unwrap();
    // Read through a change event; lines were handed out, so the file counts as busy.
    let got = src.recv_stream(&stream("app.log"), 1).await;
    assert_eq!(&got[0].bytes[..], b"first");
    writer.write_all(b"second\n").unwrap();
    // Set aside: nothing reads it. (Proving that nothing happens needs a pause: a
    // source woken by the change would read the line within it.)
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    src.assert_nothing_more();
    assert_eq!(src.stats().open_reads, 0, "{:?}", src.stats());
    let copier = fs::File::open(&log).unwrap();
    let got = src.recv_stream(&stream("app.log"), 1).await;
    assert_eq!(&got[0].bytes[..], b"second");
    assert_eq!(src.stats().open_reads, 1, "{:?}", src.stats());
    drop(copier);
    src.stop().await;
}

/// A look opens the paths it checks, among them a rotated name the globs match whose
/// file the source still holds (to drain it; it is no stream of its own). Those opens
/// are the source's own and call for nothing: a quiet source stays quiet.
#[tokio::test]
async fn the_sources_own_opens_call_for_no_read() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    fs::write(&log, b"").unwrap();
    let mut c = config(&dir.path().join("app.log*"));
    c.poll_interval_ms = 60_000;
    let src = start(c, &dir.path().join("data"), 64);
    src.wait_stats("the first look", |s| s.polls >= 1 && s.files_opened == 1)
        .await;
    fs::rename(&log, dir.path().join("app.log.1")).unwrap();
    fs::write(&log, b"").unwrap(); // the successor is empty: the old file stays held
    src.wait_stats("the successor opened", |s| s.files_opened == 2)
        .await;
    let polls = src.stats().polls;
    // (Proving that nothing happens needs a pause: a source woken by its own opens
    // would read within it.)
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    let s = src.stats();
    assert!(s.polls <= polls + 2, "{polls} polls, then {s:?}");
    assert_eq!(s.open_reads, 0, "{s:?}");
    src.stop().await;
}

#[tokio::test]
async fn a_new_matching_file_is_found_at_once_and_other_names_wake_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (mut src, _) = quiet_source(dir.path(), false).await;
    // A name the globs do not match is no reason to look. (Proving that nothing
    // happens needs a pause: a source woken by it would look within it.)
    fs::write(dir.path().join("other.txt"), b"not followed\n").unwrap();
    fs::write(dir.path().join("new.tmp"), b"first\n").unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(src.stats().event_looks, 0, "{:?}", src.stats());
    // Written under another name, then renamed: one event, and the file is complete.
    fs::rename(dir.path().join("new.tmp"), dir.path().join("new.log")).unwrap();
    let got = src.recv_stream(&stream("new.log"), 1).await;
    assert_eq!(&got[0].bytes[..], b"first");
    assert_eq!(src.stats().event_looks, 1, "{:?}", src.stats());
    src.stop().await;
}

#[tokio::test]
async fn a_rename_rotation_of_a_quiet_file_is_followed_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (mut src, log) = quiet_source(dir.path(), true).await;
    fs::rename(&log, dir.path().join("app.log.1")).unwrap();
    fs::write(&log, b"after rotation\n").unwrap();
    let got = src.recv_stream(&stream("app.log"), 1).await;
    assert_eq!(&got[0].bytes[..], b"after rotation");
    assert_eq!(got[0].index, 0);
    src.wait_stats("the rotated file released", |s| {
        s.files_opened == 2 && s.files_released == 1
    })
    .await;
    assert!(src.stats().event_looks >= 1);
    src.stop().await;
}

#[tokio::test]
async fn a_deleted_quiet_file_is_released_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (src, log) = quiet_source(dir.path(), true).await;
    fs::remove_file(&log).unwrap();
    src.wait_stats("the deleted file released", |s| s.files_released == 1)
        .await;
    assert!(src.stats().event_looks >= 1);
    src.stop().await;
}

#[tokio::test]
async fn without_inotify_polling_alone_reads_and_no_look_is_an_event_look() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    fs::write(&log, b"").unwrap();
    let polled = |every_ms| {
        let mut c = config(&dir.path().join("*.log"));
        c.inotify = false;
        c.poll_interval_ms = every_ms;
        c
    };
    let mut fast = start(polled(10), &dir.path().join("fast"), 64);
    let mut slow = start(polled(60_000), &dir.path().join("slow"), 64);
    for src in [&fast, &slow] {
        src.wait_stats("the first look", |s| s.polls >= 1 && s.files_opened == 1)
            .await;
    }
    append(&log, "polled\n");
    let got = fast.recv_stream(&stream("app.log"), 1).await;
    assert_eq!(&got[0].bytes[..], b"polled");
    // The source polling once a minute has no event to wake it. (Proving that nothing
    // happens needs a pause: with events on, it would read the line within it.)
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    slow.assert_nothing_more();
    for src in [&fast, &slow] {
        assert_eq!(src.stats().event_looks, 0, "{:?}", src.stats());
    }
    fast.stop().await;
    slow.stop().await;
}
