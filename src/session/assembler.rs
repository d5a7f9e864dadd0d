//! Content assembly: a content-bearing method (basic.publish), then its content header, then
//! body frames until the declared size is reached. Like RabbitMQ's rabbit_command_assembler, a
//! pure state machine: frames in, a finished command or an error out.

use crate::protocol::ReplyCode;
use crate::protocol::frame::ContentHeader;
use crate::protocol::method::BasicPublish;
use bytes::{Bytes, BytesMut};

use super::error::AmqpError;

/// A fully assembled publish.
#[derive(Debug)]
pub(crate) struct Publish {
    /// The method.
    pub(crate) method: BasicPublish,
    /// The content header.
    pub(crate) header: ContentHeader,
    /// The body (zero-copy when it came in one frame).
    pub(crate) body: Bytes,
}

// One per channel and moved only on frame boundaries: boxing would cost an allocation per publish.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Default)]
enum State {
    #[default]
    Idle,
    Header(BasicPublish),
    Body {
        method: BasicPublish,
        header: ContentHeader,
        first: Option<Bytes>,
        rest: Option<BytesMut>,
        received: u64,
    },
}

/// Per-channel assembly state.
#[derive(Debug, Default)]
pub(crate) struct Assembler {
    state: State,
}

/// A 505 about the publish in progress: RabbitMQ names its method (basic.publish).
fn unexpected(detail: &str) -> AmqpError {
    AmqpError::connection(ReplyCode::UnexpectedFrame, detail)
        .on(BasicPublish::CLASS_ID, BasicPublish::METHOD_ID)
}

/// RabbitMQ's texts (`rabbit_command_assembler`), recorded in
/// `tests/fixtures/rabbitmq-3.10/compat.json`.
const EXPECTED_HEADER: &str =
    "expected content header for class 60, got non content header frame instead";
const EXPECTED_BODY: &str = "expected content body, got non content body frame instead";
const EXPECTED_METHOD: &str = "expected method frame, got non method frame instead";

impl Assembler {
    /// True when no publish is in progress (a method frame is expected).
    pub(crate) fn is_idle(&self) -> bool {
        matches!(self.state, State::Idle)
    }

    /// The error for a method frame while content is expected (the caller checked that the
    /// assembler is not idle).
    pub(crate) fn unexpected_frame(&self) -> AmqpError {
        match self.state {
            State::Body { .. } => unexpected(EXPECTED_BODY),
            _ => unexpected(EXPECTED_HEADER),
        }
    }

    /// Starts a publish; the header comes next.
    pub(crate) fn start(&mut self, method: BasicPublish) {
        self.state = State::Header(method);
    }

    /// Drops any publish in progress (channel closed).
    pub(crate) fn reset(&mut self) {
        self.state = State::Idle;
    }

    /// A content header frame. Returns the publish when the body is empty.
    pub(crate) fn header(&mut self, header: ContentHeader) -> Result<Option<Publish>, AmqpError> {
        match std::mem::take(&mut self.state) {
            State::Header(method) => {
                if header.class_id != BasicPublish::CLASS_ID {
                    return Err(unexpected(&format!(
                        "expected content header for class 60, got one for class {} instead",
                        header.class_id
                    )));
                }
                if header.body_size == 0 {
                    return Ok(Some(Publish {
                        method,
                        header,
                        body: Bytes::new(),
                    }));
                }
                self.state = State::Body {
                    method,
                    header,
                    first: None,
                    rest: None,
                    received: 0,
                };
                Ok(None)
            }
            State::Idle => Err(AmqpError::connection(
                ReplyCode::UnexpectedFrame,
                EXPECTED_METHOD,
            )),
            State::Body { .. } => Err(unexpected(EXPECTED_BODY)),
        }
    }

    /// A body frame. Returns the publish once the declared size is reached.
    pub(crate) fn body(&mut self, payload: Bytes) -> Result<Option<Publish>, AmqpError> {
        let (method, header, mut first, mut rest, received) = match std::mem::take(&mut self.state)
        {
            State::Body {
                method,
                header,
                first,
                rest,
                received,
            } => (method, header, first, rest, received),
            State::Header(_) => return Err(unexpected(EXPECTED_HEADER)),
            State::Idle => {
                return Err(AmqpError::connection(
                    ReplyCode::UnexpectedFrame,
                    EXPECTED_METHOD,
                ));
            }
        };
        let received = received + payload.len() as u64;
        if received > header.body_size {
            return Err(AmqpError::connection(
                ReplyCode::FrameError,
                format!(
                    "content body exceeds the declared size {} (got {received})",
                    header.body_size
                ),
            )
            .on(BasicPublish::CLASS_ID, BasicPublish::METHOD_ID));
        }
        match (&mut first, &mut rest) {
            (None, _) => first = Some(payload),
            (Some(f), None) => {
                // A second frame: from now on copy into one buffer of the declared size.
                let cap = usize::try_from(header.body_size).unwrap_or(usize::MAX);
                let mut buf = BytesMut::with_capacity(cap.min(64 << 20));
                buf.extend_from_slice(f);
                buf.extend_from_slice(&payload);
                rest = Some(buf);
            }
            (Some(_), Some(buf)) => buf.extend_from_slice(&payload),
        }
        if received == header.body_size {
            let body = match (first, rest) {
                (_, Some(buf)) => buf.freeze(),
                (Some(f), None) => f,
                (None, None) => Bytes::new(),
            };
            return Ok(Some(Publish {
                method,
                header,
                body,
            }));
        }
        self.state = State::Body {
            method,
            header,
            first,
            rest,
            received,
        };
        Ok(None)
    }
}
