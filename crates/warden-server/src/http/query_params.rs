//! Unknown query parameters are refused on every route (API conventions),
//! and so is a body sent to a route that takes none. A route's known
//! parameters, and whether it takes a body, are what its operation
//! declares in the OpenAPI document, so the document stays the one list
//! of what each route takes.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::path::{Operation, ParameterIn, PathItem};
use utoipa::openapi::OpenApi;

use super::error::ApiError;

/// A path's operations with their methods.
pub fn operations(item: &PathItem) -> impl Iterator<Item = (Method, &Operation)> {
    [
        (Method::GET, &item.get),
        (Method::POST, &item.post),
        (Method::PUT, &item.put),
        (Method::PATCH, &item.patch),
        (Method::DELETE, &item.delete),
    ]
    .into_iter()
    .filter_map(|(method, operation)| Some((method, operation.as_ref()?)))
}

/// The method whose operation answers `method`: a HEAD is answered by
/// the GET route.
pub fn answered_by(method: &Method) -> &Method {
    if method == Method::HEAD {
        &Method::GET
    } else {
        method
    }
}

/// The query parameters of each operation, by method and path template,
/// and the operations that take no body (by path, then method: looked up
/// without allocating).
#[derive(Default)]
pub struct DeclaredParams(
    HashMap<(Method, String), HashSet<String>>,
    HashMap<String, Vec<Method>>,
);

impl DeclaredParams {
    pub fn from_document(document: &OpenApi) -> Arc<Self> {
        let mut declared = HashMap::new();
        let mut bodyless: HashMap<String, Vec<Method>> = HashMap::new();
        for (path, item) in &document.paths.paths {
            let shared = item.parameters.iter().flatten();
            for (method, operation) in operations(item) {
                let names = shared
                    .clone()
                    .chain(operation.parameters.iter().flatten())
                    .filter(|p| matches!(p.parameter_in, ParameterIn::Query))
                    .map(|p| p.name.clone())
                    .collect();
                if operation.request_body.is_none() && method != Method::GET {
                    bodyless
                        .entry(path.clone())
                        .or_default()
                        .push(method.clone());
                }
                declared.insert((method, path.clone()), names);
            }
        }
        Arc::new(DeclaredParams(declared, bodyless))
    }

    /// Whether the operation takes no body (a GET's is never read).
    fn takes_no_body(&self, method: &Method, path: &str) -> bool {
        self.1
            .get(path)
            .is_some_and(|methods| methods.contains(method))
    }

    /// The first parameter of `query` the operation does not declare.
    fn unknown(&self, method: &Method, path: &str, query: &str) -> Option<String> {
        let known = self.0.get(&(answered_by(method).clone(), path.to_string()));
        form_urlencoded::parse(query.as_bytes())
            .map(|(name, _)| name.into_owned())
            .find(|name| !known.is_some_and(|k| k.contains(name)))
    }
}

/// Middleware: a 400 naming `body` for a body sent to a route that takes
/// none. It runs before an `Idempotency-Key` is recorded, which reads the
/// body.
pub async fn refuse_unwanted_body(
    State(declared): State<Arc<DeclaredParams>>,
    matched: Option<MatchedPath>,
    request: Request,
    next: Next,
) -> Response {
    // A body sent to a route that reads none would be silently ignored,
    // as unknown fields are not.
    let has_body = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .is_some_and(|length| length.as_bytes() != b"0")
        || request
            .headers()
            .contains_key(axum::http::header::TRANSFER_ENCODING);
    let request = match (has_body, &matched) {
        (true, Some(path)) if declared.takes_no_body(request.method(), path.as_str()) => {
            // Declared longer than anything that says nothing: refused from
            // the headers, before a client waiting on `Expect:
            // 100-continue` is invited to send it, or one that sends it
            // holds the connection until the body deadline.
            let declared = super::extract::declared_length(request.headers());
            if declared.is_some_and(|n| n > NOTHING_SAID_LIMIT as u64) {
                return ApiError::invalid("body", "this route takes no body: send none")
                    .into_response();
            }
            match nothing_in_body(request).await {
                Ok(request) => request,
                Err(refused) => return refused.into_response(),
            }
        }
        _ => request,
    };
    next.run(request).await
}

/// Middleware: a 400 naming the first undeclared query parameter.
pub async fn refuse_unknown(
    State(declared): State<Arc<DeclaredParams>>,
    matched: Option<MatchedPath>,
    request: Request,
    next: Next,
) -> Response {
    if let (Some(query), Some(path)) = (request.uri().query(), &matched) {
        if let Some(name) = declared.unknown(request.method(), path.as_str(), query) {
            return ApiError::invalid(
                name.clone(),
                format!("unknown query parameter `{name}`: this route does not take it"),
            )
            .into_response();
        }
    }
    next.run(request).await
}

/// The most a body that says nothing (`{}`, `null`, white space) is read
/// for on a route that takes none.
const NOTHING_SAID_LIMIT: usize = 1024;

/// The request of a route that reads no body, if what it carries says
/// nothing: empty, an empty JSON object or `null`, as clients send by
/// habit. Anything else is a 400 rather than ignored.
async fn nothing_in_body(request: Request) -> Result<Request, ApiError> {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, NOTHING_SAID_LIMIT)
        .await
        .map_err(|_| ApiError::invalid("body", "this route takes no body: send none"))?;
    let says_nothing = bytes.trim_ascii().is_empty()
        || serde_json::from_slice::<serde_json::Value>(&bytes)
            .is_ok_and(|v| v.is_null() || v.as_object().is_some_and(|o| o.is_empty()));
    if says_nothing {
        Ok(Request::from_parts(parts, axum::body::Body::empty()))
    } else {
        Err(ApiError::invalid(
            "body",
            "this route takes no body: send none",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_declared_names_pass() {
        let mut map = HashMap::new();
        map.insert(
            (Method::GET, "/a".to_string()),
            HashSet::from(["limit".to_string()]),
        );
        map.insert((Method::GET, "/a/{id}".to_string()), HashSet::new());
        let declared = DeclaredParams(map, HashMap::new());
        assert_eq!(declared.unknown(&Method::GET, "/a", "limit=5"), None);
        assert_eq!(declared.unknown(&Method::HEAD, "/a", "limit=5"), None);
        assert_eq!(
            declared.unknown(&Method::GET, "/a", "limit=5&lmit=6"),
            Some("lmit".into())
        );
        assert_eq!(
            declared.unknown(&Method::GET, "/a/{id}", "wait=3"),
            Some("wait".into())
        );
        assert_eq!(declared.unknown(&Method::GET, "/a/{id}", ""), None);
    }
}
