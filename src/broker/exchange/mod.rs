//! Exchanges and their routing: the pure matchers that map a message to the bindings it hits.
//!
//! The matchers here know nothing of queues or the wire: they hold generic values (for the broker,
//! binding destinations) and answer "which of these match this routing key / these headers".

pub mod headers;
pub mod topic;
