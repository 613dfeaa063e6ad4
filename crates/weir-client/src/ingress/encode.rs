//! Encoding items into protobuf `EnvelopeBatch` bytes, ready to send.
//!
//! An `EnvelopeBatch` is `repeated Envelope batch = 1`, so its encoding is simply the
//! concatenation of one length-delimited field-1 record per envelope. Each record is
//! written as: the timestamp (field 1), the template's pre-encoded source id, instance
//! id and tags (fields 2, 8, 9), then the message (log 4, counter 5, gauge 6, timer 7).
//! Protobuf allows fields in any order, so this decodes to exactly the envelope
//! `Template::envelope` would build (a test checks it). Batches stay encoded until
//! they are confirmed: a resend costs no re-encoding.

use bytes::{Bytes, BytesMut};
use prost::encoding::{self, WireType};
use tokio::time::Instant;
use weir_proto::lv2::{Counter, Gauge, Log, Timer};

use super::item::{Item, Kind, Template};

/// Encoded envelopes, sent as one `EnvelopeBatch` message.
#[derive(Debug, Clone)]
pub(crate) struct Batch {
    /// The encoded `EnvelopeBatch`.
    pub(crate) bytes: Bytes,
    /// Envelopes in it.
    pub(crate) count: u64,
}

/// Collects items into a batch, cut at `max_count` envelopes or once it holds
/// `max_bytes` (so a batch is at most one envelope over `max_bytes`).
pub(crate) struct BatchBuilder {
    buf: BytesMut,
    count: usize,
    max_count: usize,
    max_bytes: usize,
    started: Option<Instant>,
}

impl BatchBuilder {
    pub(crate) fn new(max_count: usize, max_bytes: usize) -> Self {
        BatchBuilder {
            buf: BytesMut::new(),
            count: 0,
            max_count: max_count.max(1),
            max_bytes: max_bytes.max(1),
            started: None,
        }
    }

    /// Encodes one more item (`default` is the client's template).
    pub(crate) fn push(&mut self, item: Item, default: &Template) {
        if self.count == 0 {
            self.started = Some(Instant::now());
        }
        encode_item(item, default, &mut self.buf);
        self.count += 1;
    }

