//! The AMQP 0-9-1 wire format: frames, methods, content headers and field tables.
//!
//! Pure functions over bytes. This module imports nothing from the rest of the crate, opens no
//! sockets and reads no clock, so every rule here is tested without IO.

pub mod properties;
pub mod types;
