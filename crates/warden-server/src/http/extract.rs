//! Extractors that turn bad input into a 4xx envelope naming the field or
//! position: JSON bodies (415, 413, unknown fields), query strings and path
//! ids.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, FailedToBufferBody};
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::http::HeaderMap;
use serde::de::DeserializeOwned;

use super::error::{ApiError, Position};

/// Request bodies larger than this are refused with `413` unless a route
/// documents another limit.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

/// A JSON object body, parsed strictly. Only an object: serde would also
/// read a struct from an array of its fields in order, and a struct whose
/// fields may all be left out from `[]`.
pub struct ApiJson<T>(pub T);

/// A JSON body of any kind (an array included), parsed strictly.
pub struct AnyJson<T>(pub T);

/// A JSON body that may be absent (an empty body means `None`).
pub struct OptionalJson<T>(pub Option<T>);

pub fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let mime = media_type(value);
    (mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json")))
        && !declares_other_charset(value)
}

/// A Content-Type's media type, lower-cased, without its parameters.
pub fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// `bytes` without a leading UTF-8 byte-order mark, which some Windows
/// tools write and RFC 8259 lets a reader ignore.
pub fn without_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes)
}

/// True when a Content-Type names a `charset` other than UTF-8 (or
/// US-ASCII, a subset of it). JSON is UTF-8 (RFC 8259): a body declared in
/// another encoding would be read as UTF-8 all the same, and misread, so
/// it is refused instead.
pub fn declares_other_charset(content_type: &str) -> bool {
    content_type.split(';').skip(1).any(|param| {
        let Some((name, value)) = param.split_once('=') else {
            return false;
        };
        let value = value.trim().trim_matches('"');
        name.trim().eq_ignore_ascii_case("charset")
            && !["utf-8", "utf8", "us-ascii"]
                .iter()
                .any(|taken| value.eq_ignore_ascii_case(taken))
    })
}

/// What a JSON route's 415 says it takes.
pub const JSON_MEDIA_TYPE: &str = "application/json, in UTF-8";

/// Refuses a body in an encoding these routes do not read (only the
/// event routes inflate gzip): read as it is, it would be taken for
/// malformed JSON, or worse, for plain JSON that it is not.
fn unencoded(headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
    match headers
        .get(axum::http::header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase())
    {
        None => Ok(()),
        Some(e) if e.is_empty() || e == "identity" => Ok(()),
        Some(other) => Err(ApiError::unsupported_encoding(&other, "the body unencoded")),
    }
}

/// The body length `Content-Length` declares, as HTTP reads it: one
/// number, or the same number repeated in a list (`2000, 2000`, which
/// the server's HTTP layer takes as 2000); `None` without one that reads.
pub fn declared_length(headers: &HeaderMap) -> Option<u64> {
    let text = headers
        .get(axum::http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?;
    let mut lengths = text.split(',').map(|v| v.trim().parse::<u64>().ok());
    let first = lengths.next()??;
    lengths.all(|n| n == Some(first)).then_some(first)
}

/// Refuses a body whose declared length is already past `limit` before
/// any of it is read: a client that waits for `100 Continue` is then
/// answered 413 at once instead of being asked to send it.
pub fn refuse_declared_over(headers: &HeaderMap, limit: usize) -> Result<(), ApiError> {
    match declared_length(headers) {
        Some(length) if length > limit as u64 => Err(ApiError::payload_too_large(limit)),
        _ => Ok(()),
    }
}

async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    unencoded(req.headers())?;
    refuse_declared_over(req.headers(), DEFAULT_BODY_LIMIT)?;
    Bytes::from_request(req, state)
        .await
        .map_err(|rejection| match rejection {
            BytesRejection::FailedToBufferBody(FailedToBufferBody::LengthLimitError(_)) => {
                ApiError::payload_too_large(DEFAULT_BODY_LIMIT)
            }
            other => ApiError::invalid("body", body_failure(&other.body_text())),
        })
}

/// Why a body could not be read, without the framework's preamble:
/// "error reading a body from connection", "the request body stalled…".
pub fn body_failure(text: &str) -> String {
    let text = text
        .strip_prefix("Failed to buffer the request body: ")
        .unwrap_or(text);
    format!("the request body could not be read: {text}")
}

