//! `/api/v1/auth/token`: trade an API key for a one-hour signed token.

use axum::extract::{FromRequest, Request, State};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use warden_core::time::now_ms;

use crate::auth::middleware_support::{request_ip, set_limit_headers, take_from_bucket};
use crate::http::envelope::{ok, DataEnvelope};
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::ApiJson;
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// A `wdn_live_…` or `wdn_test_…` key.
    pub api_key: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    /// An EdDSA-signed JWT carrying the key's organization, environment and
    /// scopes; send it as `Authorization: Bearer <token>`.
    pub token: String,
    /// Seconds until it expires (3600, or less if the key expires sooner).
    pub expires_in: i64,
    /// Always `Bearer`.
    pub token_type: String,
}

/// Exchange a key for a token.
#[utoipa::path(post, path = "/api/v1/auth/token", tag = "auth", request_body = TokenRequest,
    responses(
        (status = 200, description = "A signed token", body = DataEnvelope<TokenResponse>),
        (status = 401, description = "The key is invalid, expired or revoked", body = crate::http::error::ErrorEnvelope),
        (status = 403, description = "The key may not be used from this address", body = crate::http::error::ErrorEnvelope),
        (status = 429, description = "The organization's rate limit is exceeded", body = crate::http::error::ErrorEnvelope)),
    security(()))]
pub async fn exchange_token(State(state): State<AppState>, req: Request) -> Response {
    match exchange(state, req).await {
        Ok(response) => response,
        Err(err) => err.into_response(),
    }
}

async fn exchange(state: AppState, req: Request) -> ApiResult<Response> {
    let ip = request_ip(&state, &req);
    let ApiJson(body) = ApiJson::<TokenRequest>::from_request(req, &state).await?;
    if let Some(refused) = crate::auth::misplaced_key(body.api_key.trim()) {
        return Err(refused);
    }
    let (key, org, digest) = state.keys.resolve_key(body.api_key.trim()).await?;
    // Refused for its address before the bucket: a leaked copy of the key
    // spends nothing of its organization's budget.
    if !key.admits(ip) {
        return Err(ApiError::forbidden(format!(
            "this key may not be used from {ip}"
        )));
    }
    let verdict = match take_from_bucket(&state, &org.id, org.rate_limit).await {
        Ok(verdict) => verdict,
        Err(refused) => return Ok(refused),
    };
    state.keys.note_use(&key.id);
    let issued = state
        .keys
        .tokens()
        .issue(&key, &digest, now_ms())
        .map_err(ApiError::internal)?;
    let mut response = ok(TokenResponse {
        token: issued.token,
        expires_in: issued.expires_in,
        token_type: "Bearer".into(),
    })
    .into_response();
    set_limit_headers(response.headers_mut(), &verdict);
    Ok(response)
}
