//! A three-node JetStream cluster with replicas 3: the stream leader is killed during
//! ingest, ingest continues, nothing acknowledged is lost, and the node comes back and
//! catches up.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use weir_core::{Descriptor, Envelope};
use weir_proto::lv2::{Log, envelope::Message as Body};
use weir_store::{AppendOutcome, AppendRequest, Owner, Registration, Store};
use weir_store_nats::NatsStore;
use weir_store_nats::test_support::NatsCluster;

const STREAMS: u64 = 4;
const PER: u64 = 10;
const PATIENCE: Duration = Duration::from_secs(60);

fn log(payload: String) -> Envelope {
    Envelope {
        message: Some(Body::Log(Log {
            payload: payload.into_bytes().into(),
            r#type: 0,
        })),
        ..Default::default()
    }
}

fn owner() -> Owner {
    Owner::Producer(b"0123456789abcdef0123456789abcdef0123".to_vec())
}

fn payload(s: u64, i: u64) -> String {
    format!("s{s} #{i}")
}

/// Appends rounds of `PER` entries to every stream until `stop`, retrying failed
/// appends like a producer; publishes the number of acknowledged appends.
async fn writer(
    store: Arc<dyn Store>,
    stop: Arc<AtomicBool>,
    acks: tokio::sync::watch::Sender<u64>,
) -> (BTreeMap<u64, u64>, u64) {
    let mut acked: BTreeMap<u64, u64> = (0..STREAMS).map(|s| (s, 0)).collect();
    let mut failures = 0u64;
    while !stop.load(Ordering::SeqCst) {
        for s in 0..STREAMS {
            let first = acked[&s];
            let req = AppendRequest {
                path: format!("cl/+/s{s}"),
                owner: owner(),
                first_index: Some(first),
                entries: (first..first + PER).map(|i| log(payload(s, i))).collect(),
            };
            loop {
                match store.append(req.clone()).await {
                    Ok(AppendOutcome::Stored { next, .. }) => {
                        assert_eq!(next, first + PER, "s{s}");
                        acked.insert(s, next);
                        acks.send_modify(|n| *n += 1);
                        break;
                    }
                    Ok(other) => panic!("s{s} at {first}: {other:?}"),
                    Err(e) => {
                        assert!(e.is_transient(), "{e}");
                        failures += 1;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }
    }
    (acked, failures)
}

/// The name of the entries stream's leader and whether every replica is current.
async fn leader_and_current(url: &str) -> Option<(String, bool)> {
    let client = async_nats::connect(url).await.ok()?;
    let js = async_nats::jetstream::new(client);
    let mut stream = js.get_stream("cl_entries").await.ok()?;
    let info = stream.info().await.ok()?;
    let cluster = info.cluster.clone()?;
    let leader = cluster.leader.clone()?;
    let current = cluster.replicas.len() == 2 && cluster.replicas.iter().all(|r| r.current);
    Some((leader, current))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_leader_during_ingest_loses_nothing_acknowledged() {
    let mut cluster = NatsCluster::start(3);
    let store: Arc<dyn Store> = Arc::new(
        NatsStore::connect(cluster.config("cl", 3))
            .await
            .expect("connect"),
    );
    for s in 0..STREAMS {
        let reg = Registration {
            path: format!("cl/+/s{s}"),
            owner: owner(),
            descriptor: Descriptor::default(),
        };
        store.register(reg).await.expect("register");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let (acks_tx, mut acks) = tokio::sync::watch::channel(0u64);
    let task = tokio::spawn(writer(store.clone(), stop.clone(), acks_tx));

    // Some ingest, then kill the node leading the entries stream.
    acks.wait_for(|&n| n >= 20).await.expect("writer alive");
    let (leader, _) = leader_and_current(&cluster.nodes[0].url())
        .await
        .expect("stream info");
    let victim = cluster
        .nodes
        .iter()
        .position(|n| n.name == leader)
        .expect("the leader is a node");
    let before = *acks.borrow();
    cluster.nodes[victim].kill();

    // Ingest continues on the two others.
    tokio::time::timeout(PATIENCE, acks.wait_for(|&n| n >= before + 40))
        .await
        .expect("ingest continued within the patience after losing a node")
        .expect("writer alive");

    // The node returns while ingest goes on, and catches up.
    cluster.nodes[victim].restart();
    let again = *acks.borrow();
    tokio::time::timeout(PATIENCE, acks.wait_for(|&n| n >= again + 20))
        .await
        .expect("ingest after the node returned")
        .expect("writer alive");
    stop.store(true, Ordering::SeqCst);
    let (acked, failures) = task.await.expect("writer");
    eprintln!(
        "acknowledged appends: {}, failed attempts: {failures}",
        *acks.borrow()
    );

    let returned = cluster.nodes[victim].url();
    let caught_up = tokio::time::timeout(PATIENCE, async {
        loop {
            if let Some((_, true)) = leader_and_current(&returned).await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(caught_up.is_ok(), "every replica current again");

    // Everything acknowledged is there, once and in order, read through a new store
    // that talks only to the node that came back.
    let mut config = cluster.config("cl", 3);
    config.servers = vec![returned];
    let reader = NatsStore::connect(config).await.expect("connect");
    for (s, next) in acked {
        let path = format!("cl/+/s{s}");
        let batch = reader
            .read(&path, 0, 100_000)
            .await
            .expect("read")
            .expect("registered");
        assert_eq!(batch.state.next_index, next, "{path}");
        let got: Vec<(u64, Envelope)> = batch
            .entries
            .into_iter()
            .map(|e| (e.index, e.envelope))
            .collect();
        let want: Vec<(u64, Envelope)> = (0..next).map(|i| (i, log(payload(s, i)))).collect();
        assert_eq!(got, want, "{path}");
    }
}
