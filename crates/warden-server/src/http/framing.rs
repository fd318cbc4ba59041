//! Refuses requests whose framing HTTP/1.1 forbids or Warden cannot read,
//! before any route sees them (RFC 9112 §3.2 and §6.1).
//!
//! A request with no `Host` or with two is ambiguous about where it was
//! meant to go, and a proxy in front may have read it otherwise; so is one
//! that types or encodes its body twice, or applies `chunked` twice. A transfer
//! coding other than `chunked` (`gzip, chunked`) would otherwise reach the
//! route as if the body were plain: hyper removes only the chunking.

use axum::extract::Request;
use axum::http::header::{CONTENT_ENCODING, CONTENT_TYPE, HOST, TRANSFER_ENCODING};
use axum::http::Version;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

/// Answers a badly framed request at once; passes any other on.
pub async fn refuse_bad_framing(request: Request, next: Next) -> Response {
    match check(&request) {
        Ok(()) => next.run(request).await,
        Err(refusal) => refusal.into_response(),
    }
}

fn check(request: &Request) -> Result<(), ApiError> {
    if request.version() == Version::HTTP_11 {
        let hosts = request.headers().get_all(HOST).iter().count();
        if hosts != 1 {
            return Err(ApiError::invalid(
                "Host",
                format!("an HTTP/1.1 request needs exactly one Host header; this one has {hosts}"),
            ));
        }
    }
    // How a body is typed and encoded, said twice: a proxy reading the
    // last copy and Warden the first would read the body differently.
    for (header, name) in [
        (CONTENT_TYPE, "Content-Type"),
        (CONTENT_ENCODING, "Content-Encoding"),
    ] {
        if request.headers().get_all(header).iter().nth(1).is_some() {
            return Err(ApiError::invalid(
                name,
                format!("the `{name}` header is sent more than once: send one"),
            ));
        }
    }
    let mut chunked = 0;
    for value in request.headers().get_all(TRANSFER_ENCODING) {
        let text = value.to_str().unwrap_or("?");
        for coding in text.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            if coding.eq_ignore_ascii_case("chunked") {
                chunked += 1;
                if chunked > 1 {
                    // RFC 9112 §6.1: chunked is never applied twice.
                    return Err(ApiError::invalid(
                        "Transfer-Encoding",
                        "`chunked` is applied more than once: send it once",
                    ));
                }
            } else {
                return Err(ApiError::not_implemented(format!(
                    "transfer coding `{coding}` is not supported: send the body with \
                     `Transfer-Encoding: chunked` alone (the event routes read \
                     `Content-Encoding: gzip`)"
                ))
                .with_field("Transfer-Encoding"));
            }
        }
    }
    Ok(())
}
