//! Syslog over TCP: framing, and a bound on open connections that idle
//! senders cannot hold. Syslog carries no credentials, so anyone who
//! reaches the port could otherwise keep every slot with connections that
//! never send a byte, and lock real senders out for as long as they like.
//! When every slot is taken, the connection idle the longest (at least
//! [`EVICTABLE_AFTER`]) is closed for the new one; only when all are busy
//! is the new one refused. Idle counts from the last complete message, not
//! the last byte: a connection that sends a byte now and then without
//! ever finishing a message must not hold its slot either.
//!
//! At shutdown the connections waiting to be taken are taken, and each
//! connection takes what its socket held at the stop
//! (however long storing it takes) and what arrives after until it is
//! quiet (at most 1 MiB more, waiting at most half a second in all),
//! passes on the messages complete in it and closes; a message not read
//! whole by then is counted `lost`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, Semaphore};
use warden_core::event::framing::Framer;
use warden_core::event::syslog::MAX_SYSLOG_BYTES;

use super::syslog::Queue;
use crate::metrics::Metrics;

/// Most syslog TCP connections served at once: each holds a file, which
/// the store and the index need too.
pub const MAX_TCP_CONNECTIONS: usize = 1_024;
/// Most bytes a connection reads at shutdown: more than a socket's
/// buffers hold, less than a sender that never stops could send.
const DRAINED: usize = 16 << 20;
/// How long a shutdown's drain waits for more of what a sender wrote
/// before it calls the socket drained.
const QUIET: Duration = Duration::from_millis(100);
/// Longest a shutdown's drain waits, in all, for more of one connection's
/// messages once its socket is empty, and most bytes it reads past what
/// the socket held at the stop: a sender that never pauses would
/// otherwise be read for the whole shutdown, whose storing then runs out
/// of time and loses what was read. What it sends past these is left
/// unread, and the close tells it so (a reset).
const DRAIN_FOR: Duration = Duration::from_millis(500);
const PAST_HELD: usize = 1 << 20;
/// A connection that completed no message for this long gives its slot to
/// a new one when all are taken (a sender that reconnects loses nothing).
pub const EVICTABLE_AFTER: Duration = Duration::from_secs(5);

/// One open connection: when it last completed a message (or opened),
/// and how to close it.
struct Open {
    last_frame: Mutex<Instant>,
    close: Notify,
}

/// The open connections, so that the idlest can be found and closed.
#[derive(Default)]
pub struct Connections {
    next: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Open>>>,
}

impl Connections {
    fn register(&self) -> (u64, Arc<Open>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let open = Arc::new(Open {
            last_frame: Mutex::new(Instant::now()),
            close: Notify::new(),
        });
        self.map().insert(id, open.clone());
        (id, open)
    }

