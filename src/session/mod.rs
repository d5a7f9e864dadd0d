//! The session layer: sans-IO AMQP connection and channel state machines.
//!
//! Bytes in, bytes out, time passed in: no sockets, no clock, no awaiting. A
//! [`Connection`] decodes frames with `protocol`, assembles publishes, runs each method against
//! the `broker`, and encodes replies and deliveries into its output buffer. Imports `protocol`
//! and `broker` only.

mod assembler;
mod channel;
mod confirms;
mod connection;
pub mod error;
mod output;
#[cfg(test)]
mod tests;

pub use connection::{CLOSE_TIMEOUT, Connection, Mechanisms, SILENT_CLOSE_DELAY};
pub use error::{AmqpError, Scope};
pub use output::Transmit;