/// Parses a JSON document, naming the field or position at fault.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // NDJSON lines already skip theirs.
    let bytes = without_bom(bytes);
    // The plain parser is the fast path; the one that tracks paths runs
    // again only to name what is wrong.
    if let Ok(value) = serde_json::from_slice(bytes) {
        return Ok(value);
    }
    // JSON is UTF-8: bytes that are not would otherwise be blamed on the
    // field they sit in, as if its value had the wrong type.
    if let Err(e) = std::str::from_utf8(bytes) {
        let (line, column) = super::decision_body::line_and_column(bytes, e.valid_up_to());
        return Err(ApiError::malformed(
            "the body is not valid UTF-8 here (JSON is UTF-8; send text in that encoding)",
            Position { line, column },
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let message = strip_location(&inner.to_string());
        if inner.is_data() {
            ApiError::invalid(field_of(&path, &message), message)
        } else if message == "recursion limit exceeded" {
            // Well-formed, only deeper than the parser goes.
            ApiError::malformed(
                "the JSON nests arrays and objects more than 127 levels deep",
                Position {
                    line: inner.line().max(1),
                    column: inner.column().max(1),
                },
            )
        } else if path != "." && serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok() {
            // Well-formed JSON that the parser still stops in: a value of
            // one of a fixed set of names (`sort`, `decision`) given as
            // another JSON type.
            let field = field_of(&path, &message);
            // Or a value JSON allows but no parser keeps: a number past a
            // double's range, a lone UTF-16 surrogate in a string.
            let unkept = ["number out of range", "surrogate", "escape"]
                .iter()
                .any(|m| message.contains(m));
            let message = if unkept && (message.contains("surrogate") || message.contains("escape"))
            {
                // serde_json names the fault by where it stopped reading
                // ("unexpected end of hex escape" for `"\ud800"`).
                format!(
                    "{field}: a \\u escape of half a UTF-16 surrogate pair (\\ud800 to \\udfff) \
                     without its other half is not a character"
                )
            } else if unkept {
                format!("{field}: {message}")
            } else {
                format!("invalid type for {field}: expected a string naming one of its values")
            };
            ApiError::invalid(field, message)
        } else {
            let hint = if non_json_number_at(bytes, inner.line(), inner.column()) {
                " (NaN and Infinity are not JSON numbers: Python's json.dumps writes them \
                 unless given allow_nan=False)"
            } else {
                ""
            };
            ApiError::malformed(
                format!("malformed JSON: {message}{hint}"),
                // serde_json counts an empty document's end as column 0;
                // positions here are 1-based.
                Position {
                    line: inner.line().max(1),
                    column: inner.column().max(1),
                },
            )
        }
    })?;
    de.end().map_err(|inner| {
        ApiError::malformed(
            "malformed JSON: trailing characters after the document",
            Position {
                line: inner.line().max(1),
                column: inner.column().max(1),
            },
        )
    })?;
    Ok(value)
}

/// Whether the parser stopped at `NaN` or `Infinity`, which JavaScript and
/// Python's `json` module write but JSON has no place for.
fn non_json_number_at(bytes: &[u8], line: usize, column: usize) -> bool {
    let Some(text) = bytes.split(|b| *b == b'\n').nth(line.saturating_sub(1)) else {
        return false;
    };
    let from = column.saturating_sub(3).min(text.len());
    let to = (column + 8).min(text.len());
    let near = &text[from..to];
    [&b"NaN"[..], b"Infinity"]
        .iter()
        .any(|word| near.windows(word.len()).any(|w| w == *word))
}

/// serde says "unknown field `x`" and "missing field `x`" at the parent's
/// path; the field itself is the useful name.
fn field_of(path: &str, message: &str) -> String {
    let named = ["unknown field `", "missing field `", "duplicate field `"]
        .iter()
        .find_map(|lead| message.strip_prefix(lead))
        .and_then(|rest| rest.split('`').next());
    match (named, path) {
        (Some(name), "." | "") => name.to_string(),
        (Some(name), full) if full == name || full.ends_with(&format!(".{name}")) => {
            full.to_string()
        }
        (Some(name), parent) => format!("{parent}.{name}"),
        (None, "." | "") => "body".to_string(),
        (None, path) => path.to_string(),
    }
}

fn strip_location(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

/// Refuses what a decision's body may not hold (see `decision_body`): a
/// whole number past 64 bits, nesting past its depth.
fn decision_body(bytes: &[u8]) -> Result<(), ApiError> {
    use super::decision_body::{first_refusal, line_and_column, Refusal, MAX_DEPTH};
    let Some((at, refusal)) = first_refusal(bytes, MAX_DEPTH) else {
        return Ok(());
    };
    // The scan reads digits wherever they are (`-1-2`, `'a': 1`): in a
    // body that is not JSON at all, the parser says what is wrong.
    if refusal == Refusal::InexactInteger
        && serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_err()
    {
        return Ok(());
    }
    let (line, column) = line_and_column(bytes, at);
    let message = match refusal {
        Refusal::InexactInteger => "a whole number here is beyond what 64 bits hold, and would \
             be kept only approximately: no setting takes one so large, and a value inside a \
             call's arguments or an event's fields can be sent as a string"
            .to_string(),
        Refusal::TooDeep => format!(
            "arrays and objects here nest more than {MAX_DEPTH} levels deep, more than Warden \
             takes in a request"
        ),
    };
    Err(ApiError::malformed(message, Position { line, column }))
}

/// Refuses a document that is valid JSON but not an object.
fn require_object(bytes: &[u8]) -> Result<(), ApiError> {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') | None => Ok(()),
        Some(_) if serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_err() => Ok(()),
        Some(_) => Err(ApiError::invalid("body", "the body must be a JSON object")),
    }
}