    fn forget(&self, id: u64) {
        self.map().remove(&id);
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Open>>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Closes the connection idle the longest, if it has been idle for
    /// `at_least`; whether one was closed.
    pub fn evict_idlest(&self, at_least: Duration, now: Instant) -> bool {
        let map = self.map();
        let idlest = map
            .values()
            .map(|o| (*o.last_frame.lock().unwrap_or_else(|p| p.into_inner()), o))
            .min_by_key(|(at, _)| *at);
        match idlest {
            Some((at, open)) if now.duration_since(at) >= at_least => {
                open.close.notify_one();
                true
            }
            _ => false,
        }
    }
}

pub(super) async fn serve_tcp(
    listener: TcpListener,
    queue: Queue,
    metrics: Arc<Metrics>,
    max_connections: usize,
    mut stopping: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(max_connections));
    let connections = Arc::new(Connections::default());
    // At the stop, the connections a sender had opened (and maybe written
    // and closed) that the listener had not taken yet are taken too: what
    // they hold was sent before the stop, as what open ones hold was.
    let mut draining = false;
    loop {
        let accepted = if draining {
            match tokio::time::timeout(Duration::ZERO, listener.accept()).await {
                Ok(accepted) => accepted,
                Err(_) => return,
            }
        } else {
            tokio::select! {
                accepted = listener.accept() => accepted,
                () = super::syslog::stopping(&mut stopping) => {
                    draining = true;
                    continue;
                }
            }
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(_) if draining => return,
            Err(err) => {
                tracing::warn!(error = %err, "syslog tcp accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => Some(slot),
            // Full: an idle connection makes room, and its slot comes
            // back as soon as its task ends.
            Err(_) if connections.evict_idlest(EVICTABLE_AFTER, Instant::now()) => {
                tokio::time::timeout(Duration::from_secs(1), slots.clone().acquire_owned())
                    .await
                    .ok()
                    .and_then(Result::ok)
            }
            Err(_) => None,
        };
        let Some(slot) = slot else {
            metrics.syslog_connections_refused();
            tracing::warn!(%peer, "syslog tcp connection refused: {max_connections} already open and sending");
            drop(stream);
            continue;
        };
        let (queue, metrics, connections) = (queue.clone(), metrics.clone(), connections.clone());
        let stopping = stopping.clone();
        tokio::spawn(async move {
            let (id, open) = connections.register();
            let reader = Reader {
                peer: peer.ip(),
                queue,
                metrics,
                open: &open,
            };
            reader.serve(stream, stopping).await;
            connections.forget(id);
            drop(slot);
        });
    }
}

/// Bytes waiting in the socket's receive queue now (`FIONREAD`); 0 if the
/// kernel does not say.
fn queued_bytes(stream: &TcpStream) -> usize {
    use std::os::fd::AsRawFd;
    let mut queued: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int, into `queued`, for a socket this
    // stream owns and keeps open for the call.
    let rc = unsafe { libc::ioctl(stream.as_raw_fd(), libc::FIONREAD, &mut queued) };
    if rc == 0 {
        usize::try_from(queued).unwrap_or(0)
    } else {
        0
    }
}

/// One connection's messages, on their way to the storing task.
struct Reader<'a> {
    peer: IpAddr,
    queue: Queue,
    metrics: Arc<Metrics>,
    open: &'a Open,
}

/// How a connection ends.
enum End {
    /// The sender closed it (or it failed).
    Closed,
    /// The server is stopping: what the socket held was read.
    Stopping,
    /// Closed for a new connection, or after a fatal framing error.
    Dropped,
}

impl Reader<'_> {
    async fn serve(&self, mut stream: TcpStream, mut stopping: watch::Receiver<bool>) {
        let mut framer = Framer::new(MAX_SYSLOG_BYTES);
        let mut buf = vec![0u8; 64 * 1024];
        let end = loop {
            let n = tokio::select! {
                read = stream.read(&mut buf) => match read {
                    Ok(0) | Err(_) => break End::Closed,
                    Ok(n) => n,
                },
                _ = self.open.close.notified() => {
                    // What it had begun is not a message it finished: dropped
                    // and counted, not stored as one.
                    if framer.finish().is_some() {
                        self.metrics.syslog_messages("malformed", 1);
                    }
                    tracing::debug!(peer = %self.peer, "idle syslog tcp connection closed for a new one");
                    break End::Dropped;
                }
                () = super::syslog::stopping(&mut stopping) => break self.drain(&mut stream, &mut framer, &mut buf).await,
            };
            framer.push(&buf[..n]);
            if !self.pass_frames(&mut framer).await {
                break End::Dropped;
            }
        };
        match (end, framer.finish()) {
            (End::Closed, Some(Ok(bytes))) => {
                self.queue.send(bytes, self.peer).await;
            }
            (End::Closed, Some(Err(err))) => {
                self.metrics.syslog_messages("malformed", 1);
                tracing::warn!(peer = %self.peer, error = %err, "syslog tcp frame cut short");
            }
            (End::Stopping, Some(_)) => {
                self.metrics.syslog_messages("lost", 1);
                tracing::warn!(peer = %self.peer, "a syslog message not read whole before the shutdown was dropped");
            }
            _ => {}
        }
    }

