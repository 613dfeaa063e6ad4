//! `weir emit` and `weir tail` against a real `weir serve`: each kind emitted is stored
//! as given; a live tail started first receives what is emitted afterwards, filtered by
//! type and source; `tail -f PATH` prints history then live entries and exits when the
//! stream is terminated; `tail -f PREFIX/` labels each line with its stream.

mod common;
mod support;

use std::time::Duration;

use common::{Serve, log};
use serde_json::Value;
use support::{Running, run_err, run_ok};
use weir_proto::lv2::envelope::Message as Body;
use weir_proto::wv1::{self, ingest_client::IngestClient, stream_result::Result as Outcome};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emit_each_kind_is_stored_as_given() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path(), &[]);
    let addr = serve.grpc.to_string();
    let common = [
        "--addr",
        &addr,
        "--source-id",
        "app",
        "--instance-id",
        "1",
        "--tag",
        "env=test",
        "--tag",
        "team=core",
    ];
    let emits: [&[&str]; 7] = [
        &["emit", "log", "hello world", "--stderr"],
        &["emit", "counter", "requests", "--delta", "5"],
        &["emit", "counter", "bytes", "--total", "1024"],
        &["emit", "gauge", "memory=1024:bytes", "cpu=12.5"],
        &["emit", "timer", "http", "1000", "251000"],
        &["emit", "timer", "job", "--duration", "250ms"],
        &["emit", "event", "deployed", "v42"],
    ];
    for args in emits {
        let args: Vec<&str> = args.iter().chain(common.iter()).copied().collect();
        run_ok(&args).await;
    }

    let out = run_ok(&["cat", "loggregator/app/+/1", "--json", "--addr", &addr]).await;
    let rows: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(rows.len(), 7, "{out}");
    for r in &rows {
        assert_eq!(r["source_id"], "app");
        assert_eq!(r["instance_id"], "1");
        assert_eq!(r["tags"]["env"], "test", "{r}");
        assert_eq!(r["tags"]["team"], "core", "{r}");
    }
    assert_eq!(rows[0]["type"], "log");
    assert_eq!(rows[0]["message"], "hello world");
    assert_eq!(rows[0]["log_type"], "ERR");
    assert_eq!(rows[1]["counter"]["name"], "requests");
    assert_eq!(rows[1]["counter"]["delta"], 5);
    assert_eq!(rows[2]["counter"]["total"], 1024);
    assert_eq!(rows[2]["counter"]["delta"], 0);
    assert_eq!(rows[3]["gauge"]["memory"]["value"], 1024.0);
    assert_eq!(rows[3]["gauge"]["memory"]["unit"], "bytes");
    assert_eq!(rows[3]["gauge"]["cpu"]["value"], 12.5);
    assert_eq!(rows[4]["timer"]["name"], "http");
    assert_eq!(rows[4]["timer"]["duration_ns"], 250_000);
    assert_eq!(rows[5]["timer"]["duration_ns"], 250_000_000);
    assert_eq!(rows[6]["type"], "event");
    assert_eq!(rows[6]["event"]["title"], "deployed");
    assert_eq!(rows[6]["event"]["body"], "v42");

    // Bad arguments are refused before anything is sent.
    for bad in [
        &["emit", "counter", "x", "--delta", "1", "--total", "2"][..],
        &["emit", "gauge", "cpu"],
        &["emit", "timer", "t", "5"],
        &["emit", "log", "x", "--tag", "novalue"],
    ] {
        let args: Vec<&str> = bad.iter().copied().chain(["--addr", &addr]).collect();
        run_err(&args).await;
    }
    let out = run_ok(&["ls", "loggregator/", "--addr", &addr]).await;
    assert_eq!(out.lines().count(), 1, "nothing else stored: {out}");

    // No collector there: a clear error.
    let err = run_err(&["emit", "log", "lost", "--addr", "127.0.0.1:1"]).await;
    assert!(err.contains("cannot reach the collector"), "{err}");
}

/// Decodes a `weir tail --json` line (Loggregator protojson).
fn decode(line: &str) -> weir_proto::lv2::Envelope {
    weir_core::json::envelope_from_json(line)
        .unwrap_or_else(|e| panic!("not protojson: {line}: {e}"))
}

