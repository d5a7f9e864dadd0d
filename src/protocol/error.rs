//! `FrameError`: everything that can be wrong with bytes a peer sent, and its reply code.
//!
//! The codec never panics on peer data; each way decoding can fail is a variant here. The
//! reply code follows what RabbitMQ answers (`rabbit_reader`, `rabbit_command_assembler`,
//! `rabbit_binary_parser`): a frame it cannot take apart, including method fields it cannot
//! decode and malformed UTF-8, is 501 frame-error; a heartbeat on a channel or a content
//! header it cannot pair with a method is 505 unexpected-frame. Where RabbitMQ has no
//! clean answer (it crashes the connection on an unknown method id or field type) we pick the
//! spec's meaning: 540 not-implemented for an unknown method, 502 syntax-error for an illegal
//! field value. The `Display` text is meant for the close's reply-text, after the code's name.

use super::reply::ReplyCode;

/// Why bytes from a peer could not be decoded. The connection must be closed with
/// [`FrameError::reply_code`]; the decode buffer is then in an unspecified state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The connection did not start with `AMQP\0\0\x09\x01`. The driver writes our protocol
    /// header back and closes the socket, without a close method.
    #[error("bad protocol header, only AMQP 0-9-1 is supported")]
    BadProtocolHeader,
    /// A frame type other than method (1), header (2), body (3) or heartbeat (8).
    #[error("unknown frame type {0}")]
    UnknownFrameType(u8),
    /// The octet after the payload was not 0xCE: the peer lost frame sync.
    #[error("invalid frame end marker 0x{0:02x}, expected 0xce")]
    BadFrameEnd(u8),
    /// The frame (its 8 octets of overhead included) is larger than the negotiated frame_max.
    #[error("frame of {size} bytes exceeds frame_max of {max}")]
    TooLarge {
        /// Whole frame size: 7-byte header, payload, end octet.
        size: u64,
        /// The limit in force.
        max: u32,
    },
    /// A heartbeat frame on a channel other than 0.
    #[error("heartbeat frame on channel {0}")]
    HeartbeatOnChannel(u16),
    /// A heartbeat frame whose payload is not empty.
    #[error("heartbeat frame with a {0}-byte payload")]
    BadHeartbeat(u32),
    /// A payload that ends before all of its fields (method arguments, content header,
    /// properties, field table).
    #[error("cannot decode {0}: its fields run past the end of the frame")]
    Truncated(&'static str),
    /// A payload with bytes left over after its last field.
    #[error("cannot decode {what}: {extra} unexpected bytes after the last field")]
    TrailingBytes {
        /// What was being decoded.
        what: &'static str,
        /// How many bytes were left.
        extra: usize,
    },
    /// A short string that is not valid UTF-8.
    #[error("malformed UTF-8 in a short string of {0}")]
    NotUtf8(&'static str),
    /// A method frame whose class and method ids name no method we know.
    #[error("unknown method, class {class_id} method {method_id}")]
    UnknownMethod {
        /// The class id from the frame.
        class_id: u16,
        /// The method id from the frame.
        method_id: u16,
    },
    /// A field-table or array value with a type tag outside RabbitMQ's errata list.
    #[error("unknown field value type 0x{0:02x} in a field table")]
    UnknownFieldType(u8),
    /// Field tables or arrays nested deeper than the codec allows.
    #[error("field tables nested deeper than {0} levels")]
    TooDeep(usize),
    /// A content header whose class has no content (only basic, 60, has).
    #[error("content header for class {0}, which has no content")]
    UnexpectedContentClass(u16),
    /// A content header with a non-zero weight (the spec says it must be zero).
    #[error("content header with non-zero weight {0}")]
    NonZeroWeight(u16),
    /// Some other illegal field value.
    #[error("{0}")]
    Syntax(&'static str),
}

impl FrameError {
    /// The reply code to close the connection with (all of these are hard errors).
    pub fn reply_code(&self) -> ReplyCode {
        match self {
            FrameError::BadProtocolHeader
            | FrameError::UnknownFrameType(_)
            | FrameError::BadFrameEnd(_)
            | FrameError::TooLarge { .. }
            | FrameError::BadHeartbeat(_)
            | FrameError::Truncated(_)
            | FrameError::TrailingBytes { .. }
            | FrameError::NotUtf8(_) => ReplyCode::FrameError,
            FrameError::UnknownFieldType(_) | FrameError::TooDeep(_) | FrameError::Syntax(_) => {
                ReplyCode::SyntaxError
            }
            FrameError::HeartbeatOnChannel(_)
            | FrameError::UnexpectedContentClass(_)
            | FrameError::NonZeroWeight(_) => ReplyCode::UnexpectedFrame,
            FrameError::UnknownMethod { .. } => ReplyCode::NotImplemented,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_codes_and_texts() {
        assert_eq!(FrameError::BadFrameEnd(0).reply_code().code(), 501);
        assert_eq!(FrameError::UnknownFieldType(b'Z').reply_code().code(), 502);
        assert_eq!(FrameError::HeartbeatOnChannel(3).reply_code().code(), 505);
        let unknown = FrameError::UnknownMethod {
            class_id: 60,
            method_id: 999,
        };
        assert_eq!(unknown.reply_code(), ReplyCode::NotImplemented);
        assert_eq!(unknown.to_string(), "unknown method, class 60 method 999");
        assert_eq!(
            FrameError::BadFrameEnd(0x41).to_string(),
            "invalid frame end marker 0x41, expected 0xce"
        );
        assert!(FrameError::TooDeep(64).reply_code().is_hard());
    }
}
