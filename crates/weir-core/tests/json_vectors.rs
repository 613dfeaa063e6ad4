//! The protojson codec against the PROTOCOLS.md test vectors, the decoder's refusals,
//! the people JSON shape, and round-trip properties.

use std::collections::HashMap;

use bytes::Bytes;
use proptest::prelude::*;
use prost::Message as _;
use serde_json::{Value as Json, json};
use weir_core::json::{
    JsonError, PeopleJson, batch_from_json, batch_from_json_slice, batch_to_json,
    envelope_from_json, envelope_to_json, people_entry, people_envelope, to_legacy_tags,
    to_preferred_tags,
};
use weir_proto::lv2::{
    Counter, Envelope, EnvelopeBatch, Event, Gauge, GaugeValue, Log, Timer, Value,
    envelope::Message, value::Data,
};

// ---- The vectors, copied verbatim from PROTOCOLS.md "Test vectors" ----

const TV1_JSON: &str = r#"{"batch":[{"timestamp":"1700000000000000000","source_id":"6e4f5b2a-1c3d-4e5f-8a9b-0c1d2e3f4a5b","instance_id":"0","deprecated_tags":{},"tags":{"origin":"rep","source_type":"APP/PROC/WEB"},"log":{"payload":"SGVsbG8sIHdvcmxkIQ==","type":"OUT"}}]}"#;
const TV1_HEX: &str = "0a70088080a8b1e39fe7cb17122436653466356232612d316333642d346535662d386139622d306331643265336634613562220f0a0d48656c6c6f2c20776f726c64214201304a0d0a066f726967696e12037265704a1b0a0b736f757263655f74797065120c4150502f50524f432f574542";
const TV2_JSON: &str = r#"{"batch":[{"timestamp":"1700000000100000000","source_id":"doppler","instance_id":"1","deprecated_tags":{},"tags":{"deployment":"cf"},"counter":{"name":"requests","delta":"5","total":"1024"}}]}"#;
const TV2_HEX: &str = "0a390880c2ffe0e39fe7cb171207646f70706c65722a0f0a08726571756573747310051880084201314a100a0a6465706c6f796d656e7412026366";
const TV3_JSON: &str = r#"{"batch":[{"timestamp":"1700000000200000000","source_id":"6e4f5b2a-1c3d-4e5f-8a9b-0c1d2e3f4a5b","instance_id":"0","deprecated_tags":{},"tags":{},"gauge":{"metrics":{"cpu":{"unit":"percentage","value":12.5},"memory":{"unit":"bytes","value":104857600}}}}]}"#;
const TV4_JSON: &str = r#"{"batch":[{"timestamp":"1700000000300000000","source_id":"gorouter","instance_id":"","deprecated_tags":{},"tags":{},"timer":{"name":"http","start":"1700000000000000000","stop":"1700000000250000000"}},{"timestamp":"1700000000400000000","source_id":"6e4f5b2a-1c3d-4e5f-8a9b-0c1d2e3f4a5b","instance_id":"","deprecated_tags":{},"tags":{},"event":{"title":"app crashed","body":"exit status 137"}}]}"#;
const TV5_JSON: &str = r#"{"batch":[{"timestamp":"1","source_id":"x","instance_id":"","deprecated_tags":{"a":{"text":"t"},"b":{"integer":"-7"},"c":{"decimal":0.5}},"tags":{},"counter":{"name":"c","delta":"0","total":"0"}}]}"#;

const APP: &str = "6e4f5b2a-1c3d-4e5f-8a9b-0c1d2e3f4a5b";

