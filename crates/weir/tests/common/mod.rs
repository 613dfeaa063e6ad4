//! Test harness: real `weir serve` processes on loopback with ephemeral ports and
//! temporary data dirs, killed when dropped.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use weir_proto::lv2::{self, envelope::Message as Body};

/// Path of the `weir` binary under test.
pub fn weir_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_weir"))
}

/// A running `weir serve`.
pub struct Serve {
    pub child: Child,
    pub grpc: SocketAddr,
    pub http: SocketAddr,
}

impl Serve {
    /// Starts `weir serve` on `data_dir` with ports chosen by the OS, plus `extra` flags,
    /// and waits until it prints both listening addresses.
    pub fn start(data_dir: &Path, extra: &[&str]) -> Serve {
        Self::start_on(data_dir, "127.0.0.1:0", "127.0.0.1:0", extra)
    }

    /// [`Serve::start`] on given addresses (to restart a collector where it was).
    pub fn start_on(data_dir: &Path, grpc_addr: &str, http_addr: &str, extra: &[&str]) -> Serve {
        let mut child = Command::new(weir_bin())
            .arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--grpc-addr", grpc_addr, "--http-addr", http_addr])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn weir serve");
        let stdout = child.stdout.take().expect("stdout piped");
        let mut lines = BufReader::new(stdout).lines();
        let (mut grpc, mut http) = (None, None);
        while grpc.is_none() || http.is_none() {
            let line = lines
                .next()
                .expect("weir serve exited before printing its addresses")
                .expect("read stdout");
            if let Some(a) = line.strip_prefix("grpc listening on ") {
                grpc = Some(a.parse().expect("grpc addr"));
            } else if let Some(a) = line.strip_prefix("http listening on ") {
                http = Some(a.parse().expect("http addr"));
            }
        }
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Serve {
            child,
            grpc: grpc.unwrap(),
            http: http.unwrap(),
        }
    }

    /// `http://HOST:PORT` of the gRPC listener.
    pub fn grpc_uri(&self) -> String {
        format!("http://{}", self.grpc)
    }

    /// SIGKILL, no chance to clean up.
    pub fn kill9(mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("wait");
    }

    /// SIGTERM, then wait for a clean exit within `timeout`; returns whether it exited 0.
    pub fn terminate(mut self, timeout: Duration) -> bool {
        terminate_child(&mut self.child, timeout)
    }

    /// GET a path of the HTTP listener, returning status and body.
    pub async fn http_get(&self, path_and_query: &str) -> (u16, String) {
        let url = format!("http://{}{}", self.http, path_and_query);
        let resp = reqwest::get(&url).await.expect("http get");
        let status = resp.status().as_u16();
        (status, resp.text().await.expect("body"))
    }

    /// Value of a Prometheus counter line `name{labels} value` (sum over label sets when
    /// `labels` is empty), 0 when absent.
    pub async fn metric(&self, name: &str, labels: &str) -> f64 {
        let (_, text) = self.http_get("/metrics").await;
        metric_value(&text, name, labels)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sums the samples of `name` whose label text contains `labels`.
pub fn metric_value(text: &str, name: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            let (metric, rest) = match key.find('{') {
                Some(i) => (&key[..i], &key[i..]),
                None => (key, ""),
            };
            (metric == name && rest.contains(labels)).then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

/// A log envelope.
pub fn log(source: &str, instance: &str, payload: &str) -> lv2::Envelope {
    lv2::Envelope {
        timestamp: 1,
        source_id: source.into(),
        instance_id: instance.into(),
        message: Some(Body::Log(lv2::Log {
            payload: payload.as_bytes().to_vec().into(),
            r#type: 0,
        })),
        ..Default::default()
    }
}

/// Runs `weir ARGS…` against `serve`, returning stdout; panics with stderr on failure.
pub fn weir_cli(serve: &Serve, args: &[&str]) -> String {
    let out = Command::new(weir_bin())
        .args(args)
        .env("WEIR_ADDR", serve.grpc.to_string())
        .output()
        .expect("run weir");
    assert!(
        out.status.success(),
        "weir {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 stdout")
}

/// SIGTERM to `child`, then waits for its exit within `timeout`; returns whether it
/// exited 0 (a child still running at the deadline is killed).
pub fn terminate_child(child: &mut Child, timeout: Duration) -> bool {
    let pid = child.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status.success();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return false;
        }
        // polling a child's exit: std offers no way to wait with a deadline
        std::thread::sleep(Duration::from_millis(20));
    }
}