/// A required body: declared JSON, then read within the limit.
async fn json_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    if !is_json(req.headers()) {
        return Err(ApiError::unsupported_media_type(JSON_MEDIA_TYPE));
    }
    read_body(req, state).await
}

/// A JSON body that must be an object a decision or a change may read:
/// no whole number past 64 bits in it, and nested no deeper than its
/// record can be read back (see `decision_body`).
async fn object_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    let bytes = json_body(req, state).await?;
    require_object(&bytes)?;
    decision_body(&bytes)?;
    Ok(bytes)
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        parse_json(&object_body(req, state).await?).map(ApiJson)
    }
}

/// A JSON object body whose objects, at any depth, name each key once:
/// for bodies whose free-form parts a policy reads or enforces (a
/// policy's `modify.set`, the Thoth SDK's fields that become `context`).
pub struct UniqueJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for UniqueJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = object_body(req, state).await?;
        let super::unique_keys::UniqueKeys(value) = parse_json(&bytes)?;
        // The value read once; only a body the type refuses is parsed
        // again, by the path that names the field at fault.
        match T::deserialize(value) {
            Ok(body) => Ok(UniqueJson(body)),
            Err(_) => parse_json(&bytes).map(UniqueJson),
        }
    }
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for AnyJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = json_body(req, state).await?;
        parse_json(&bytes).map(AnyJson)
    }
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json = is_json(req.headers());
        let bytes = read_body(req, state).await?;
        // No body, or JSON's `null`: nothing given.
        if bytes.iter().all(u8::is_ascii_whitespace) || bytes.trim_ascii() == b"null" {
            return Ok(OptionalJson(None));
        }
        if !json {
            return Err(ApiError::unsupported_media_type(JSON_MEDIA_TYPE));
        }
        require_object(&bytes)?;
        parse_json(&bytes).map(|v| OptionalJson(Some(v)))
    }
}

/// Query parameters, parsed strictly: an unknown or malformed parameter is a
/// `400` naming it.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
        // No store keeps NUL in text; refuse it here, naming the parameter.
        if let Some((name, _)) = form_urlencoded::parse(query.as_bytes())
            .find(|(name, value)| name.contains('\0') || value.contains('\0'))
        {
            return Err(ApiError::invalid(
                name.replace('\0', ""),
                "query parameters must not contain NUL characters",
            ));
        }
        // Decoding would replace bytes that are not UTF-8 and search for
        // something else than asked: refuse them, naming the parameter.
        // Only percent-escapes can make such bytes.
        for pair in query.split('&').filter(|pair| pair.contains('%')) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let utf8 = |part: &str| {
                percent_encoding::percent_decode_str(part)
                    .decode_utf8()
                    .is_ok()
            };
            if !utf8(name) || !utf8(value) {
                let name = percent_encoding::percent_decode_str(name).decode_utf8_lossy();
                return Err(ApiError::invalid(
                    name.into_owned(),
                    "query parameters must be UTF-8 once percent-decoded",
                ));
            }
        }
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(ApiQuery)
            .map_err(|err| {
                let path = err.path().to_string();
                let message = err.into_inner().to_string();
                let field = match field_of(&path, &message) {
                    body if body == "body" => "query".to_string(),
                    field => field,
                };
                let message = plain_number_error(&message).unwrap_or(message);
                ApiError::invalid(
                    field.clone(),
                    format!("query parameter `{field}`: {message}"),
                )
            })
    }
}

/// Rust's words for a number or a boolean that did not parse (`invalid
/// digit found in string`), said as what the parameter takes.
fn plain_number_error(message: &str) -> Option<String> {
    let said = match message {
        "invalid digit found in string" => "must be a whole number (such as 10)",
        "cannot parse integer from empty string" => "is empty; give a whole number (such as 10)",
        "number too large to fit in target type" => "is too large",
        "number too small to fit in target type" => "is too small",
        "invalid float literal" => "must be a number (such as 0.5)",
        "cannot parse float from empty string" => "is empty; give a number (such as 0.5)",
        "provided string was not `true` or `false`" => "must be `true` or `false`",
        _ => return None,
    };
    Some(said.to_string())
}