    /// Reads what the socket holds and what is still arriving, until
    /// nothing comes for [`QUIET`], and passes on its complete messages:
    /// what it held at the stop, then at most [`PAST_HELD`] bytes more,
    /// waiting at most [`DRAIN_FOR`] for them, so that a sender that keeps
    /// writing cannot hold the shutdown.
    async fn drain(&self, stream: &mut TcpStream, framer: &mut Framer, buf: &mut [u8]) -> End {
        // What the socket held at the stop was acknowledged to the sender:
        // it is read however long storing it takes (the queue holds the
        // reader back). What comes after is read for only so long.
        // What the sender wrote just before may still sit on its side of
        // the connection (held back while this side's buffer was full):
        // up to [`PAST_HELD`] more is read, waiting at most [`DRAIN_FOR`]
        // in all for it to come.
        let held = queued_bytes(stream);
        let mut drained = 0;
        let mut waited = Duration::ZERO;
        while drained < DRAINED && drained < held.saturating_add(PAST_HELD) {
            match stream.try_read(buf) {
                Ok(0) => return End::Closed,
                Ok(n) => {
                    drained += n;
                    framer.push(&buf[..n]);
                    if !self.pass_frames(framer).await {
                        return End::Dropped;
                    }
                }
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                    // What the sender wrote may still be on its way from its
                    // side of the connection (held back while this side's
                    // buffer was full): the socket is drained once nothing
                    // more comes for a moment.
                    let left = DRAIN_FOR.saturating_sub(waited);
                    if left.is_zero() {
                        return End::Stopping;
                    }
                    let since = tokio::time::Instant::now();
                    let readable = tokio::time::timeout(QUIET.min(left), stream.readable()).await;
                    waited += since.elapsed();
                    match readable {
                        Ok(Ok(())) => continue,
                        _ => return End::Stopping,
                    }
                }
                Err(_) => return End::Closed,
            }
        }
        End::Stopping
    }

    /// Passes on every complete frame; false when the connection must close.
    async fn pass_frames(&self, framer: &mut Framer) -> bool {
        while let Some(frame) = framer.next_frame() {
            *self
                .open
                .last_frame
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = Instant::now();
            match frame {
                Ok(bytes) => {
                    if !self.queue.send(bytes, self.peer).await {
                        return false;
                    }
                }
                Err(err) if err.is_fatal() => {
                    // The stream lost its framing: close it, so that the
                    // sender sees it rather than every later message vanishing.
                    self.metrics.syslog_messages("malformed", 1);
                    tracing::warn!(peer = %self.peer, error = %err, "syslog tcp connection closed");
                    return false;
                }
                Err(err) => {
                    // The frame is skipped; the connection goes on.
                    self.metrics.syslog_messages("malformed", 1);
                    tracing::warn!(peer = %self.peer, error = %err, "syslog tcp frame skipped");
                }
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_connection_idle_long_enough_is_evicted_and_the_idlest_first() {
        let table = Connections::default();
        let (_, first) = table.register();
        let (_, second) = table.register();
        let start = Instant::now();
        *first.last_frame.lock().unwrap() = start;
        *second.last_frame.lock().unwrap() = start + Duration::from_secs(3);
        // Nobody idle for 5 s yet.
        assert!(!table.evict_idlest(EVICTABLE_AFTER, start + Duration::from_secs(4)));
        assert!(table.evict_idlest(EVICTABLE_AFTER, start + Duration::from_secs(6)));
        // The first was told to close, the second not.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            tokio::time::timeout(Duration::from_millis(50), first.close.notified())
                .await
                .expect("the idlest connection is closed");
            assert!(
                tokio::time::timeout(Duration::from_millis(50), second.close.notified())
                    .await
                    .is_err()
            );
        });
    }
}
