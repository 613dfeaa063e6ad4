//! An event as a Loggregator v2 `Event` envelope (how it is stored and published) and
//! as JSON (how `GET /v1/events` answers).
//!
//! | event | envelope |
//! | --- | --- |
//! | `kind` | `event.title` |
//! | `message` | `event.body` |
//! | `timestamp_ns` | `timestamp` |
//! | `member_id` | `instance_id` |
//! | `fields` | `tags` |
//! | | `source_id` = [`SOURCE_ID`] |

use std::collections::BTreeMap;

use serde_json::{Value, json};
use weir_core::Envelope;
use weir_core::event_queue::Event;
use weir_proto::lv2::{self, envelope::Message as Body};

use super::SOURCE_ID;

/// The envelope of `event` (source id [`SOURCE_ID`]).
pub fn to_envelope(event: &Event) -> Envelope {
    Envelope {
        timestamp: event.timestamp_ns,
        source_id: SOURCE_ID.to_string(),
        instance_id: event.member_id.clone(),
        tags: event
            .fields
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        message: Some(Body::Event(lv2::Event {
            title: event.kind.clone(),
            body: event.message.clone(),
        })),
        ..Default::default()
    }
}

/// The event an envelope carries, `None` when it is not an `Event` envelope.
pub fn from_envelope(envelope: &Envelope) -> Option<Event> {
    let Some(Body::Event(e)) = &envelope.message else {
        return None;
    };
    Some(Event {
        kind: e.title.clone(),
        message: e.body.clone(),
        timestamp_ns: envelope.timestamp,
        member_id: envelope.instance_id.clone(),
        fields: envelope
            .tags
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<BTreeMap<_, _>>(),
    })
}

/// An event as JSON: `index` (its place in the events stream), `type`, `message`,
/// `timestamp` (RFC 3339), `timestamp_ns`, `member`, `fields`.
pub fn to_json(index: u64, event: &Event) -> Value {
    json!({
        "index": index,
        "type": event.kind,
        "message": event.message,
        "timestamp": weir_core::json::format_rfc3339_nanos(event.timestamp_ns),
        "timestamp_ns": event.timestamp_ns,
        "member": event.member_id,
        "fields": event.fields,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_an_envelope() {
        let event = Event {
            kind: "stream_conflict".into(),
            message: "conflict at 3".into(),
            timestamp_ns: 1_700_000_000_000_000_000,
            member_id: "node-1".into(),
            fields: BTreeMap::from([("stream".to_string(), "a/+/b".to_string())]),
        };
        let env = to_envelope(&event);
        assert_eq!(env.source_id, "weir");
        assert_eq!(from_envelope(&env), Some(event));
        assert_eq!(from_envelope(&Envelope::default()), None);
    }
}
