//! The gRPC codec of every weir service: prost encoding, with a decoder that answers a
//! request it cannot decode with `InvalidArgument` (tonic's stock codec answers
//! `Internal`, which clients would retry as if the server were at fault).
//!
//! A status made here carries the metadata key [`MALFORMED_REQUEST_KEY`] so servers can
//! count malformed requests without parsing messages.

use std::marker::PhantomData;

use prost::Message;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Code, Status};

/// Metadata key set (to `"1"`) on statuses of requests that could not be decoded.
pub const MALFORMED_REQUEST_KEY: &str = "weir-malformed-request";

/// Builds the `InvalidArgument` status of a request that could not be decoded, marked
/// with [`MALFORMED_REQUEST_KEY`].
pub fn malformed_request(message: impl Into<String>) -> Status {
    let mut metadata = MetadataMap::new();
    metadata.insert(MALFORMED_REQUEST_KEY, MetadataValue::from_static("1"));
    Status::with_metadata(Code::InvalidArgument, message, metadata)
}

/// A prost codec whose decode errors are `InvalidArgument` (see the module docs).
#[derive(Debug, Clone)]
pub struct WeirCodec<T, U> {
    _pd: PhantomData<(T, U)>,
}

impl<T, U> Default for WeirCodec<T, U> {
    fn default() -> Self {
        WeirCodec { _pd: PhantomData }
    }
}

impl<T, U> Codec for WeirCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = tonic_prost::ProstEncoder<T>;
    type Decoder = WeirDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        tonic_prost::ProstEncoder::new(BufferSettings::default())
    }

    fn decoder(&mut self) -> Self::Decoder {
        WeirDecoder { _pd: PhantomData }
    }
}

/// Decodes `U` with prost; a decode error becomes [`malformed_request`].
#[derive(Debug, Clone)]
pub struct WeirDecoder<U> {
    _pd: PhantomData<U>,
}

impl<U: Message + Default> Decoder for WeirDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        U::decode(buf)
            .map(Some)
            .map_err(|e| malformed_request(format!("malformed request: {e}")))
    }
}
