//! The scope a route needs, checked before its body is read: a key
//! without it gets the 403 naming the scope, never a 400 that describes
//! the route's body to a caller who may not use it. A route's scopes are
//! the ones its operation declares in the OpenAPI document (any one of
//! several alternatives will do), so the document stays the one list.
//! A key bound to an agent is refused here too where no bound key may
//! ever act (`NEVER_BOUND`: policies, resolving holds; and the operations
//! of `NEVER_FOR_BOUND_KEYS`), and a test key where only a live one may. Handlers still
//! check their own, with the finer rules (a bound key's own agent, an
//! environment) that only they know.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::OpenApi;
use warden_core::api_key::NEVER_BOUND;

use super::Principal;
use crate::http::error::ApiError;
use crate::http::query_params::{answered_by, operations};

/// Each operation's alternatives (every scope of one alternative is
/// needed), by path template and method: looked up on every request
/// without allocating.
#[derive(Default)]
pub struct DeclaredScopes(HashMap<String, Vec<(Method, Vec<Scopes>)>>);

/// The scopes one alternative needs, every one of them.
type Scopes = Vec<String>;

impl DeclaredScopes {
    pub fn from_document(document: &OpenApi) -> Arc<Self> {
        let mut declared = HashMap::new();
        for (path, item) in &document.paths.paths {
            for (method, operation) in operations(item) {
                let alternatives: Vec<Scopes> = operation
                    .security
                    .iter()
                    .flatten()
                    .filter_map(|requirement| serde_json::to_value(requirement).ok())
                    .filter_map(|value| {
                        let scopes = value.get("bearer")?.as_array()?;
                        Some(
                            scopes
                                .iter()
                                .filter_map(|s| s.as_str().map(str::to_string))
                                .collect(),
                        )
                    })
                    .collect();
                if !alternatives.is_empty() {
                    declared
                        .entry(path.clone())
                        .or_insert_with(Vec::new)
                        .push((method, alternatives));
                }
            }
        }
        Arc::new(DeclaredScopes(declared))
    }

    /// The operation's alternatives.
    fn of(&self, method: &Method, path: &str) -> Option<&[Scopes]> {
        let method = answered_by(method);
        self.0
            .get(path)?
            .iter()
            .find(|(m, _)| m == method)
            .map(|(_, alternatives)| alternatives.as_slice())
    }
}

/// Operations no key bound to an agent may make, whatever its scopes
/// (their handlers say so too, after reading the request): changing the
/// organization's retention, registering or deleting agents, verifying
/// the whole chain.
const NEVER_FOR_BOUND_KEYS: &[(Method, &str, &str)] = &[
    (
        Method::PUT,
        "/api/v1/events/retention",
        "change the organization's retention",
    ),
    (Method::POST, "/api/v1/agents", "register agents"),
    (Method::DELETE, "/api/v1/agents/{id}", "delete agents"),
    (
        Method::GET,
        "/api/v1/audit/verify",
        "verify the whole chain",
    ),
];

/// Operations only a live key may make: retention removes live events.
const LIVE_KEYS_ONLY: &[(Method, &str, &str)] = &[(
    Method::PUT,
    "/api/v1/events/retention",
    "retention removes live events too: set it with a live key",
)];

/// The refusal of an operation by what the key is, not what it holds.
fn refused_for_kind(method: &Method, path: &str, principal: &Principal) -> Option<ApiError> {
    let method = answered_by(method);
    let listed = |table: &'static [(Method, &str, &str)]| {
        table
            .iter()
            .find(|(m, p, _)| m == method && *p == path)
            .map(|(_, _, why)| *why)
    };
    if principal.agent_id.is_some() {
        if let Some(what) = listed(NEVER_FOR_BOUND_KEYS) {
            return Some(
                ApiError::forbidden(format!("a key bound to an agent cannot {what}"))
                    .with_field("agent_id"),
            );
        }
    }
    if principal.environment != warden_core::Environment::Live {
        if let Some(why) = listed(LIVE_KEYS_ONLY) {
            return Some(ApiError::forbidden(why).with_field("environment"));
        }
    }
    None
}

/// The refusal for a caller that holds no alternative in full, or that
/// is bound to an agent where no bound key may act (policies, resolving
/// holds: `NEVER_BOUND`).
fn refusal(alternatives: &[Scopes], principal: &Principal) -> Option<ApiError> {
    if principal.agent_id.is_some()
        && alternatives
            .iter()
            .all(|scopes| scopes.iter().any(|s| NEVER_BOUND.contains(&s.as_str())))
    {
        let scope = alternatives.first()?.first()?;
        return Some(
            ApiError::forbidden(format!(
                "a key bound to an agent can never use `{scope}`: policies and holds are the security team's"
            ))
            .with_field(scope.clone()),
        );
    }
    let mut first_missing = None;
    for scopes in alternatives {
        match scopes.iter().find(|s| principal.require(s).is_err()) {
            None => return None,
            Some(scope) => {
                first_missing.get_or_insert(scope);
            }
        }
    }
    let scope = first_missing?;
    if alternatives.len() == 1 {
        return principal.require(scope).err();
    }
    let choices: Vec<String> = alternatives.iter().map(|s| s.join("` and `")).collect();
    Some(
        ApiError::forbidden(format!(
            "this operation needs the `{}` scope",
            choices.join("` or `")
        ))
        .with_field(scope.clone()),
    )
}

/// Middleware, inside authentication: the 403 for a missing scope.
pub async fn require_declared_scope(
    State(declared): State<Arc<DeclaredScopes>>,
    matched: Option<MatchedPath>,
    request: Request,
    next: Next,
) -> Response {
    let refused = match (&matched, request.extensions().get::<Principal>()) {
        (Some(path), Some(principal)) => declared
            .of(request.method(), path.as_str())
            .and_then(|alternatives| refusal(alternatives, principal))
            .or_else(|| refused_for_kind(request.method(), path.as_str(), principal)),
        _ => None,
    };
    match refused {
        Some(error) => error.into_response(),
        None => next.run(request).await,
    }
}
