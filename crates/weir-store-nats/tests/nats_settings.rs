//! Settings changed between starts reach the JetStream assets that already exist:
//! `max_age` on the entries stream. (A change of replicas goes the same way; a one-node
//! server accepts any value, so it is not checked here.)

use std::time::Duration;

use weir_store_nats::NatsStore;
use weir_store_nats::test_support::NatsServer;

async fn entries_config(
    server: &NatsServer,
    prefix: &str,
) -> async_nats::jetstream::stream::Config {
    let client = async_nats::connect(server.url())
        .await
        .expect("connect to nats");
    let js = async_nats::jetstream::new(client);
    let mut stream = js
        .get_stream(format!("{prefix}_entries"))
        .await
        .expect("the entries stream");
    stream.info().await.expect("stream info").config.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_max_age_is_applied_to_the_existing_stream() {
    let server = NatsServer::start();
    let config = server.config("st");
    let store = NatsStore::connect(config.clone()).await.expect("connect");
    drop(store);
    assert_eq!(entries_config(&server, "st").await.max_age, Duration::ZERO);

    let mut aged = config.clone();
    aged.max_age_secs = 3600;
    let store = NatsStore::connect(aged)
        .await
        .expect("connect with max_age");
    drop(store);
    let now = entries_config(&server, "st").await;
    assert_eq!(now.max_age, Duration::from_secs(3600));
    assert!(
        now.duplicate_window <= now.max_age,
        "the dedupe window fits in max_age: {:?}",
        now.duplicate_window
    );

    // Started again with the same settings: nothing to change, and it opens.
    let mut same = config;
    same.max_age_secs = 3600;
    NatsStore::connect(same).await.expect("connect unchanged");
    assert_eq!(
        entries_config(&server, "st").await.max_age,
        Duration::from_secs(3600)
    );
}
