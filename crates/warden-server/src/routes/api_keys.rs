//! `/api/v1/api-keys`: scoped keys, shown once, revoked and rotated.

use axum::extract::RawQuery;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use warden_core::api_key::{ApiKey, KeyRequest};
use warden_core::page::PageRequest;
use warden_core::secret::key_prefix;
use warden_core::time::now_ms;

use super::wire::{opt_time, parse_time, time, EnvironmentName, SortDirection};
use crate::auth::Principal;
use crate::http::envelope::{created, ok, ApiData, ApiList, DataEnvelope, ListEnvelope};
use crate::http::error::{ApiResult, ErrorEnvelope};
use crate::http::extract::{ApiJson, ApiQuery, OptionalJson, ResourceId};
use crate::http::sealed_cursor::{filtered, SealedCursors};
use crate::services::api_keys::{self as service, MintedKey};
use crate::state::AppState;

/// A key as listed: never its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyView {
    #[schema(example = "key_8d1f0a2b3c4d5e6f7a8b9c0d")]
    pub id: String,
    pub name: String,
    pub environment: EnvironmentName,
    /// `wdn_live_` or `wdn_test_`.
    pub prefix: String,
    /// The last four characters of the secret, to tell keys apart.
    pub last_four: String,
    pub scopes: Vec<String>,
    /// `active`, `expired` or `revoked`.
    #[schema(value_type = KeyStatusName)]
    pub status: String,
    /// Set when the key may act only as this agent.
    pub agent_id: Option<String>,
    pub allowed_cidrs: Vec<String>,
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub last_used_at: Option<String>,
    #[schema(format = DateTime)]
    pub revoked_at: Option<String>,
    #[schema(format = DateTime)]
    pub rotated_at: Option<String>,
    /// Until when the secret before the last rotation still works (its
    /// grace period); null when it no longer does.
    #[schema(format = DateTime)]
    pub previous_valid_until: Option<String>,
}

impl From<ApiKey> for ApiKeyView {
    fn from(k: ApiKey) -> Self {
        let now = now_ms();
        let status = k.status(now).as_str().to_string();
        let previous_valid_until = opt_time(k.previous_secret_until(now));
        ApiKeyView {
            prefix: key_prefix(k.environment).to_string(),
            id: k.id,
            name: k.name,
            environment: k.environment.into(),
            last_four: k.last_four,
            scopes: k.scopes.names(),
            status,
            agent_id: k.agent_id,
            allowed_cidrs: k.allowed_cidrs.iter().map(|n| n.to_string()).collect(),
            expires_at: opt_time(k.expires_at),
            created_at: time(k.created_at),
            last_used_at: opt_time(k.last_used_at),
            revoked_at: opt_time(k.revoked_at),
            rotated_at: opt_time(k.rotated_at),
            previous_valid_until,
        }
    }
}

/// A key just created or rotated, with its secret: shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyWithSecret {
    #[serde(flatten)]
    pub api_key: ApiKeyView,
    /// The full secret. Store it now: it can never be read again.
    #[schema(example = "wdn_live_3kT9qXbV2mN8pR4sW7yZ1aC5dF6gH0jL2nQ4rT6uV8x")]
    pub key: String,
}

