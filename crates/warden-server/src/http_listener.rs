//! Serves HTTP/1.1 connections with a deadline on request headers. A
//! client gets a set time (60 s unless told otherwise) to send a
//! request's headers, counted from when the connection is ready for that
//! request, so a connection idle between requests or dribbling its
//! headers a byte at a time is closed instead of holding one of the
//! process's files for good. A request being answered (a long-poll
//! included) is not timed by it. A request body that stops arriving for
//! the same time, while a route waits for it, ends in an error.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tower_service::Service;

use crate::http::body_deadline::BodyDeadline;
use crate::http::peer::PeerLink;
use crate::http::turn_away;

/// The bound on a connection's read buffer: what a connection holds of a
/// request it has not finished sending. hyper answers 431 to a head that
/// does not fit once its buffer is full (about twice this, measured).
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Accepts connections until `shutdown` completes, then asks each open
/// connection to finish its request in flight and close, and returns
/// once all have.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    header_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    turn_away::reserve();
    let mut failed = warden_core::log_pace::Paced::default();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    if let Some(unlogged) = failed.due() {
                        tracing::warn!(error = %err, unlogged, "accepting an HTTP connection failed");
                    }
                    // Out of files: the queued client is answered 503
                    // rather than left waiting. Otherwise wait, not spin.
                    if !(turn_away::is_out_of_files(&err) && turn_away::turn_one_away(&listener)) {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let link = PeerLink::of(&stream);
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            let extensions = request.extensions_mut();
            extensions.insert(ConnectInfo::<SocketAddr>(peer));
            extensions.insert(link);
            // A body that stops arriving is given up after as long as
            // the headers may take.
            let request = request.map(|body| BodyDeadline::new(body, header_timeout));
            let mut app = app.clone();
            async move { app.call(request).await }
        });
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            // A connection that has not finished a request's head holds
            // about this much of it, no more.
            .max_buf_size(MAX_HEAD_BYTES)
            // A client that half-closes after its request still gets the
            // answer (the request ran; without it, it might send it again).
            .half_close(true)
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(%peer, error = %err, "HTTP connection ended");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