fn is_probe(env: &weir_proto::lv2::Envelope) -> bool {
    matches!(&env.message, Some(Body::Log(l)) if l.payload.starts_with(b"probe"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_json_receives_envelopes_emitted_afterwards_filtered() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path(), &[]);
    let addr = serve.grpc.to_string();
    let mut tail = Running::start(&[
        "tail",
        "--json",
        "--type",
        "log,event",
        "--source",
        "app",
        "--addr",
        &addr,
    ]);

    // The tail subscribes asynchronously: emit probes until one comes through.
    let mut ready = false;
    for i in 0..60 {
        run_ok(&[
            "emit",
            "log",
            &format!("probe {i}"),
            "--source-id",
            "app",
            "--addr",
            &addr,
        ])
        .await;
        if let Some(line) = tail.next_line(Duration::from_millis(500)).await {
            assert!(is_probe(&decode(&line)), "{line}");
            ready = true;
            break;
        }
    }
    assert!(ready, "the tail never received a probe");

    let app = ["--source-id", "app", "--addr", &addr];
    let emits: [&[&str]; 5] = [
        &["emit", "counter", "requests"],
        &["emit", "gauge", "cpu=1"],
        &["emit", "event", "deployed", "v42"],
        &[
            "emit",
            "log",
            "other source",
            "--source-id",
            "other",
            "--addr",
            &addr,
        ],
        &["emit", "log", "last"],
    ];
    for args in emits {
        let args: Vec<&str> = if args.contains(&"--source-id") {
            args.to_vec()
        } else {
            args.iter().chain(app.iter()).copied().collect()
        };
        run_ok(&args).await;
    }

    // Only the event and the app's log arrive, in order; probes may still trickle in.
    let mut got = Vec::new();
    loop {
        let line = tail.expect_line().await;
        let env = decode(&line);
        if is_probe(&env) {
            continue;
        }
        assert_eq!(env.source_id, "app", "{line}");
        let last = matches!(&env.message, Some(Body::Log(l)) if &l.payload[..] == b"last");
        got.push(env.message);
        if last {
            break;
        }
    }
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(
        matches!(&got[0], Some(Body::Event(e)) if e.title == "deployed" && e.body == "v42"),
        "{got:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_prints_one_human_line_per_envelope() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path(), &[]);
    let addr = serve.grpc.to_string();
    let mut tail = Running::start(&["tail", "--source", "web", "--addr", &addr]);
    let mut line = None;
    for i in 0..60 {
        let msg = format!("two\nlines {i}");
        run_ok(&[
            "emit",
            "log",
            &msg,
            "--source-id",
            "web",
            "--instance-id",
            "3",
            "--addr",
            &addr,
        ])
        .await;
        line = tail.next_line(Duration::from_millis(500)).await;
        if line.is_some() {
            break;
        }
    }
    let line = line.expect("the tail never printed a line");
    assert!(line.contains(" web/3 log OUT two\\nlines "), "{line}");
}

async fn append(
    ingest: &mut IngestClient<tonic::transport::Channel>,
    path: &str,
    first_index: u64,
    payloads: &[&str],
    terminal_count: Option<u64>,
) {
    let response = ingest
        .send(wv1::Bundle {
            streams: vec![wv1::StreamAppend {
                path: path.into(),
                secret: b"tail-test-secret".to_vec(),
                descriptor: Some(wv1::StreamDescriptor {
                    content_type: "text/plain".into(),
                    ..Default::default()
                }),
                first_index,
                entries: payloads.iter().map(|p| log("producer", "0", p)).collect(),
                terminal_count,
            }],
        })
        .await
        .expect("Ingest/Send")
        .into_inner();
    let want = first_index + payloads.len() as u64;
    match &response.results[0].result {
        Some(Outcome::StoredNext(n)) if *n == want => {}
        Some(Outcome::TerminatedCount(n)) if terminal_count == Some(*n) => {}
        other => panic!("append to {path} at {first_index}: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_follow_prints_history_then_live_and_ends_at_termination() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path(), &[]);
    let addr = serve.grpc.to_string();
    let mut ingest = IngestClient::connect(serve.grpc_uri()).await.unwrap();
    let path = "jobs/build/+/log";
    append(&mut ingest, path, 0, &["h0", "h1", "h2"], None).await;

    let mut tail = Running::start(&["tail", "-f", path, "--from", "0", "--addr", &addr]);
    for want in ["h0", "h1", "h2"] {
        assert_eq!(tail.expect_line().await, want);
    }
    // The history was printed, so the follow is under way: these come live.
    append(&mut ingest, path, 3, &["l3", "l4"], None).await;
    for want in ["l3", "l4"] {
        assert_eq!(tail.expect_line().await, want);
    }
    append(&mut ingest, path, 5, &[], Some(5)).await;
    let status = tail.wait_exit().await;
    assert!(status.success(), "{status:?}");
    assert_eq!(tail.next_line(Duration::from_secs(5)).await, None);

    // A terminated stream from an index: the rest, then the command ends by itself.
    let out = run_ok(&["tail", "-f", path, "--from", "3", "--json", "--addr", &addr]).await;
    let rows: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2, "{out}");
    assert_eq!(rows[0]["index"], 3);
    assert_eq!(rows[0]["stream"], path);
    assert_eq!(rows[1]["message"], "l4");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_follow_prefix_labels_lines_and_includes_new_streams() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path(), &[]);
    let addr = serve.grpc.to_string();
    let mut ingest = IngestClient::connect(serve.grpc_uri()).await.unwrap();
    append(&mut ingest, "host/web1/+/nginx", 0, &["a0"], None).await;
    append(
        &mut ingest,
        "host/db1/+/pg",
        0,
        &["not under the prefix"],
        None,
    )
    .await;

    let mut tail = Running::start(&["tail", "-f", "host/web1/", "--addr", &addr]);
    assert_eq!(tail.expect_line().await, "host/web1/+/nginx: a0");
    append(&mut ingest, "host/web1/+/app", 0, &["b0"], None).await;
    append(&mut ingest, "host/web1/+/nginx", 1, &["a1"], None).await;
    // Streams are followed side by side: their lines may interleave either way.
    let mut lines = vec![tail.expect_line().await, tail.expect_line().await];
    lines.sort();
    assert_eq!(lines, ["host/web1/+/app: b0", "host/web1/+/nginx: a1"]);
    tail.child.kill().await.unwrap();
}
