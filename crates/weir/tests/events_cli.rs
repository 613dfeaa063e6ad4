//! `weir events` against a real `weir serve` on loopback: the config-loaded and started
//! events are there, filtered by type, listed and followed.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{Serve, weir_bin};

/// Runs `weir events -f ARGS` and returns its first line of output (within 30 s).
fn first_followed_line(http: &str, args: &[&str]) -> String {
    let mut child = Command::new(weir_bin())
        .args(["events", "-f", "--http-addr", http])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn weir events");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(line)) = lines.next() {
            let _ = tx.send(line);
        }
    });
    let line = rx.recv_timeout(Duration::from_secs(30));
    let _ = child.kill();
    let _ = child.wait();
    line.expect("weir events -f printed an event")
}

#[test]
fn weir_events_lists_and_follows_by_type() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("weir.toml");
    std::fs::write(
        &config,
        "[events]\nmember_id = \"test-node\"\nmax_age = \"1d\"\n",
    )
    .unwrap();
    let serve = Serve::start(
        &dir.path().join("data"),
        &["--config", config.to_str().unwrap()],
    );
    let http = serve.http.to_string();

    let loaded = first_followed_line(&http, &["--type", "config_loaded", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&loaded).expect("JSON line");
    assert_eq!(v["type"], "config_loaded");
    assert_eq!(v["member"], "test-node");
    assert!(
        v["fields"]["file"].as_str().unwrap().ends_with("weir.toml"),
        "{v}"
    );

    let started = first_followed_line(&http, &["--type", "collector_started"]);
    assert!(
        started.contains(" collector_started test-node "),
        "{started}"
    );

    // Listing (no -f) prints what is stored and exits.
    let out = Command::new(weir_bin())
        .args(["events", "--since", "1h", "--http-addr", &http])
        .output()
        .expect("weir events");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(" config_loaded "), "{text}");
    assert!(text.contains(" collector_started "), "{text}");

    let bad = Command::new(weir_bin())
        .args(["events", "--since", "yesterday", "--http-addr", &http])
        .output()
        .expect("weir events");
    assert!(!bad.status.success());
    assert!(serve.terminate(Duration::from_secs(30)), "clean exit");
}
