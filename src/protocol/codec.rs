//! `AmqpCodec`: the frame codec as a tokio-util `Decoder` / `Encoder`, for the server's
//! framed socket. It only adapts [`frame::decode`] and [`frame::encode`]; the codec itself
//! stays sans-IO. The protocol header before the first frame is read with
//! [`frame::decode_protocol_header`], not through this codec.

use std::io;

use bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder};

use super::error::FrameError;
use super::frame::{self, FRAME_MIN_SIZE, Frame};

/// Frames in, frames out, with the negotiated frame_max (0 = no limit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AmqpCodec {
    /// The largest frame accepted, 8 bytes of overhead included. Start at
    /// [`FRAME_MIN_SIZE`] and raise it to the value agreed in connection.tune-ok.
    pub frame_max: u32,
}

impl Default for AmqpCodec {
    fn default() -> Self {
        AmqpCodec {
            frame_max: FRAME_MIN_SIZE,
        }
    }
}

/// What the framed stream can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The peer sent a bad frame; close the connection with its reply code.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The socket failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl Decoder for AmqpCodec {
    type Item = Frame;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        Ok(frame::decode(src, self.frame_max)?)
    }
}

impl Encoder<Frame> for AmqpCodec {
    type Error = CodecError;

    fn encode(&mut self, item: Frame, dst: &mut BytesMut) -> Result<(), CodecError> {
        frame::encode(&item, dst);
        Ok(())
    }
}

impl Encoder<&Frame> for AmqpCodec {
    type Error = CodecError;

    fn encode(&mut self, item: &Frame, dst: &mut BytesMut) -> Result<(), CodecError> {
        frame::encode(item, dst);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::method::{BasicQos, Method};
    use super::*;

    #[test]
    fn encodes_and_decodes_through_the_traits() {
        let mut codec = AmqpCodec::default();
        let frame = Frame::Method {
            channel: 1,
            method: Method::BasicQos(BasicQos {
                prefetch_size: 0,
                prefetch_count: 10,
                global: false,
            }),
        };
        let mut buf = BytesMut::new();
        codec.encode(&frame, &mut buf).expect("encode");
        codec.encode(Frame::Heartbeat, &mut buf).expect("encode");
        assert_eq!(codec.decode(&mut buf).expect("decode"), Some(frame));
        assert_eq!(
            codec.decode(&mut buf).expect("decode"),
            Some(Frame::Heartbeat)
        );
        assert_eq!(codec.decode(&mut buf).expect("decode"), None);
    }

    #[test]
    fn frame_errors_surface_typed() {
        let mut codec = AmqpCodec::default();
        let mut buf = BytesMut::from(&b"\x09\x00\x00\x00\x00\x00\x00\xce"[..]);
        match codec.decode(&mut buf) {
            Err(CodecError::Frame(e)) => assert_eq!(e, FrameError::UnknownFrameType(9)),
            other => panic!("unexpected {other:?}"),
        }
    }
}
