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

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;
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

pub(super) struct Received {
    pub bytes: Vec<u8>,
    pub peer: IpAddr,
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
    max_tcp_connections: usize,
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
        tokio::spawn(super::syslog_tcp::serve_tcp(
            listener,
            tx.clone(),
            metrics.clone(),
            max_tcp_connections,
        ));
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
                match telemetry.append(&tenant, events.clone(), None).await {
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
                .require(warden_core::scope::INGEST)
                .map_err(|_| unrouted("the message's key lacks events.ingest (or events.write)"))?;
            principal
                .admits(received.peer)
                .map_err(|_| unrouted("the message's key is not allowed from this address"))?;
            routing.state.keys.note_use(&principal.key_id);
            super::ingest::bind_to_agent(&principal, std::slice::from_mut(&mut event));
            // A key bound to an agent stamps its external id too, as the
            // event batch does (`fields.external_agent_id`).
            if let Some(bound) = &principal.agent_id {
                let g = &routing.state.governance;
                let agent = g
                    .agents
                    .find(g.store.as_ref(), &principal.tenant(), bound)
                    .await
                    .ok()
                    .flatten();
                let external_id = agent.and_then(|a| a.external_id);
                super::ingest::stamp_agent(&mut event, bound, external_id.as_deref());
            }
            principal.tenant()
        }
        None => routing
            .default_tenant
            .clone()
            .ok_or_else(|| unrouted("no --syslog-org and no ingest key in the message"))?,
    };
    Ok((tenant, event))
}
