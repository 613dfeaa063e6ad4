//! `loggregator.v2.Egress` over real tonic clients and an in-process collector on a real
//! store: selectors, shard groups, fan-out without loss, tags, errors.

mod common;

use std::collections::{HashMap, HashSet};

use common::live::*;
use common::*;
use tonic::Code;
use weir_collector::hub::shard_hash;
use weir_collector::metrics::{Egress, RejectReason};
use weir_collector::{CollectorConfig, EgressConfig};
use weir_core::Envelope;
use weir_proto::lv2::egress_client::EgressClient;
use weir_proto::lv2::envelope::Message;
use weir_proto::lv2::ingress_client::IngressClient;
use weir_proto::lv2::{Counter, EgressRequest, Selector, Value, value::Data};
use weir_proto::wv1;

fn config(egress: EgressConfig) -> CollectorConfig {
    CollectorConfig {
        egress,
        ..CollectorConfig::default()
    }
}

fn counter(name: &str, i: u64) -> Envelope {
    Envelope {
        source_id: "metrics".into(),
        instance_id: "0".into(),
        timestamp: i as i64,
        message: Some(Message::Counter(Counter {
            name: name.into(),
            delta: 1,
            total: i,
        })),
        ..Default::default()
    }
}

#[tokio::test]
async fn one_producer_two_sources_hundred_subscribers_everything_in_order() {
    // A diode much smaller than what is sent; the producer waits for the subscribers
    // to catch up every half diode, so a correct hub loses nothing.
    const CAPACITY: usize = 64;
    const SUBSCRIBERS: usize = 100;
    const PER_SOURCE: u64 = 1_000;
    let server = TestServer::start_with(config(EgressConfig {
        diode_capacity: CAPACITY,
        batch_size: CAPACITY / 2,
        flush_interval_ms: 5,
        ..EgressConfig::default()
    }))
    .await;
    let ch = channel(&server).await;
    let mut subs = Vec::new();
    for _ in 0..SUBSCRIBERS {
        subs.push(Recorder::start(ch.clone(), batch_request(vec![log_selector("")], "", "")).await);
    }
    assert_eq!(server.collector.hub().subscription_count(), SUBSCRIBERS);

    let mut producer = IngressClient::new(ch.clone());
    let total = 2 * PER_SOURCE as usize;
    assert!(total > 10 * CAPACITY);
    let mut sent = 0;
    let chunk = (CAPACITY / 2) as u64;
    for start in (0..PER_SOURCE).step_by(chunk as usize / 2) {
        let end = (start + chunk / 2).min(PER_SOURCE);
        // Interleaved: a-i, b-i, a-i+1, b-i+1, …
        let batch: Vec<Envelope> = (start..end)
            .flat_map(|i| [numbered("a", i), numbered("b", i)])
            .collect();
        sent += batch.len();
        send(&mut producer, batch).await;
        for s in &mut subs {
            s.wait_for(sent).await;
        }
    }
    assert_eq!(sent, total);

    for s in &subs {
        let got = s.envelopes();
        assert_eq!(got.len(), total, "nothing more, nothing less");
        let mut next: HashMap<String, u64> = HashMap::new();
        for env in &got {
            let (source, i) = number_of(env);
            let want = next.entry(source.clone()).or_insert(0);
            assert_eq!(i, *want, "source {source} out of order");
            *want += 1;
        }
        assert_eq!(next.get("a"), Some(&PER_SOURCE));
        assert_eq!(next.get("b"), Some(&PER_SOURCE));
    }
    let stats = server.collector.hub().subscribers();
    assert_eq!(stats.len(), SUBSCRIBERS);
    assert!(stats.iter().all(|s| s.dropped == 0), "{stats:?}");
    server.collector.hub().report_now();
    assert_eq!(
        server.metrics.egress_dropped_count(Egress::BatchedReceiver),
        0
    );
    assert_eq!(
        server.metrics.delivered_count(Egress::BatchedReceiver),
        (SUBSCRIBERS * total) as u64
    );
    for s in subs {
        s.stop();
    }
    server.stop().await.expect("stop");
}

