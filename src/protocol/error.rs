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
    #[error("type {0}, all octets = <<>>: unknown_frame")]
    UnknownFrameType(u8),
    /// The octet after the payload was not 0xCE: the peer lost frame sync.
    #[error("type {kind}, {octets}: {{invalid_frame_end_marker,{end}}}")]
    BadFrameEnd {
        /// The frame's type octet.
        kind: u8,
        /// The start of its payload.
        octets: Octets,
        /// The octet found where 0xCE belongs.
        end: u8,
    },
    /// The payload is larger than the negotiated frame_max. (RabbitMQ accepts payloads of up
    /// to frame_max bytes, 8 more than the spec's limit on the whole frame, because many
    /// clients count frame_max that way; its text names the spec's limit, frame_max - 8.)
    #[error("type {kind}, all octets = <<>>: {{frame_too_large,{size},{}}}", u64::from(*.max).saturating_sub(8))]
    TooLarge {
        /// The frame's type octet.
        kind: u8,
        /// The payload size the frame header announced.
        size: u64,
        /// The frame_max in force.
        max: u32,
    },
    /// A frame that may not appear where it did: a content header or body on channel 0, a
    /// heartbeat on another channel or with a payload (RabbitMQ's `unexpected_frame`).
    #[error("type {kind}, {octets}")]
    UnexpectedFrame {
        /// The frame's type octet.
        kind: u8,
        /// The start of its payload.
        octets: Octets,
    },
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
    /// A content header with a non-zero weight (the spec says it must be zero).
    #[error("content header with non-zero weight {0}")]
    NonZeroWeight(u16),
    /// Some other illegal field value.
    #[error("{0}")]
    Syntax(&'static str),
}

/// The first octets of a payload as RabbitMQ prints them in frame errors: `all octets =
/// <<...>>` for a payload of up to 16 bytes, else `first octets = <<...>>` of its first 16,
/// in Erlang's notation (`<<"text">>` when every byte is printable ASCII, else decimal bytes:
/// `<<0,60,0,0>>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Octets {
    head: Vec<u8>,
    all: bool,
}

impl Octets {
    /// How many bytes RabbitMQ shows (`rabbit_reader:payload_snippet`).
    const SHOWN: usize = 16;

    /// The start of `payload`.
    pub fn of(payload: &[u8]) -> Self {
        let n = payload.len().min(Self::SHOWN);
        Octets {
            head: payload[..n].to_vec(),
            all: payload.len() <= Self::SHOWN,
        }
    }
}

impl std::fmt::Display for Octets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.all { "all" } else { "first" })?;
        f.write_str(" octets = <<")?;
        let printable = |b: u8| (0x20..0x7f).contains(&b) || b"\n\r\t\x0b\x08\x0c\x1b".contains(&b);
        if !self.head.is_empty() && self.head.iter().all(|&b| printable(b)) {
            f.write_str("\"")?;
            for &b in &self.head {
                match b {
                    b'"' => f.write_str("\\\"")?,
                    b'\\' => f.write_str("\\\\")?,
                    b'\n' => f.write_str("\\n")?,
                    b'\r' => f.write_str("\\r")?,
                    b'\t' => f.write_str("\\t")?,
                    0x0b => f.write_str("\\v")?,
                    0x08 => f.write_str("\\b")?,
                    0x0c => f.write_str("\\f")?,
                    0x1b => f.write_str("\\e")?,
                    _ => write!(f, "{}", char::from(b))?,
                }
            }
            f.write_str("\"")?;
        } else {
            for (i, b) in self.head.iter().enumerate() {
                if i > 0 {
                    f.write_str(",")?;
                }
                write!(f, "{b}")?;
            }
        }
        f.write_str(">>")
    }
}

impl FrameError {
    /// The reply code to close the connection with (all of these are hard errors).
    pub fn reply_code(&self) -> ReplyCode {
        match self {
            FrameError::BadProtocolHeader
            | FrameError::UnknownFrameType(_)
            | FrameError::BadFrameEnd { .. }
            | FrameError::TooLarge { .. }
            | FrameError::Truncated(_)
            | FrameError::TrailingBytes { .. }
            | FrameError::NotUtf8(_) => ReplyCode::FrameError,
            FrameError::UnknownFieldType(_) | FrameError::TooDeep(_) | FrameError::Syntax(_) => {
                ReplyCode::SyntaxError
            }
            FrameError::UnexpectedFrame { .. } | FrameError::NonZeroWeight(_) => {
                ReplyCode::UnexpectedFrame
            }
            FrameError::UnknownMethod { .. } => ReplyCode::NotImplemented,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_codes_and_texts() {
        assert_eq!(FrameError::UnknownFrameType(9).reply_code().code(), 501);
        assert_eq!(FrameError::UnknownFieldType(b'Z').reply_code().code(), 502);
        let unexpected = FrameError::UnexpectedFrame {
            kind: 8,
            octets: Octets::of(b""),
        };
        assert_eq!(unexpected.reply_code().code(), 505);
        assert_eq!(unexpected.to_string(), "type 8, all octets = <<>>");
        let unknown = FrameError::UnknownMethod {
            class_id: 60,
            method_id: 999,
        };
        assert_eq!(unknown.reply_code(), ReplyCode::NotImplemented);
        assert_eq!(unknown.to_string(), "unknown method, class 60 method 999");
        let end = FrameError::BadFrameEnd {
            kind: 8,
            octets: Octets::of(b""),
            end: 0,
        };
        assert_eq!(
            end.to_string(),
            "type 8, all octets = <<>>: {invalid_frame_end_marker,0}"
        );
        let large = FrameError::TooLarge {
            kind: 3,
            size: 4097,
            max: 4096,
        };
        assert_eq!(
            large.to_string(),
            "type 3, all octets = <<>>: {frame_too_large,4097,4088}"
        );
        assert_eq!(
            FrameError::UnknownFrameType(9).to_string(),
            "type 9, all octets = <<>>: unknown_frame"
        );
        assert!(FrameError::TooDeep(64).reply_code().is_hard());
    }

    #[test]
    fn octets_are_printed_as_rabbitmq_prints_them() {
        // Recorded from RabbitMQ 3.10 (tests/fixtures/rabbitmq-3.10/compat.json).
        assert_eq!(Octets::of(b"x").to_string(), "all octets = <<\"x\">>");
        assert_eq!(
            Octets::of(b"\x00\x3c\0\0\0\0\0\0\0\0\0\x01\0\0").to_string(),
            "all octets = <<0,60,0,0,0,0,0,0,0,0,0,1,0,0>>"
        );
        assert_eq!(
            Octets::of(b"a\"b\\c\nd").to_string(),
            "all octets = <<\"a\\\"b\\\\c\\nd\">>"
        );
        assert_eq!(
            Octets::of(&[b'y'; 20]).to_string(),
            format!("first octets = <<\"{}\">>", "y".repeat(16))
        );
    }
}
