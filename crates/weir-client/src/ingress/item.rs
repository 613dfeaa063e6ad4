//! What an emit puts in the buffer, and the fixed part of envelopes it is built from.
//!
//! The caller's thread does as little as possible: it takes the time and moves the
//! message's own fields into an [`Item`]. The envelope around it (source id, instance
//! id, tags) is a [`Template`] encoded to protobuf once, when the client or emitter is
//! made, and the sender task splices it into every envelope it encodes
//! (`encode.rs`). An item of the client's default template carries no pointer to it,
//! so the hot path touches no shared reference count.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use prost::Message;
use weir_proto::lv2::{Envelope, GaugeValue, envelope::Message as Body};

/// Where envelopes come from: go-loggregator's `WithSourceInfo(source_id, source_type,
/// instance_id)`. The source type becomes the tag `source_type` (left out when empty).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceInfo {
    pub source_id: String,
    pub source_type: String,
    pub instance_id: String,
}

impl SourceInfo {
    /// Source info with these three values.
    pub fn new(
        source_id: impl Into<String>,
        source_type: impl Into<String>,
        instance_id: impl Into<String>,
    ) -> Self {
        SourceInfo {
            source_id: source_id.into(),
            source_type: source_type.into(),
            instance_id: instance_id.into(),
        }
    }
}

/// The fixed part of the envelopes of one emitter: source id, instance id and tags,
/// kept both as values (for `emit_event`) and encoded as protobuf fields 2, 8 and 9 of
/// `Envelope` (for the batched path).
#[derive(Debug)]
pub(crate) struct Template {
    source_id: String,
    instance_id: String,
    tags: HashMap<String, String>,
    encoded: Bytes,
}

impl Template {
    /// Tags are applied in order, a later value of a key winning: the client's tags,
    /// then `source_type` from `source`, then `extra` (the emitter's own), as
    /// go-loggregator applies the client's tags before the per-call options.
    pub(crate) fn new(
        source: Option<&SourceInfo>,
        client_tags: &[(String, String)],
        extra: &[(String, String)],
    ) -> Template {
        let mut tags: HashMap<String, String> = client_tags.iter().cloned().collect();
        let (mut source_id, mut instance_id) = (String::new(), String::new());
        if let Some(s) = source {
            source_id.clone_from(&s.source_id);
            instance_id.clone_from(&s.instance_id);
            if !s.source_type.is_empty() {
                tags.insert("source_type".into(), s.source_type.clone());
            }
        }
        tags.extend(extra.iter().cloned());
        let encoded = Envelope {
            source_id: source_id.clone(),
            instance_id: instance_id.clone(),
            tags: tags.clone(),
            ..Envelope::default()
        }
        .encode_to_vec()
        .into();
        Template {
            source_id,
            instance_id,
            tags,
            encoded,
        }
    }

    /// The protobuf bytes of the template's fields.
    pub(crate) fn encoded(&self) -> &[u8] {
        &self.encoded
    }

    /// A whole envelope of this template (for the unary path).
    pub(crate) fn envelope(&self, timestamp: i64, message: Body) -> Envelope {
        Envelope {
            timestamp,
            source_id: self.source_id.clone(),
            instance_id: self.instance_id.clone(),
            tags: self.tags.clone(),
            deprecated_tags: HashMap::new(),
            message: Some(message),
        }
    }
}

/// One emitted envelope waiting in the buffer.
pub(crate) struct Item {
    /// Unix nanoseconds, taken on the caller's thread.
    pub(crate) timestamp: i64,
    /// The emitter's template, or `None` for the client's default one.
    pub(crate) template: Option<Arc<Template>>,
    pub(crate) kind: Kind,
}

/// The message of an [`Item`].
pub(crate) enum Kind {
    Log {
        payload: Bytes,
        log_type: i32,
    },
    Counter {
        name: String,
        delta: u64,
        total: u64,
    },
    Gauge(HashMap<String, GaugeValue>),
    Timer {
        name: String,
        start: i64,
        stop: i64,
    },
    /// A whole envelope from `emit`, sent as it is (no template, no client tags).
    Raw(Box<Envelope>),
}
