//! `weir run -- CMD`: stdout and stderr as two terminated streams, the command's exit
//! code, unique default prefixes.

mod common;

use std::process::Command;

use common::{Serve, weir_bin};

fn weir_run(serve: &Serve, data: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(weir_bin())
        .arg("run")
        .args(["--addr", &serve.grpc.to_string()])
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .output()
        .expect("run weir run")
}

async fn stream(serve: &Serve, path: &str) -> serde_json::Value {
    let (status, body) = serve.http_get(&format!("/v1/stream?path={path}")).await;
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

async fn messages(serve: &Serve, path: &str) -> Vec<String> {
    let (_, body) = serve
        .http_get(&format!("/v1/entries?path={path}&from=0&limit=100"))
        .await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn run_streams_both_outputs_terminates_them_and_exits_with_the_code() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(&dir.path().join("store"), &[]);
    let data = dir.path().join("run");
    let out = weir_run(
        &serve,
        &data,
        &[
            "--prefix",
            "jobs/build-1",
            "--",
            "sh",
            "-c",
            "echo a; echo b >&2; echo c; exit 3",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(messages(&serve, "jobs/build-1/+/stdout").await, ["a", "c"]);
    assert_eq!(messages(&serve, "jobs/build-1/+/stderr").await, ["b"]);
    assert_eq!(
        stream(&serve, "jobs/build-1/+/stdout").await["terminal_count"],
        2
    );
    assert_eq!(
        stream(&serve, "jobs/build-1/+/stderr").await["terminal_count"],
        1
    );
    // Everything was acknowledged: the run's spool folder is gone.
    let left: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.map(|e| e.path()))
        .collect();
    assert!(
        left.is_empty(),
        "left behind: {left:?}; weir run said: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn default_prefixes_are_unique_and_empty_streams_terminate_at_zero() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(&dir.path().join("store"), &[]);
    let data = dir.path().join("run");
    for _ in 0..2 {
        let out = weir_run(&serve, &data, &["--", "true"]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let (_, body) = serve.http_get("/v1/streams?prefix=run/").await;
    let streams: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(streams.len(), 4, "{body}");
    for s in &streams {
        assert_eq!(s["terminal_count"], 0, "{s}");
        assert_eq!(s["next_index"], 0, "{s}");
    }
}
