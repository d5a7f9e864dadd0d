//! The AMQP 0-9-1 wire format: frames, methods, content headers and field tables.
//!
//! Pure functions over bytes. This module imports nothing from the rest of the crate, opens no
//! sockets and reads no clock, so every rule here is tested without IO.
//!
//! - [`frame`]: protocol header, frame decode/encode, frame_max, content splitting.
//! - [`method`]: generated from `amqp-spec/` by `tests/codegen.rs`; one struct per method.
//! - [`types`], [`properties`]: field tables and basic properties ([`Properties`] keeps them
//!   encoded, as they came off the wire), also used by storage.
//! - [`error`], [`reply`]: what can be wrong with peer bytes, and the reply code it maps to.

pub mod error;
pub mod frame;
pub mod method;
pub mod properties;
pub mod reply;
mod small;
pub mod types;
mod wire;

pub use error::{FrameError, Octets};
pub use frame::{ContentHeader, Frame};
pub use method::Method;
pub use properties::Properties;
pub use reply::ReplyCode;
