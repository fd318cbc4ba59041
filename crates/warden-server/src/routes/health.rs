//! Operations endpoints, unauthenticated: liveness, readiness, metrics.

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::ratelimit::LimiterState;
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`.
    #[schema(value_type = names::HealthName)]
    pub status: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReadinessChecks {
    /// `ok`, `unreachable`, or `damaged` once a read, write or checkpoint
    /// found the database file malformed (writes are refused until the
    /// store is restored).
    #[schema(value_type = names::StoreCheck)]
    pub store: String,
    /// `disabled` (no --redis-url), `ok`, `unreachable` or `refused`
    /// (Redis answered and refused Warden's password, database or
    /// permissions); local limits stand in for the last two.
    #[schema(value_type = names::RedisCheck)]
    pub redis: String,
    /// `local`, `redis`, or `local_fallback`.
    #[schema(value_type = names::RateLimitsCheck)]
    pub rate_limits: String,
    /// `ok`; `catching_up` from the start while the index replays events
    /// the log held and it did not (after a crash, or into a new or lost
    /// index directory): searches miss them until it is done;
    /// `trailing` while an event acknowledged over 5 seconds ago is
    /// not yet searchable (a replay after a crash, or a machine too busy
    /// to index: acknowledgments wait for it); `failing` while the search
    /// indexer fails and retries
    /// (events are still taken in and kept; they become searchable once
    /// it recovers); `damaged` once a search found the index damaged on
    /// disk (until `warden reindex` rebuilds it).
    #[schema(value_type = names::IndexCheck)]
    pub index: String,
    /// `ok`, or `head_edited` while this replica refuses audited writes
    /// to a chain whose stored head was edited (see
    /// `GET /api/v1/audit/verify`); `ok` again once a write finds it put
    /// back.
    #[schema(value_type = names::AuditChainCheck)]
    pub audit_chain: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// `ready`, `degraded` (serving, with Redis unreachable, or the search
    /// index catching up, failing or trailing) or `unavailable`.
    #[schema(value_type = names::ReadinessName)]
    pub status: String,
    /// `sqlite` or `postgres`.
    #[schema(value_type = names::BackendName)]
    pub backend: String,
    pub checks: ReadinessChecks,
}

/// How long an acknowledged event may stay unsearchable before readiness
/// says the index trails.
const TRAILING: Duration = Duration::from_secs(5);

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Alive", body = Health)), security(()))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// Readiness: the store answers; Redis, when configured, is reported.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready, or degraded but serving", body = Readiness),
        (status = 503, description = "The store is unreachable or damaged", body = Readiness)),
    security(()))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    let store = match tokio::time::timeout(Duration::from_secs(2), state.store.ping()).await {
        Ok(Ok(())) => "ok",
        Ok(Err(warden_store::StoreError::Damaged(_))) => "damaged",
        Ok(Err(warden_store::StoreError::Full(_))) => "full",
        _ => "unreachable",
    };
    // A full disk refuses writes but serves reads: degraded.
    let store_ok = matches!(store, "ok" | "full");
    let store_full = store == "full";
    let redis = match state.limiter.redis() {
        None => "disabled",
        Some(r) if r.ping().await => "ok",
        Some(r) if r.is_refused() => "refused",
        Some(_) => "unreachable",
    };
    let rate_limits = match state.limiter.state() {
        LimiterState::Local => "local",
        LimiterState::Redis => "redis",
        LimiterState::RedisFallback => "local_fallback",
    };
    let health = &state.telemetry.health;
    let index = if health.is_damaged() {
        "damaged"
    } else if health.is_failing() {
        "failing"
    } else if health.lag(*state.telemetry.searchable.borrow()) > TRAILING {
        "trailing"
    } else if health.is_catching_up() {
        "catching_up"
    } else {
        "ok"
    };
    let index_failing = index != "ok";
    let chain_refused = crate::governance::audit_log::refused_heads() > 0;
    let (status, code) = match (store_ok, redis) {
        (false, _) => ("unavailable", StatusCode::SERVICE_UNAVAILABLE),
        (true, "unreachable" | "refused") => ("degraded", StatusCode::OK),
        _ if index_failing || chain_refused || store_full => ("degraded", StatusCode::OK),
        _ => ("ready", StatusCode::OK),
    };
    let body = Readiness {
        status: status.into(),
        backend: state.store.backend().as_str().into(),
        checks: ReadinessChecks {
            store: store.into(),
            redis: redis.into(),
            rate_limits: rate_limits.into(),
            index: index.into(),
            audit_chain: if chain_refused { "head_edited" } else { "ok" }.into(),
        },
    };
    (code, Json(body)).into_response()
}

/// Prometheus metrics in the OpenMetrics text format.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "OpenMetrics text", body = String, content_type = "application/openmetrics-text")),
    security(()))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    let telemetry = &state.telemetry;
    // Redis as this replica last found it (connecting, a rate-limited
    // request or a readiness probe): one that has served no request yet
    // reads 1 once connected.
    if let Some(redis) = state.limiter.redis() {
        state.metrics.set_redis_up(redis.is_up());
    }
    let searchable = *telemetry.searchable.borrow();
    state.metrics.set_index(searchable, &telemetry.health);
    state.metrics.set_process();
    (
        [(
            header::CONTENT_TYPE,
            // What prometheus_client writes: the OpenMetrics text format.
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

/// The values of the health answers' fields, named for the OpenAPI
/// document only (the answers write the text).
#[allow(dead_code)]
mod names {
    use serde::Serialize;
    use utoipa::ToSchema;

    #[derive(Serialize, ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum HealthName {
        Ok,
    }

    #[derive(Serialize, ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum ReadinessName {
        Ready,
        Degraded,
        Unavailable,
    }

    #[derive(Serialize, ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum BackendName {
        Sqlite,
        Postgres,
    }

    #[derive(Serialize, ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum StoreCheck {
        Ok,
        Unreachable,
        Damaged,
        Full,
    }

    #[derive(Serialize, ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum RedisCheck {
        Disabled,
        Ok,
        Unreachable,
        Refused,
    }

    #[derive(Serialize, ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum RateLimitsCheck {
        Local,
        Redis,
        LocalFallback,
    }

    #[derive(Serialize, ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum IndexCheck {
        Ok,
        CatchingUp,
        Trailing,
        Failing,
        Damaged,
    }

    #[derive(Serialize, ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum AuditChainCheck {
        Ok,
        HeadEdited,
    }
}