    pub(crate) fn is_full(&self) -> bool {
        self.count >= self.max_count || self.buf.len() >= self.max_bytes
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Envelopes it holds.
    pub(crate) fn len(&self) -> usize {
        self.count
    }

    /// Envelopes still wanted to fill it (at least 1).
    pub(crate) fn room(&self) -> usize {
        self.max_count.saturating_sub(self.count).max(1)
    }

    /// When its first envelope arrived.
    pub(crate) fn started(&self) -> Option<Instant> {
        self.started
    }

    /// The batch so far, if any, leaving the builder empty.
    pub(crate) fn take(&mut self) -> Option<Batch> {
        if self.count == 0 {
            return None;
        }
        let batch = Batch {
            bytes: self.buf.split().freeze(),
            count: self.count as u64,
        };
        self.count = 0;
        self.started = None;
        Some(batch)
    }
}

/// Appends `item` as one field-1 record of an `EnvelopeBatch`.
pub(crate) fn encode_item(item: Item, default: &Template, buf: &mut BytesMut) {
    let template = item.template.as_deref().unwrap_or(default);
    let ts = item.timestamp;
    let ts_len = if ts != 0 {
        encoding::int64::encoded_len(1, &ts)
    } else {
        0
    };
    // The message as its prost type, and its field number in Envelope.
    enum M {
        Log(Log),
        Counter(Counter),
        Gauge(Gauge),
        Timer(Timer),
    }
    let (tag, message) = match item.kind {
        Kind::Raw(env) => {
            encoding::message::encode(1, &*env, buf);
            return;
        }
        Kind::Log { payload, log_type } => (
            4,
            M::Log(Log {
                payload,
                r#type: log_type,
            }),
        ),
        Kind::Counter { name, delta, total } => (5, M::Counter(Counter { name, delta, total })),
        Kind::Gauge(metrics) => (6, M::Gauge(Gauge { metrics })),
        Kind::Timer { name, start, stop } => (7, M::Timer(Timer { name, start, stop })),
    };
    let body_len = match &message {
        M::Log(m) => encoding::message::encoded_len(tag, m),
        M::Counter(m) => encoding::message::encoded_len(tag, m),
        M::Gauge(m) => encoding::message::encoded_len(tag, m),
        M::Timer(m) => encoding::message::encoded_len(tag, m),
    };
    let inner = ts_len + template.encoded().len() + body_len;
    buf.reserve(inner + 16);
    encoding::encode_key(1, WireType::LengthDelimited, buf);
    encoding::encode_varint(inner as u64, buf);
    if ts != 0 {
        encoding::int64::encode(1, &ts, buf);
    }
    buf.extend_from_slice(template.encoded());
    match &message {
        M::Log(m) => encoding::message::encode(tag, m, buf),
        M::Counter(m) => encoding::message::encode(tag, m, buf),
        M::Gauge(m) => encoding::message::encode(tag, m, buf),
        M::Timer(m) => encoding::message::encode(tag, m, buf),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use prost::Message;
    use weir_proto::lv2::{Envelope, EnvelopeBatch, GaugeValue, envelope::Message as Body};

    use super::*;
    use crate::ingress::item::SourceInfo;

    fn template() -> Template {
        Template::new(
            Some(&SourceInfo::new("app", "APP/PROC/WEB", "3")),
            &[("deployment".into(), "cf".into())],
            &[("extra".into(), "1".into())],
        )
    }

    #[test]
    fn hand_encoding_decodes_to_the_built_envelope() {
        let default = template();
        let other = Arc::new(Template::new(None, &[], &[]));
        let gauge: HashMap<String, GaugeValue> = [(
            "mem".to_string(),
            GaugeValue {
                unit: "bytes".into(),
                value: 12.5,
            },
        )]
        .into();
        let raw = Envelope {
            timestamp: 9,
            source_id: "raw".into(),
            ..Default::default()
        };
        let items = vec![
            (
                Item {
                    timestamp: 1_700_000_000_000_000_000,
                    template: None,
                    kind: Kind::Log {
                        payload: Bytes::from_static(b"hello"),
                        log_type: 1,
                    },
                },
                default.envelope(
                    1_700_000_000_000_000_000,
                    Body::Log(Log {
                        payload: Bytes::from_static(b"hello"),
                        r#type: 1,
                    }),
                ),
            ),
            (
                Item {
                    timestamp: 0,
                    template: Some(other.clone()),
                    kind: Kind::Counter {
                        name: "c".into(),
                        delta: 0,
                        total: 7,
                    },
                },
                other.envelope(
                    0,
                    Body::Counter(Counter {
                        name: "c".into(),
                        delta: 0,
                        total: 7,
                    }),
                ),
            ),
            (
                Item {
                    timestamp: 5,
                    template: None,
                    kind: Kind::Gauge(gauge.clone()),
                },
                default.envelope(5, Body::Gauge(Gauge { metrics: gauge })),
            ),
            (
                Item {
                    timestamp: 6,
                    template: None,
                    kind: Kind::Timer {
                        name: "t".into(),
                        start: 1,
                        stop: 2,
                    },
                },
                default.envelope(
                    6,
                    Body::Timer(Timer {
                        name: "t".into(),
                        start: 1,
                        stop: 2,
                    }),
                ),
            ),
            (
                Item {
                    timestamp: 123,
                    template: None,
                    kind: Kind::Raw(Box::new(raw.clone())),
                },
                raw,
            ),
        ];
        let mut builder = BatchBuilder::new(100, 1 << 20);
        let mut want = Vec::new();
        for (item, env) in items {
            builder.push(item, &default);
            want.push(env);
        }
        let batch = builder.take().unwrap();
        assert_eq!(batch.count, 5);
        let decoded = EnvelopeBatch::decode(batch.bytes).unwrap();
        assert_eq!(decoded.batch, want);
        assert_eq!(want[0].tags.get("source_type").unwrap(), "APP/PROC/WEB");
        assert_eq!(want[0].tags.get("deployment").unwrap(), "cf");
        assert!(builder.take().is_none());
    }

    #[test]
    fn cuts_by_count_and_by_bytes() {
        let default = Template::new(None, &[], &[]);
        let log = |n: usize| Item {
            timestamp: 1,
            template: None,
            kind: Kind::Log {
                payload: Bytes::from(vec![b'x'; n]),
                log_type: 0,
            },
        };
        let mut b = BatchBuilder::new(3, 1 << 20);
        for _ in 0..3 {
            assert!(!b.is_full());
            b.push(log(10), &default);
        }
        assert!(b.is_full());
        assert_eq!(b.take().unwrap().count, 3);

        let mut b = BatchBuilder::new(100, 1000);
        b.push(log(600), &default);
        assert!(!b.is_full());
        b.push(log(600), &default);
        assert!(b.is_full(), "over max_bytes after the second");
        assert_eq!(b.room(), 98);
    }
}
