//! API errors and their one mapping to the error envelope:
//! `{"error": {code, message, field?, position?, request_id}}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use warden_core::log_pace::SharedPaced;
use warden_store::StoreError;

/// Where an error is: without `field`, the line and column of the request
/// body that did not parse; with `field`, the line and column inside that
/// field's value (a search query, a policy's pattern or condition).
#[derive(Debug, Clone, Copy, Serialize, ToSchema, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

/// The machine-readable kind of an error.
#[derive(Debug, Clone, Copy, Serialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    Conflict,
    PayloadTooLarge,
    UnsupportedMediaType,
    Unprocessable,
    RateLimited,
    Internal,
    NotImplemented,
    Unavailable,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    /// What went wrong, for a person.
    pub message: String,
    /// The request field (or header, or query parameter) at fault; for a
    /// batch, its first bad item's (`events[3].timestamp`; in a
    /// newline-delimited body `line 2`, or `line 2: timestamp`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Where a body failed to parse.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<Position>,
    /// Every item at fault, when a request carries many (a batch of events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<ItemError>>,
    pub request_id: String,
}

/// One bad item of a request that carries many.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq, Eq)]
pub struct ItemError {
    /// The item's 0-based index in a JSON batch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// The item's 1-based line in a newline-delimited body.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub line: Option<usize>,
    /// The field at fault within the item; empty when the item as a whole
    /// is (a line that is not JSON, an event that is not an object).
    pub field: String,
    pub message: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorEnvelope {
    pub error: ErrorDetail,
}

/// An error answer. A handler returning one has changed nothing.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
    pub field: Option<String>,
    pub position: Option<Position>,
    pub errors: Option<Vec<ItemError>>,
    pub retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
            position: None,
            errors: None,
            retry_after: None,
        }
    }

    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest, message);
        e.field = Some(field.into());
        e
    }

    pub fn malformed(message: impl Into<String>, position: Position) -> Self {
        let mut e = Self::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest, message);
        e.position = Some(position);
        e
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, ErrorCode::Forbidden, message)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            format!("{what} not found"),
        )
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::MethodNotAllowed,
            "this method is not allowed on this path",
        )
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, ErrorCode::Conflict, message)
    }

    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::PayloadTooLarge,
            format!("request body is larger than {limit} bytes"),
        )
    }

    /// A request whose items are refused as a whole: `invalid` items are
    /// bad, and `errors` names the first of them (the message says when
    /// that is not all).
    pub fn invalid_items(
        message: impl Into<String>,
        invalid: usize,
        errors: Vec<ItemError>,
    ) -> Self {
        let mut message = message.into();
        if invalid > errors.len() {
            message.push_str(&format!("; the first {} are listed", errors.len()));
        }
        let mut e = Self::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest, message);
        e.field = errors.first().map(|item| match (item.index, item.line) {
            (Some(i), _) if item.field.is_empty() => format!("events[{i}]"),
            (Some(i), _) => format!("events[{i}].{}", item.field),
            (None, Some(line)) if item.field.is_empty() => format!("line {line}"),
            (None, Some(line)) => format!("line {line}: {}", item.field),
            _ => item.field.clone(),
        });
        e.errors = Some(errors);
        e
    }

    pub fn unsupported_media_type(expected: &str) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::UnsupportedMediaType,
            format!("Content-Type must be {expected}"),
        )
    }

    /// A `Content-Encoding` the route cannot read.
    pub fn unsupported_encoding(encoding: &str, expected: &str) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::UnsupportedMediaType,
            format!("Content-Encoding `{encoding}` is not supported: send {expected}"),
        )
        .with_field("Content-Encoding")
    }

    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::Unprocessable,
            message,
        )
    }

    pub fn rate_limited(retry_after: u64) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::RateLimited,
            format!("rate limit exceeded; retry after {retry_after} s"),
        );
        e.retry_after = Some(retry_after);
        e
    }

    /// Logs `detail` with the request id; the client sees nothing of it.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            "internal error; the request id finds the details in the server log",
        )
    }

    /// A request framed in a way the server does not read (a transfer
    /// coding other than `chunked`).
    pub fn not_implemented(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::NOT_IMPLEMENTED,
            ErrorCode::NotImplemented,
            message,
        )
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unavailable,
            message,
        )
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }
}

