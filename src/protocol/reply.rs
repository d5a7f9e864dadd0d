//! AMQP reply codes: the numbers carried by `connection.close` and `channel.close`.
//!
//! One line per code, as the spec's constants list them (`amqp-spec/amqp0-9-1.extended.xml`,
//! `class="soft-error"` / `"hard-error"`), plus RabbitMQ's 312 no-route. A soft error closes
//! the channel, a hard error the whole connection. `tests/codegen.rs` checks this table against
//! the XML so the two cannot drift.

macro_rules! reply_codes {
    ($($(#[doc = $doc:literal])* $variant:ident = $code:literal, $hard:literal, $name:literal;)*) => {
        /// An AMQP reply code. The discriminant is the wire value.
        #[repr(u16)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum ReplyCode {
            $($(#[doc = $doc])* $variant = $code,)*
        }

        impl ReplyCode {
            /// Every reply code, in numeric order.
            pub const ALL: &'static [ReplyCode] = &[$(ReplyCode::$variant,)*];

            /// The wire value.
            pub fn code(self) -> u16 {
                self as u16
            }

            /// True for hard errors (connection.close), false for soft errors (channel.close)
            /// and for 200 success.
            pub fn is_hard(self) -> bool {
                match self {
                    $(ReplyCode::$variant => $hard,)*
                }
            }

            /// RabbitMQ's upper-case name, the prefix of its reply texts
            /// (`"NOT_FOUND - no queue 'q' in vhost '/'"`).
            pub fn name(self) -> &'static str {
                match self {
                    $(ReplyCode::$variant => $name,)*
                }
            }

            /// The reply code with this wire value, if it is one the spec defines.
            pub fn from_code(code: u16) -> Option<ReplyCode> {
                match code {
                    $($code => Some(ReplyCode::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

reply_codes! {
    /// 200: the method completed (also the code of a normal close).
    Success = 200, false, "REPLY_SUCCESS";
    /// 311: the message body is too large for the server to accept.
    ContentTooLarge = 311, false, "CONTENT_TOO_LARGE";
    /// 312: a mandatory message could not be routed to any queue (RabbitMQ, basic.return).
    NoRoute = 312, false, "NO_ROUTE";
    /// 313: an immediate message had no consumer to take it.
    NoConsumers = 313, false, "NO_CONSUMERS";
    /// 320: an operator closed the connection.
    ConnectionForced = 320, true, "CONNECTION_FORCED";
    /// 402: the virtual host does not exist.
    InvalidPath = 402, true, "INVALID_PATH";
    /// 403: the user may not access this resource.
    AccessRefused = 403, false, "ACCESS_REFUSED";
    /// 404: the named entity does not exist.
    NotFound = 404, false, "NOT_FOUND";
    /// 405: the entity is exclusively used by another connection.
    ResourceLocked = 405, false, "RESOURCE_LOCKED";
    /// 406: a precondition failed (e.g. redeclare with other arguments).
    PreconditionFailed = 406, false, "PRECONDITION_FAILED";
    /// 501: a malformed frame.
    FrameError = 501, true, "FRAME_ERROR";
    /// 502: a frame with illegal field values.
    SyntaxError = 502, true, "SYNTAX_ERROR";
    /// 503: a method that is not valid here.
    CommandInvalid = 503, true, "COMMAND_INVALID";
    /// 504: use of a channel that is not open, or a channel protocol error.
    ChannelError = 504, true, "CHANNEL_ERROR";
    /// 505: a frame the receiver did not expect (e.g. a body frame without a header).
    UnexpectedFrame = 505, true, "UNEXPECTED_FRAME";
    /// 506: the server ran out of a resource.
    ResourceError = 506, true, "RESOURCE_ERROR";
    /// 530: the operation is not allowed (e.g. redeclaring a default exchange).
    NotAllowed = 530, true, "NOT_ALLOWED";
    /// 540: the server does not implement this functionality.
    NotImplemented = 540, true, "NOT_IMPLEMENTED";
    /// 541: an internal server error.
    InternalError = 541, true, "INTERNAL_ERROR";
}

impl std::fmt::Display for ReplyCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_classes() {
        for &rc in ReplyCode::ALL {
            assert_eq!(ReplyCode::from_code(rc.code()), Some(rc));
        }
        assert_eq!(ReplyCode::NotFound.code(), 404);
        assert_eq!(ReplyCode::NotFound.name(), "NOT_FOUND");
        assert!(!ReplyCode::NotFound.is_hard());
        assert!(!ReplyCode::NoRoute.is_hard());
        assert!(ReplyCode::FrameError.is_hard());
        assert!(!ReplyCode::Success.is_hard());
        assert_eq!(ReplyCode::from_code(999), None);
        assert_eq!(ReplyCode::ALL.len(), 19);
    }
}
