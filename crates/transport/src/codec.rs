//! A tonic codec for serde types: each gRPC message is one JSON document. The protocol's
//! messages are serde types shared with the in-process transport, so no .proto is needed.

use std::marker::PhantomData;

use bytes::{Buf, BufMut};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

/// JSON in, JSON out.
#[derive(Debug)]
pub struct JsonCodec<E, D>(PhantomData<(E, D)>);

impl<E, D> Default for JsonCodec<E, D> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

/// Encodes one message.
#[derive(Debug)]
pub struct JsonEncoder<T>(PhantomData<T>);

/// Decodes one message.
#[derive(Debug)]
pub struct JsonDecoder<T>(PhantomData<T>);

impl<T: Serialize> Encoder for JsonEncoder<T> {
    type Item = T;
    type Error = Status;

    fn encode(&mut self, item: T, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        serde_json::to_writer(dst.writer(), &item).map_err(|e| Status::internal(format!("encoding a message: {e}")))
    }
}

impl<T: DeserializeOwned> Decoder for JsonDecoder<T> {
    type Item = T;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<T>, Status> {
        let item = serde_json::from_reader(src.reader())
            .map_err(|e| Status::invalid_argument(format!("a message that is not valid: {e}")))?;
        Ok(Some(item))
    }
}

impl<E, D> Codec for JsonCodec<E, D>
where
    E: Serialize + Send + 'static,
    D: DeserializeOwned + Send + 'static,
{
    type Encode = E;
    type Decode = D;
    type Encoder = JsonEncoder<E>;
    type Decoder = JsonDecoder<D>;

    fn encoder(&mut self) -> Self::Encoder {
        JsonEncoder(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        JsonDecoder(PhantomData)
    }
}
