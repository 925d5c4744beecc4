//! The gRPC codec of every Aerie service: protobuf through prost, encoding each
//! message into a contiguous scratch buffer and handing it to tonic in one copy.
//!
//! prost writes a message field by field, often a byte at a time. Into tonic's
//! `EncodeBuf` every such write is an out-of-line call with its own capacity check
//! (about a third of storage's CPU answering one-series fragments, and much of the
//! collector's encoding of Write batches); into a `Vec` the same writes inline.
//! Decoding reads from one contiguous slice for the same reason.

use std::cell::RefCell;
use std::marker::PhantomData;

use prost::Message;
use prost::bytes::{Buf, BufMut};
use tonic::Status;
use tonic::codec::{BufferSettings, DecodeBuf, Decoder, EncodeBuf, Encoder};

/// Largest scratch buffer kept between messages on a thread.
const KEEP_SCRATCH: usize = 1 << 20;

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Protobuf messages `T` out, `U` in.
#[derive(Debug, Clone)]
pub struct Codec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for Codec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> tonic::codec::Codec for Codec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = MessageEncoder<T>;
    type Decoder = MessageDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        MessageEncoder(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        MessageDecoder(PhantomData)
    }
}

/// Encodes `T` through a scratch `Vec`.
#[derive(Debug, Clone)]
pub struct MessageEncoder<T>(PhantomData<T>);

impl<T: Message> Encoder for MessageEncoder<T> {
    type Item = T;
    type Error = Status;

    fn encode(&mut self, item: T, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        SCRATCH.with(|scratch| {
            let mut v = scratch.borrow_mut();
            v.clear();
            v.reserve(item.encoded_len());
            item.encode(&mut *v)
                .map_err(|e| Status::internal(format!("cannot encode a message: {e}")))?;
            buf.reserve(v.len());
            buf.put_slice(&v);
            if v.capacity() > KEEP_SCRATCH {
                *v = Vec::new();
            }
            Ok(())
        })
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::default()
    }
}

/// Decodes `U` from one contiguous slice.
#[derive(Debug, Clone)]
pub struct MessageDecoder<U>(PhantomData<U>);

impl<U: Message + Default> Decoder for MessageDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        let bytes = buf.copy_to_bytes(buf.remaining());
        U::decode(&bytes[..])
            .map(Some)
            .map_err(|e| Status::internal(format!("cannot decode a message: {e}")))
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::default()
    }
}