/// The `{id}` segment of a resource path.
pub struct ResourceId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ResourceId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        // The parameter's name is looked up only for an error.
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(id)) if !id.contains('\0') => Ok(ResourceId(id)),
            Ok(_) => {
                let name = parameter_name(parts);
                let message = format!("`{name}` does not contain NUL characters");
                Err(ApiError::invalid(name, message))
            }
            Err(e) => Err(ApiError::invalid(parameter_name(parts), e.body_text())),
        }
    }
}

/// The name of the route's path parameter (`id`, `token`), as the OpenAPI
/// document spells it, for errors that name it.
fn parameter_name(parts: &Parts) -> String {
    parts
        .extensions
        .get::<axum::extract::MatchedPath>()
        .and_then(|m| m.as_str().rsplit_once('{'))
        .and_then(|(_, rest)| rest.split_once('}'))
        .map_or_else(|| "id".to_string(), |(name, _)| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        tags: Option<Vec<String>>,
    }

    #[test]
    fn names_the_field_at_fault() {
        let e = parse_json::<Body>(br#"{"name": "a", "nmae": 1}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("nmae"));
        let e = parse_json::<Body>(br#"{"tags": []}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("name"));
        let e = parse_json::<Body>(br#"{"name": "a", "tags": ["x", 3]}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("tags[1]"));
    }

    #[test]
    fn a_named_value_of_another_type_names_its_field() {
        #[derive(Debug, Deserialize)]
        #[serde(rename_all = "snake_case")]
        enum Order {
            Asc,
        }
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Sorted {
            sort: Option<Order>,
        }
        for body in [r#"{"sort": 1}"#, r#"{"sort": true}"#, r#"{"sort": []}"#] {
            let e = parse_json::<Sorted>(body.as_bytes()).unwrap_err();
            assert_eq!(e.field.as_deref(), Some("sort"), "{body}");
            assert!(e.position.is_none(), "{body}");
        }
    }

    #[test]
    fn a_value_no_parser_keeps_is_named_for_what_it_is() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Call {
            tool_args: Option<serde_json::Value>,
        }
        for (body, says) in [
            (r#"{"tool_args": {"a": 1e400}}"#, "number out of range"),
            (
                r#"{"tool_args": {"a": "\udc00"}}"#,
                "half a UTF-16 surrogate pair",
            ),
            (
                r#"{"tool_args": {"a": "x\ud800"}}"#,
                "half a UTF-16 surrogate pair",
            ),
            (
                r#"{"tool_args": {"a": "\ud800\u0041"}}"#,
                "half a UTF-16 surrogate pair",
            ),
        ] {
            let e = parse_json::<Call>(body.as_bytes()).unwrap_err();
            assert_eq!(e.field.as_deref(), Some("tool_args.a"), "{body}");
            assert!(e.message.contains(says), "{body}: {}", e.message);
        }
    }

    #[test]
    fn a_byte_order_mark_is_ignored() {
        let body: serde_json::Value = parse_json(b"\xEF\xBB\xBF[{\"message\": \"x\"}]").unwrap();
        assert_eq!(body[0]["message"], "x");
    }

    #[test]
    fn bytes_that_are_not_utf8_are_named_with_their_position() {
        let e = parse_json::<Body>(b"{\"name\": \"bad\xff\"}").unwrap_err();
        assert!(e.message.contains("UTF-8"), "{}", e.message);
        assert_eq!(
            e.position,
            Some(Position {
                line: 1,
                column: 14
            })
        );
    }

    #[test]
    fn too_deep_is_not_called_malformed() {
        let deep = format!(
            "{{\"name\": \"a\", \"tags\": {}{}}}",
            "[".repeat(200),
            "]".repeat(200)
        );
        let e = parse_json::<serde_json::Value>(deep.as_bytes()).unwrap_err();
        assert!(e.message.contains("127 levels deep"), "{}", e.message);
        assert!(e.position.is_some());
    }

    #[test]
    fn gives_the_position_of_a_syntax_error() {
        let e = parse_json::<Body>(b"{\n  \"name\": }").unwrap_err();
        assert_eq!(
            e.position,
            Some(Position {
                line: 2,
                column: 11
            })
        );
        assert!(e.field.is_none());
        let e = parse_json::<Body>(br#"{"name": "a"} x"#).unwrap_err();
        assert!(e.position.is_some());
    }

    #[test]
    fn nan_and_infinity_are_named_as_not_json() {
        for body in [
            &br#"{"name": NaN}"#[..],
            br#"{"name": "a", "x": [1, Infinity]}"#,
            b"{\n \"x\": -Infinity}",
        ] {
            let e = parse_json::<serde_json::Value>(body).unwrap_err();
            assert!(e.message.contains("not JSON numbers"), "{}", e.message);
        }
        let e = parse_json::<Body>(b"{\n  \"name\": }").unwrap_err();
        assert!(!e.message.contains("NaN"), "{}", e.message);
    }
}
