//! The success envelope: `{"data": …, "meta": {request_id, timestamp}}` for
//! one object, plus `next_cursor` for a list.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

/// Facts about the response itself.
#[derive(Debug, Serialize, ToSchema)]
pub struct Meta {
    /// The id also sent in `X-Request-Id`.
    #[schema(example = "req_4f1c9e0a2b7d6c5e8f9a0b1c")]
    pub request_id: String,
    /// When the response was made, RFC 3339 UTC with milliseconds.
    #[schema(format = DateTime)]
    pub timestamp: String,
}

impl Meta {
    pub fn now() -> Self {
        Meta {
            request_id: super::request_id::current(),
            timestamp: warden_core::time::to_rfc3339(warden_core::time::now_ms()),
        }
    }
}

/// One object.
#[derive(Debug, Serialize, ToSchema)]
pub struct DataEnvelope<T: ToSchema> {
    pub data: T,
    pub meta: Meta,
}

/// A page of a list.
#[derive(Debug, Serialize, ToSchema)]
pub struct ListEnvelope<T: ToSchema> {
    pub data: Vec<T>,
    /// Pass as `cursor` for the next page; null on the last page.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
    pub meta: Meta,
}

/// A success response carrying one object with its status.
pub struct ApiData<T>(pub StatusCode, pub T);

impl<T: Serialize + ToSchema> IntoResponse for ApiData<T> {
    fn into_response(self) -> Response {
        let body = DataEnvelope {
            data: self.1,
            meta: Meta::now(),
        };
        (self.0, Json(body)).into_response()
    }
}

/// `200` with one object.
pub fn ok<T>(data: T) -> ApiData<T> {
    ApiData(StatusCode::OK, data)
}

/// `201` with the created object.
pub fn created<T>(data: T) -> ApiData<T> {
    ApiData(StatusCode::CREATED, data)
}

/// A success response carrying a page.
pub struct ApiList<T>(pub Vec<T>, pub Option<String>);

impl<T: Serialize + ToSchema> IntoResponse for ApiList<T> {
    fn into_response(self) -> Response {
        let body = ListEnvelope {
            data: self.0,
            next_cursor: self.1,
            meta: Meta::now(),
        };
        Json(body).into_response()
    }
}
