use std::collections::HashSet;

use weir_proto::lv2::{Counter, Log, envelope::Message};

use super::*;

fn hub(capacity: usize, max_streams: usize) -> Hub {
    Hub::new(
        EgressConfig {
            diode_capacity: capacity,
            max_streams,
            ..EgressConfig::default()
        },
        Metrics::new(),
    )
}

fn log_filter(source: &str) -> Filter {
    Filter {
        kind: Kind::Log,
        source_id: source.into(),
        names: Names::Any,
    }
}

fn log(source: &str, i: u64) -> Arc<Envelope> {
    Arc::new(Envelope {
        source_id: source.into(),
        timestamp: i as i64,
        message: Some(Message::Log(Log::default())),
        ..Default::default()
    })
}

fn counter(name: &str, i: u64) -> Arc<Envelope> {
    Arc::new(Envelope {
        timestamp: i as i64,
        message: Some(Message::Counter(Counter {
            name: name.into(),
            ..Default::default()
        })),
        ..Default::default()
    })
}

fn sub(hub: &Hub, filters: Vec<Filter>, shard: &str, det: &str) -> Subscription {
    hub.subscribe(SubscribeRequest {
        shard_id: shard.into(),
        deterministic_name: det.into(),
        ..SubscribeRequest::new(Egress::InProcess, filters)
    })
    .unwrap()
}

fn drain(s: &Subscription) -> Vec<i64> {
    std::iter::from_fn(|| s.try_next())
        .map(|e| e.timestamp)
        .collect()
}

#[tokio::test]
async fn shard_group_splits_and_other_groups_get_copies() {
    let hub = hub(100_000, 10);
    let a = sub(&hub, vec![log_filter("")], "A", "");
    let b = sub(&hub, vec![log_filter("")], "A", "");
    let other_selector = sub(&hub, vec![log_filter("app")], "A", "");
    let other_shard = sub(&hub, vec![log_filter("")], "B", "");
    let unsharded = sub(&hub, vec![log_filter("")], "", "");
    let n = 10_000u64;
    let envs: Vec<_> = (0..n).map(|i| log("app", i)).collect();
    hub.publish(&envs);

    let (ga, gb) = (drain(&a), drain(&b));
    let sa: HashSet<i64> = ga.iter().copied().collect();
    let sb: HashSet<i64> = gb.iter().copied().collect();
    assert!(sa.is_disjoint(&sb));
    assert_eq!(sa.len() + sb.len(), n as usize);
    for got in [ga.len(), gb.len()] {
        assert!((3_000..=7_000).contains(&got), "share {got} of {n}");
    }
    let all: Vec<i64> = (0..n as i64).collect();
    assert_eq!(drain(&other_selector), all);
    assert_eq!(drain(&other_shard), all);
    assert_eq!(drain(&unsharded), all);
}

#[tokio::test]
async fn deterministic_name_pins_a_counter_name_to_one_member() {
    let hub = hub(100_000, 10);
    let f = Filter {
        kind: Kind::Counter,
        source_id: String::new(),
        names: Names::Any,
    };
    let members = [
        sub(&hub, vec![f.clone()], "S", "b"),
        sub(&hub, vec![f.clone()], "S", "a"),
        sub(&hub, vec![f.clone()], "S", "c"),
    ];
    let names = ["requests", "errors", "latency", "bytes", "x"];
    let envs: Vec<_> = (0..1000u64)
        .map(|i| counter(names[i as usize % names.len()], i))
        .collect();
    hub.publish(&envs);
    // Members sorted by deterministic name: a, b, c.
    let sorted = [&members[1], &members[0], &members[2]];
    let mut total = 0;
    for (m, s) in sorted.iter().enumerate() {
        for e in std::iter::from_fn(|| s.try_next()) {
            total += 1;
            let pinned = (shard_hash(&e).unwrap() % 3) as usize;
            assert_eq!(pinned, m, "{:?} went to member {m}", e.message);
        }
    }
    assert_eq!(total, 1000);
}

#[tokio::test]
async fn full_diode_overwrites_and_counts() {
    let hub = hub(4, 10);
    let s = sub(&hub, vec![log_filter("")], "", "");
    let envs: Vec<_> = (0..10).map(|i| log("x", i)).collect();
    hub.publish(&envs);
    assert_eq!(drain(&s), vec![6, 7, 8, 9]);
    assert_eq!(s.dropped(), 6);
    hub.report_now();
    let m = &hub.inner.metrics;
    assert_eq!(
        m.subscriber_dropped_count(Egress::InProcess, s.label()),
        Some(6)
    );
    assert_eq!(m.delivered_count(Egress::InProcess), 4);
    let label = s.label().to_string();
    drop(s);
    assert_eq!(m.subscriber_dropped_count(Egress::InProcess, &label), None);
    assert_eq!(m.egress_dropped_count(Egress::InProcess), 6);
    assert!(!hub.has_subscribers());
}

