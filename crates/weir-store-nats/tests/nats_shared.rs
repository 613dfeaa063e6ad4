//! Two stores on one JetStream act as one: racing registrations agree on a winner,
//! the same bundles written through both concurrently are stored once, and each hears
//! of the other's writes.

use std::sync::Arc;
use std::time::Duration;

use weir_core::{Descriptor, Envelope};
use weir_proto::lv2::{Log, envelope::Message as Body};
use weir_store::{AppendOutcome, AppendRequest, Owner, RegisterOutcome, Registration, Store};
use weir_store_nats::NatsStore;
use weir_store_nats::test_support::NatsServer;

fn log(payload: &str) -> Envelope {
    Envelope {
        message: Some(Body::Log(Log {
            payload: payload.as_bytes().to_vec().into(),
            r#type: 0,
        })),
        ..Default::default()
    }
}

fn owner(i: u8) -> Owner {
    Owner::Producer(vec![b'a' + i; 36])
}

async fn two_stores(server: &NatsServer, prefix: &str) -> (Arc<dyn Store>, Arc<dyn Store>) {
    let a = NatsStore::connect(server.config(prefix)).await.expect("a");
    let b = NatsStore::connect(server.config(prefix)).await.expect("b");
    (Arc::new(a), Arc::new(b))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_registrations_agree_on_one_winner() {
    let server = NatsServer::start();
    let (a, b) = two_stores(&server, "race").await;
    for round in 0..20 {
        let path = format!("race/+/s{round}");
        let reg = |i: u8| Registration {
            path: path.clone(),
            owner: owner(i),
            descriptor: Descriptor {
                content_type: format!("type-{i}"),
                ..Descriptor::default()
            },
        };
        let (ra, rb) = tokio::join!(a.register(reg(0)), b.register(reg(1)));
        let outcomes = [ra.expect("a"), rb.expect("b")];
        let created = outcomes
            .iter()
            .filter(|o| matches!(o, RegisterOutcome::Created(_)))
            .count();
        let refused = outcomes
            .iter()
            .filter(|o| matches!(o, RegisterOutcome::WrongSecret))
            .count();
        assert_eq!((created, refused), (1, 1), "{outcomes:?}");
        let winner = if matches!(outcomes[0], RegisterOutcome::Created(_)) {
            "type-0"
        } else {
            "type-1"
        };
        for s in [&a, &b] {
            let st = s.stream(&path).await.expect("stream").expect("registered");
            assert_eq!(st.descriptor.content_type, winner);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_bundles_through_two_stores_are_stored_once() {
    const STREAMS: usize = 20;
    const BUNDLES: u64 = 10;
    const PER: u64 = 7;
    let server = NatsServer::start();
    let (a, b) = two_stores(&server, "twice").await;
    let mut rx_b = b.subscribe();
    let mut tasks = tokio::task::JoinSet::new();
    for s in 0..STREAMS {
        for store in [a.clone(), b.clone()] {
            tasks.spawn(async move {
                let path = format!("twice/+/s{s}");
                let reg = Registration {
                    path: path.clone(),
                    owner: owner(0),
                    descriptor: Descriptor::default(),
                };
                let r = store.register(reg).await.expect("register");
                assert!(!matches!(r, RegisterOutcome::WrongSecret));
                let mut dups = 0;
                for k in 0..BUNDLES {
                    let entries: Vec<Envelope> = (k * PER..(k + 1) * PER)
                        .map(|i| log(&format!("s{s}-{i}")))
                        .collect();
                    let req = AppendRequest {
                        path: path.clone(),
                        owner: owner(0),
                        first_index: Some(k * PER),
                        entries,
                    };
                    match store.append(req).await.expect("append") {
                        AppendOutcome::Stored {
                            next, duplicates, ..
                        } => {
                            assert!(next >= (k + 1) * PER);
                            dups += duplicates;
                        }
                        other => panic!("{path} bundle {k}: {other:?}"),
                    }
                }
                dups
            });
        }
    }
    let mut duplicates = 0;
    while let Some(d) = tasks.join_next().await {
        duplicates += d.expect("task");
    }
    // Every entry was sent twice and stored once: one of the two copies is a duplicate.
    assert_eq!(duplicates, STREAMS as u64 * BUNDLES * PER);
    for s in 0..STREAMS {
        let path = format!("twice/+/s{s}");
        for store in [&a, &b] {
            let batch = store
                .read(&path, 0, 1000)
                .await
                .expect("read")
                .expect("registered");
            let got: Vec<(u64, Envelope)> = batch
                .entries
                .into_iter()
                .map(|e| (e.index, e.envelope))
                .collect();
            let want: Vec<(u64, Envelope)> = (0..BUNDLES * PER)
                .map(|i| (i, log(&format!("s{s}-{i}"))))
                .collect();
            assert_eq!(got, want, "{path}");
        }
    }
    // B heard of every stream's last entry, whichever store wrote it.
    let mut complete = std::collections::HashSet::new();
    while complete.len() < STREAMS {
        let n = tokio::time::timeout(Duration::from_secs(10), rx_b.recv())
            .await
            .expect("a notice within 10 s")
            .expect("notices");
        if n.next == BUNDLES * PER {
            complete.insert(n.path.to_string());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_different_payloads_at_one_index_store_one_and_refuse_the_other() {
    let server = NatsServer::start();
    let (a, b) = two_stores(&server, "clash").await;
    for round in 0..20u64 {
        let path = format!("clash/+/s{round}");
        let reg = Registration {
            path: path.clone(),
            owner: owner(0),
            descriptor: Descriptor::default(),
        };
        a.register(reg).await.expect("register");
        let req = |who: &str| AppendRequest {
            path: path.clone(),
            owner: owner(0),
            first_index: Some(0),
            entries: (0..5).map(|i| log(&format!("{who}-{i}"))).collect(),
        };
        let (ra, rb) = tokio::join!(a.append(req("a")), b.append(req("b")));
        let (ra, rb) = (ra.expect("a"), rb.expect("b"));
        let stored = AppendOutcome::Stored {
            first: 0,
            next: 5,
            duplicates: 0,
        };
        let conflict = AppendOutcome::Conflict { index: 0 };
        let winner = match (&ra, &rb) {
            (x, y) if *x == stored && *y == conflict => "a",
            (x, y) if *x == conflict && *y == stored => "b",
            _ => panic!("round {round}: {ra:?} / {rb:?}"),
        };
        let batch = b
            .read(&path, 0, 10)
            .await
            .expect("read")
            .expect("registered");
        let got: Vec<Envelope> = batch.entries.into_iter().map(|e| e.envelope).collect();
        let want: Vec<Envelope> = (0..5).map(|i| log(&format!("{winner}-{i}"))).collect();
        assert_eq!(got, want, "round {round}");
    }
}