#[tokio::test]
async fn shard_groups_split_per_selector_and_copy_across_groups() {
    const N: u64 = 10_000;
    let server = TestServer::start_with(config(EgressConfig {
        diode_capacity: 2 * N as usize,
        flush_interval_ms: 10,
        ..EgressConfig::default()
    }))
    .await;
    let ch = channel(&server).await;
    let all = vec![log_selector("")];
    let mut a1 = Recorder::start(ch.clone(), batch_request(all.clone(), "A", "")).await;
    let mut a2 = Recorder::start(ch.clone(), batch_request(all.clone(), "A", "")).await;
    // Same shard id, different selector: its own group.
    let mut a_other = Recorder::start(
        ch.clone(),
        batch_request(vec![log_selector("app")], "A", ""),
    )
    .await;
    let mut b = Recorder::start(ch.clone(), batch_request(all.clone(), "B", "")).await;
    let mut c = Recorder::start(ch.clone(), batch_request(all.clone(), "C", "")).await;
    let mut unsharded = Recorder::start(ch.clone(), batch_request(all.clone(), "", "")).await;

    let mut producer = IngressClient::new(ch.clone());
    for start in (0..N).step_by(1000) {
        send(
            &mut producer,
            (start..start + 1000).map(|i| numbered("app", i)).collect(),
        )
        .await;
    }
    for r in [&mut a_other, &mut b, &mut c, &mut unsharded] {
        r.wait_for(N as usize).await;
    }
    let ids = |r: &Recorder| -> Vec<u64> { r.envelopes().iter().map(|e| number_of(e).1).collect() };
    let everything: Vec<u64> = (0..N).collect();
    for r in [&a_other, &b, &c, &unsharded] {
        assert_eq!(ids(r), everything, "a full copy, in order");
    }
    // The two members of group A between them have everything, exactly once.
    Recorder::wait_for_sum(&mut a1, &mut a2, N as usize).await;
    let (s1, s2): (HashSet<u64>, HashSet<u64>) = (
        ids(&a1).into_iter().collect(),
        ids(&a2).into_iter().collect(),
    );
    assert_eq!(s1.len(), a1.count(), "no duplicate within a member");
    assert!(s1.is_disjoint(&s2));
    let union: HashSet<u64> = s1.union(&s2).copied().collect();
    assert_eq!(union.len(), N as usize);
    for share in [s1.len(), s2.len()] {
        assert!(
            (N as usize * 3 / 10..=N as usize * 7 / 10).contains(&share),
            "share {share} of {N}"
        );
    }
    server.stop().await.expect("stop");
}

#[tokio::test]
async fn deterministic_name_sends_one_counter_name_to_one_member() {
    let server = TestServer::start_with(config(EgressConfig {
        flush_interval_ms: 10,
        ..EgressConfig::default()
    }))
    .await;
    let ch = channel(&server).await;
    let sel = vec![counter_selector("", "")];
    // Sorted by deterministic name, "m1" is member 0 and "m2" member 1.
    let mut m2 = Recorder::start(ch.clone(), batch_request(sel.clone(), "D", "m2")).await;
    let mut m1 = Recorder::start(ch.clone(), batch_request(sel.clone(), "D", "m1")).await;
    let names: Vec<String> = (0..20).map(|i| format!("metric_{i}")).collect();
    let mut producer = IngressClient::new(ch.clone());
    let total = 2_000u64;
    let batch: Vec<Envelope> = (0..total)
        .map(|i| counter(&names[i as usize % names.len()], i))
        .collect();
    for chunk in batch.chunks(500) {
        send(&mut producer, chunk.to_vec()).await;
    }
    let (mut seen1, mut seen2) = (HashSet::new(), HashSet::new());
    let want1 = batch
        .iter()
        .filter(|e| shard_hash(e).unwrap_or(1).is_multiple_of(2))
        .count();
    m1.wait_for(want1).await;
    m2.wait_for(total as usize - want1).await;
    for (r, seen) in [(&m1, &mut seen1), (&m2, &mut seen2)] {
        for e in r.envelopes() {
            if let Some(Message::Counter(c)) = &e.message {
                seen.insert(c.name.clone());
            }
        }
    }
    assert!(seen1.is_disjoint(&seen2), "{seen1:?} / {seen2:?}");
    assert_eq!(seen1.len() + seen2.len(), names.len());
    assert!(!seen1.is_empty() && !seen2.is_empty(), "both members used");
    assert_eq!(m1.count() + m2.count(), total as usize);
    server.stop().await.expect("stop");
}

