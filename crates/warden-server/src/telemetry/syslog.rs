//! Syslog listeners over UDP and TCP. Syslog carries no credentials: a
//! listener's messages belong to the organization named at start-up (its
//! `live` environment), unless a message carries an ingest key in
//! `[warden@32473 token="…"]`, which routes it to that key's tenant. A
//! message that cannot be routed or parsed is dropped and counted in
//! `warden_syslog_messages{outcome}` on `/metrics`; syslog has no way to
//! answer.
//!
//! Readers hand messages to one storing task through a short queue, so a
//! sender faster than the store is held back by TCP's flow control (or,
//! over UDP, by the socket's buffer) instead of piling up in memory; at
//! shutdown the readers stop, take what their sockets already hold, and
//! the server waits until the storing task has committed all of it.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use warden_core::event::syslog::parse;
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
/// Messages read but not yet being stored: about two batches, so that
/// readers wait (and senders with them) rather than memory growing.
const QUEUED: usize = 2 * BATCH;

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

/// What the readers and the storing task count together, so that a
/// shutdown that runs out of time can say how many messages it lost.
#[derive(Default)]
pub(super) struct Backlog {
    /// Messages handed to the storing task and not yet settled (stored,
    /// dropped or counted otherwise).
    pending: AtomicU64,
    /// Set when the shutdown gives up storing: readers then count what
    /// they still read instead of handing it on.
    gave_up: AtomicBool,
    /// Messages read after the shutdown gave up.
    unstored: AtomicU64,
}

/// The readers' side of the queue to the storing task.
#[derive(Clone)]
pub(super) struct Queue {
    tx: mpsc::Sender<Received>,
    backlog: Arc<Backlog>,
}

impl Queue {
    /// Hands a message on, waiting while the queue is full; once the
    /// shutdown has given up storing, counts it instead. False once the
    /// storing task is gone otherwise.
    pub async fn send(&self, bytes: Vec<u8>, peer: IpAddr) -> bool {
        let backlog = &self.backlog;
        if !backlog.gave_up.load(Ordering::SeqCst) {
            backlog.pending.fetch_add(1, Ordering::SeqCst);
            if self.tx.send(Received { bytes, peer }).await.is_ok() {
                return true;
            }
            backlog.pending.fetch_sub(1, Ordering::SeqCst);
        }
        if backlog.gave_up.load(Ordering::SeqCst) {
            backlog.unstored.fetch_add(1, Ordering::SeqCst);
            return true;
        }
        false
    }
}

pub struct SyslogListeners {
    pub udp: Option<SocketAddr>,
    pub tcp: Option<SocketAddr>,
    stop: Arc<watch::Sender<bool>>,
    stored: JoinHandle<()>,
    backlog: Arc<Backlog>,
    metrics: Arc<Metrics>,
}

/// How long readers get, once the shutdown gave up storing, to count what
/// their sockets still hold (up to their drain limits).
const COUNTING: Duration = Duration::from_secs(2);

impl SyslogListeners {
    /// Tells the readers to stop: they take what their sockets hold and end.
    pub fn stopper(&self) -> impl Fn() + Send + Sync + 'static {
        let stop = self.stop.clone();
        move || {
            stop.send_replace(true);
        }
    }

    /// Stops the readers (if not yet) and waits, up to `limit`, until every
    /// message they read is stored. Past it, the storing task is stopped,
    /// the readers count what they still take from their sockets, and the
    /// messages queued, being stored and counted are logged as lost, with
    /// their number.
    pub async fn finish(mut self, limit: Duration) {
        self.stop.send_replace(true);
        if tokio::time::timeout(limit, &mut self.stored).await.is_ok() {
            return;
        }
        let backlog = &self.backlog;
        backlog.gave_up.store(true, Ordering::SeqCst);
        self.stored.abort();
        let _ = (&mut self.stored).await;
        // The readers each hold a share of the backlog until they end.
        let counted_by = tokio::time::Instant::now() + COUNTING;
        while Arc::strong_count(backlog) > 1 && tokio::time::Instant::now() < counted_by {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let queued = backlog.pending.load(Ordering::SeqCst);
        let unstored = backlog.unstored.load(Ordering::SeqCst);
        self.metrics.syslog_messages("lost", queued + unstored);
        tracing::error!(
            lost = queued + unstored,
            queued,
            still_in_sockets = unstored,
            seconds = limit.as_secs(),
            "syslog messages read before the shutdown were not stored in time; they are lost"
        );
    }
}

