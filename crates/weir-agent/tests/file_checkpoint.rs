//! Checkpoints: a restart resumes exactly at the acknowledged line, unacknowledged lines
//! come again with the same indices, and rotation or truncation while the agent was down
//! is sorted out by file identity.

mod file_support;

use std::fs::{self, OpenOptions};

use file_support::*;
use weir_agent::sources::file::{CheckpointStore, FileSource};

#[tokio::test]
async fn restart_resumes_at_the_next_unacknowledged_line_with_the_same_indices() {
    let dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    let s = stream("app.log");
    append(&path, &numbered("line", 0..10));

    let mut first = start(config(&path), data.path(), 64);
    let run1 = first.recv_stream(&s, 10).await;
    first.ack(&s, 6); // entries 0..=5 acknowledged by every flusher
    first.stop().await;

    let on_disk = CheckpointStore::open(data.path(), "test")
        .unwrap()
        .load()
        .unwrap();
    let cp = &on_disk[&s];
    assert_eq!((cp.next_index, cp.offset), (6, run1[5].file_offset_end));
    assert_eq!(cp.file.inode_key(), run1[5].file_identity.inode_key());

    append(&path, &numbered("line", 10..12));
    let mut second = start(config(&path), data.path(), 64);
    let run2 = second.recv_stream(&s, 6).await;
    assert_eq!(indices(&run2), (6..12).collect::<Vec<_>>());
    assert_eq!(
        texts(&run2),
        numbered("line", 6..12).lines().collect::<Vec<_>>()
    );
    // Lines read again are the same entries: same index, bytes, offsets and file. (The
    // fingerprint of a file shorter than `fingerprint_bytes` grows with the file, so
    // the file is compared by device and inode.)
    for (again, before) in run2.iter().zip(&run1[6..]) {
        assert_eq!(
            (
                &again.stream,
                again.index,
                &again.bytes,
                again.file_offset_end,
                again.split
            ),
            (
                &before.stream,
                before.index,
                &before.bytes,
                before.file_offset_end,
                before.split
            )
        );
        assert_eq!(
            again.file_identity.inode_key(),
            before.file_identity.inode_key()
        );
    }
    second.ack(&s, 12);
    second.stop().await;

    let mut third = start(config(&path), data.path(), 64);
    third.polls(2).await;
    third.assert_nothing_more();
    append(&path, "line 12\n");
    let l = third.recv(1).await.remove(0);
    assert_eq!((&l.bytes[..], l.index), (&b"line 12"[..], 12));
    third.stop().await;
}

/// The acknowledged position is written at most one debounce interval after the
/// acknowledgement, without a stop.
#[tokio::test]
async fn acknowledgements_are_written_without_waiting_for_stop() {
    let dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    let s = stream("app.log");
    append(&path, &numbered("line", 0..3));
    let mut src = start(config(&path), data.path(), 64);
    src.recv(3).await;
    src.ack(&s, 2);
    let store = CheckpointStore::open(data.path(), "test").unwrap();
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while store.load().unwrap().get(&s).map(|c| c.next_index) != Some(2) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "checkpoint not written"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    src.stop().await;
}

/// Rotated while the agent was down: the old file is found under its new name by
/// identity and drained from the checkpoint, then the new file is read.
#[tokio::test]
async fn rotation_while_down_drains_the_old_file_found_by_identity() {
    let dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    let s = stream("app.log");
    append(&path, &numbered("old", 0..10));
    let mut first = start(config(&dir.path().join("*.log")), data.path(), 64);
    first.recv(10).await;
    first.ack(&s, 4);
    first.stop().await;

    fs::rename(&path, dir.path().join("app.log.1")).unwrap();
    append(&path, &numbered("new", 0..3));
    let mut second = start(config(&dir.path().join("*.log")), data.path(), 64);
    let lines = second.recv_stream(&s, 9).await;
    let want: Vec<String> = numbered("old", 4..10)
        .lines()
        .chain(numbered("new", 0..3).lines())
        .map(String::from)
        .collect();
    assert_eq!(texts(&lines), want);
    assert_eq!(indices(&lines), (4..13).collect::<Vec<_>>());
    second.stop().await;
}

/// copytruncate while the agent was down: same inode, other first bytes, so the file
/// is read from 0 (not from the old offset), numbered on from the checkpoint.
#[tokio::test]
async fn truncated_while_down_is_read_from_zero() {
    let dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    let s = stream("app.log");
    append(&path, &numbered("old", 0..5));
    let mut first = start(config(&path), data.path(), 64);
    first.recv(5).await;
    first.ack(&s, 5);
    first.stop().await;

    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(0)
        .unwrap();
    append(&path, &numbered("fresh", 0..8));
    let mut second = start(config(&path), data.path(), 64);
    let lines = second.recv_stream(&s, 8).await;
    assert_eq!(
        texts(&lines),
        numbered("fresh", 0..8).lines().collect::<Vec<_>>()
    );
    assert_eq!(indices(&lines), (5..13).collect::<Vec<_>>());
    second.stop().await;
}

#[tokio::test]
async fn a_damaged_checkpoint_file_stops_the_source_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let store = CheckpointStore::open(data.path(), "test").unwrap();
    fs::write(store.path(), b"{ not json").unwrap();
    let (tx, _rx) = tokio::sync::mpsc::channel(1);
    let err = FileSource::start("test", config(&dir.path().join("*.log")), data.path(), tx)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("file-test.json") && err.contains("not valid"),
        "{err}"
    );
}
