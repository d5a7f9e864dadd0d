//! Lagomorph: an AMQP 0-9-1 message broker that any RabbitMQ client can use unchanged.
//!
//! # Module map
//! The layers, from the wire inwards (arrows only point down, see `tests/layering.rs`):
//!
//! - [`protocol`]: the wire format. Pure functions over bytes; imports nothing else of the crate.
//! - [`session`]: sans-IO connection and channel state machines. Bytes in, bytes out, time passed in.
//! - [`broker`]: the AMQP model (vhosts, exchanges, bindings, queues, consumers) and the access
//!   model ([`broker::access`]: users, permissions, limits, the one authorisation check).
//!   Knows no wire.
//! - [`storage`]: persistence behind the [`storage::Store`] trait; the on-disk store (message
//!   bodies in a checksummed body log, everything else in sled) and the in-memory store.
//! - [`server`]: the only socket code; a tokio task per connection shuttles bytes to a session.
//! - [`management`]: the HTTP management API in RabbitMQ's shape, the web UI at `/`, and
//!   Prometheus metrics.
//! - [`config`]: plain configuration data, loaded from TOML, environment and flags.
//! - [`clock`]: reads the clocks into a [`broker::Now`] (for `server`, `management`, `main`).
//! - [`cli`]: command-line flags (clap) that become config overrides; `hash-password`.
//! - [`password`]: RabbitMQ-compatible salted password hashes (a leaf: imports nothing).
//! - [`process`]: resident memory, file descriptors, total memory, host name (a leaf, reads
//!   `/proc`); the memory alarm and the management API both read it.
//! - [`logging`]: the global tracing subscriber (text or JSON on stderr).
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod broker;
pub mod cli;
pub mod clock;
pub mod config;
pub mod logging;
pub mod management;
pub mod password;
pub mod process;
pub mod protocol;
pub mod server;
pub mod session;
pub mod storage;
