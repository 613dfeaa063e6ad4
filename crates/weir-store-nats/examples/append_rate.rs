//! Rough append rate of the JetStream store beside the fjall store, in process (no gRPC):
//! 64 streams written concurrently in appends of 100 entries of 200 bytes.
//!
//! ```sh
//! cargo run --release -p weir-store-nats --features test-support --example append_rate
//! ```

use std::sync::Arc;
use std::time::Instant;

use weir_core::{Descriptor, Envelope};
use weir_proto::lv2::{Log, envelope::Message as Body};
use weir_store::{AppendRequest, FjallConfig, FjallStore, Owner, Registration, Store};
use weir_store_nats::NatsStore;
use weir_store_nats::test_support::NatsServer;

const STREAMS: u64 = 64;
const APPENDS: u64 = 50;
const PER: u64 = 100;
const BYTES: usize = 200;

fn log(i: u64) -> Envelope {
    let mut payload = format!("{i} ").into_bytes();
    payload.resize(BYTES, b'x');
    Envelope {
        source_id: "bench".into(),
        message: Some(Body::Log(Log {
            payload: payload.into(),
            r#type: 0,
        })),
        ..Default::default()
    }
}

async fn run(name: &str, store: Arc<dyn Store>) {
    for s in 0..STREAMS {
        let reg = Registration {
            path: format!("bench/+/s{s}"),
            owner: Owner::Collector,
            descriptor: Descriptor::default(),
        };
        store.register(reg).await.expect("register");
    }
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for s in 0..STREAMS {
        let store = store.clone();
        tasks.spawn(async move {
            for k in 0..APPENDS {
                let req = AppendRequest {
                    path: format!("bench/+/s{s}"),
                    owner: Owner::Collector,
                    first_index: Some(k * PER),
                    entries: (k * PER..(k + 1) * PER).map(log).collect(),
                };
                store.append(req).await.expect("append");
            }
        });
    }
    while let Some(t) = tasks.join_next().await {
        t.expect("task");
    }
    let secs = start.elapsed().as_secs_f64();
    let entries = (STREAMS * APPENDS * PER) as f64;
    let mib = entries * BYTES as f64 / (1024.0 * 1024.0);
    println!(
        "{name}: {entries} entries in {secs:.2} s: {:.0} entries/s, {:.1} MiB/s of payload, {:.0} appends/s",
        entries / secs,
        mib / secs,
        (STREAMS * APPENDS) as f64 / secs
    );
}

#[tokio::main]
async fn main() {
    let server = NatsServer::start();
    let nats = NatsStore::connect(server.config("bench"))
        .await
        .expect("connect");
    run("jetstream (1 node)", Arc::new(nats)).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let fjall = FjallStore::open(FjallConfig {
        data_dir: dir.path().to_path_buf(),
        ..FjallConfig::default()
    })
    .expect("open fjall");
    run("fjall", Arc::new(fjall)).await;
}
