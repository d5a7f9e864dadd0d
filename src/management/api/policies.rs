//! Policies and operator policies: `/api/policies` and `/api/operator-policies`, in RabbitMQ
//! 3.10's shape and with its answers (recorded in tests/fixtures/rabbitmq-3.10/queues.json):
//! 201 created, 204 updated or deleted, 404 for what is missing, 400 `Validation failed` with
//! RabbitMQ's text. Policies need the `policymaker` tag (or `administrator`), operator
//! policies `administrator`. The checks and the effect on queues are the broker's
//! ([`crate::broker::policy`]).

use super::{ApiState, usable_vhost, visible_vhost, visible_vhosts};
use crate::broker::policy::{PolicyKind, build};
use crate::management::auth::AuthUser;
use crate::management::error::{ApiError, ApiResult};
use crate::management::json::{JsonBody, PathArgs, get_str, require_keys};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::Value;

/// Who may change policies of this kind: operator policies administrators, policies
/// policymakers (and administrators) in their vhosts; others get RabbitMQ 3.10's 401 `User
/// not authorised to access object`.
fn require_maker(st: &ApiState, user: &AuthUser, kind: PolicyKind, vhost: &str) -> ApiResult<()> {
    match kind {
        PolicyKind::Operator => user.require_admin(),
        PolicyKind::Policy if user.is_policymaker() && user.may_use_vhost(st, vhost) => Ok(()),
        PolicyKind::Policy => Err(ApiError::object_refused()),
    }
}

/// RabbitMQ's 400 for a refused definition. Its `/api/policies` answers come HTML-escaped,
/// its `/api/operator-policies` ones do not (both recorded).
fn validation_failed(kind: PolicyKind, text: &str) -> ApiError {
    let text = match kind {
        PolicyKind::Policy => text.replace('<', "&lt;").replace('>', "&gt;"),
        PolicyKind::Operator => text.to_string(),
    };
    ApiError::bad_request(format!("Validation failed\n\n{text}\n"))
}

fn list_all(st: &ApiState, user: &AuthUser, kind: PolicyKind) -> Json<Vec<Value>> {
    Json(
        visible_vhosts(st, user)
            .iter()
            .flat_map(|vh| vh.policy_list(kind))
            .map(|p| p.to_json())
            .collect(),
    )
}

fn list_vhost(
    st: &ApiState,
    user: &AuthUser,
    kind: PolicyKind,
    vhost: &str,
) -> ApiResult<Json<Vec<Value>>> {
    let vh = visible_vhost(st, user, vhost)?;
    Ok(Json(
        vh.policy_list(kind).iter().map(|p| p.to_json()).collect(),
    ))
}

fn show(
    st: &ApiState,
    user: &AuthUser,
    kind: PolicyKind,
    vhost: &str,
    name: &str,
) -> ApiResult<Json<Value>> {
    let vh = visible_vhost(st, user, vhost)?;
    vh.policy_list(kind)
        .into_iter()
        .find(|p| p.name == name)
        .map(|p| Json(p.to_json()))
        .ok_or_else(ApiError::not_found)
}

/// PUT: 201 when created, 204 when replaced.
fn put(
    st: &ApiState,
    user: &AuthUser,
    kind: PolicyKind,
    (vhost, name): (String, String),
    body: &Value,
) -> ApiResult<StatusCode> {
    let Some(vh) = st.broker.vhost(&vhost) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "vhost_not_found",
        ));
    };
    require_maker(st, user, kind, &vhost)?;
    usable_vhost(st, user, &vhost)?;
    require_keys(body, &["pattern", "definition"])?;
    let pattern = get_str(body, "pattern")?.unwrap_or("");
    let policy = build(
        kind,
        &vhost,
        &name,
        pattern,
        get_str(body, "apply-to")?,
        body.get("priority"),
        body.get("definition").unwrap_or(&Value::Null),
    )
    .map_err(|e| validation_failed(kind, &e.0))?;
    let created = vh.put_policy(kind, policy, crate::clock::now())?;
    Ok(if created {
        StatusCode::CREATED
    } else {
        StatusCode::NO_CONTENT
    })
}

fn delete(
    st: &ApiState,
    user: &AuthUser,
    kind: PolicyKind,
    (vhost, name): (String, String),
) -> ApiResult<StatusCode> {
    let vh = usable_vhost(st, user, &vhost)?;
    require_maker(st, user, kind, &vhost)?;
    if vh.delete_policy(kind, &name, crate::clock::now())? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found())
    }
}

/// GET /api/policies.
pub(crate) async fn list(State(st): State<ApiState>, user: AuthUser) -> Json<Vec<Value>> {
    list_all(&st, &user, PolicyKind::Policy)
}

/// GET /api/policies/{vhost}.
pub(crate) async fn list_in(
    State(st): State<ApiState>,
    user: AuthUser,
    PathArgs(vhost): PathArgs<String>,
) -> ApiResult<Json<Vec<Value>>> {
    list_vhost(&st, &user, PolicyKind::Policy, &vhost)
}

