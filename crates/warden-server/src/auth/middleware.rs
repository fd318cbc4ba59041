//! The gate in front of every authenticated route: credential, network
//! reach, then the organization's rate limit. The limit headers go on every
//! response that took from the bucket, errors included. A key refused for
//! its address takes nothing: a leaked copy of a key kept to a network
//! must not be able to spend its organization's budget.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::client_ip;
use crate::http::error::ApiError;
use crate::ratelimit::Verdict;
use crate::state::AppState;
use warden_core::org::RateLimit;

/// The credential in `Authorization: Bearer …`, or in `X-Api-Key` as some
/// vendor SDKs send it. An `Authorization` header of another scheme (a
/// proxy's `Basic`) or an empty one does not hide `X-Api-Key`: the Thoth
/// SDK sends both because ingress stacks rewrite `Authorization`. A
/// Bearer credential names the caller and wins.
pub fn presented_credential(headers: &HeaderMap) -> Option<&str> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|text| text.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, rest)| rest.trim());
    bearer.or_else(|| {
        headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|key| !key.is_empty())
    })
}

/// Where the Thoth SDK sends its events.
const THOTH_EVENTS_PATH: &str = "/v1/events/batch";
/// The SDK's header for a key dedicated to its events, sent beside or
/// instead of `X-Api-Key` on [`THOTH_EVENTS_PATH`] only.
const THOTH_INGEST_TOKEN: &str = "X-Thoth-Event-Ingest-Token";

/// [`presented_credential`], or on the SDK's events route, where the SDK
/// configured with only an ingest token sends nothing else, that token.
fn request_credential(req: &Request) -> Option<&str> {
    presented_credential(req.headers()).or_else(|| {
        (req.uri().path() == THOTH_EVENTS_PATH)
            .then(|| req.headers().get(THOTH_INGEST_TOKEN))
            .flatten()
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|token| !token.is_empty())
    })
}

/// The client address as the server sees it (see [`client_ip`]).
pub fn request_ip(state: &AppState, req: &Request) -> IpAddr {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    client_ip(peer, req.headers(), &state.trusted_proxies)
}

pub fn set_limit_headers(headers: &mut HeaderMap, verdict: &Verdict) {
    headers.insert("x-ratelimit-limit", HeaderValue::from(verdict.limit));
    headers.insert(
        "x-ratelimit-remaining",
        HeaderValue::from(verdict.remaining),
    );
    headers.insert("x-ratelimit-reset", HeaderValue::from(verdict.reset_at));
}

/// Takes one request from the organization's bucket: the verdict for the
/// limit headers, or the finished 429 (with them) when the bucket is empty.
pub async fn take_from_bucket(
    state: &AppState,
    org_id: &str,
    limit: RateLimit,
) -> Result<Verdict, Response> {
    let verdict = state.limiter.check(org_id, limit, &state.metrics).await;
    if verdict.allowed {
        return Ok(verdict);
    }
    state.metrics.rate_limited();
    let mut response = ApiError::rate_limited(verdict.retry_after).into_response();
    set_limit_headers(response.headers_mut(), &verdict);
    response
        .headers_mut()
        .insert("retry-after-ms", HeaderValue::from(verdict.retry_after_ms));
    Err(response)
}

pub async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    // Two copies of a credential header: a proxy that reads the last and
    // Warden the first would disagree on who is calling.
    for name in ["Authorization", "X-Api-Key", THOTH_INGEST_TOKEN] {
        if req.headers().get_all(name).iter().nth(1).is_some() {
            return ApiError::invalid(
                name,
                format!("the `{name}` header is sent more than once: send one credential"),
            )
            .into_response();
        }
    }
    let Some(credential) = request_credential(&req) else {
        return ApiError::unauthorized(
            "authentication required: send `Authorization: Bearer <API key or token>` (or `X-Api-Key: <API key or token>`)",
        )
        .into_response();
    };
    let ip = request_ip(&state, &req);
    let principal = match state.keys.principal(credential).await {
        Ok(p) => p,
        Err(err) => return err.into_response(),
    };
    if let Err(err) = principal.admits(ip) {
        return err.into_response();
    }
    let verdict = match take_from_bucket(&state, &principal.org_id, principal.rate_limit).await {
        Ok(verdict) => verdict,
        Err(refused) => return refused,
    };
    state.keys.note_use(&principal.key_id);
    req.extensions_mut().insert(principal);
    let mut response = next.run(req).await;
    set_limit_headers(response.headers_mut(), &verdict);
    response
}
