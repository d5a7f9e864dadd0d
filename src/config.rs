//! Configuration (TODO).
