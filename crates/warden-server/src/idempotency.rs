//! `Idempotency-Key` on POST: a retry with the same key and body gets the
//! first response again; the same key with another body is a `409`.
//! Successful responses are kept for 24 hours; a failed request keeps
//! nothing, so it can be retried with a corrected body.
//!
//! Records belong to the API key that made the request, so one caller can
//! never replay another's response, and the recorded body is sealed under
//! the master key, since it may carry a new key's secret.

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use warden_core::event::limits::MAX_BATCH_BYTES;
use warden_core::time::now_ms;
use warden_store::IdempotencyState;

use crate::auth::Principal;
use crate::http::error::ApiError;
use crate::http::extract::{body_failure, refuse_declared_over, DEFAULT_BODY_LIMIT};
use crate::state::AppState;
use crate::telemetry::ndjson::MAX_NDJSON_BYTES;

pub const HEADER: &str = "idempotency-key";

/// A key this request claimed, for a route that records its answer in
/// the transaction of its change (event ingest): then a crash between
/// the commit and the answer leaves the answer for the retry.
#[derive(Debug, Clone)]
pub struct Claim {
    pub tenant: warden_core::Tenant,
    pub key: String,
}

impl Claim {
    /// The answer to record with the change: `data` in the success
    /// envelope, sealed as the middleware seals what it records.
    pub fn answer<T: serde::Serialize + utoipa::ToSchema>(
        &self,
        state: &AppState,
        status: StatusCode,
        data: T,
    ) -> Option<warden_store::IdempotentAnswer> {
        use crate::http::envelope::{DataEnvelope, Meta};
        let body = serde_json::to_vec(&DataEnvelope {
            data,
            meta: Meta::now(),
        })
        .ok()?;
        Some(warden_store::IdempotentAnswer {
            tenant: self.tenant.clone(),
            key: self.key.clone(),
            status: status.as_u16(),
            sealed_body: state.master.seal(&body),
        })
    }
}
/// How long a recorded response is replayed.
pub const RETENTION_MS: i64 = 24 * 3600 * 1000;
/// Responses larger than this are not recorded (the request still runs).
const MAX_RECORDED: usize = 4 * 1024 * 1024;

/// Routes that must answer afresh every time: a decision answers for the
/// moment it is asked (the agent may have been suspended, an approval used
/// since), and every call is audited, so a replayed decision would be a
/// decision nobody made. A dry run answers for the policies as they are
/// now, and a search for the events as they are now: replayed, either
/// would give a stale answer (the old set's decision, none of the events
/// since).
pub const ANSWERED_AFRESH: [&str; 4] = [
    "/api/v1/enforce",
    "/v1/enforce",
    "/api/v1/policies/test",
    "/api/v1/siem/search",
];

pub async fn replay_or_record(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if req.method() != Method::POST || ANSWERED_AFRESH.contains(&req.uri().path()) {
        return next.run(req).await;
    }
    let Some(raw_key) = req.headers().get(HEADER) else {
        return next.run(req).await;
    };
    // Two keys: a proxy or client reading the other copy would replay
    // where Warden runs again, or the reverse.
    if req.headers().get_all(HEADER).iter().nth(1).is_some() {
        return ApiError::invalid(
            "Idempotency-Key",
            "the Idempotency-Key header is sent more than once: send one",
        )
        .into_response();
    }
    let key =
        match raw_key.to_str() {
            Ok(k)
                if !k.trim().is_empty()
                    && k.len() <= 255
                    && k.trim().bytes().all(|b| b.is_ascii_graphic() || b == b' ') =>
            {
                k.trim().to_string()
            }
            _ => return ApiError::invalid(
                "Idempotency-Key",
                "Idempotency-Key must be 1 to 255 visible ASCII characters (spaces allowed inside)",
            )
            .into_response(),
        };
    let Some(principal) = req.extensions().get::<Principal>().cloned() else {
        return next.run(req).await;
    };
    let tenant = principal.tenant();
    let key = format!("{}:{key}", principal.key_id);
    let limit = body_limit(req.uri().path());
    if let Err(too_large) = refuse_declared_over(req.headers(), limit) {
        return too_large.into_response();
    }
    let (parts, body) = req.into_parts();
    let bytes = match to_bytes(body, limit).await {
        Ok(b) => b,
        Err(err) => return read_failure(err, limit).into_response(),
    };
    let mut hasher = Sha256::new();
    hasher.update(parts.method.as_str());
    hasher.update([0]);
    hasher.update(parts.uri.path());
    hasher.update([0]);
    hasher.update(&bytes);
    let fingerprint = hex::encode(hasher.finalize());
    let now = now_ms();
    let state_found = state
        .store
        .begin_idempotent(&tenant, &key, &fingerprint, now, now - RETENTION_MS)
        .await;
    match state_found {
        Err(err) => ApiError::from(err).into_response(),
        Ok(IdempotencyState::Mismatch) => {
            ApiError::conflict("this Idempotency-Key was already used with a different request")
                .with_field("Idempotency-Key")
                .into_response()
        }
        Ok(IdempotencyState::InProgress) => {
            // Unlike a key used with another body, this one is worth
            // retrying: the first request's answer is replayed once it ends.
            let mut e =
                ApiError::conflict("a request with this Idempotency-Key is still in progress")
                    .with_field("Idempotency-Key");
            e.retry_after = Some(1);
            e.into_response()
        }
        Ok(IdempotencyState::Completed { status, body }) => {
            let Some(body) = state.master.open(&body) else {
                return ApiError::internal("a recorded response could not be opened")
                    .into_response();
            };
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            let mut response = (status, body).into_response();
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
            response
        }
        Ok(IdempotencyState::Fresh) => {
            let mut parts = parts;
            parts.extensions.insert(Claim {
                tenant: tenant.clone(),
                key: key.clone(),
            });
            let response = next
                .run(Request::from_parts(parts, Body::from(bytes)))
                .await;
            if !response.status().is_success() {
                if let Err(err) = state.store.abandon_idempotent(&tenant, &key).await {
                    tracing::warn!(error = %err, "could not release an idempotency key");
                }
                return response;
            }
            let (parts, body) = response.into_parts();
            let Ok(body) = to_bytes(body, MAX_RECORDED).await else {
                return ApiError::internal("response too large to record for idempotency")
                    .into_response();
            };
            let sealed = state.master.seal(&body);
            if let Err(err) = state
                .store
                .finish_idempotent(&tenant, &key, parts.status.as_u16(), &sealed)
                .await
            {
                tracing::warn!(error = %err, "could not record an idempotent response");
            }
            Response::from_parts(parts, Body::from(body))
        }
    }
}

/// The most a request's body may hold to be fingerprinted: its route's
/// own limit, so that a key made safe to retry is never refused a body
/// the route takes. (An NDJSON body with a key is therefore read whole
/// before it is processed, not streamed.)
fn body_limit(path: &str) -> usize {
    match path {
        "/api/v1/events/batch" => MAX_BATCH_BYTES,
        "/api/v1/events/ndjson" => MAX_NDJSON_BYTES,
        _ => DEFAULT_BODY_LIMIT,
    }
}

/// A body read for its fingerprint that failed: too large, or unreadable
/// (bad chunking, a stall).
fn read_failure(err: axum::Error, limit: usize) -> ApiError {
    let inner = err.into_inner();
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(inner.as_ref());
    while let Some(e) = source {
        if e.is::<http_body_util::LengthLimitError>() {
            return ApiError::payload_too_large(limit);
        }
        source = e.source();
    }
    ApiError::invalid("body", body_failure(&inner.to_string()))
}
