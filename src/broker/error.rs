//! Errors of the broker model. Each maps to one AMQP reply code; the session decides whether it
//! closes a channel or the connection (see `session::error`).

use crate::protocol::ReplyCode;
use crate::storage::StoreError;

/// Something the broker refused to do, with RabbitMQ's reply text (without the code prefix).
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// 404: a queue or exchange does not exist.
    #[error("{0}")]
    NotFound(String),
    /// 406: arguments or state do not allow the operation.
    #[error("{0}")]
    PreconditionFailed(String),
    /// 405: an exclusive queue owned by another connection.
    #[error("{0}")]
    ResourceLocked(String),
    /// 403: reserved names, the default exchange, internal exchanges, exclusive consumers.
    #[error("{0}")]
    AccessRefused(String),
    /// 530: not allowed (connection-level in RabbitMQ).
    #[error("{0}")]
    NotAllowed(String),
    /// 540: a feature we do not implement.
    #[error("{0}")]
    NotImplemented(String),
    /// 541: the store failed.
    #[error("storage failure: {0}")]
    Store(#[from] StoreError),
}

impl BrokerError {
    /// The reply code this error is reported with.
    pub fn reply_code(&self) -> ReplyCode {
        match self {
            BrokerError::NotFound(_) => ReplyCode::NotFound,
            BrokerError::PreconditionFailed(_) => ReplyCode::PreconditionFailed,
            BrokerError::ResourceLocked(_) => ReplyCode::ResourceLocked,
            BrokerError::AccessRefused(_) => ReplyCode::AccessRefused,
            BrokerError::NotAllowed(_) => ReplyCode::NotAllowed,
            BrokerError::NotImplemented(_) => ReplyCode::NotImplemented,
            BrokerError::Store(_) => ReplyCode::InternalError,
        }
    }
}

/// `no queue 'q' in vhost '/'`
pub(crate) fn no_queue(name: &str, vhost: &str) -> BrokerError {
    BrokerError::NotFound(format!("no queue '{name}' in vhost '{vhost}'"))
}

/// `no exchange 'x' in vhost '/'`
pub(crate) fn no_exchange(name: &str, vhost: &str) -> BrokerError {
    BrokerError::NotFound(format!("no exchange '{name}' in vhost '{vhost}'"))
}

/// Result alias for broker operations.
pub type BrokerResult<T> = Result<T, BrokerError>;