/// An error quotes what its request sent (an unknown parameter's name, a
/// value that is not a time): a Warden credential sent there by mistake is
/// not shown again, wherever the answer ends up (a proxy's log, a ticket).
/// Each run of a credential's characters that begins as a key or a token
/// does is taken out whole (two tokens written together are one run), and
/// so is any run of letters and digits as long as most of a key's secret
/// (a key pasted without its prefix): no name or value an error quotes
/// otherwise runs that long (ids hold 24 hex digits after their prefix).
pub fn without_credentials(text: String) -> String {
    use warden_core::event::syslog::{scrub_secrets, KEY_PREFIXES};
    // A token's header, or a key's prefix.
    let starts = |s: &str| s.starts_with("eyJ") || KEY_PREFIXES.iter().any(|p| s.starts_with(p));
    const SECRET_LIKE: usize = 32;
    let alnum_run = |s: &str| {
        s.find(|c: char| !c.is_ascii_alphanumeric())
            .unwrap_or(s.len())
    };
    let long_run = |s: &str| {
        s.split(|c: char| !c.is_ascii_alphanumeric())
            .any(|run| run.len() >= SECRET_LIKE)
    };
    let text = without_url_passwords(text);
    if !(text.contains("wdn_")
        || text.contains("eyJ")
        || text.contains("token=")
        || long_run(&text))
    {
        return text;
    }
    let in_run = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    let mut after_alnum = false;
    while let Some(c) = rest.chars().next() {
        if starts(rest) {
            let end = rest.find(|c: char| !in_run(c)).unwrap_or(rest.len());
            out.push_str("[REDACTED]");
            rest = &rest[end..];
            after_alnum = false;
        } else if !after_alnum && alnum_run(rest) >= SECRET_LIKE {
            out.push_str("[REDACTED]");
            rest = &rest[alnum_run(rest)..];
        } else {
            out.push(c);
            rest = &rest[c.len_utf8()..];
            after_alnum = c.is_ascii_alphanumeric();
        }
    }
    scrub_secrets(&out)
}

