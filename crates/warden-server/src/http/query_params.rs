//! Unknown query parameters are refused on every route (API conventions).
//! A route's known parameters are the ones its operation declares in the
//! OpenAPI document, so a route that reads none refuses any, and the
//! document stays the one list of what each route takes.

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

/// The query parameters of each operation, by method and path template.
#[derive(Default)]
pub struct DeclaredParams(HashMap<(Method, String), HashSet<String>>);

impl DeclaredParams {
    pub fn from_document(document: &OpenApi) -> Arc<Self> {
        let mut declared = HashMap::new();
        for (path, item) in &document.paths.paths {
            let shared = item.parameters.iter().flatten();
            for (method, operation) in operations(item) {
                let names = shared
                    .clone()
                    .chain(operation.parameters.iter().flatten())
                    .filter(|p| matches!(p.parameter_in, ParameterIn::Query))
                    .map(|p| p.name.clone())
                    .collect();
                declared.insert((method, path.clone()), names);
            }
        }
        Arc::new(DeclaredParams(declared))
    }

    /// The first parameter of `query` the operation does not declare.
    fn unknown(&self, method: &Method, path: &str, query: &str) -> Option<String> {
        // A HEAD is answered by the GET route.
        let method = if method == Method::HEAD {
            Method::GET
        } else {
            method.clone()
        };
        let known = self.0.get(&(method, path.to_string()));
        form_urlencoded::parse(query.as_bytes())
            .map(|(name, _)| name.into_owned())
            .find(|name| !known.is_some_and(|k| k.contains(name)))
    }
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
        let declared = DeclaredParams(map);
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
