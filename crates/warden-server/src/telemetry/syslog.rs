//! Syslog listeners over UDP and TCP. Syslog carries no credentials: a
//! listener's messages belong to the organization named at start-up (its
//! `live` environment), unless a message carries an ingest key in
//! `[warden@32473 token="…"]`, which routes it to that key's tenant. A
//! message that cannot be routed or parsed is dropped and counted in
//! `warden_syslog_messages{outcome}` on `/metrics`; syslog has no way to
//! answer.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use warden_core::event::framing::Framer;
use warden_core::event::syslog::{parse, MAX_SYSLOG_BYTES};
use warden_core::event::Event;
use warden_core::id::{new_time_ordered_id, prefix};
use warden_core::time::now_ms;
use warden_core::Tenant;

use super::Telemetry;
use crate::metrics::Metrics;
use crate::state::AppState;

/// Messages gathered into one append.
const BATCH: usize = 2_000;
/// Longest a message waits for its batch to fill.
const LINGER: Duration = Duration::from_millis(50);

/// Where unauthenticated messages go, and how tokens are checked.
pub struct SyslogRouting {
    pub default_tenant: Option<Tenant>,
    /// The server's key ring, for tokens.
    pub state: AppState,
}

struct Received {
    bytes: Vec<u8>,
    peer: IpAddr,
}

pub struct SyslogListeners {
    pub udp: Option<SocketAddr>,
    pub tcp: Option<SocketAddr>,
}

/// Binds the listeners and starts their tasks.
pub async fn start(
    telemetry: Arc<Telemetry>,
    routing: SyslogRouting,
    udp: Option<&str>,
    tcp: Option<&str>,
) -> Result<SyslogListeners, String> {
    let metrics = routing.state.metrics.clone();
    let (tx, rx) = mpsc::channel::<Received>(65_536);
    let mut out = SyslogListeners {
        udp: None,
        tcp: None,
    };
    if let Some(addr) = udp {
        let socket = UdpSocket::bind(addr)
            .await
            .map_err(|e| format!("cannot listen for syslog on udp {addr}: {e}"))?;
        out.udp = socket.local_addr().ok();
        tokio::spawn(serve_udp(socket, tx.clone()));
    }
    if let Some(addr) = tcp {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| format!("cannot listen for syslog on tcp {addr}: {e}"))?;
        out.tcp = listener.local_addr().ok();
        tokio::spawn(serve_tcp(listener, tx.clone(), metrics.clone()));
    }
    drop(tx);
    tokio::spawn(store_messages(telemetry, routing, rx, metrics));
    Ok(out)
}

