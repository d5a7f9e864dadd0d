//! HTTP basic authentication against the broker's users, and what each user may see.
//!
//! As in RabbitMQ, only users with a management-capable tag log in: `management`, and the tags
//! that include it (`policymaker`, `monitoring`, `administrator`). Administrators manage users,
//! permissions, definitions and vhosts; administrators and monitoring users see every vhost;
//! other users see the vhosts they have permissions in.

use super::ApiState;
use super::error::ApiError;
use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use base64::Engine as _;

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
        self.is_admin() || self.has("monitoring") || self.may_use_vhost(state, vhost)
    }

    /// Whether the user has permissions in `vhost` (administrators may use any).
    pub(crate) fn may_use_vhost(&self, state: &ApiState, vhost: &str) -> bool {
        self.is_admin()
            || state
                .broker
                .permissions()
                .iter()
                .any(|p| p.user == self.name && p.vhost == vhost)
    }

    /// Fails with 401 "Access refused." unless the user may change objects in `vhost`.
    pub(crate) fn require_vhost(&self, state: &ApiState, vhost: &str) -> Result<(), ApiError> {
        if self.may_use_vhost(state, vhost) {
            Ok(())
        } else {
            Err(ApiError::access_refused())
        }
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
        let (name, pass) = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_basic)
            .ok_or_else(ApiError::login_failed)?;
        let user = state
            .broker
            .authenticate(&name, &pass)
            .ok_or_else(ApiError::login_failed)?;
        if !user
            .tags
            .iter()
            .any(|t| MANAGEMENT_TAGS.contains(&t.as_str()))
        {
            return Err(ApiError::login_failed());
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
