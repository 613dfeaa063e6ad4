//! Inode reuse, provoked for real: a file is deleted and a new one gets its inode
//! number. The new file must be read from its start, not from the old checkpoint.
//!
//! Needs root (to mount a small file system); skipped with a printed reason otherwise.

mod file_support;

use std::fs;

use file_support::*;

#[tokio::test]
async fn a_new_file_on_a_reused_inode_is_read_from_its_start() {
    let small = match SmallFs::mount() {
        Ok(fs) => fs,
        Err(why) => {
            eprintln!("SKIPPED a_new_file_on_a_reused_inode_is_read_from_its_start: {why}");
            return;
        }
    };
    eprintln!("inode reuse on a small {}", small.kind);
    let data = tempfile::tempdir().unwrap();
    let path = small.path().join("app.log");
    let s = stream("app.log");
    append(&path, &numbered("old line", 0..5));
    let old_inode = inode(&path);

    // Across a restart: acknowledged up to the end of the old file, then replaced.
    let mut first = start(config(&path), data.path(), 64);
    first.recv(5).await;
    first.ack(&s, 5);
    first.stop().await;
    fs::remove_file(&path).unwrap();
    append(&path, &numbered("new", 0..12));
    assert_eq!(
        inode(&path),
        old_inode,
        "the file system reused the inode number"
    );
    let mut second = start(config(&path), data.path(), 64);
    let lines = second.recv_stream(&s, 12).await;
    assert_eq!(
        texts(&lines),
        numbered("new", 0..12).lines().collect::<Vec<_>>()
    );
    assert_eq!(indices(&lines), (5..17).collect::<Vec<_>>());

    // While running: deleted, released (which closes it, freeing the inode), replaced.
    second.ack(&s, 17);
    fs::remove_file(&path).unwrap();
    second
        .wait_stats("release of the deleted file", |st| st.files_released == 1)
        .await;
    append(&path, &numbered("newer", 0..15));
    assert_eq!(
        inode(&path),
        old_inode,
        "the file system reused the inode number"
    );
    let lines = second.recv_stream(&s, 15).await;
    assert_eq!(
        texts(&lines),
        numbered("newer", 0..15).lines().collect::<Vec<_>>()
    );
    assert_eq!(indices(&lines), (17..32).collect::<Vec<_>>());
    second.stop().await;
    drop(small);
}
