//! A stream's public state in the forms readers get: [`wv1::StreamInfo`] over gRPC,
//! JSON over HTTP. Neither carries the secret: the store never returns it.

use serde_json::{Value, json};
use weir_proto::wv1;
use weir_store::StreamState;

/// The gRPC form.
pub fn stream_info(state: &StreamState) -> wv1::StreamInfo {
    wv1::StreamInfo {
        path: state.path.clone(),
        descriptor: Some(wv1::StreamDescriptor::from(&state.descriptor)),
        next_index: state.next_index,
        low_water: state.low_water,
        terminal_count: state.terminal_count,
        registered_ns: state.registered_ns,
    }
}

/// The JSON form:
///
/// ```json
/// {"path":"a/+/b",
///  "descriptor":{"content_type":"text/plain; charset=utf-8","tags":{},"created_ns":1},
///  "next_index":10,"low_water":0,"terminal_count":null,"registered_ns":2,
///  "collector_owned":false}
/// ```
pub fn stream_json(state: &StreamState) -> Value {
    let d = &state.descriptor;
    json!({
        "path": state.path,
        "descriptor": {
            "content_type": d.content_type,
            "tags": d.tags,
            "created_ns": d.created_ns,
        },
        "next_index": state.next_index,
        "low_water": state.low_water,
        "terminal_count": state.terminal_count,
        "registered_ns": state.registered_ns,
        "collector_owned": state.collector_owned,
    })
}
