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
    let path = loggable_path(req.uri().path());
    let span =
        tracing::info_span!("request", request_id = %id, method = %req.method(), path = %path);
    let mut response = REQUEST_ID
        .scope(id.clone(), next.run(req).instrument(span))
        .await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(HEADER, value);
    }
    response
}

/// The path as logs show it: a hold token in it (`/enforce/hold/{token}`)
/// is a bearer secret, shown by its first characters only.
fn loggable_path(path: &str) -> std::borrow::Cow<'_, str> {
    // Hold tokens are path segments by design; keys and tokens pasted
    // into a path by mistake are secrets all the same.
    const SECRET_STARTS: [&str; 3] = ["hold_", "wdn_", "eyJ"];
    let secret = |segment: &str| SECRET_STARTS.iter().any(|s| segment.starts_with(s));
    if !path.split('/').any(secret) {
        return path.into();
    }
    path.split('/')
        .map(|segment| {
            if secret(segment) {
                format!("{}…", segment.chars().take(9).collect::<String>())
            } else {
                segment.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
        .into()
}

#[cfg(test)]
mod tests {
    use super::loggable_path;

    #[test]
    fn keys_pasted_into_a_path_are_not_logged() {
        let shown = loggable_path("/api/v1/agents/wdn_live_0123456789abcdef/drift").into_owned();
        assert_eq!(shown, "/api/v1/agents/wdn_live_…/drift");
    }

    #[test]
    fn hold_tokens_are_not_logged() {
        let token = format!("hold_{}", "ab".repeat(32));
        for prefix in ["/api/v1/enforce/hold/", "/v1/enforce/hold/"] {
            let shown = loggable_path(&format!("{prefix}{token}")).into_owned();
            assert_eq!(shown, format!("{prefix}hold_abab…"));
        }
        assert_eq!(
            loggable_path("/api/v1/holds/hld_1/approve"),
            "/api/v1/holds/hld_1/approve"
        );
    }
}
