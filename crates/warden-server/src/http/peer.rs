//! Whether the client of a request being answered is still connected.
//! Connections are served with half-close allowed (a client that shuts
//! its side after sending still gets the answer), so the server does not
//! drop a request whose client went away; a route whose answer spends
//! something (a step-up approval) asks first.

use std::os::fd::{AsRawFd, RawFd};

use tokio::net::TcpStream;

/// The connection a request came on. Valid while its request is being
/// answered: the connection outlives the handler that holds it.
#[derive(Debug, Clone, Copy)]
pub struct PeerLink(RawFd);

impl PeerLink {
    pub fn of(stream: &TcpStream) -> Self {
        PeerLink(stream.as_raw_fd())
    }

    /// Whether the client has closed its side of the connection or reset
    /// it: a look at the socket that takes nothing from it. A client that
    /// sent its next request already (pipelining) is still there.
    pub fn hung_up(&self) -> bool {
        let mut byte = 0u8;
        // SAFETY: the descriptor is the open socket of the connection this
        // request is answered on (see the type's note), and the buffer is
        // one live, writable byte.
        let n = unsafe {
            libc::recv(
                self.0,
                (&mut byte as *mut u8).cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        match n {
            0 => true,
            n if n > 0 => false,
            _ => !matches!(
                std::io::Error::last_os_error().kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn a_client_that_closes_or_shuts_its_side_has_hung_up() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        for how in ["close", "shutdown", "pipelined", "open"] {
            let mut client = TcpStream::connect(addr).await.unwrap();
            let (server, _) = listener.accept().await.unwrap();
            let link = PeerLink::of(&server);
            assert!(!link.hung_up(), "{how}: before");
            match how {
                "close" => drop(client),
                "shutdown" => client.shutdown().await.unwrap(),
                "pipelined" => client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap(),
                _ => {}
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            let expected = matches!(how, "close" | "shutdown");
            assert_eq!(link.hung_up(), expected, "{how}");
        }
    }
}
