//! Every request gets an id, returned in `X-Request-Id`, carried by every
//! envelope and log line, so a user's report finds the server's log.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

tokio::task_local! {
    static REQUEST_ID: String;
}

pub const HEADER: &str = "x-request-id";

/// The id of the request being served, or a fresh one outside a request.
pub fn current() -> String {
    REQUEST_ID
        .try_with(|id| id.clone())
        .unwrap_or_else(|_| warden_core::id::new_id(warden_core::id::prefix::REQUEST))
}

/// Assigns the id, runs the request inside its span, and sets the header.
pub async fn assign(req: Request, next: Next) -> Response {
    let id = warden_core::id::new_id(warden_core::id::prefix::REQUEST);
    let span = tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.uri().path());
    let mut response = REQUEST_ID
        .scope(id.clone(), next.run(req).instrument(span))
        .await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(HEADER, value);
    }
    response
}