impl From<MintedKey> for ApiKeyWithSecret {
    fn from(m: MintedKey) -> Self {
        ApiKeyWithSecret {
            api_key: m.key.into(),
            key: m.secret,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKey {
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub name: String,
    /// `<resource>.read` / `<resource>.write` for agents, policies, holds,
    /// audit, events, rules, alerts, incidents, intel, compliance, risks,
    /// assets, reports, webhooks, keys, organization; `events.ingest`
    /// (sends events, reads none); `enforce`; `admin`.
    /// Never more than the creating key holds.
    pub scopes: Vec<String>,
    /// The creating key's environment unless given; only an admin key may
    /// choose the other one.
    pub environment: Option<EnvironmentName>,
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
    /// Requests from outside these ranges are refused with 403.
    pub allowed_cidrs: Option<Vec<String>>,
    /// Bind the key to one agent: it can act only as that agent.
    pub agent_id: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateApiKey {
    /// How long the old secret keeps working, 0 to 604800 (default 0).
    #[schema(maximum = 604800)]
    pub grace_period_seconds: Option<u32>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListApiKeys {
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    #[param(min_length = 1)]
    pub cursor: Option<String>,
    /// Newest first unless `asc`.
    pub direction: Option<SortDirection>,
}

/// Create a key.
#[utoipa::path(post, path = "/api/v1/api-keys", tag = "api-keys", request_body = CreateApiKey,
    responses((status = 201, description = "The key and its secret, shown once", body = DataEnvelope<ApiKeyWithSecret>)),
    security(("bearer" = ["keys.write"])))]
pub async fn create_api_key(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<CreateApiKey>,
) -> ApiResult<ApiData<ApiKeyWithSecret>> {
    principal.require("keys.write")?;
    let request = KeyRequest {
        name: body.name,
        scopes: body.scopes,
        environment: body.environment.map(Into::into),
        expires_at: parse_time("expires_at", body.expires_at.as_deref())?,
        allowed_cidrs: body.allowed_cidrs,
        agent_id: body.agent_id,
    };
    let minted = service::create(
        state.store.as_ref(),
        &state.governance.audit,
        &state.keys,
        &principal,
        request,
    )
    .await?;
    Ok(created(minted.into()))
}

/// List keys of this environment.
#[utoipa::path(get, path = "/api/v1/api-keys", tag = "api-keys", params(ListApiKeys),
    responses((status = 200, description = "A page of keys", body = ListEnvelope<ApiKeyView>)),
    security(("bearer" = ["keys.read"])))]
pub async fn list_api_keys(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(q): ApiQuery<ListApiKeys>,
    RawQuery(raw): RawQuery,
) -> ApiResult<ApiList<ApiKeyView>> {
    principal.require("keys.read")?;
    let cursors = SealedCursors::new(
        &state.master,
        &principal.tenant(),
        &filtered("api_keys", raw.as_deref()),
    );
    let page = PageRequest::new(
        q.limit,
        cursors.open_opt(q.cursor.as_deref())?.as_deref(),
        None,
        q.direction.map(Into::into),
        &["created_at"],
    )?;
    let page = service::list(state.store.as_ref(), &principal, page).await?;
    Ok(ApiList(
        page.items.into_iter().map(ApiKeyView::from).collect(),
        cursors.seal_opt(page.next_cursor),
    ))
}

/// Get a key.
#[utoipa::path(get, path = "/api/v1/api-keys/{id}", tag = "api-keys",
    params(("id" = String, Path, description = "Key id")),
    responses(
        (status = 200, description = "The key", body = DataEnvelope<ApiKeyView>),
        (status = 404, description = "No such key", body = ErrorEnvelope)),
    security(("bearer" = ["keys.read"])))]
pub async fn get_api_key(
    State(state): State<AppState>,
    principal: Principal,
    ResourceId(id): ResourceId,
) -> ApiResult<ApiData<ApiKeyView>> {
    principal.require("keys.read")?;
    let key = service::get(state.store.as_ref(), &principal, &id).await?;
    Ok(ok(key.into()))
}

/// Revoke a key: the next request with it, or with a token made from it, is
/// refused on every replica within one second.
#[utoipa::path(delete, path = "/api/v1/api-keys/{id}", tag = "api-keys",
    params(("id" = String, Path, description = "Key id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "No such key", body = ErrorEnvelope),
        (status = 422, description = "Already revoked", body = ErrorEnvelope)),
    security(("bearer" = ["keys.write"])))]
pub async fn revoke_api_key(
    State(state): State<AppState>,
    principal: Principal,
    ResourceId(id): ResourceId,
) -> ApiResult<StatusCode> {
    principal.require("keys.write")?;
    service::revoke(
        state.store.as_ref(),
        &state.governance.audit,
        &state.keys,
        &principal,
        &id,
    )
    .await?;
    // The calls it made that wait for a person are denied, their unused
    // approvals withdrawn.
    let orphans = crate::governance::orphan_holds::Orphans::OfRevokedKey(&id);
    crate::governance::orphan_holds::deny_orphaned_holds(&state.governance, &principal, orphans)
        .await;
    Ok(StatusCode::NO_CONTENT)
}

/// Rotate a key: a new secret, the old one valid for the grace period.
#[utoipa::path(post, path = "/api/v1/api-keys/{id}/rotate", tag = "api-keys",
    request_body(content = Option<RotateApiKey>, description = "Optional; an empty body means no grace period"),
    params(("id" = String, Path, description = "Key id")),
    responses(
        (status = 200, description = "The key with its new secret, shown once", body = DataEnvelope<ApiKeyWithSecret>),
        (status = 404, description = "No such key", body = ErrorEnvelope),
        (status = 409, description = "Another request rotated the key meanwhile; nothing was changed", body = ErrorEnvelope),
        (status = 422, description = "The key is revoked", body = ErrorEnvelope)),
    security(("bearer" = ["keys.write"])))]
pub async fn rotate_api_key(
    State(state): State<AppState>,
    principal: Principal,
    ResourceId(id): ResourceId,
    OptionalJson(body): OptionalJson<RotateApiKey>,
) -> ApiResult<ApiData<ApiKeyWithSecret>> {
    principal.require("keys.write")?;
    let grace = body.unwrap_or_default().grace_period_seconds.unwrap_or(0);
    let minted = service::rotate(
        state.store.as_ref(),
        &state.governance.audit,
        &state.keys,
        &principal,
        &id,
        grace,
    )
    .await?;
    Ok(ok(minted.into()))
}

/// A key's status as the document names it (the answer writes the text).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)] // Names the values in the OpenAPI document only.
pub enum KeyStatusName {
    Active,
    Expired,
    Revoked,
}
