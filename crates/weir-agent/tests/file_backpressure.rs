//! Back-pressure: a full channel, or too many unacknowledged lines, stops reading;
//! nothing is lost when the consumer catches up.

mod file_support;

use file_support::*;

#[tokio::test]
async fn a_full_channel_stops_reading_and_nothing_is_lost() {
    const LINES: usize = 1000;
    let dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    append(&path, &numbered("line", 0..LINES));
    let mut src = start(config(&path), data.path(), 8);
    // The source filled the channel and waits to send the ninth line.
    src.wait_stats("waiting on the full channel", |s| s.backpressure_waits >= 1)
        .await;
    assert_eq!(src.stats().lines_read, 8);
    assert_eq!(src.rx.len(), 8);

    let lines = src.recv_stream(&stream("app.log"), LINES).await;
    assert_eq!(
        texts(&lines),
        numbered("line", 0..LINES).lines().collect::<Vec<_>>()
    );
    assert_eq!(indices(&lines), (0..LINES as u64).collect::<Vec<_>>());
    src.polls(2).await;
    src.assert_nothing_more();
    src.stop().await;
}

#[tokio::test]
async fn unacknowledged_lines_are_bounded_and_acknowledgements_resume_reading() {
    const LINES: usize = 100;
    let dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    let s = stream("app.log");
    append(&path, &numbered("line", 0..LINES));
    let mut c = config(&path);
    c.max_unacknowledged_lines = 10;
    let mut src = start(c, data.path(), 1000);

    let mut got = src.recv(10).await;
    src.wait_stats("waiting for acknowledgements", |st| {
        st.backpressure_waits >= 1
    })
    .await;
    src.assert_nothing_more();
    assert_eq!(src.handle.checkpoints().unacknowledged(), 10);

    // Acknowledge as a flusher would, a few at a time: reading resumes each time.
    while got.len() < LINES {
        let acked = got.len() as u64 - 5;
        src.ack(&s, acked);
        got.extend(src.recv(5).await);
        assert!(src.handle.checkpoints().unacknowledged() <= 10);
    }
    assert_eq!(
        texts(&got),
        numbered("line", 0..LINES).lines().collect::<Vec<_>>()
    );
    assert_eq!(indices(&got), (0..LINES as u64).collect::<Vec<_>>());
    src.ack(&s, LINES as u64);
    assert_eq!(src.handle.checkpoints().unacknowledged(), 0);
    src.stop().await;
}
