//! Mutual TLS on a real `weir serve`, set up with the flags `weir tls init` prints: over
//! gRPC (`weir ls`, `weir emit`, `weir cat`) and HTTP (`/healthz` with reqwest), a client
//! without a certificate, one with a certificate from another CA, and a plain-text one
//! are refused; one with a certificate signed by the CA gets through. `weir events`
//! reads the collector's events over HTTPS with the same flags.

mod common;
mod support;

use std::path::Path;

use common::Serve;
use support::{run_err, run_ok};

/// Runs `weir tls init DIR`; returns the flags it prints for `weir serve`.
async fn tls_init(dir: &Path) -> Vec<String> {
    let out = run_ok(&["tls", "init", dir.to_str().unwrap()]).await;
    let serve = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("weir serve "))
        .unwrap_or_else(|| panic!("no `weir serve` line in {out}"));
    let flags: Vec<String> = serve.split_whitespace().map(str::to_string).collect();
    assert_eq!(flags.len(), 6, "{serve}");
    assert!(out.contains("--tls-ca "), "client flags printed: {out}");
    flags
}

/// `cmd` followed by the connection flags `conn`.
fn with<'a>(cmd: &[&'a str], conn: &'a [String]) -> Vec<&'a str> {
    cmd.iter()
        .copied()
        .chain(conn.iter().map(String::as_str))
        .collect()
}

fn file(dir: &Path, name: &str) -> String {
    dir.join(name).to_str().unwrap().to_string()
}