#[tokio::test]
async fn prepared_publishes_only_what_follows_the_duplicates() {
    let hub = hub(100, 10);
    let s = sub(&hub, vec![log_filter("a")], "", "");
    let entries: Vec<Envelope> = (0..5)
        .map(|i| (*log(if i == 2 { "b" } else { "a" }, i)).clone())
        .collect();
    let prepared = hub.prepare(&entries).unwrap();
    assert_eq!(prepared.publish_from(2), 2);
    assert_eq!(drain(&s), vec![3, 4]);
    assert!(
        hub.prepare(&entries[2..3]).is_none(),
        "nobody wants source b"
    );
}

#[tokio::test]
async fn max_streams_refuses_one_more_and_frees_on_drop() {
    let hub = hub(10, 2);
    let a = sub(&hub, vec![log_filter("")], "", "");
    let _b = hub.open_stream(Egress::Follow).unwrap();
    assert_eq!(
        hub.subscribe(SubscribeRequest::new(Egress::InProcess, vec![]))
            .err(),
        Some(HubError::TooManyStreams { max: 2 })
    );
    drop(a);
    assert!(hub.open_stream(Egress::Follow).is_ok());
}

#[tokio::test]
async fn next_batch_cuts_at_batch_size() {
    let hub = Hub::new(
        EgressConfig {
            batch_size: 3,
            flush_interval_ms: 60_000,
            ..EgressConfig::default()
        },
        Metrics::new(),
    );
    let s = sub(&hub, vec![log_filter("")], "", "");
    let envs: Vec<_> = (0..7).map(|i| log("x", i)).collect();
    hub.publish(&envs);
    let mut out = Vec::new();
    assert_eq!(s.next_batch(&mut out).await, 3);
    out.clear();
    assert_eq!(s.next_batch(&mut out).await, 3);
    assert_eq!(s.try_next().map(|e| e.timestamp), Some(6));
}

#[tokio::test(start_paused = true)]
async fn next_batch_flushes_after_the_interval() {
    let hub = Hub::new(
        EgressConfig {
            batch_size: 100,
            flush_interval_ms: 100,
            ..EgressConfig::default()
        },
        Metrics::new(),
    );
    let s = sub(&hub, vec![log_filter("")], "", "");
    hub.publish(&[log("x", 1), log("x", 2)]);
    let started = tokio::time::Instant::now();
    let mut out = Vec::new();
    assert_eq!(s.next_batch(&mut out).await, 2);
    assert_eq!(started.elapsed(), std::time::Duration::from_millis(100));
}

#[tokio::test]
async fn scoped_publishing_keeps_unsharded_and_each_group_apart() {
    let h = hub(100, 10);
    let mut changes = h.changes();
    let all = sub(&h, vec![log_filter("")], "", "");
    assert!(changes.has_changed().unwrap(), "a subscribe is a change");
    changes.mark_unchanged();
    let g1 = sub(&h, vec![log_filter("")], "g", "");
    let g2 = sub(&h, vec![log_filter("app")], "g", "");
    // Same shard id, different selectors: two groups, two keys.
    let mut keys = h.group_keys();
    keys.sort();
    let mut want = vec![
        GroupKey::of(&log_filter(""), "g"),
        GroupKey::of(&log_filter("app"), "g"),
    ];
    want.sort();
    assert_eq!(keys, want);

    // The relay's copy for everybody reaches the unsharded subscriber only.
    assert_eq!(h.publish_scoped(&[log("app", 1)], Scope::Unsharded), 1);
    assert_eq!(drain(&all), vec![1]);
    assert!(drain(&g1).is_empty() && drain(&g2).is_empty());

    // A group's copy reaches that group only, and only when its filter matches.
    let k1 = GroupKey::of(&log_filter(""), "g");
    let k2 = GroupKey::of(&log_filter("app"), "g");
    assert_eq!(h.publish_scoped(&[log("app", 2)], Scope::Group(k1)), 1);
    assert_eq!(drain(&g1), vec![2]);
    assert!(drain(&all).is_empty() && drain(&g2).is_empty());
    assert_eq!(h.publish_scoped(&[log("other", 3)], Scope::Group(k2)), 0);
    assert_eq!(h.publish_scoped(&[log("app", 4)], Scope::Group(k2)), 1);
    assert_eq!(drain(&g2), vec![4]);
    // An unknown group: nobody.
    assert_eq!(
        h.publish_scoped(&[log("app", 5)], Scope::Group(GroupKey(7))),
        0
    );
    assert!(drain(&all).is_empty() && drain(&g1).is_empty() && drain(&g2).is_empty());

    drop(g2);
    assert_eq!(h.group_keys(), vec![k1]);
    assert!(changes.has_changed().unwrap());
}
