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

use serde_json::{Value, json};
use weir_core::Envelope;
use weir_core::event_queue::Event;

#[cfg(doc)]
use super::SOURCE_ID;

/// The envelope of `event` (source id [`SOURCE_ID`]); see [`Event::to_envelope`].
pub fn to_envelope(event: &Event) -> Envelope {
    event.to_envelope()
}

/// The event an envelope carries, `None` when it is not an `Event` envelope.
pub fn from_envelope(envelope: &Envelope) -> Option<Event> {
    Event::from_envelope(envelope)
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
    use std::collections::BTreeMap;

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