fn tags(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn value(d: Data) -> Value {
    Value { data: Some(d) }
}

fn tv3() -> Envelope {
    let mut metrics = HashMap::new();
    metrics.insert(
        "cpu".to_string(),
        GaugeValue {
            unit: "percentage".into(),
            value: 12.5,
        },
    );
    metrics.insert(
        "memory".to_string(),
        GaugeValue {
            unit: "bytes".into(),
            value: 104857600.0,
        },
    );
    Envelope {
        timestamp: 1_700_000_000_200_000_000,
        source_id: APP.into(),
        instance_id: "0".into(),
        message: Some(Message::Gauge(Gauge { metrics })),
        ..Default::default()
    }
}

fn tv4() -> Vec<Envelope> {
    vec![
        Envelope {
            timestamp: 1_700_000_000_300_000_000,
            source_id: "gorouter".into(),
            message: Some(Message::Timer(Timer {
                name: "http".into(),
                start: 1_700_000_000_000_000_000,
                stop: 1_700_000_000_250_000_000,
            })),
            ..Default::default()
        },
        Envelope {
            timestamp: 1_700_000_000_400_000_000,
            source_id: APP.into(),
            message: Some(Message::Event(Event {
                title: "app crashed".into(),
                body: "exit status 137".into(),
            })),
            ..Default::default()
        },
    ]
}

fn tv5() -> Envelope {
    let mut env = Envelope {
        timestamp: 1,
        source_id: "x".into(),
        message: Some(Message::Counter(Counter {
            name: "c".into(),
            delta: 0,
            total: 0,
        })),
        ..Default::default()
    };
    env.deprecated_tags
        .insert("a".into(), value(Data::Text("t".into())));
    env.deprecated_tags
        .insert("b".into(), value(Data::Integer(-7)));
    env.deprecated_tags
        .insert("c".into(), value(Data::Decimal(0.5)));
    env
}

fn binary(hex_text: &str) -> EnvelopeBatch {
    EnvelopeBatch::decode(hex::decode(hex_text).unwrap().as_slice()).unwrap()
}

/// Parses both texts and compares them as JSON values. serde_json keeps `104857600`
/// (an integer) and `104857600.0` (a float) apart, so a float written in Rust's style
/// where Go writes an integer fails here.
fn assert_same_json(ours: &str, spec: &str) {
    let a: Json = serde_json::from_str(ours).unwrap();
    let b: Json = serde_json::from_str(spec).unwrap();
    assert_eq!(a, b, "\nours: {ours}\nspec: {spec}");
}

// ---- TV1 and TV2: binary → fields → JSON ----

#[test]
fn tv1_binary_has_the_spec_fields() {
    let batch = binary(TV1_HEX);
    assert_eq!(batch.batch.len(), 1);
    let env = &batch.batch[0];
    assert_eq!(env.timestamp, 1_700_000_000_000_000_000);
    assert_eq!(env.source_id, APP);
    assert_eq!(env.instance_id, "0");
    assert!(env.deprecated_tags.is_empty());
    assert_eq!(
        env.tags,
        tags(&[("origin", "rep"), ("source_type", "APP/PROC/WEB")])
    );
    match &env.message {
        Some(Message::Log(l)) => {
            assert_eq!(&l.payload[..], b"Hello, world!");
            assert_eq!(l.r#type, 0, "OUT");
        }
        other => panic!("expected a log, got {other:?}"),
    }
}

#[test]
fn tv2_binary_has_the_spec_fields() {
    let batch = binary(TV2_HEX);
    assert_eq!(batch.batch.len(), 1);
    let env = &batch.batch[0];
    assert_eq!(env.timestamp, 1_700_000_000_100_000_000);
    assert_eq!(env.source_id, "doppler");
    assert_eq!(env.instance_id, "1");
    assert!(env.deprecated_tags.is_empty());
    assert_eq!(env.tags, tags(&[("deployment", "cf")]));
    assert_eq!(
        env.message,
        Some(Message::Counter(Counter {
            name: "requests".into(),
            delta: 5,
            total: 1024,
        }))
    );
}

#[test]
fn tv1_and_tv2_encode_to_the_spec_json() {
    for (hex_text, spec) in [(TV1_HEX, TV1_JSON), (TV2_HEX, TV2_JSON)] {
        let batch = binary(hex_text);
        let ours = batch_to_json(&batch.batch);
        assert_same_json(&ours, spec);
        assert_eq!(
            batch_from_json(spec).unwrap(),
            batch,
            "decoding the spec text"
        );
    }
}

#[test]
fn output_is_the_exact_canonical_text() {
    // We add no random spaces, so the bytes equal the spec's, key order included.
    assert_eq!(batch_to_json(&binary(TV1_HEX).batch), TV1_JSON);
    assert_eq!(batch_to_json(&binary(TV2_HEX).batch), TV2_JSON);
    assert_eq!(batch_to_json(&[tv3()]), TV3_JSON);
    assert_eq!(batch_to_json(&tv4()), TV4_JSON);
    assert_eq!(batch_to_json(&[tv5()]), TV5_JSON);
}

#[test]
fn tv1_keys_come_in_declaration_order() {
    let ours = batch_to_json(&binary(TV1_HEX).batch);
    let keys = [
        "\"timestamp\"",
        "\"source_id\"",
        "\"instance_id\"",
        "\"deprecated_tags\"",
        "\"tags\"",
        "\"log\"",
        "\"payload\"",
        "\"type\"",
    ];
    let positions: Vec<usize> = keys.iter().map(|k| ours.find(k).unwrap()).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{ours}");
    assert!(ours.find("\"origin\"").unwrap() < ours.find("\"source_type\"").unwrap());
}

// ---- TV3 to TV5: built in Rust ----

#[test]
fn tv3_gauge_round_trips() {
    let ours = batch_to_json(&[tv3()]);
    assert_same_json(&ours, TV3_JSON);
    assert!(ours.contains(r#""value":104857600}"#), "{ours}");
    let decoded = batch_from_json(TV3_JSON).unwrap();
    assert_eq!(decoded.batch, vec![tv3()]);
}

#[test]
fn tv4_timer_and_event_round_trip() {
    assert_same_json(&batch_to_json(&tv4()), TV4_JSON);
    assert_eq!(batch_from_json(TV4_JSON).unwrap().batch, tv4());
}

#[test]
fn tv5_typed_tags_round_trip_and_convert() {
    assert_same_json(&batch_to_json(&[tv5()]), TV5_JSON);
    let mut decoded = batch_from_json(TV5_JSON).unwrap();
    assert_eq!(decoded.batch, vec![tv5()]);

    let env = &mut decoded.batch[0];
    to_preferred_tags(env);
    assert_eq!(env.tags, tags(&[("a", "t"), ("b", "-7"), ("c", "0.5")]));
    assert!(env.deprecated_tags.is_empty());
    let json: Json = serde_json::from_str(&envelope_to_json(env)).unwrap();
    assert_eq!(json["tags"], json!({"a": "t", "b": "-7", "c": "0.5"}));
    assert_eq!(json["deprecated_tags"], json!({}));

    to_legacy_tags(env);
    assert!(env.tags.is_empty());
    assert_eq!(env.deprecated_tags["b"], value(Data::Text("-7".into())));
}

// ---- doubles, byte for byte ----

fn gauge_json(v: f64) -> String {
    let mut metrics = HashMap::new();
    metrics.insert(
        "m".to_string(),
        GaugeValue {
            unit: String::new(),
            value: v,
        },
    );
    let env = Envelope {
        message: Some(Message::Gauge(Gauge { metrics })),
        ..Default::default()
    };
    let json = envelope_to_json(&env);
    let start = json.find("\"value\":").unwrap() + 8;
    json[start..json.len() - 4].to_string()
}

#[test]
fn doubles_are_written_in_go_form() {
    assert_eq!(gauge_json(1e21), "1e+21");
    assert_eq!(gauge_json(1e-7), "1e-7");
    assert_eq!(gauge_json(104857600.0), "104857600");
    assert_eq!(gauge_json(0.5), "0.5");
    assert_eq!(gauge_json(12.5), "12.5");
    assert_eq!(gauge_json(1e20), "100000000000000000000");
    assert_eq!(gauge_json(0.000001), "0.000001");
    assert_eq!(gauge_json(f64::NAN), "\"NaN\"");
    assert_eq!(gauge_json(f64::INFINITY), "\"Infinity\"");
    assert_eq!(gauge_json(f64::NEG_INFINITY), "\"-Infinity\"");
}

#[test]
fn preferred_tags_print_doubles_like_go_sprint() {
    let mut env = Envelope::default();
    for (k, v) in [
        ("one", 1.0),
        ("half", 0.5),
        ("big", 1e21),
        ("million", 1e6),
        ("tiny", 1e-5),
    ] {
        env.deprecated_tags
            .insert(k.into(), value(Data::Decimal(v)));
    }
    to_preferred_tags(&mut env);
    assert_eq!(env.tags["one"], "1");
    assert_eq!(env.tags["half"], "0.5");
    assert_eq!(env.tags["big"], "1e+21");
    // Go's %v switches to exponent form from 1e6 (strconv 'g', shortest).
    assert_eq!(env.tags["million"], "1e+06");
    assert_eq!(env.tags["tiny"], "1e-05");
}

// ---- what the decoder accepts beyond the canonical form ----

#[test]
fn decoder_accepts_go_variants() {
    let text = r#" {
        "timestamp": 1700000000000000000, "source_id": "s\u00e9\ud83d\ude00\/", "instance_id": null,
        "deprecated_tags": {"n": {"integer": 5e2}, "d": {"decimal": "NaN"}, "e": {"decimal": "-0.25"},
                            "z": {"text": null}},
        "tags": null,
        "log": {"payload": "-_8", "type": 1}
    } "#;
    let env = envelope_from_json(text).unwrap();
    assert_eq!(env.timestamp, 1_700_000_000_000_000_000);
    assert_eq!(env.source_id, "sé😀/");
    assert_eq!(env.instance_id, "");
    assert!(env.tags.is_empty());
    assert_eq!(env.deprecated_tags["n"], value(Data::Integer(500)));
    assert!(matches!(env.deprecated_tags["d"].data, Some(Data::Decimal(d)) if d.is_nan()));
    assert_eq!(env.deprecated_tags["e"], value(Data::Decimal(-0.25)));
    assert_eq!(env.deprecated_tags["z"], Value { data: None });
    assert_eq!(
        env.message,
        Some(Message::Log(Log {
            payload: Bytes::from_static(&[0xfb, 0xff]),
            r#type: 1,
        }))
    );

    let counter = envelope_from_json(
        r#"{"counter":{"delta":"18446744073709551615","total":1.0e1,"name":"c"}}"#,
    )
    .unwrap();
    assert_eq!(
        counter.message,
        Some(Message::Counter(Counter {
            name: "c".into(),
            delta: u64::MAX,
            total: 10,
        }))
    );
    // A null member leaves the oneof free for another.
    let timer = envelope_from_json(r#"{"log":null,"timer":{"start":"-5","stop":null}}"#).unwrap();
    assert_eq!(
        timer.message,
        Some(Message::Timer(Timer {
            name: String::new(),
            start: -5,
            stop: 0,
        }))
    );
    // An empty message is still that message.
    let event = envelope_from_json(r#"{"event":{}}"#).unwrap();
    assert_eq!(event.message, Some(Message::Event(Event::default())));
    assert_eq!(
        batch_from_json(r#"{"batch":null}"#).unwrap(),
        EnvelopeBatch::default()
    );
    assert_eq!(batch_from_json("{}").unwrap(), EnvelopeBatch::default());
    assert_eq!(
        batch_from_json_slice(TV2_JSON.as_bytes()).unwrap(),
        binary(TV2_HEX)
    );
}

// ---- what it refuses, and how it says so ----

fn refuse(text: &str) -> JsonError {
    match batch_from_json(text) {
        Ok(b) => panic!("accepted {text}: {b:?}"),
        Err(e) => e,
    }
}

#[test]
fn unknown_key_is_named() {
    let e = refuse(r#"{"batch":[{"timestamp":"1","colour":"red"}]}"#);
    assert_eq!(
        e,
        JsonError::UnknownField {
            path: "$.batch[0]".into(),
            name: "colour".into()
        }
    );
    assert_eq!(e.to_string(), r#"$.batch[0]: unknown field "colour""#);
}

#[test]
fn camel_case_source_id_is_unknown() {
    let e = refuse(r#"{"batch":[{"sourceId":"app"}]}"#);
    assert!(
        matches!(&e, JsonError::UnknownField { name, .. } if name == "sourceId"),
        "{e}"
    );
    assert!(e.to_string().contains("sourceId"), "{e}");
    let e = refuse(r#"{"batch":[{"instanceId":"0"}]}"#);
    assert!(
        matches!(&e, JsonError::UnknownField { name, .. } if name == "instanceId"),
        "{e}"
    );
}

#[test]
fn duplicate_key_is_named() {
    let e = refuse(r#"{"batch":[{"source_id":"a","source_id":"b"}]}"#);
    assert_eq!(e.to_string(), r#"$.batch[0]: duplicate field "source_id""#);
    // null counts as a sighting, as in Go.
    let e = refuse(r#"{"batch":[{"source_id":null,"source_id":"b"}]}"#);
    assert!(matches!(e, JsonError::DuplicateField { .. }), "{e}");
    let e = refuse(r#"{"batch":[],"batch":[]}"#);
    assert_eq!(e.to_string(), r#"$: duplicate field "batch""#);
    let e = refuse(r#"{"batch":[{"counter":{"delta":"1","delta":"2"}}]}"#);
    assert_eq!(
        e.to_string(),
        r#"$.batch[0].counter: duplicate field "delta""#
    );
}

#[test]
fn duplicate_map_key_is_named() {
    let e = refuse(r#"{"batch":[{"tags":{"a":"1","a":"2"}}]}"#);
    assert_eq!(e.to_string(), r#"$.batch[0].tags: duplicate map key "a""#);
    let e = refuse(r#"{"batch":[{"gauge":{"metrics":{"m":{},"m":{}}}}]}"#);
    assert!(matches!(e, JsonError::DuplicateMapKey { .. }), "{e}");
}

#[test]
fn bad_base64_is_named() {
    let e = refuse(r#"{"batch":[{"log":{"payload":"%%%%"}}]}"#);
    assert!(
        matches!(&e, JsonError::InvalidValue { path, .. } if path == "$.batch[0].log.payload"),
        "{e}"
    );
    assert!(e.to_string().contains("base64"), "{e}");
    refuse(r#"{"batch":[{"log":{"payload":"SGk=="}}]}"#);
    refuse(r#"{"batch":[{"log":{"payload":5}}]}"#);
}

#[test]
fn two_messages_are_refused() {
    let e = refuse(r#"{"batch":[{"log":{},"counter":{}}]}"#);
    assert_eq!(
        e.to_string(),
        r#"$.batch[0].counter: oneof message is already set by "log""#
    );
    let e = refuse(r#"{"batch":[{"deprecated_tags":{"k":{"text":"a","integer":"1"}}}]}"#);
    assert_eq!(
        e.to_string(),
        r#"$.batch[0].deprecated_tags["k"].integer: oneof data is already set by "text""#
    );
}

#[test]
fn wrong_values_are_named() {
    let cases = [
        (
            r#"{"batch":[{"timestamp":"9223372036854775808"}]}"#,
            "$.batch[0].timestamp",
        ),
        (r#"{"batch":[{"timestamp":"1.5"}]}"#, "$.batch[0].timestamp"),
        (r#"{"batch":[{"timestamp":" 1"}]}"#, "$.batch[0].timestamp"),
        (r#"{"batch":[{"timestamp":true}]}"#, "$.batch[0].timestamp"),
        (
            r#"{"batch":[{"counter":{"delta":-1}}]}"#,
            "$.batch[0].counter.delta",
        ),
        (r#"{"batch":[{"source_id":5}]}"#, "$.batch[0].source_id"),
        (
            r#"{"batch":[{"log":{"type":"DEBUG"}}]}"#,
            "$.batch[0].log.type",
        ),
        (r#"{"batch":[{"log":{"type":"1"}}]}"#, "$.batch[0].log.type"),
        (r#"{"batch":[{"log":"hello"}]}"#, "$.batch[0].log"),
        (r#"{"batch":[{"tags":{"a":1}}]}"#, r#"$.batch[0].tags["a"]"#),
        (
            r#"{"batch":[{"tags":{"a":null}}]}"#,
            r#"$.batch[0].tags["a"]"#,
        ),
        (
            r#"{"batch":[{"deprecated_tags":{"a":null}}]}"#,
            r#"$.batch[0].deprecated_tags["a"]"#,
        ),
        (
            r#"{"batch":[{"gauge":{"metrics":{"m":{"value":1e400}}}}]}"#,
            r#"$.batch[0].gauge.metrics["m"].value"#,
        ),
        (
            r#"{"batch":[{"gauge":{"metrics":{"m":{"value":"inf"}}}}]}"#,
            r#"$.batch[0].gauge.metrics["m"].value"#,
        ),
        (r#"{"batch":[null]}"#, "$.batch[0]"),
        (r#"{"batch":{}}"#, "$.batch"),
    ];
    for (text, path) in cases {
        match refuse(text) {
            JsonError::InvalidValue { path: p, .. } => assert_eq!(p, path, "{text}"),
            other => panic!("{text}: expected InvalidValue, got {other}"),
        }
    }
}

#[test]
fn malformed_json_is_a_syntax_error() {
    for text in [
        "",
        "[]",
        r#"{"batch":[]"#,
        r#"{"batch":[]} x"#,
        r#"{"batch":[],}"#,
        r#"{"batch":[{},]}"#,
        r#"{"batch":[{"source_id":"a\x"}]}"#,
        r#"{"batch":[{"source_id":"\ud800"}]}"#,
        r#"{"batch":[{"source_id":"\udc00\ud800"}]}"#,
        "{\"batch\":[{\"source_id\":\"a\nb\"}]}",
        r#"{"batch":[{"timestamp":01}]}"#,
        r#"{"batch":[{"timestamp":1.}]}"#,
        r#"{'batch':[]}"#,
        r#"{"batch" []}"#,
        r#"{"batch":[{"tags":{"a":"b" "c":"d"}}]}"#,
        r#"{"batch":nul}"#,
    ] {
        let e = refuse(text);
        assert!(
            matches!(e, JsonError::Syntax { .. } | JsonError::InvalidValue { .. }),
            "{text}: {e}"
        );
    }
    let e = refuse(r#"{"batch":[{"source_id":"a\x"}]}"#);
    assert!(
        e.to_string()
            .starts_with("$.batch[0].source_id: invalid JSON at byte 25"),
        "{e}"
    );
    let e = batch_from_json_slice(b"{\"batch\":[{\"source_id\":\"\xff\"}]}").unwrap_err();
    assert!(e.to_string().contains("UTF-8"), "{e}");
}

// ---- people JSON ----

#[test]
fn people_log_entry_shape() {
    let mut env = binary(TV1_HEX).batch.remove(0);
    env.deprecated_tags
        .insert("origin".into(), value(Data::Integer(7)));
    let ingest = 1_795_420_800_123_456_789;
    let got = people_entry("a/+/b", 5, ingest, &env);
    assert_eq!(
        got,
        json!({
            "stream": "a/+/b",
            "index": 5,
            "ingest_time": "2026-11-23T08:00:00.123456789Z",
            "timestamp": "2023-11-14T22:13:20.000000000Z",
            "source_id": APP,
            "instance_id": "0",
            "tags": {"origin": "7", "source_type": "APP/PROC/WEB"},
            "type": "log",
            "message": "Hello, world!",
            "log_type": "OUT"
        })
    );
    // Written with serde_json, keys come in the documented order.
    let text = serde_json::to_string(&PeopleJson::entry("a/+/b", 5, ingest, &env)).unwrap();
    assert!(
        text.starts_with(r#"{"stream":"a/+/b","index":5,"ingest_time":"2026-11-23T08:00:00.123456789Z","timestamp":"#),
        "{text}"
    );
    assert!(
        text.ends_with(r#""type":"log","message":"Hello, world!","log_type":"OUT"}"#),
        "{text}"
    );
}

#[test]
fn people_binary_log_uses_base64() {
    let env = Envelope {
        message: Some(Message::Log(Log {
            payload: Bytes::from_static(&[0xff, 0x00, 0x41]),
            r#type: 1,
        })),
        ..Default::default()
    };
    let got = people_envelope(&env);
    assert_eq!(got["payload_base64"], "/wBB");
    assert_eq!(got["log_type"], "ERR");
    assert!(got.get("message").is_none());
    assert!(
        got.get("stream").is_none()
            && got.get("index").is_none()
            && got.get("ingest_time").is_none()
    );
    assert_eq!(got["timestamp"], "1970-01-01T00:00:00.000000000Z");
}

#[test]
fn people_metric_and_event_shapes() {
    let counter = binary(TV2_HEX).batch.remove(0);
    let got = people_envelope(&counter);
    assert_eq!(got["type"], "counter");
    assert_eq!(
        got["counter"],
        json!({"name": "requests", "delta": 5, "total": 1024})
    );
    assert_eq!(got["tags"], json!({"deployment": "cf"}));

    let mut gauge = tv3();
    if let Some(Message::Gauge(g)) = &mut gauge.message {
        g.metrics.insert(
            "nan".into(),
            GaugeValue {
                unit: "x".into(),
                value: f64::NAN,
            },
        );
    }
    let got = people_envelope(&gauge);
    assert_eq!(got["type"], "gauge");
    assert_eq!(
        got["gauge"],
        json!({
            "cpu": {"value": 12.5, "unit": "percentage"},
            "memory": {"value": 104857600.0, "unit": "bytes"},
            "nan": {"value": "NaN", "unit": "x"}
        })
    );
    let text = serde_json::to_string(&PeopleJson::envelope(&gauge)).unwrap();
    assert!(
        text.contains(r#""cpu":{"value":12.5,"unit":"percentage"}"#),
        "{text}"
    );

    let [timer, event] = <[Envelope; 2]>::try_from(tv4()).unwrap();
    let got = people_envelope(&timer);
    assert_eq!(
        got["timer"],
        json!({
            "name": "http",
            "start": "2023-11-14T22:13:20.000000000Z",
            "stop": "2023-11-14T22:13:20.250000000Z",
            "duration_ns": 250_000_000
        })
    );
    let got = people_envelope(&event);
    assert_eq!(got["type"], "event");
    assert_eq!(
        got["event"],
        json!({"title": "app crashed", "body": "exit status 137"})
    );

    let got = people_envelope(&Envelope::default());
    assert_eq!(got["type"], "none");
}

// ---- properties ----

fn text() -> impl Strategy<Value = String> {
    let ch = prop_oneof![
        4 => any::<char>(),
        2 => prop::sample::select(vec!['"', '\\', '/', '\n', '\t', '\u{0}', '\u{1f}', '\u{7f}', '<', '&', 'é', '😀', '\u{2028}']),
        4 => prop::char::range('a', 'z'),
    ];
    prop::collection::vec(ch, 0..12).prop_map(String::from_iter)
}

fn double() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        (-1_000_000i64..1_000_000).prop_map(|n| n as f64),
        (-1000i64..1000, -30i32..30).prop_map(|(m, e)| m as f64 * 10f64.powi(e)),
        Just(1e21),
        Just(1e-7),
        Just(-0.0),
    ]
}

fn value_strategy() -> impl Strategy<Value = Value> {
    prop_oneof![
        1 => Just(Value { data: None }),
        3 => text().prop_map(|t| value(Data::Text(t))),
        3 => any::<i64>().prop_map(|i| value(Data::Integer(i))),
        3 => double().prop_map(|d| value(Data::Decimal(d))),
    ]
}

fn message() -> impl Strategy<Value = Option<Message>> {
    prop_oneof![
        1 => Just(None),
        3 => (prop::collection::vec(any::<u8>(), 0..40), prop_oneof![Just(0), Just(1), any::<i32>()])
            .prop_map(|(p, t)| Some(Message::Log(Log { payload: Bytes::from(p), r#type: t }))),
        2 => (text(), any::<u64>(), any::<u64>())
            .prop_map(|(name, delta, total)| Some(Message::Counter(Counter { name, delta, total }))),
        2 => prop::collection::hash_map(text(), (text(), double()), 0..4).prop_map(|m| {
            let metrics = m.into_iter().map(|(k, (unit, value))| (k, GaugeValue { unit, value })).collect();
            Some(Message::Gauge(Gauge { metrics }))
        }),
        2 => (text(), any::<i64>(), any::<i64>())
            .prop_map(|(name, start, stop)| Some(Message::Timer(Timer { name, start, stop }))),
        2 => (text(), text()).prop_map(|(title, body)| Some(Message::Event(Event { title, body }))),
    ]
}

fn envelope() -> impl Strategy<Value = Envelope> {
    (
        any::<i64>(),
        text(),
        text(),
        prop::collection::hash_map(text(), value_strategy(), 0..4),
        prop::collection::hash_map(text(), text(), 0..4),
        message(),
    )
        .prop_map(
            |(timestamp, source_id, instance_id, deprecated_tags, tags, message)| Envelope {
                timestamp,
                source_id,
                instance_id,
                deprecated_tags,
                tags,
                message,
            },
        )
}

fn has_nan(env: &Envelope) -> bool {
    let in_tags = env
        .deprecated_tags
        .values()
        .any(|v| matches!(v.data, Some(Data::Decimal(d)) if d.is_nan()));
    let in_gauge = matches!(&env.message, Some(Message::Gauge(g)) if g.metrics.values().any(|m| m.value.is_nan()));
    in_tags || in_gauge
}

/// Writes `s` as a JSON string using only `\uXXXX` escapes (surrogate pairs above the
/// BMP): a second, independent spelling of every string.
fn escape_everything(s: &str) -> String {
    let mut out = String::from("\"");
    for unit in s.encode_utf16() {
        out.push_str(&format!("\\u{unit:04X}"));
    }
    out.push('"');
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn encode_decode_round_trips(envs in prop::collection::vec(envelope(), 0..4)) {
        let json = batch_to_json(&envs);
        // Valid JSON for an independent parser.
        let parsed: Json = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(parsed["batch"].as_array().map(Vec::len), Some(envs.len()));
        let back = batch_from_json(&json).unwrap();
        // Canonical output: re-encoding gives the same text.
        prop_assert_eq!(batch_to_json(&back.batch), json.clone());
        if !envs.iter().any(has_nan) {
            prop_assert_eq!(back.batch, envs);
        }
    }

    #[test]
    fn json_agrees_with_the_binary_form(env in envelope()) {
        // protojson and protobuf describe the same message.
        prop_assume!(!has_nan(&env));
        let bin = Envelope::decode(env.encode_to_vec().as_slice()).unwrap();
        prop_assert_eq!(envelope_from_json(&envelope_to_json(&bin)).unwrap(), env);
    }

    #[test]
    fn strings_decode_from_any_spelling(s in text()) {
        let escaped = format!("{{\"source_id\":{}}}", escape_everything(&s));
        prop_assert_eq!(&envelope_from_json(&escaped).unwrap().source_id, &s);
        let serde_spelling = format!("{{\"source_id\":{}}}", serde_json::to_string(&s).unwrap());
        prop_assert_eq!(&envelope_from_json(&serde_spelling).unwrap().source_id, &s);
    }

    #[test]
    fn integers_decode_as_numbers_or_strings(n in any::<i64>(), u in any::<u64>()) {
        for text in [
            format!(r#"{{"timestamp":{n},"counter":{{"total":{u}}}}}"#),
            format!(r#"{{"timestamp":"{n}","counter":{{"total":"{u}"}}}}"#),
        ] {
            let env = envelope_from_json(&text).unwrap();
            prop_assert_eq!(env.timestamp, n);
            prop_assert_eq!(env.message, Some(Message::Counter(Counter { total: u, ..Default::default() })));
        }
    }

    #[test]
    fn doubles_read_back_exactly(v in double()) {
        prop_assume!(!v.is_nan());
        let text = gauge_json(v);
        let back: f64 = match text.as_str() {
            "\"Infinity\"" => f64::INFINITY,
            "\"-Infinity\"" => f64::NEG_INFINITY,
            number => number.parse().unwrap(),
        };
        prop_assert_eq!(back.to_bits(), v.to_bits(), "{}", text);
        // Go's form: no `.0`, no `e` without a sign, exponent only outside [1e-6, 1e21).
        prop_assert!(!text.ends_with(".0") && !text.contains("e0") && !text.contains("e+0") && !text.contains("e-0"), "{}", text);
        if text.contains('e') {
            prop_assert!(text.contains("e+") || text.contains("e-"), "{}", text);
            prop_assert!(!(1e-6..1e21).contains(&v.abs()), "{}", text);
        }
    }
}