/// A URL's credentials (`postgres://user:secret@host/db`, a token as the
/// user: `https://TOKEN@host`), pasted where a name was asked for, taken
/// out (the password, or a user alone), and the value of a password
/// written as a parameter (`?password=…`, `PGPASSWORD=…`, `host=h
/// password=…`); the rest stays.
fn without_url_passwords(text: String) -> String {
    let text = without_password_values(text);
    if !text.contains("//") {
        return text;
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(at) = rest.find("//") {
        let (before, after) = rest.split_at(at + 2);
        out.push_str(before);
        // The user part runs to the last `@` of the word: a password may
        // hold `/` or `@` itself.
        let word_end = after.find(char::is_whitespace).unwrap_or(after.len());
        let word = &after[..word_end];
        match word.rfind('@') {
            Some(end) if end > 0 => {
                let user_info = &word[..end];
                if let Some(colon) = user_info.find(':') {
                    out.push_str(&user_info[..=colon]);
                }
                out.push_str("[REDACTED]");
                rest = &after[end..];
            }
            _ => {
                out.push_str(word);
                rest = &after[word_end..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Names whose value is a secret wherever they are assigned, also with a
/// suffix (`secret_key`, `password_hash`, `api_key_id`).
const SECRET_NAMES: [&str; 9] = [
    "password",
    "passwd",
    "pwd",
    "passphrase",
    "secret",
    "api_key",
    "apikey",
    "api-key",
    "private_key",
];

/// The values of `password=…`, `PGPASSWORD=…`, `sslpassword: …`,
/// `{"password": "…"}`, `secret_key => '…'` and their kind, read as
/// syslog's scrubbing reads `token=` (`assignment_at`, `assigned_len`).
fn without_password_values(text: String) -> String {
    use warden_core::event::syslog::{assigned_len, assignment_at};
    let lower = text.to_ascii_lowercase();
    if !SECRET_NAMES.iter().any(|name| lower.contains(name)) {
        return text;
    }
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    while let Some(c) = text[at..].chars().next() {
        match assignment_at(&text[at..], &SECRET_NAMES, true) {
            // A placeholder (`X-Api-Key: <API key or token>`, as this
            // server's own messages write it) is no secret.
            Some(value_at) if !text[at + value_at..].starts_with('<') => {
                out.push_str(&text[at..at + value_at]);
                out.push_str("[REDACTED]");
                at += value_at + assigned_len(&text[at + value_at..]);
            }
            _ => {
                out.push(c);
                at += c.len_utf8();
            }
        }
    }
    out
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let errors = self.errors.map(|items| {
            items
                .into_iter()
                .map(|mut item| {
                    item.field = without_credentials(item.field);
                    item.message = without_credentials(item.message);
                    item
                })
                .collect()
        });
        let body = ErrorEnvelope {
            error: ErrorDetail {
                code: self.code,
                message: without_credentials(self.message),
                field: self.field.map(without_credentials),
                position: self.position,
                errors,
                request_id: super::request_id::current(),
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::PAYLOAD_TOO_LARGE {
            // The rest of the body is not read: the connection cannot be reused.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            // RFC 9110 §11.6.1: a 401 names the scheme that would be accepted.
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"warden\""),
            );
        }
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl From<warden_core::Error> for ApiError {
    fn from(err: warden_core::Error) -> Self {
        use warden_core::Error as E;
        match err {
            E::Invalid { field, message } => ApiError::invalid(field, message),
            E::InvalidAt {
                field,
                message,
                line,
                column,
            } => {
                let mut e = ApiError::invalid(field, message);
                e.position = Some(Position { line, column });
                e
            }
            E::MissingScope { scope } => {
                ApiError::forbidden(format!("this operation needs the `{scope}` scope"))
                    .with_field(scope)
            }
            E::Forbidden(m) => ApiError::forbidden(m),
            E::ForbiddenField { field, message } => ApiError::forbidden(message).with_field(field),
            E::NotFound(what) => ApiError::not_found(what),
            E::Conflict(m) => ApiError::conflict(m),
            E::Unprocessable(m) => ApiError::unprocessable(m),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Conflict { field } => {
                ApiError::conflict(format!("{field} is already taken")).with_field(field)
            }
            StoreError::Rejected(message) => ApiError::invalid("body", message),
            StoreError::Unavailable(detail) => {
                static UNAVAILABLE: SharedPaced = SharedPaced::new();
                log_at_a_pace(&UNAVAILABLE, "store unavailable", &detail);
                let mut e = ApiError::unavailable("the store is unavailable; retry shortly");
                e.retry_after = Some(STORE_RETRY_AFTER_SECS);
                e
            }
            StoreError::Damaged(detail) => {
                static DAMAGED: SharedPaced = SharedPaced::new();
                log_at_a_pace(&DAMAGED, "store damaged", &detail);
                ApiError::unavailable(
                    "the store is damaged on disk: writes are refused until it is restored, and \
                     reads that meet the damage fail (see the operations guide)",
                )
            }
            StoreError::Full(detail) => {
                static FULL: SharedPaced = SharedPaced::new();
                log_at_a_pace(&FULL, "store's disk full", &detail);
                // No `Retry-After`: space comes back when an operator
                // frees it, not in a moment.
                ApiError::unavailable(
                    "the disk holding the store is full: nothing was stored; writes fail until \
                     space is freed on it (see the operations guide), reads still work",
                )
            }
            other => ApiError::internal(other),
        }
    }
}

/// A store's failure that every request meets while it lasts (an outage,
/// damage, a full disk): logged at once, then once a minute with the
/// count of those not logged, not once a request.
fn log_at_a_pace(pace: &SharedPaced, what: &str, detail: &str) {
    if let Some(unlogged) = pace.due() {
        tracing::error!(error = %detail, unlogged, "{what}");
    }
}

/// What a 503 for an unreachable store asks clients to wait: a replica
/// finds the database again within about a second of its return.
const STORE_RETRY_AFTER_SECS: u64 = 2;

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::without_credentials;

    #[test]
    fn a_full_disk_is_named_and_not_retried_shortly() {
        let full = super::ApiError::from(warden_store::StoreError::Full(
            "database or disk is full".into(),
        ));
        assert_eq!(full.status, axum::http::StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            full.message.contains("disk holding the store is full"),
            "{}",
            full.message
        );
        assert_eq!(full.retry_after, None);
        let away = super::ApiError::from(warden_store::StoreError::Unavailable("gone".into()));
        assert_eq!(away.retry_after, Some(super::STORE_RETRY_AFTER_SECS));
    }

    #[test]
    fn url_passwords_are_taken_out_and_the_rest_kept() {
        for (text, shown) in [
            (
                "no agent \"postgres://u:secretpw@h/db\"",
                "no agent \"postgres://u:[REDACTED]@h/db\"",
            ),
            (
                "redis://:pw@cache:6379/2 and https://a:b:c@x.io?q",
                "redis://:[REDACTED]@cache:6379/2 and https://a:[REDACTED]@x.io?q",
            ),
            (
                "https://TOKEN@github.com/x",
                "https://[REDACTED]@github.com/x",
            ),
            ("postgres://u:S3C/RET@h/db", "postgres://u:[REDACTED]@h/db"),
            ("//u:S3CRET@h/db", "//u:[REDACTED]@h/db"),
            (
                "postgres://u@h/db?password=S3CRET&x=1",
                "postgres://[REDACTED]@h/db?password=[REDACTED]&x=1",
            ),
            (
                "jdbc:postgresql://h/db?user=u&password=S3CRET",
                "jdbc:postgresql://h/db?user=u&password=[REDACTED]",
            ),
            (
                "host=h user=u password=S3CRET port=5",
                "host=h user=u password=[REDACTED] port=5",
            ),
            ("PGPASSWORD=S3CRET psql", "PGPASSWORD=[REDACTED] psql"),
            ("`password='S3CRET nospace'` x", "`password=[REDACTED]` x"),
            (
                "host=h password = \"S3 CRET\" y",
                "host=h password = [REDACTED] y",
            ),
            ("`sslpassword: S3CRET`", "`sslpassword: [REDACTED]`"),
            ("the passwords table", "the passwords table"),
            (
                r#"no agent "password=\"S3CRET\"": x"#,
                r#"no agent "password=[REDACTED]": x"#,
            ),
            ("`password='S3CRET` is not", "`password=[REDACTED]` is not"),
            (
                r#"{"password":"S3CRET","n":1}"#,
                r#"{"password":[REDACTED],"n":1}"#,
            ),
            ("{'password': 'S3CRET'}", "{'password': [REDACTED]}"),
            ("password => \"S3CRET\" x", "password => [REDACTED] x"),
            ("password=`S3CRET` x", "password=[REDACTED] x"),
            (
                "SECRET_KEY=S3CRET aws_secret_access_key=S3CRET",
                "SECRET_KEY=[REDACTED] aws_secret_access_key=[REDACTED]",
            ),
            ("x-api-key: S3CRET", "x-api-key: [REDACTED]"),
            (
                "send `X-Api-Key: <API key or token>`",
                "send `X-Api-Key: <API key or token>`",
            ),
            ("passphrase=S3CRET", "passphrase=[REDACTED]"),
            ("no url here", "no url here"),
        ] {
            assert_eq!(without_credentials(text.to_string()), shown, "{text}");
        }
    }
}
