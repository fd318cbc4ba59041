//! The router: every route, its middleware, and the OpenAPI document built
//! from the same annotations, so the document says what the server does.

pub(crate) mod agents;
mod api_keys;
pub(crate) mod audit;
mod auth;
mod drift;
pub(crate) mod enforce;
pub(crate) mod events;
mod health;
mod holds;
mod openapi;
pub(crate) mod policies;
mod policy_settings;
mod siem;
mod thoth;
pub(crate) mod wire;

use crate::auth::scope_gate::{require_declared_scope, DeclaredScopes};
use axum::extract::DefaultBodyLimit;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::IntoResponse;
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::SwaggerUi;

use crate::http::error::ApiError;
use crate::http::extract::DEFAULT_BODY_LIMIT;
use crate::http::query_params::{refuse_unknown, refuse_unwanted_body, DeclaredParams};
use crate::http::request_id;
use crate::state::AppState;

pub use openapi::ApiDoc;

/// The whole API with its middleware, ready to serve.
pub fn router(state: AppState) -> Router {
    let (authenticated, mut document) = OpenApiRouter::<AppState>::with_openapi(ApiDoc::openapi())
        .routes(routes!(agents::list_agents, agents::create_agent))
        .routes(routes!(
            agents::get_agent,
            agents::update_agent,
            agents::delete_agent
        ))
        .routes(routes!(api_keys::list_api_keys, api_keys::create_api_key))
        .routes(routes!(api_keys::get_api_key, api_keys::revoke_api_key))
        .routes(routes!(api_keys::rotate_api_key))
        .routes(routes!(policies::list_policies, policies::create_policy))
        .routes(routes!(
            policies::get_policy,
            policies::update_policy,
            policies::delete_policy
        ))
        .routes(routes!(policies::list_policy_versions))
        .routes(routes!(enforce::test_policies))
        .routes(routes!(
            policy_settings::get_policy_settings,
            policy_settings::update_policy_settings
        ))
        .routes(routes!(enforce::enforce))
        .routes(routes!(enforce::get_hold_by_token))
        .routes(routes!(holds::list_holds))
        .routes(routes!(holds::get_hold))
        .routes(routes!(holds::approve_hold))
        .routes(routes!(holds::deny_hold))
        .routes(routes!(audit::list_audit))
        .routes(routes!(audit::verify_audit))
        .routes(routes!(audit::get_audit))
        .routes(routes!(drift::get_drift_profile))
        .routes(routes!(drift::rebuild_drift_profile))
        .routes(routes!(thoth::thoth_enforce))
        .routes(routes!(thoth::thoth_hold))
        .routes(routes!(thoth::thoth_events))
        .routes(routes!(events::ingest_batch))
        .routes(routes!(events::ingest_ndjson))
        .routes(routes!(events::list_events))
        .routes(routes!(events::get_event))
        .routes(routes!(events::get_retention, events::set_retention))
        .routes(routes!(siem::search))
        .split_for_parts();
    let (public, public_document) = OpenApiRouter::<AppState>::new()
        .routes(routes!(auth::exchange_token))
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::metrics))
        .split_for_parts();
    document.merge(public_document);
    openapi::apply_conventions(&mut document);
    let declared = DeclaredParams::from_document(&document);
    let scopes = DeclaredScopes::from_document(&document);

    // Outermost last: authentication, the route's scope, a body where
    // none is taken, idempotent replay, then the query's names.
    let authenticated = authenticated
        .route_layer(from_fn_with_state(declared.clone(), refuse_unknown))
        .route_layer(from_fn_with_state(
            state.clone(),
            crate::idempotency::replay_or_record,
        ))
        .route_layer(from_fn_with_state(declared.clone(), refuse_unwanted_body))
        .route_layer(from_fn_with_state(scopes, require_declared_scope))
        .route_layer(from_fn_with_state(state.clone(), crate::auth::authenticate));
    let public = public
        .route_layer(from_fn_with_state(declared.clone(), refuse_unknown))
        .route_layer(from_fn_with_state(declared, refuse_unwanted_body));

    Router::new()
        .merge(authenticated)
        .merge(public)
        .merge(
            Router::from(SwaggerUi::new("/docs").url("/api/v1/openapi.json", document))
                .layer(from_fn(openapi::page_not_found)),
        )
        .fallback(|| async { ApiError::not_found("route").into_response() })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed().into_response() })
        .layer(DefaultBodyLimit::max(DEFAULT_BODY_LIMIT))
        .layer(CatchPanicLayer::custom(
            |_: Box<dyn std::any::Any + Send>| {
                ApiError::internal("a handler panicked").into_response()
            },
        ))
        .layer(from_fn_with_state(state.clone(), crate::metrics::track))
        .layer(from_fn(crate::http::framing::refuse_bad_framing))
        .layer(from_fn(request_id::assign))
        .layer(from_fn(crate::http::unread_body::close_when_unread))
        .layer(from_fn(crate::http::security_headers::set))
        .with_state(state)
}
