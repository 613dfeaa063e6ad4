//! The agent's `weir` flusher over mutual TLS, against a real `weir serve --tls-cert
//! --tls-key --tls-client-ca` set up with `weir tls init`: with the CA and a client
//! certificate signed by it, every line arrives; without a client certificate the
//! collector refuses and nothing is stored (the lines stay behind the checkpoint); a
//! missing certificate file stops the agent at start, naming the file.

mod agent_support;
mod common;
mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agent_support::{AgentProc, lit};
use common::{Serve, weir_bin};
use support::run_ok;

const STREAM: &str = "test/+/app.log";

/// Runs `weir tls init DIR`; returns the flags it prints for `weir serve`.
async fn tls_init(dir: &Path) -> Vec<String> {
    let out = run_ok(&["tls", "init", dir.to_str().unwrap()]).await;
    let serve = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("weir serve "))
        .unwrap_or_else(|| panic!("no `weir serve` line in {out}"));
    serve.split_whitespace().map(str::to_string).collect()
}

fn config(data: &Path, glob: &Path, addr: &str, tls: &str) -> String {
    format!(
        "data_dir = {}\n[retry]\ninitial_backoff_ms = 10\nmax_backoff_ms = 100\n\
         [sources.app]\ntype = \"file\"\ninclude = [{}]\nstream = \"test/+/{{file_name}}\"\npoll_interval_ms = 20\n\
         [flushers.central]\ntype = \"weir\"\naddr = \"{addr}\"\ntimeout_ms = 2000\n{tls}",
        lit(data),
        lit(glob)
    )
}

/// `weir CMD… --addr ADDR` with the client's mutual TLS flags; its stdout, or `None`
/// when it failed (`cat` of a stream that does not exist yet).
async fn cli(cmd: &[&str], addr: &str, pki: &Path) -> Option<String> {
    let f = |n: &str| pki.join(n).to_str().unwrap().to_string();
    let (ca, cert, key) = (f("ca.pem"), f("client.pem"), f("client-key.pem"));
    let mut args: Vec<&str> = cmd.to_vec();
    args.extend([
        "--addr",
        addr,
        "--tls-ca",
        &ca,
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
    ]);
    let out = support::run(&args).await;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weir_flusher_delivers_over_mutual_tls() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = tmp.path().join("pki");
    let flags = tls_init(&pki).await;
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let serve = Serve::start(&tmp.path().join("serve"), &flags);
    let addr = serve.grpc.to_string();
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let text: String = (0..500).map(|i| format!("secure {i}\n")).collect();
    std::fs::write(logs.join("app.log"), &text).unwrap();
    let glob = logs.join("*.log");

    // Without a client certificate: the collector refuses the handshake, the flusher
    // retries, nothing is stored.
    let no_cert = format!("tls_ca = {}\n", lit(&pki.join("ca.pem")));
    let cfg = tmp.path().join("no-cert.toml");
    std::fs::write(
        &cfg,
        config(&tmp.path().join("agent"), &glob, &addr, &no_cert),
    )
    .unwrap();
    let agent = AgentProc::start(&weir_bin(), &cfg);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = agent.metrics_text().await;
        if common::metric_value(&text, "weir_agent_retries_total", "central") >= 2.0 {
            break;
        }
        assert!(Instant::now() < deadline, "no retries: {text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(agent.terminate(Duration::from_secs(20)), "clean exit");
    let ls = cli(&["ls"], &addr, &pki)
        .await
        .expect("weir ls over mutual TLS");
    assert!(
        !ls.contains(STREAM),
        "nothing stored without a certificate: {ls}"
    );

    // Mutual TLS: every line arrives (the same data dir: from the held checkpoint).
    let mutual = format!(
        "tls_ca = {}\ntls_cert = {}\ntls_key = {}\n",
        lit(&pki.join("ca.pem")),
        lit(&pki.join("client.pem")),
        lit(&pki.join("client-key.pem"))
    );
    let cfg = tmp.path().join("mutual.toml");
    std::fs::write(
        &cfg,
        config(&tmp.path().join("agent"), &glob, &addr, &mutual),
    )
    .unwrap();
    let agent = AgentProc::start(&weir_bin(), &cfg);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = cli(&["cat", STREAM], &addr, &pki).await.unwrap_or_default();
        if got == text {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "timed out: {} of 500 lines",
            got.lines().count()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(agent.terminate(Duration::from_secs(20)), "clean exit");

    // A certificate file that does not exist: the agent refuses to start and says which.
    let bad = mutual.replace("client.pem", "missing.pem");
    let cfg = tmp.path().join("bad.toml");
    std::fs::write(&cfg, config(&tmp.path().join("agent"), &glob, &addr, &bad)).unwrap();
    let out = Command::new(weir_bin())
        .args(["agent", "--config"])
        .arg(&cfg)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("missing.pem"), "{stderr}");
    assert!(serve.terminate(Duration::from_secs(15)), "clean shutdown");
}
