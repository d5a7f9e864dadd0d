//! The AMQP model: vhosts, exchanges, bindings, queues and consumers. Knows no wire and opens no
//! sockets; imports only `storage` and `protocol::{types, properties}`.

pub mod exchange;
