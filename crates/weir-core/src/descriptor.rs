//! What a producer says about a stream when registering it.

use std::collections::BTreeMap;

use weir_proto::wv1;

/// A stream's descriptor: content type, tags and creation time.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Descriptor {
    /// MIME type of the payloads, e.g. `text/plain; charset=utf-8`.
    pub content_type: String,
    /// Free-form tags.
    pub tags: BTreeMap<String, String>,
    /// When the producer created the stream, Unix nanoseconds.
    pub created_ns: i64,
}

/// Content type of collector-owned Loggregator streams.
pub const LOGGREGATOR_CONTENT_TYPE: &str = "application/x-loggregator-envelope";

impl From<wv1::StreamDescriptor> for Descriptor {
    fn from(d: wv1::StreamDescriptor) -> Self {
        Descriptor {
            content_type: d.content_type,
            tags: d.tags.into_iter().collect(),
            created_ns: d.created_ns,
        }
    }
}

impl From<&Descriptor> for wv1::StreamDescriptor {
    fn from(d: &Descriptor) -> Self {
        wv1::StreamDescriptor {
            content_type: d.content_type.clone(),
            tags: d.tags.clone().into_iter().collect(),
            created_ns: d.created_ns,
        }
    }
}
