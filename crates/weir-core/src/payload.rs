//! What makes two entries "the same" (DESIGN.md, Contracts: duplicate or conflict).
//!
//! A resend at a stored index is a duplicate when its payload equals the stored one:
//! the log bytes for a log, the encoded message body for a counter, gauge, timer or
//! event. Timestamps, tags, source and instance ids are not compared: a producer that
//! re-reads a file re-stamps it.

use prost::Message;
use weir_proto::lv2::{Envelope, envelope::Message as Body};

/// Whether `a` and `b` carry the same payload.
pub fn same_payload(a: &Envelope, b: &Envelope) -> bool {
    match (&a.message, &b.message) {
        (Some(Body::Log(x)), Some(Body::Log(y))) => x.payload == y.payload,
        (Some(Body::Counter(x)), Some(Body::Counter(y))) => x == y,
        (Some(Body::Gauge(x)), Some(Body::Gauge(y))) => x.encode_to_vec() == y.encode_to_vec(),
        (Some(Body::Timer(x)), Some(Body::Timer(y))) => x == y,
        (Some(Body::Event(x)), Some(Body::Event(y))) => x == y,
        (None, None) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_proto::lv2::{Counter, Log};

    fn log(payload: &[u8], ts: i64) -> Envelope {
        Envelope {
            timestamp: ts,
            message: Some(Body::Log(Log {
                payload: payload.to_vec().into(),
                r#type: 0,
            })),
            ..Default::default()
        }
    }

    #[test]
    fn timestamps_and_tags_are_not_compared() {
        let mut b = log(b"hello", 2);
        b.tags.insert("k".into(), "v".into());
        assert!(same_payload(&log(b"hello", 1), &b));
    }

    #[test]
    fn one_byte_differs_is_not_same() {
        assert!(!same_payload(&log(b"hello", 1), &log(b"hellp", 1)));
    }

    #[test]
    fn different_kinds_differ() {
        let c = Envelope {
            message: Some(Body::Counter(Counter::default())),
            ..Default::default()
        };
        assert!(!same_payload(&log(b"", 1), &c));
    }
}
