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
/// is a bearer secret, shown by its first characters only; a segment that
/// holds a key or token further in, or a run of letters and digits as long
/// as a secret's (a key's body without its prefix, a hold token's digits),
/// is not shown at all.
fn loggable_path(path: &str) -> std::borrow::Cow<'_, str> {
    if !worth_a_look(path) || !path.split('/').any(|s| loggable_segment(s).is_some()) {
        return path.into();
    }
    path.split('/')
        .map(|segment| loggable_segment(segment).unwrap_or_else(|| segment.to_string()))
        .collect::<Vec<_>>()
        .join("/")
        .into()
}

/// One pass over the path's bytes: whether any segment could need hiding
/// (a percent sign, a secret's beginning, a run of 32 letters and digits),
/// so that the usual path costs no decoding.
fn worth_a_look(path: &str) -> bool {
    let bytes = path.as_bytes();
    let mut run = 0;
    for (i, b) in bytes.iter().enumerate() {
        if b.is_ascii_alphanumeric() {
            run += 1;
            if run >= 32 {
                return true;
            }
        } else {
            run = 0;
        }
        let rest = &bytes[i..];
        if *b == b'%' || rest.starts_with(b"eyJ") || rest.starts_with(b"hold_") {
            return true;
        }
        if rest.len() >= 4 && rest[..4].eq_ignore_ascii_case(b"wdn_") {
            return true;
        }
    }
    false
}

/// How a segment is logged, where it is not logged as it is.
fn loggable_segment(segment: &str) -> Option<String> {
    // Hold tokens are path segments by design; keys and tokens pasted
    // into a path by mistake are secrets all the same, percent-encoded
    // or not.
    const SECRET_STARTS: [&str; 3] = ["hold_", "wdn_", "eyJ"];
    // Further in, a key's prefix is enough (a key cut short is still most
    // of one); a token or a hold token carries a run as long as a
    // secret's, and `threshold_bot` is no hold token.
    const SECRET_LIKE: usize = 32;
    let decoded = percent_encoding::percent_decode_str(segment).decode_utf8_lossy();
    if SECRET_STARTS.iter().any(|s| decoded.starts_with(s)) {
        return Some(format!("{}…", decoded.chars().take(9).collect::<String>()));
    }
    let lower = decoded.to_ascii_lowercase();
    let long_run = decoded
        .split(|c: char| !c.is_ascii_alphanumeric())
        .any(|run| run.len() >= SECRET_LIKE);
    (long_run || lower.contains("wdn_")).then(|| "[REDACTED]".to_string())
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

    #[test]
    fn secrets_inside_a_segment_or_without_their_prefix_are_not_logged() {
        let body = "0123456789abcdefghijABCDEFGHIJklmnopqrstu";
        for (path, shown) in [
            (
                format!("/api/v1/agents/xwdn_live_{body}"),
                "/api/v1/agents/[REDACTED]",
            ),
            (
                format!("/api/v1/agents/x%20wdn_live_{body}"),
                "/api/v1/agents/[REDACTED]",
            ),
            (
                format!("/api/v1/agents/%77dn_live_{body}"),
                "/api/v1/agents/wdn_live_…",
            ),
            (
                format!("/api/v1/agents/x.eyJhbGciOi.{body}"),
                "/api/v1/agents/[REDACTED]",
            ),
            (
                format!("/api/v1/agents/{body}"),
                "/api/v1/agents/[REDACTED]",
            ),
            (
                format!("/v1/enforce/hold/{}", "ab".repeat(32)),
                "/v1/enforce/hold/[REDACTED]",
            ),
        ] {
            assert_eq!(loggable_path(&path), shown, "{path}");
        }
        // A key's prefix further in is enough, its body cut short.
        assert_eq!(
            loggable_path("/api/v1/agents/xwdn_live_0123456789abcdef"),
            "/api/v1/agents/[REDACTED]"
        );
        // Warden's own ids, and names that only contain `hold_`, are shown.
        for shown in [
            "/api/v1/agents/agt_0123456789abcdef01234567/drift",
            "/api/v1/agents/threshold_bot",
        ] {
            assert_eq!(loggable_path(shown), shown);
        }
    }
}
