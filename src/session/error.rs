//! Session errors: every protocol violation or refused operation becomes an [`AmqpError`] whose
//! scope decides what goes on the wire: channel.close (soft errors) or connection.close (hard
//! errors). This is the one place that decision is made, like h2's Reset vs GoAway.

use crate::broker::BrokerError;
use crate::protocol::{FrameError, ReplyCode};

/// What an error closes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// channel.close on this channel.
    Channel(u16),
    /// connection.close.
    Connection,
}

/// A protocol error to report to the peer.
#[derive(Clone, Debug, PartialEq)]
pub struct AmqpError {
    /// Channel or connection.
    pub scope: Scope,
    /// Reply code.
    pub code: ReplyCode,
    /// Reply text, already prefixed with the code's name (`NOT_FOUND - ...`).
    pub text: String,
    /// Class of the method that failed (0 if none).
    pub class_id: u16,
    /// Method that failed (0 if none).
    pub method_id: u16,
}

impl AmqpError {
    /// An error; hard codes always close the connection, whatever scope is asked for.
    pub fn new(scope: Scope, code: ReplyCode, detail: impl std::fmt::Display) -> Self {
        let scope = if code.is_hard() {
            Scope::Connection
        } else {
            scope
        };
        AmqpError {
            scope,
            code,
            text: format!("{} - {}", code.name(), detail),
            class_id: 0,
            method_id: 0,
        }
    }

    /// A connection error.
    pub fn connection(code: ReplyCode, detail: impl std::fmt::Display) -> Self {
        Self::new(Scope::Connection, code, detail)
    }

    /// A channel error (becomes a connection error for hard codes).
    pub fn channel(channel: u16, code: ReplyCode, detail: impl std::fmt::Display) -> Self {
        Self::new(Scope::Channel(channel), code, detail)
    }

    /// Sets the failing method.
    pub fn on(mut self, class_id: u16, method_id: u16) -> Self {
        self.class_id = class_id;
        self.method_id = method_id;
        self
    }

    /// From a broker refusal on `channel`. Store failures are 541 and close the connection.
    pub fn from_broker(channel: u16, e: BrokerError) -> Self {
        if let BrokerError::Store(err) = &e {
            tracing::error!(error = %err, "store failure");
        }
        Self::channel(channel, e.reply_code(), e)
    }

    /// From a frame decoding error (always a connection error).
    pub fn from_frame(e: &FrameError) -> Self {
        Self::connection(e.reply_code(), e)
    }
}
