//! A connection the process has no file for. Once every file the process
//! may open is open, `accept` fails and the clients queued in the kernel
//! would wait, health probes included, until they time out with no answer.
//! One file is kept spare: given up for a moment, it lets one queued
//! connection be accepted and answered 503 at once. The answered
//! connection, its sending side shut, becomes the spare: its number is
//! never free after the answer, where another thread's file (the index's,
//! the store's) could take it and leave the next client unanswered.

use std::io::Read;
use std::sync::Mutex;

use tokio::net::TcpListener;

use crate::http::request_id;

/// What holds the spare number.
enum Spare {
    /// Opened at start, or again when a turn-away found no connection:
    /// held only for its number.
    Reserved { _held: std::fs::File },
    /// The last connection turned away, its answer sent.
    Answered(std::net::TcpStream),
}

impl Spare {
    /// Frees the number. An answered connection is first read of what
    /// its client sent since (a body still arriving): closing one with
    /// unread bytes resets it, which can cost its client the answer it
    /// has not read yet.
    fn give_up(self) {
        if let Spare::Answered(mut stream) = self {
            let mut sink = [0u8; 16 * 1024];
            // Non-blocking: only what has arrived, and a bounded amount.
            for _ in 0..64 {
                match stream.read(&mut sink) {
                    Ok(n) if n > 0 => continue,
                    _ => break,
                }
            }
        }
    }
}

/// The spare file, `None` while given up or when it could not be opened.
/// A new file takes the lowest free number: reserved when the process
/// starts, the spare has a low one, which a limit lowered at run time
/// still leaves under it.
static SPARE: Mutex<Option<Spare>> = Mutex::new(None);

fn spare() -> std::sync::MutexGuard<'static, Option<Spare>> {
    SPARE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Opens the spare file, unless it is open.
pub fn reserve() {
    let mut spare = spare();
    if spare.is_none() {
        *spare = open_spare();
    }
}

fn open_spare() -> Option<Spare> {
    let held = std::fs::File::open("/dev/null").ok()?;
    Some(Spare::Reserved { _held: held })
}

/// Whether an `accept` error is the process (or system) out of files.
pub fn is_out_of_files(err: &std::io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// Gives the spare up, answers one queued connection 503 and keeps that
/// connection as the spare; false when no connection was answered (no
/// spare to give up, or another thread took the file meanwhile).
pub fn turn_one_away(listener: &TcpListener) -> bool {
    let mut spare = spare();
    match spare.take() {
        Some(given) => given.give_up(),
        None => {
            *spare = open_spare();
            return false;
        }
    }
    // Non-blocking: the error said a connection is queued.
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match listener.poll_accept(&mut cx) {
        std::task::Poll::Ready(Ok((stream, _))) => {
            answer_unavailable(&stream);
            *spare = done_with(stream).or_else(open_spare);
            true
        }
        _ => {
            *spare = open_spare();
            false
        }
    }
}

/// Ends an answered connection for its client (the end of the answer)
/// while keeping its file: the spare until the next turn-away closes it.
fn done_with(stream: tokio::net::TcpStream) -> Option<Spare> {
    let stream = stream.into_std().ok()?;
    let _ = stream.shutdown(std::net::Shutdown::Write);
    Some(Spare::Answered(stream))
}

/// The request (what has arrived of it) is read first, so that closing
/// the connection (at the next turn-away) does not reset it while its
/// client may still be reading the answer.
fn answer_unavailable(stream: &tokio::net::TcpStream) {
    let mut request = [0u8; 16 * 1024];
    let _ = stream.try_read(&mut request);
    let id = request_id::current();
    let body = format!(
        "{{\"error\":{{\"code\":\"unavailable\",\"message\":\"the server has no file left \
         for another connection; retry shortly\",\"request_id\":\"{id}\"}}}}"
    );
    let security: String = crate::http::security_headers::FOR_API
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nretry-after: 1\r\nx-request-id: {id}\r\n{security}\
         connection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.try_write(response.as_bytes());
}