async fn serve_udp(socket: UdpSocket, tx: mpsc::Sender<Received>) {
    let mut buf = vec![0u8; MAX_SYSLOG_BYTES + 1];
    loop {
        match socket.recv_from(&mut buf).await {
            Ok((n, peer)) => {
                let _ = tx
                    .send(Received {
                        bytes: buf[..n].to_vec(),
                        peer: peer.ip(),
                    })
                    .await;
            }
            Err(err) => {
                tracing::warn!(error = %err, "syslog udp receive failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Most syslog TCP connections served at once. Syslog carries no
/// credentials, so anyone who reaches the port could otherwise hold open
/// files until the process has none left for its store and index; a
/// connection past the bound is closed at once (senders reconnect).
const MAX_TCP_CONNECTIONS: usize = 1_024;

async fn serve_tcp(listener: TcpListener, tx: mpsc::Sender<Received>, metrics: Arc<Metrics>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_TCP_CONNECTIONS));
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    metrics.syslog_connections_refused();
                    tracing::warn!(%peer, "syslog tcp connection refused: {MAX_TCP_CONNECTIONS} already open");
                    drop(stream);
                    continue;
                };
                let (tx, metrics) = (tx.clone(), metrics.clone());
                tokio::spawn(async move {
                    serve_connection(stream, peer.ip(), tx, metrics).await;
                    drop(slot);
                });
            }
            Err(err) => {
                tracing::warn!(error = %err, "syslog tcp accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

async fn serve_connection(
    mut stream: TcpStream,
    peer: IpAddr,
    tx: mpsc::Sender<Received>,
    metrics: Arc<Metrics>,
) {
    let mut framer = Framer::new(MAX_SYSLOG_BYTES);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        framer.push(&buf[..n]);
        while let Some(frame) = framer.next_frame() {
            match frame {
                Ok(bytes) => {
                    if tx.send(Received { bytes, peer }).await.is_err() {
                        return;
                    }
                }
                Err(err) if err.is_fatal() => {
                    // The stream lost its framing: close it, so that the
                    // sender sees it rather than every later message vanishing.
                    metrics.syslog_messages("malformed", 1);
                    tracing::warn!(%peer, error = %err, "syslog tcp connection closed");
                    return;
                }
                Err(err) => {
                    // The frame is skipped; the connection goes on.
                    metrics.syslog_messages("malformed", 1);
                    tracing::warn!(%peer, error = %err, "syslog tcp frame skipped");
                }
            }
        }
    }
    match framer.finish() {
        Some(Ok(bytes)) => {
            let _ = tx.send(Received { bytes, peer }).await;
        }
        Some(Err(err)) => {
            metrics.syslog_messages("malformed", 1);
            tracing::warn!(%peer, error = %err, "syslog tcp frame cut short");
        }
        None => {}
    }
}

/// Parses, routes and appends messages in batches.
async fn store_messages(
    telemetry: Arc<Telemetry>,
    routing: SyslogRouting,
    mut rx: mpsc::Receiver<Received>,
    metrics: Arc<Metrics>,
) {
    loop {
        let Some(first) = rx.recv().await else { return };
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + LINGER;
        while batch.len() < BATCH {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(received)) => batch.push(received),
                _ => break,
            }
        }
        let mut by_tenant: HashMap<Tenant, Vec<Event>> = HashMap::new();
        let received_at = now_ms();
        for received in batch {
            match route(&routing, &received, received_at).await {
                Ok((tenant, event)) => by_tenant.entry(tenant).or_default().push(event),
                Err((outcome, reason)) => {
                    metrics.syslog_messages(outcome, 1);
                    tracing::debug!(peer = %received.peer, reason, "syslog message dropped");
                }
            }
        }
        for (tenant, events) in by_tenant {
            let n = events.len() as u64;
            // Retry: the messages are in memory only until this commits.
            let mut attempts = 0;
            loop {
                match telemetry.append(&tenant, events.clone()).await {
                    Ok(_) => {
                        metrics.syslog_messages("stored", n);
                        break;
                    }
                    Err(err) if attempts < 5 => {
                        attempts += 1;
                        tracing::warn!(error = %err, "cannot store syslog messages; retrying");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    Err(err) => {
                        metrics.syslog_messages("lost", n);
                        tracing::error!(error = %err, dropped = n, "syslog messages lost: the store refuses them");
                        break;
                    }
                }
            }
        }
    }
}

async fn route(
    routing: &SyslogRouting,
    received: &Received,
    received_at: i64,
) -> Result<(Tenant, Event), (&'static str, String)> {
    let message = parse(
        &received.bytes,
        new_time_ordered_id(prefix::EVENT),
        received_at,
    )
    .map_err(|e| ("malformed", e.to_string()))?;
    let unrouted = |reason: &str| ("unrouted", reason.to_string());
    let mut event = message.event;
    let tenant = match &message.token {
        Some(token) => {
            let principal = routing
                .state
                .keys
                .principal(token)
                .await
                .map_err(|_| unrouted("the message's ingest key is not valid"))?;
            principal
                .require("events.write")
                .map_err(|_| unrouted("the message's key lacks events.write"))?;
            principal
                .admits(received.peer)
                .map_err(|_| unrouted("the message's key is not allowed from this address"))?;
            super::ingest::bind_to_agent(&principal, std::slice::from_mut(&mut event));
            principal.tenant()
        }
        None => routing
            .default_tenant
            .clone()
            .ok_or_else(|| unrouted("no --syslog-org and no ingest key in the message"))?,
    };
    Ok((tenant, event))
}
