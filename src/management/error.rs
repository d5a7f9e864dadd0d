//! Errors of the management API, answered with RabbitMQ's status codes and its
//! `{"error": …, "reason": …}` body. Every handler returns [`ApiError`]; nothing a client sends
//! becomes a 500 (only a failing store does, as in RabbitMQ).

use crate::broker::BrokerError;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::borrow::Cow;

/// An error answer: status plus RabbitMQ's error body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    /// HTTP status.
    pub(crate) status: StatusCode,
    /// The `error` field, e.g. `bad_request`.
    pub(crate) error: Cow<'static, str>,
    /// The `reason` field.
    pub(crate) reason: String,
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    reason: &'a str,
}

impl ApiError {
    /// Any status, error and reason.
    pub(crate) fn new(
        status: StatusCode,
        error: impl Into<Cow<'static, str>>,
        reason: impl Into<String>,
    ) -> Self {
        ApiError {
            status,
            error: error.into(),
            reason: reason.into(),
        }
    }

    /// 404 for a missing vhost, object or path: RabbitMQ's fixed body.
    pub(crate) fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "Object Not Found", "Not Found")
    }

    /// 400 `bad_request`.
    pub(crate) fn bad_request(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", reason)
    }

    /// 401 for missing or wrong credentials, or a user without a management tag. RabbitMQ
    /// 3.10 spells this one `not_authorized`, unlike the others.
    pub(crate) fn login_failed() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "not_authorized", "Login failed")
    }

    /// 401 for a logged-in user who is not an administrator.
    pub(crate) fn not_administrator() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "not_authorised",
            "Not administrator user",
        )
    }

    /// 401 for a user whose password is right but who has no management tag.
    pub(crate) fn not_management_user() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "not_authorised",
            "Not management user",
        )
    }

    /// 401 for a vhost the user has no permissions in.
    pub(crate) fn vhost_refused() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "not_authorised",
            "User not authorised to access virtual host",
        )
    }

    /// 401 for an object the user's tags do not let it change (policies without
    /// `policymaker`).
    pub(crate) fn object_refused() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "not_authorised",
            "User not authorised to access object",
        )
    }

    /// 401 for an operation on a reserved object, or one the user's permissions refuse.
    pub(crate) fn access_refused() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "not_authorised",
            "Access refused.",
        )
    }

    /// 400 naming the JSON keys a body lacks, in RabbitMQ's Erlang-term text.
    pub(crate) fn keys_missing(keys: &[&str]) -> Self {
        let list: Vec<String> = keys
            .iter()
            .map(|k| format!("{{key_missing,{k}}}"))
            .collect();
        Self::bad_request(format!("[{}]", list.join(",")))
    }
}

impl From<BrokerError> for ApiError {
    fn from(e: BrokerError) -> Self {
        match e {
            BrokerError::NotFound(t) => Self::new(StatusCode::NOT_FOUND, "not_found", t),
            BrokerError::AccessRefused(_) => Self::access_refused(),
            BrokerError::Store(e) => {
                tracing::error!(error = %e, "store failure in the management API");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_error",
                    format!("storage failure: {e}"),
                )
            }
            other => Self::bad_request(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            error: &self.error,
            reason: &self.reason,
        };
        let mut resp = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"RabbitMQ Management\""),
            );
        }
        resp
    }
}

/// Result alias for handlers.
pub(crate) type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_missing_uses_erlang_terms() {
        let e = ApiError::keys_missing(&["write", "read"]);
        assert_eq!(e.reason, "[{key_missing,write},{key_missing,read}]");
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn broker_errors_map_to_rabbitmq_statuses() {
        let nf: ApiError = BrokerError::NotFound("no queue 'q' in vhost '/'".into()).into();
        assert_eq!(
            (nf.status, &*nf.error),
            (StatusCode::NOT_FOUND, "not_found")
        );
        let pf: ApiError = BrokerError::PreconditionFailed("in use".into()).into();
        assert_eq!(
            (pf.status, pf.reason.as_str()),
            (StatusCode::BAD_REQUEST, "in use")
        );
        let ar: ApiError = BrokerError::AccessRefused("amq.".into()).into();
        assert_eq!(ar, ApiError::access_refused());
    }
}
