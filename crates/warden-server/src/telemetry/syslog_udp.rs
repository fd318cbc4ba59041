//! Syslog over UDP: a receive buffer large enough for a burst, and the
//! kernel's own drops counted. A datagram has no flow control: when the
//! store falls behind, the socket's buffer fills and the kernel discards
//! what arrives next, unseen by Warden. The buffer is raised so a burst
//! waits there instead, and the drops the kernel still makes are read
//! from `/proc` and counted as `dropped_by_kernel`, so that `/metrics`
//! shows every message sent that was not stored.

use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::watch;
use warden_core::event::syslog::MAX_SYSLOG_BYTES;

use super::syslog::Queue;
use crate::metrics::Metrics;

/// The receive buffer asked for: about 28,000 messages of 300 bytes.
const RECEIVE_BUFFER: usize = 8 << 20;
/// How often the kernel's drop count is read.
const DROPS_EVERY: Duration = Duration::from_secs(1);

/// Raises the socket's receive buffer (past `net.core.rmem_max` where
/// the process may, as root can); returns the size the kernel gave.
pub(super) fn raise_receive_buffer(socket: &UdpSocket) -> Option<usize> {
    let fd = socket.as_raw_fd();
    let size = RECEIVE_BUFFER as libc::c_int;
    let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    let set = |option| {
        // SAFETY: `fd` is an open socket owned by `socket`, and the value
        // points at a live c_int of the length given.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                option,
                (&size as *const libc::c_int).cast(),
                len,
            )
        }
    };
    if set(libc::SO_RCVBUFFORCE) != 0 {
        set(libc::SO_RCVBUF);
    }
    let mut got: libc::c_int = 0;
    let mut got_len = len;
    // SAFETY: as above; `got` and `got_len` are live and writable.
    let read = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&mut got as *mut libc::c_int).cast(),
            &mut got_len,
        )
    };
    (read == 0).then_some(got as usize)
}

/// Receives datagrams until `stop`, then takes what the socket already
/// holds, so that a shutdown stores every message received before it.
pub(super) async fn serve_udp(
    socket: Arc<UdpSocket>,
    queue: Queue,
    mut stop: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; MAX_SYSLOG_BYTES + 1];
    loop {
        tokio::select! {
            received = socket.recv_from(&mut buf) => match received {
                Ok((n, peer)) => {
                    let bytes = buf[..n].to_vec();
                    if !queue.send(bytes, peer.ip()).await {
                        return;
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "syslog udp receive failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            () = super::syslog::stopping(&mut stop) => break,
        }
    }
    // What the socket holds, up to about its buffer's worth again: a
    // sender that never stops cannot hold the shutdown.
    let mut drained = 0;
    while drained < 2 * RECEIVE_BUFFER {
        let Ok((n, peer)) = socket.try_recv_from(&mut buf) else {
            break;
        };
        drained += n.max(1);
        let bytes = buf[..n].to_vec();
        if !queue.send(bytes, peer.ip()).await {
            return;
        }
    }
}

/// Counts the datagrams the kernel discarded for this socket, as read
/// from `/proc/self/net/udp{,6}`, until the socket is closed.
pub(super) async fn count_kernel_drops(socket: Arc<UdpSocket>, metrics: Arc<Metrics>) {
    let Some(inode) = socket_inode(socket.as_raw_fd()) else {
        return;
    };
    drop(socket);
    let mut counted = kernel_drops(inode).unwrap_or(0);
    let mut tick = tokio::time::interval(DROPS_EVERY);
    loop {
        tick.tick().await;
        // Gone from the tables: the socket closed.
        let Some(drops) = kernel_drops(inode) else {
            return;
        };
        if drops > counted {
            metrics.syslog_messages("dropped_by_kernel", drops - counted);
            tracing::warn!(
                dropped = drops - counted,
                "syslog udp datagrams dropped by the kernel: the socket's buffer was full"
            );
            counted = drops;
        }
    }
}

/// The inode of a socket, which names it in `/proc/net`.
fn socket_inode(fd: i32) -> Option<u64> {
    let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()?;
    let link = link.to_str()?;
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// The kernel's drop count for the socket with this inode.
fn kernel_drops(inode: u64) -> Option<u64> {
    ["/proc/self/net/udp", "/proc/self/net/udp6"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .find_map(|table| drops_in(&table, inode))
}

/// Reads one table of `/proc/net/udp`: the `drops` column (the last) of
/// the row whose `inode` column (the tenth) matches.
fn drops_in(table: &str, inode: u64) -> Option<u64> {
    table.lines().skip(1).find_map(|row| {
        let columns: Vec<&str> = row.split_whitespace().collect();
        let matches = columns.get(9)?.parse::<u64>().ok()? == inode;
        matches.then(|| columns.last()?.parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_drop_column_of_the_socket_s_row_is_read() {
        let table = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
            \x20 412: 0100007F:4E34 00000000:0000 07 00000000:00034000 00:00000000 00000000     0        0 981234 2 0000000000000000 17620\n\
            \x20 413: 0100007F:4E35 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 981235 2 0000000000000000 0\n";
        assert_eq!(drops_in(table, 981234), Some(17620));
        assert_eq!(drops_in(table, 981235), Some(0));
        assert_eq!(drops_in(table, 1), None);
    }

    #[tokio::test]
    async fn a_bound_socket_is_found_with_no_drops_and_a_raised_buffer() {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let size = raise_receive_buffer(&socket).unwrap();
        // The kernel doubles what it is given, capped by rmem_max unless forced.
        assert!(size >= 200 * 1024, "{size}");
        let inode = socket_inode(socket.as_raw_fd()).unwrap();
        assert_eq!(kernel_drops(inode), Some(0));
    }
}
