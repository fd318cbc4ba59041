//! A deadline on a request body that stops arriving: a client that sends
//! its headers and then part of its body, or nothing of it, would
//! otherwise hold its connection and its request for as long as it likes.
//! The header deadline covers only what comes before the body.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Bytes, HttpBody};
use http_body::{Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// Why a body ended in an error: nothing arrived for the whole deadline.
#[derive(Debug)]
pub struct Stalled(Duration);

impl std::fmt::Display for Stalled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the request body stalled: nothing of it arrived for {} s",
            self.0.as_secs()
        )
    }
}

impl std::error::Error for Stalled {}

/// A body whose reader gets an error once it has waited `idle` for the
/// next piece. The clock runs only while a reader waits, so a handler that
/// reads late is not timed for its own delay.
pub struct BodyDeadline<B> {
    inner: B,
    idle: Duration,
    /// Armed while a reader waits; made once, then reset.
    timer: Option<Pin<Box<Sleep>>>,
    waiting: bool,
}

impl<B> BodyDeadline<B> {
    pub fn new(inner: B, idle: Duration) -> Self {
        BodyDeadline {
            inner,
            idle,
            timer: None,
            waiting: false,
        }
    }
}

impl<B> HttpBody for BodyDeadline<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.waiting = false;
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                if !this.waiting {
                    this.waiting = true;
                    let at = Instant::now() + this.idle;
                    match this.timer.as_mut() {
                        Some(timer) => timer.as_mut().reset(at),
                        None => this.timer = Some(Box::pin(tokio::time::sleep_until(at))),
                    }
                }
                let timer = this.timer.as_mut().expect("armed above");
                if timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Some(Err(Box::new(Stalled(this.idle)))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