/// Resolves once the server is stopping (or the signal is gone).
pub(super) async fn stopping(stop: &mut watch::Receiver<bool>) {
    loop {
        if *stop.borrow_and_update() {
            return;
        }
        if stop.changed().await.is_err() {
            return;
        }
    }
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
    let (tx, rx) = mpsc::channel::<Received>(QUEUED);
    let backlog = Arc::new(Backlog::default());
    let queue = Queue {
        tx,
        backlog: backlog.clone(),
    };
    let (stop, stopping) = watch::channel(false);
    let (mut udp_addr, mut tcp_addr) = (None, None);
    if let Some(addr) = udp {
        let socket = UdpSocket::bind(addr)
            .await
            .map_err(|e| format!("cannot listen for syslog on udp {addr}: {e}"))?;
        udp_addr = socket.local_addr().ok();
        let buffer = super::syslog_udp::raise_receive_buffer(&socket);
        tracing::debug!(bytes = ?buffer, "syslog udp receive buffer");
        let socket = Arc::new(socket);
        tokio::spawn(super::syslog_udp::count_kernel_drops(
            socket.clone(),
            metrics.clone(),
        ));
        tokio::spawn(super::syslog_udp::serve_udp(
            socket,
            queue.clone(),
            stopping.clone(),
        ));
    }
    if let Some(addr) = tcp {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| format!("cannot listen for syslog on tcp {addr}: {e}"))?;
        tcp_addr = listener.local_addr().ok();
        tokio::spawn(super::syslog_tcp::serve_tcp(
            listener,
            queue.clone(),
            metrics.clone(),
            max_tcp_connections,
            stopping,
        ));
    }
    drop(queue);
    let stored = tokio::spawn(store_messages(
        telemetry,
        routing,
        (rx, backlog.clone(), stop.subscribe()),
        metrics.clone(),
    ));
    Ok(SyslogListeners {
        udp: udp_addr,
        tcp: tcp_addr,
        stop: Arc::new(stop),
        stored,
        backlog,
        metrics,
    })
}

/// Parses, routes and appends messages in batches.
async fn store_messages(
    telemetry: Arc<Telemetry>,
    routing: SyslogRouting,
    (mut rx, backlog, stopping): (
        mpsc::Receiver<Received>,
        Arc<Backlog>,
        watch::Receiver<bool>,
    ),
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
                    backlog.pending.fetch_sub(1, Ordering::SeqCst);
                    tracing::debug!(peer = %received.peer, reason, "syslog message dropped");
                }
            }
        }
        for (tenant, events) in by_tenant {
            let n = events.len() as u64;
            // Retry: the messages are in memory only until this commits.
            let mut attempts = 0;
            loop {
                // Paced by the index while serving; once the server stops,
                // stored as fast as the store takes them.
                let appended = if *stopping.borrow() {
                    telemetry.append_unpaced(&tenant, events.clone()).await
                } else {
                    telemetry.append(&tenant, events.clone(), None).await
                };
                match appended {
                    Ok(_) => {
                        metrics.syslog_messages("stored", n);
                        backlog.pending.fetch_sub(n, Ordering::SeqCst);
                        break;
                    }
                    Err(err) if attempts < 5 => {
                        attempts += 1;
                        tracing::warn!(error = %err, "cannot store syslog messages; retrying");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    Err(err) => {
                        metrics.syslog_messages("lost", n);
                        backlog.pending.fetch_sub(n, Ordering::SeqCst);
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
        None => {
            let tenant = routing
                .default_tenant
                .clone()
                .ok_or_else(|| unrouted("no --syslog-org and no ingest key in the message"))?;
            // A key or token the message held without being routed by it
            // (already taken out of the event): one valid in another
            // tenant says the message was meant for that tenant, and it
            // is not stored in the listener's; anything else (the
            // listener's own, a revoked one, text an attacker chose) keeps
            // the message.
            for credential in &message.unrouted_credentials {
                if let Ok(principal) = routing.state.keys.principal(credential).await {
                    if principal.tenant() != tenant {
                        tracing::warn!(
                            peer = %received.peer,
                            key_id = %principal.key_id,
                            "a syslog message held a Warden key or token of another tenant (another organization, or another environment of the listener's) outside its routing element; dropped rather than stored in the listener's organization and environment"
                        );
                        return Err(unrouted("the message holds another tenant's credential"));
                    }
                }
            }
            tenant
        }
    };
    Ok((tenant, event))
}
