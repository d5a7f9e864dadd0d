//! HTTP basic authentication against the broker's users, and what each user may see and do,
//! by tag as RabbitMQ 3.10 decides (`tests/fixtures/rabbitmq-3.10/access-api.json`):
//!
//! - no management tag: 401 `Not management user` (after a correct password);
//! - `management`: the vhosts it has permissions in, and their objects, subject to those
//!   permissions (configure, write, read, checked by [`crate::broker::Grant`] as on AMQP);
//! - `policymaker`: also policies in those vhosts;
//! - `monitoring`: also reads every vhost, connection and channel; changes only what
//!   `management` may;
//! - `administrator`: everything; users, permissions, limits, vhosts, definitions are
//!   administrator-only (401 `Not administrator user`).
//!
//! Logins go through [`crate::broker::Access::authenticate`] (counted, `loopback_users`
//! applied to the client address); a failed one is answered after the access model's delay.

use super::ApiState;
use super::error::ApiError;
use crate::broker::Grant;
use crate::broker::access::LoginError;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;
use base64::Engine as _;
use std::sync::Arc;

/// Tags that open the management API (RabbitMQ's `management` and the tags that imply it).
const MANAGEMENT_TAGS: [&str; 4] = ["management", "policymaker", "monitoring", "administrator"];

/// The logged-in user of a request.
#[derive(Clone, Debug)]
pub(crate) struct AuthUser {
    /// Login name.
    pub(crate) name: String,
    /// Its tags.
    pub(crate) tags: Vec<String>,
}

impl AuthUser {
    fn has(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }

    /// True for administrators.
    pub(crate) fn is_admin(&self) -> bool {
        self.has("administrator")
    }

    /// True for users who see every vhost (administrators and monitoring users).
    pub(crate) fn is_monitor(&self) -> bool {
        self.is_admin() || self.has("monitoring")
    }

    /// True for users who may set policies in their vhosts.
    pub(crate) fn is_policymaker(&self) -> bool {
        self.is_admin() || self.has("policymaker")
    }

    /// Fails with RabbitMQ's 401 unless the user is an administrator.
    pub(crate) fn require_admin(&self) -> Result<(), ApiError> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(ApiError::not_administrator())
        }
    }

    /// Whether listings show this vhost's objects to the user.
    pub(crate) fn sees_vhost(&self, state: &ApiState, vhost: &str) -> bool {
        self.is_monitor() || self.may_use_vhost(state, vhost)
    }

    /// Whether the user has permissions in `vhost` (administrators may use any).
    pub(crate) fn may_use_vhost(&self, state: &ApiState, vhost: &str) -> bool {
        self.is_admin() || state.broker.access().has_permission(vhost, &self.name)
    }

    /// Fails with 401 unless the user may change objects in `vhost`.
    pub(crate) fn require_vhost(&self, state: &ApiState, vhost: &str) -> Result<(), ApiError> {
        if self.may_use_vhost(state, vhost) {
            Ok(())
        } else {
            Err(ApiError::vhost_refused())
        }
    }

    /// What the user may do in `vhost`: the grant its AMQP connections would get.
    pub(crate) fn grant(&self, state: &ApiState, vhost: &str) -> Arc<Grant> {
        state.broker.access().grant(&self.name, vhost)
    }
}

/// `user:password` from an `Authorization: Basic …` header value.
pub(crate) fn parse_basic(value: &str) -> Option<(String, String)> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (user, pass) = text.split_once(':')?;
    Some((user.to_string(), pass.to_string()))
}

impl FromRequestParts<ApiState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let Some((name, pass)) = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_basic)
        else {
            return Err(ApiError::login_failed());
        };
        // Without the client's address (a listener that does not record it) the user is
        // treated as remote: loopback-only users are refused.
        let loopback = parts
            .extensions
            .get::<ConnectInfo<super::ClientAddr>>()
            .is_some_and(|c| c.0.0.ip().is_loopback());
        let access = state.broker.access();
        let user = match access.authenticate(&name, &pass, loopback) {
            Ok(u) => u,
            Err(why) => {
                tracing::warn!(user = %name, reason = ?why, "HTTP login refused");
                tokio::time::sleep(access.failed_login_delay()).await;
                return Err(match why {
                    LoginError::BadCredentials | LoginError::LoopbackOnly => {
                        ApiError::login_failed()
                    }
                });
            }
        };
        if !user
            .tags
            .iter()
            .any(|t| MANAGEMENT_TAGS.contains(&t.as_str()))
        {
            return Err(ApiError::not_management_user());
        }
        Ok(AuthUser {
            name: user.name,
            tags: user.tags,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_basic_credentials() {
        assert_eq!(
            parse_basic("Basic Z3Vlc3Q6Z3Vlc3Q="),
            Some(("guest".into(), "guest".into()))
        );
        // Passwords may contain colons; only the first separates.
        let v = format!(
            "basic {}",
            base64::engine::general_purpose::STANDARD.encode("u:a:b")
        );
        assert_eq!(parse_basic(&v), Some(("u".into(), "a:b".into())));
        assert_eq!(parse_basic("Bearer abc"), None);
        assert_eq!(parse_basic("Basic !!!"), None);
        assert_eq!(parse_basic("Basic Z3Vlc3Q="), None);
    }
}
