//! Headers that tell browsers and proxies how to treat every answer.
//!
//! API answers carry tenants' data and, once each, secrets (a new key, a
//! hold token, a token from exchange): no cache may keep them, no browser
//! may guess them to be another type, and no page may frame them. The
//! reference at `/docs` is a page of the server's own scripts and styles;
//! its policy lets it load those and the OpenAPI document, nothing else.

use axum::extract::Request;
use axum::http::header::{
    HeaderName, HeaderValue, CACHE_CONTROL, CONTENT_SECURITY_POLICY, REFERRER_POLICY,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::middleware::Next;
use axum::response::Response;

/// For every answer but the reference's pages: nothing to load, nothing to
/// frame it in (OWASP's advice for a JSON API).
const API_POLICY: &str = "default-src 'none'; frame-ancestors 'none'";

/// For the reference (Swagger UI): its own scripts and styles (it sets
/// styles inline), its own images, and the OpenAPI document.
const DOCS_POLICY: &str =
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// Every API answer's headers, also written by hand where an answer is
/// made below the router (`turn_away`).
pub const FOR_API: [(HeaderName, &str); 5] = [
    (X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (X_FRAME_OPTIONS, "DENY"),
    (REFERRER_POLICY, "no-referrer"),
    (CONTENT_SECURITY_POLICY, API_POLICY),
    (CACHE_CONTROL, "no-store"),
];

/// Sets the headers, unless a route set its own.
pub async fn set(request: Request, next: Next) -> Response {
    let docs = request.uri().path().starts_with("/docs");
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let mut default = |name: HeaderName, value: &'static str| {
        headers
            .entry(name)
            .or_insert(HeaderValue::from_static(value));
    };
    if docs {
        default(X_CONTENT_TYPE_OPTIONS, "nosniff");
        default(X_FRAME_OPTIONS, "DENY");
        default(REFERRER_POLICY, "no-referrer");
        default(CONTENT_SECURITY_POLICY, DOCS_POLICY);
    } else {
        for (name, value) in FOR_API {
            default(name, value);
        }
    }
    response
}
