//! Exactly-once does not rest on JetStream's dedupe window: with a 1 s window, a resend
//! 2 s later is still a duplicate (stored once) and a changed resend still a conflict.

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

fn owner() -> Owner {
    Owner::Producer(b"0123456789abcdef0123456789abcdef0123".to_vec())
}

async fn append(store: &dyn Store, first: u64, entries: Vec<Envelope>) -> AppendOutcome {
    store
        .append(AppendRequest {
            path: "dd/+/a".into(),
            owner: owner(),
            first_index: Some(first),
            entries,
        })
        .await
        .expect("append")
}

/// Records of the stream under test.
async fn records(server: &NatsServer) -> u64 {
    weir_store_nats::test_support::stream_records(&server.url(), "dd", "dd/+/a").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resend_after_the_dedupe_window_is_still_a_duplicate_or_a_conflict() {
    let server = NatsServer::start();
    let mut config = server.config("dd");
    config.duplicate_window_secs = 1;
    let store: Arc<dyn Store> = Arc::new(NatsStore::connect(config).await.expect("connect"));
    let reg = Registration {
        path: "dd/+/a".into(),
        owner: owner(),
        descriptor: Descriptor::default(),
    };
    assert!(matches!(
        store.register(reg).await.expect("register"),
        RegisterOutcome::Created(_)
    ));
    let bundle: Vec<Envelope> = (0..10).map(|i| log(&format!("a-{i}"))).collect();
    let out = append(store.as_ref(), 0, bundle.clone()).await;
    assert_eq!(
        out,
        AppendOutcome::Stored {
            first: 0,
            next: 10,
            duplicates: 0
        }
    );
    assert_eq!(records(&server).await, 1);

    // Real time must pass here: the point is that the server's window has closed.
    tokio::time::sleep(Duration::from_millis(2200)).await;

    let out = append(store.as_ref(), 0, bundle.clone()).await;
    assert_eq!(
        out,
        AppendOutcome::Stored {
            first: 0,
            next: 10,
            duplicates: 10
        },
        "a resend after the window"
    );
    assert_eq!(records(&server).await, 1, "the resend was stored again");

    let mut changed = bundle[3..].to_vec();
    changed[2] = log("a-X"); // index 5
    let out = append(store.as_ref(), 3, changed).await;
    assert_eq!(out, AppendOutcome::Conflict { index: 5 });
    assert_eq!(records(&server).await, 1, "a conflict wrote something");

    // Overlapping resend with a new tail: only the new part is stored.
    let more: Vec<Envelope> = (5..15).map(|i| log(&format!("a-{i}"))).collect();
    let out = append(store.as_ref(), 5, more).await;
    assert_eq!(
        out,
        AppendOutcome::Stored {
            first: 5,
            next: 15,
            duplicates: 5
        }
    );
    assert_eq!(records(&server).await, 2);
    let batch = store
        .read("dd/+/a", 0, 100)
        .await
        .expect("read")
        .expect("registered");
    let got: Vec<(u64, Envelope)> = batch
        .entries
        .into_iter()
        .map(|e| (e.index, e.envelope))
        .collect();
    let want: Vec<(u64, Envelope)> = (0..15).map(|i| (i, log(&format!("a-{i}")))).collect();
    assert_eq!(got, want);
}