/// An HTTPS client trusting `ca`, presenting `identity` (certificate, key) when given.
fn https_client(ca: &Path, identity: Option<(&Path, &Path)>) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap();
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .timeout(std::time::Duration::from_secs(10));
    if let Some((cert, key)) = identity {
        let mut pem = std::fs::read(key).unwrap();
        pem.push(b'\n');
        pem.extend(std::fs::read(cert).unwrap());
        builder = builder.identity(reqwest::Identity::from_pem(&pem).unwrap());
    }
    builder.build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_refuses_clients_without_a_ca_signed_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let (pki, other, data) = (
        tmp.path().join("pki"),
        tmp.path().join("other"),
        tmp.path().join("data"),
    );
    let flags = tls_init(&pki).await;
    tls_init(&other).await; // another CA, with its own client pair
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let serve = Serve::start(&data, &flags);
    let addr = serve.grpc.to_string();

    let ca = file(&pki, "ca.pem");
    let good = [
        "--addr",
        &addr,
        "--tls-ca",
        &ca,
        "--tls-cert",
        &file(&pki, "client.pem"),
        "--tls-key",
        &file(&pki, "client-key.pem"),
    ]
    .map(str::to_string);
    let foreign = [
        "--addr",
        &addr,
        "--tls-ca",
        &ca,
        "--tls-cert",
        &file(&other, "client.pem"),
        "--tls-key",
        &file(&other, "client-key.pem"),
    ]
    .map(str::to_string);
    let no_cert = ["--addr", &addr, "--tls-ca", &ca].map(str::to_string);
    let plain = ["--addr", &addr].map(str::to_string);

    // gRPC: refused without a certificate, with another CA's, and without TLS.
    for conn in [&no_cert[..], &foreign[..], &plain[..]] {
        let ls = with(&["ls"], conn);
        run_err(&ls).await;
        let emit = with(&["emit", "event", "sneaky", "no", "--timeout", "3s"], conn);
        run_err(&emit).await;
    }

    // HTTP: the same refusals.
    let healthz = format!("https://{}/healthz", serve.http);
    let client_pem = pki.join("client.pem");
    let client_key = pki.join("client-key.pem");
    let refused = [
        https_client(&pki.join("ca.pem"), None),
        https_client(
            &pki.join("ca.pem"),
            Some((&other.join("client.pem"), &other.join("client-key.pem"))),
        ),
    ];
    for client in &refused {
        let r = client.get(&healthz).send().await;
        assert!(r.is_err(), "refused: {r:?}");
    }
    let r = reqwest::get(format!("http://{}/healthz", serve.http)).await;
    assert!(
        !r.is_ok_and(|resp| resp.status().is_success()),
        "plain HTTP gets no answer from a TLS listener"
    );

    // A certificate signed by the CA: accepted everywhere, and the server still serves
    // after the refused handshakes.
    let resp = https_client(&pki.join("ca.pem"), Some((&client_pem, &client_key)))
        .get(&healthz)
        .send()
        .await
        .expect("mutual TLS over HTTP");
    assert!(resp.status().is_success());
    assert_eq!(resp.text().await.unwrap(), "ok");

    let emit = with(
        &["emit", "log", "over mutual TLS", "--source-id", "tls-app"],
        &good,
    );
    run_ok(&emit).await;
    let emit = with(
        &["emit", "event", "deployed", "v1", "--source-id", "tls-app"],
        &good,
    );
    run_ok(&emit).await;
    let ls = run_ok(&with(&["ls"], &good)).await;
    assert!(ls.contains("loggregator/tls-app/+/0\tentries=2"), "{ls}");
    let cat = run_ok(&with(&["cat", "loggregator/tls-app/+/0"], &good)).await;
    assert_eq!(cat, "over mutual TLS\nevent deployed: v1\n");

    // `weir tail` over mutual TLS: a followed stream, and live envelopes.
    let mut follow =
        support::Running::start(&with(&["tail", "-f", "loggregator/tls-app/+/0"], &good));
    assert_eq!(follow.expect_line().await, "over mutual TLS");
    let mut live = support::Running::start(&with(&["tail", "--source", "tls-app"], &good));
    let mut seen = None;
    for i in 0..60 {
        let probe = format!("probe {i}");
        let emit = with(&["emit", "log", &probe, "--source-id", "tls-app"], &good);
        run_ok(&emit).await;
        seen = live.next_line(std::time::Duration::from_millis(500)).await;
        if seen.is_some() {
            break;
        }
    }
    let seen = seen.expect("the live tail over mutual TLS never printed a line");
    assert!(seen.contains(" tls-app log OUT probe "), "{seen}");
    assert_eq!(follow.expect_line().await, "event deployed: v1");
    drop((follow, live));
    let ls = run_ok(&with(&["ls", "loggregator/"], &good)).await;

    // The refused clients stored nothing.
    assert!(!ls.contains("weir-cli"), "{ls}");

    // `weir events` over HTTPS with the client pair; refused without a certificate.
    let http = serve.http.to_string();
    let tls_flags = &good[2..];
    let events = with(
        &[
            "events",
            "--type",
            "collector_started",
            "--http-addr",
            &http,
        ],
        tls_flags,
    );
    let listed = run_ok(&events).await;
    assert!(listed.contains(" collector_started "), "{listed}");
    let mut followed = support::Running::start(&with(
        &[
            "events",
            "-f",
            "--type",
            "collector_started",
            "--http-addr",
            &http,
        ],
        tls_flags,
    ));
    assert!(
        followed.expect_line().await.contains(" collector_started "),
        "followed over HTTPS"
    );
    drop(followed);
    run_err(&with(
        &["events", "--http-addr", &http],
        &["--tls-ca".to_string(), ca.clone()],
    ))
    .await;
    run_err(&["events", "--http-addr", &http]).await;
    assert!(
        serve.terminate(std::time::Duration::from_secs(15)),
        "clean shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_only_tls_and_bad_files() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = tmp.path().join("pki");
    tls_init(&pki).await;
    let cert = file(&pki, "server.pem");
    let key = file(&pki, "server-key.pem");
    let serve = Serve::start(
        &tmp.path().join("data"),
        &["--tls-cert", &cert, "--tls-key", &key],
    );
    let addr = serve.grpc.to_string();
    let ca = file(&pki, "ca.pem");

    // Without a client CA, a client with no certificate gets through (TLS only).
    run_ok(&[
        "emit",
        "log",
        "server-only",
        "--addr",
        &addr,
        "--tls-ca",
        &ca,
    ])
    .await;
    let ls = run_ok(&["ls", "--addr", &addr, "--tls-ca", &ca]).await;
    assert!(ls.contains("loggregator/weir-cli/+/0\tentries=1"), "{ls}");
    let body = https_client(&pki.join("ca.pem"), None)
        .get(format!("https://{}/healthz", serve.http))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body, "ok");
    // The server's name is checked: a name not in its certificate is refused.
    run_err(&[
        "ls",
        "--addr",
        &addr,
        "--tls-ca",
        &ca,
        "--tls-server-name",
        "not-weir.example",
    ])
    .await;
    drop(serve);

    // A missing key file stops `weir serve` at start-up, naming the file.
    let missing = file(&pki, "missing-key.pem");
    let err = run_err(&[
        "serve",
        "--data-dir",
        tmp.path().join("data2").to_str().unwrap(),
        "--grpc-addr",
        "127.0.0.1:0",
        "--http-addr",
        "127.0.0.1:0",
        "--tls-cert",
        &cert,
        "--tls-key",
        &missing,
    ])
    .await;
    assert!(err.contains("missing-key.pem"), "{err}");
}