#[tokio::test]
async fn selector_errors_and_too_many_streams() {
    let server = TestServer::start_with(config(EgressConfig {
        max_streams: 2,
        ..EgressConfig::default()
    }))
    .await;
    let ch = channel(&server).await;
    let mut client = EgressClient::new(ch.clone());

    let err = client
        .batched_receiver(batch_request(vec![], "", ""))
        .await
        .expect_err("empty selectors");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(err.message(), "Selectors cannot be empty");

    let err = client
        .batched_receiver(batch_request(
            vec![log_selector(""), Selector::default()],
            "",
            "",
        ))
        .await
        .expect_err("selector without a message");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("selector 1"), "{}", err.message());

    let err = client
        .receiver(EgressRequest::default())
        .await
        .expect_err("receiver: empty selectors");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(
        server.metrics.rejected_count(RejectReason::InvalidRequest),
        3
    );

    let _one = client
        .batched_receiver(batch_request(vec![log_selector("")], "", ""))
        .await
        .expect("first");
    let _two = client
        .receiver(EgressRequest {
            selectors: vec![log_selector("")],
            ..Default::default()
        })
        .await
        .expect("second");
    let err = client
        .batched_receiver(batch_request(vec![log_selector("")], "", ""))
        .await
        .expect_err("third");
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert_eq!(
        server.metrics.rejected_count(RejectReason::TooManyStreams),
        1
    );
    server.stop().await.expect("stop");
}

#[tokio::test]
async fn receiver_legacy_selector_and_legacy_tags() {
    let server = TestServer::start_with(config(EgressConfig {
        flush_interval_ms: 10,
        ..EgressConfig::default()
    }))
    .await;
    let ch = channel(&server).await;
    let mut client = EgressClient::new(ch.clone());
    // Only the legacy selector: it is used. use_preferred_tags false: tags move to
    // deprecated_tags.
    let mut legacy = client
        .receiver(EgressRequest {
            legacy_selector: Some(log_selector("app")),
            ..Default::default()
        })
        .await
        .expect("receiver")
        .into_inner();
    // Both: the legacy selector is ignored.
    let mut preferred = Recorder::start(
        ch.clone(),
        weir_proto::lv2::EgressBatchRequest {
            legacy_selector: Some(log_selector("other")),
            ..batch_request(vec![log_selector("app")], "", "")
        },
    )
    .await;

    let mut env = numbered("app", 0);
    env.tags.insert("t".into(), "v".into());
    env.deprecated_tags.insert(
        "d".into(),
        Value {
            data: Some(Data::Integer(-7)),
        },
    );
    let mut producer = IngressClient::new(ch.clone());
    send(&mut producer, vec![numbered("other", 0), env]).await;

    let got = legacy.message().await.expect("recv").expect("one");
    assert_eq!(number_of(&got), ("app".to_string(), 0));
    assert!(got.tags.is_empty());
    assert_eq!(
        got.deprecated_tags.get("t").and_then(|v| v.data.clone()),
        Some(Data::Text("v".into()))
    );
    assert_eq!(
        got.deprecated_tags.get("d").and_then(|v| v.data.clone()),
        Some(Data::Integer(-7))
    );

    preferred.wait_for(1).await;
    let got = preferred.envelopes();
    assert_eq!(got.len(), 1, "only source app: {got:?}");
    assert!(got[0].deprecated_tags.is_empty());
    assert_eq!(got[0].tags.get("t").map(String::as_str), Some("v"));
    assert_eq!(got[0].tags.get("d").map(String::as_str), Some("-7"));
    server.stop().await.expect("stop");
}

#[tokio::test]
async fn bundles_are_published_once_and_duplicates_are_not() {
    let server = TestServer::start_with(config(EgressConfig {
        flush_interval_ms: 10,
        ..EgressConfig::default()
    }))
    .await;
    let ch = channel(&server).await;
    let mut sub = Recorder::start(ch.clone(), batch_request(vec![log_selector("")], "", "")).await;
    let secret = "a-secret-of-some-length";
    let first = append("host/+/out", secret, 0, &["a", "b"]);
    // A resend of b plus a new c: only c is new.
    let again = append("host/+/out", secret, 1, &["b", "c"]);
    for a in [first, again] {
        let r = server
            .collector
            .process(wv1::Bundle { streams: vec![a] })
            .await;
        assert!(matches!(
            r.results[0].result,
            Some(wv1::stream_result::Result::StoredNext(_))
        ));
    }
    sub.wait_for(3).await;
    // A marker through the same path proves nothing else is on its way.
    let marker = append("host/+/out", secret, 3, &["end"]);
    server
        .collector
        .process(wv1::Bundle {
            streams: vec![marker],
        })
        .await;
    sub.wait_for(4).await;
    let got: Vec<String> = sub.envelopes().iter().map(payload_of).collect();
    assert_eq!(got, ["a", "b", "c", "end"]);
    assert_eq!(server.metrics.hub_published_count(), 4);
    server.stop().await.expect("stop");
}
