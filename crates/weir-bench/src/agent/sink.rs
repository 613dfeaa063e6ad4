//! A blackhole TCP listener: reads everything, counts bytes and lines, discards.

use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What the listener has received, over all its connections.
#[derive(Debug, Default)]
pub struct SinkCounts {
    pub bytes: AtomicU64,
    pub lines: AtomicU64,
}

/// A listener on an ephemeral loopback port; each connection is read on its own thread.
pub struct Sink {
    pub addr: SocketAddr,
    pub counts: Arc<SinkCounts>,
}

impl Sink {
    /// Binds and starts accepting.
    pub fn start() -> anyhow::Result<Sink> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let counts = Arc::new(SinkCounts::default());
        let c = counts.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let c = c.clone();
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 1 << 20];
                    while let Ok(n) = conn.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        let lines = buf[..n].iter().filter(|b| **b == b'\n').count();
                        c.bytes.fetch_add(n as u64, Ordering::Relaxed);
                        c.lines.fetch_add(lines as u64, Ordering::Relaxed);
                    }
                });
            }
        });
        Ok(Sink { addr, counts })
    }

    /// Lines received so far.
    pub fn lines(&self) -> u64 {
        self.counts.lines.load(Ordering::Relaxed)
    }

    /// Waits until `want` lines arrived (checking every millisecond); fails after
    /// `stall` without progress.
    pub fn wait_lines(&self, want: u64, stall: Duration) -> anyhow::Result<()> {
        let (mut last, mut since) = (0, Instant::now());
        loop {
            let now = self.lines();
            if now >= want {
                return Ok(());
            }
            if now != last {
                (last, since) = (now, Instant::now());
            }
            anyhow::ensure!(
                since.elapsed() < stall,
                "receiver stalled at {now} of {want} lines"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}
