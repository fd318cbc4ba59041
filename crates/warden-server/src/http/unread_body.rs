//! A request answered before its body was read (a 401, a 403 from the
//! scope check, a 404 route, a 429) still lets its client read the answer.
//!
//! A client that writes its whole body before it reads (Python's
//! `http.client`) fails with a broken pipe if the server closes the
//! connection while the body is still coming, and never sees the answer.
//! So the rest of such a body is read and dropped first, within bounds
//! ([`DRAIN_MOST`] bytes, [`DRAIN_TIME`]); then the connection stays open
//! for the next request. A body past those bounds is not read: the answer
//! carries `Connection: close` and the connection closes after it (hyper
//! cannot tell the unread bytes from the next request). So does the answer
//! to a client that waits for `100 Continue` before sending its body.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::Request;
use axum::http::header::{CONNECTION, EXPECT, TRANSFER_ENCODING};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;

/// Most bytes of an unread body read and dropped so that its client can
/// read the answer: the largest body a route takes in one piece (a batch
/// of events, 10 MiB), and a little over.
pub const DRAIN_MOST: u64 = 12 << 20;

/// Longest an answer waits while the rest of its request's body is read.
pub const DRAIN_TIME: Duration = Duration::from_secs(2);

/// What the request's body tells the middleware once the request is done.
#[derive(Default)]
struct Shared {
    ended: AtomicBool,
    failed: AtomicBool,
    /// The body as its reader left it, when that was before its end.
    left: Mutex<Option<Body>>,
}

/// A request body that notes when it has been read to its end, and hands
/// itself back when dropped before.
struct Watched {
    inner: Option<Body>,
    shared: Arc<Shared>,
}

impl HttpBody for Watched {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.shared.ended.store(true, Ordering::Relaxed),
            // A body that failed (bad chunking, a stall) leaves the
            // connection unreadable: its answer says it closes.
            Poll::Ready(Some(Err(_))) => self.shared.failed.store(true, Ordering::Relaxed),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        let ended = self.inner.as_ref().is_none_or(|b| b.is_end_stream());
        if ended {
            self.shared.ended.store(true, Ordering::Relaxed);
        }
        ended
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), |b| b.size_hint())
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        if !self.shared.ended.load(Ordering::Relaxed) {
            if let Some(body) = self.inner.take() {
                *self.shared.left.lock().unwrap_or_else(|p| p.into_inner()) = Some(body);
            }
        }
    }
}

/// Whether the request says a body follows, and its length when given.
fn declared_body(request: &Request) -> Option<Option<u64>> {
    let headers = request.headers();
    if headers.contains_key(TRANSFER_ENCODING) {
        return Some(None);
    }
    let length = super::extract::declared_length(headers)?;
    (length > 0).then_some(Some(length))
}

/// Reads the rest of a body and drops it, within the bounds; whether it
/// reached the end.
async fn drain(mut body: Body, length: Option<u64>) -> bool {
    if length.is_some_and(|n| n > DRAIN_MOST) {
        return false;
    }
    let read_all = async {
        let mut read = 0u64;
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { return false };
            if let Some(data) = frame.data_ref() {
                read += data.len() as u64;
                if read > DRAIN_MOST {
                    return false;
                }
            }
        }
        true
    };
    tokio::time::timeout(DRAIN_TIME, read_all)
        .await
        .unwrap_or(false)
}

/// Reads and drops what a request's answer left of its body, or, past the
/// bounds, adds `Connection: close` to the answer.
pub async fn close_when_unread(request: Request, next: Next) -> Response {
    let Some(length) = declared_body(&request) else {
        return next.run(request).await;
    };
    // A client that waits for `100 Continue` before it sends the body is
    // answered at once instead: reading the body would ask it to send.
    let awaits_continue = request
        .headers()
        .get(EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let shared = Arc::new(Shared::default());
    let request = request.map(|inner| {
        Body::new(Watched {
            inner: Some(inner),
            shared: shared.clone(),
        })
    });
    let mut response = next.run(request).await;
    if shared.failed.load(Ordering::Relaxed) {
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
        return response;
    }
    if shared.ended.load(Ordering::Relaxed) {
        return response;
    }
    let left = shared.left.lock().unwrap_or_else(|p| p.into_inner()).take();
    let drained = match left {
        Some(body) if !awaits_continue => drain(body, length).await,
        _ => false,
    };
    if !drained {
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    response
}