/// GET /api/policies/{vhost}/{name}.
pub(crate) async fn get_one(
    State(st): State<ApiState>,
    user: AuthUser,
    PathArgs((vhost, name)): PathArgs<(String, String)>,
) -> ApiResult<Json<Value>> {
    show(&st, &user, PolicyKind::Policy, &vhost, &name)
}

/// PUT /api/policies/{vhost}/{name}.
pub(crate) async fn put_one(
    State(st): State<ApiState>,
    user: AuthUser,
    PathArgs(path): PathArgs<(String, String)>,
    JsonBody(body): JsonBody,
) -> ApiResult<StatusCode> {
    put(&st, &user, PolicyKind::Policy, path, &body)
}

/// DELETE /api/policies/{vhost}/{name}.
pub(crate) async fn delete_one(
    State(st): State<ApiState>,
    user: AuthUser,
    PathArgs(path): PathArgs<(String, String)>,
) -> ApiResult<StatusCode> {
    delete(&st, &user, PolicyKind::Policy, path)
}

/// GET /api/operator-policies.
pub(crate) async fn op_list(State(st): State<ApiState>, user: AuthUser) -> Json<Vec<Value>> {
    list_all(&st, &user, PolicyKind::Operator)
}

/// GET /api/operator-policies/{vhost}.
pub(crate) async fn op_list_in(
    State(st): State<ApiState>,
    user: AuthUser,
    PathArgs(vhost): PathArgs<String>,
) -> ApiResult<Json<Vec<Value>>> {
    list_vhost(&st, &user, PolicyKind::Operator, &vhost)
}

/// GET /api/operator-policies/{vhost}/{name}.
pub(crate) async fn op_get_one(
    State(st): State<ApiState>,
    user: AuthUser,
    PathArgs((vhost, name)): PathArgs<(String, String)>,
) -> ApiResult<Json<Value>> {
    show(&st, &user, PolicyKind::Operator, &vhost, &name)
}

/// PUT /api/operator-policies/{vhost}/{name}.
pub(crate) async fn op_put_one(
    State(st): State<ApiState>,
    user: AuthUser,
    PathArgs(path): PathArgs<(String, String)>,
    JsonBody(body): JsonBody,
) -> ApiResult<StatusCode> {
    put(&st, &user, PolicyKind::Operator, path, &body)
}

/// DELETE /api/operator-policies/{vhost}/{name}.
pub(crate) async fn op_delete_one(
    State(st): State<ApiState>,
    user: AuthUser,
    PathArgs(path): PathArgs<(String, String)>,
) -> ApiResult<StatusCode> {
    delete(&st, &user, PolicyKind::Operator, path)
}

/// A vhost's policies for a definitions export (RabbitMQ's `policies`), and its operator
/// policies as RabbitMQ exports them (`parameters` of component `operator_policy`).
pub(crate) fn export(st: &ApiState, vhost: &str, with_vhost: bool) -> (Vec<Value>, Vec<Value>) {
    let Some(vh) = st.broker.vhost(vhost) else {
        return Default::default();
    };
    let policies = vh
        .policy_list(PolicyKind::Policy)
        .iter()
        .map(|p| {
            let mut v = p.to_json();
            if !with_vhost && let Value::Object(m) = &mut v {
                m.remove("vhost");
            }
            v
        })
        .collect();
    let parameters = vh
        .policy_list(PolicyKind::Operator)
        .iter()
        .map(|p| {
            serde_json::json!({
                "value": {
                    "pattern": p.pattern,
                    "definition": p.definition,
                    "priority": p.priority,
                    "apply-to": p.apply_to.as_str(),
                },
                "vhost": p.vhost,
                "component": "operator_policy",
                "name": p.name,
            })
        })
        .collect();
    (policies, parameters)
}

/// Checks the policies of a definitions document (its `policies`, and the `parameters` of
/// component `operator_policy`); returns them to apply once everything is checked. Other
/// parameters are not supported and left out.
pub(crate) fn import_check(
    policies: &[Value],
    parameters: &[Value],
    vhost_of: impl Fn(&Value) -> ApiResult<String>,
) -> ApiResult<Vec<(String, PolicyKind, crate::broker::policy::Policy)>> {
    let mut out = Vec::new();
    let items = policies.iter().map(|p| (PolicyKind::Policy, p, p)).chain(
        parameters
            .iter()
            .filter(|p| p.get("component").and_then(Value::as_str) == Some("operator_policy"))
            .map(|p| {
                (
                    PolicyKind::Operator,
                    p,
                    p.get("value").unwrap_or(&Value::Null),
                )
            }),
    );
    for (kind, item, body) in items {
        let vhost = vhost_of(item)?;
        let name = get_str(item, "name")?.unwrap_or("");
        let policy = build(
            kind,
            &vhost,
            name,
            get_str(body, "pattern")?.unwrap_or(""),
            get_str(body, "apply-to")?,
            body.get("priority"),
            body.get("definition").unwrap_or(&Value::Null),
        )
        .map_err(|e| validation_failed(kind, &e.0))?;
        out.push((vhost, kind, policy));
    }
    Ok(out)
}
