//! Syslog over TCP: splitting a byte stream into messages (RFC 6587).
//!
//! A frame that starts with ASCII digits, a space and `<` (the message's
//! `<PRI>`) is octet-counted (`MSG-LEN SP SYSLOG-MSG`, exactly MSG-LEN
//! bytes); anything else is non-transparent: a line up to `\n`, without a
//! trailing `\r`, and empty lines are skipped. A connection whose first
//! frame is a line is read as lines to its end: a logged value holding a
//! newline and `2000 <…` would otherwise open a counted frame that
//! swallows the messages after it (senders frame a connection one way).
//! One whose first frame is counted may still send lines.
//!
//! [`Framer`] is incremental and does no IO: [`Framer::push`] what was read,
//! then call [`Framer::next_frame`] until it returns `None`; at end of stream
//! [`Framer::finish`] returns a last line sent without its `\n`. Once every
//! frame has been taken, it holds at most `max_frame` plus a few bytes.
//!
//! A frame over the limit is reported once and skipped (a line up to its
//! `\n`, a counted frame by its declared length), and the frames after it
//! are read as usual: one bad message costs only itself.

/// Why one frame was not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    #[error("an octet-counted frame declares {len} bytes, more than the limit of {max}")]
    FrameTooLong { len: u64, max: usize },
    #[error("a line is longer than the limit of {max} bytes")]
    LineTooLong { max: usize },
    #[error("the stream ended inside an octet-counted frame")]
    Truncated,
    #[error(
        "an octet-counted frame declares {len} bytes, far beyond the limit of {max}: \
         the stream is not framed as syslog"
    )]
    Implausible { len: u64, max: usize },
}

impl FramingError {
    /// Whether the connection cannot go on: after an implausible length
    /// nothing later on it can be trusted to start a frame, and skipping
    /// that many bytes would silently swallow everything it sends.
    pub fn is_fatal(&self) -> bool {
        matches!(self, FramingError::Implausible { .. })
    }
}

/// Declared lengths up to this many times the frame limit are skipped and
/// the connection goes on; longer ones end it ([`FramingError::Implausible`]).
const MAX_SKIPPED_FRAMES: u64 = 16;

/// What is being skipped of a frame over the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Skip {
    Nothing,
    /// The rest of a line, through its `\n`.
    Line,
    /// The rest of a counted frame: this many bytes.
    Bytes(u64),
    /// Everything: the stream lost its framing.
    All,
}

/// An incremental RFC 6587 decoder for one TCP connection.
#[derive(Debug)]
pub struct Framer {
    max_frame: usize,
    buf: Vec<u8>,
    /// Where the bytes not yet framed start in `buf`.
    start: usize,
    /// How many bytes from `start` are known to hold no `\n`, so that a long
    /// line arriving in small pieces is not searched again and again.
    scanned: usize,
    skip: Skip,
    /// Set by a first frame that is a line: the connection is read as lines.
    lines_only: bool,
    /// Whether a frame has been framed yet (the first decides `lines_only`).
    framed_any: bool,
}

/// How the bytes at the start of a frame read.
enum Head {
    /// `MSG-LEN SP`: the length and the header's size.
    Counted { len: u64, header: usize },
    /// Only digits so far: either method is still possible.
    Undecided,
    /// A line.
    Line,
}

impl Framer {
    /// A framer that refuses frames (and lines) longer than `max_frame` bytes.
    pub fn new(max_frame: usize) -> Self {
        Framer {
            max_frame,
            buf: Vec::new(),
            start: 0,
            scanned: 0,
            skip: Skip::Nothing,
            lines_only: false,
            framed_any: false,
        }
    }

    /// Adds bytes read from the connection.
    pub fn push(&mut self, bytes: &[u8]) {
        self.compact();
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame, without its framing; `None` when more bytes
    /// are needed. An error stands for one frame over the limit, which is
    /// skipped: the next call goes on after it.
    pub fn next_frame(&mut self) -> Option<Result<Vec<u8>, FramingError>> {
        loop {
            let pending = &self.buf[self.start..];
            match self.skip {
                Skip::Nothing => {}
                Skip::Line => match pending.iter().position(|&b| b == b'\n') {
                    Some(at) => {
                        self.skip = Skip::Nothing;
                        self.advance(at + 1);
                        continue;
                    }
                    None => {
                        self.advance(pending.len());
                        self.compact();
                        return None;
                    }
                },
                Skip::All => {
                    self.advance(pending.len());
                    self.compact();
                    return None;
                }
                Skip::Bytes(left) => {
                    let take = left.min(pending.len() as u64);
                    self.skip = match left - take {
                        0 => Skip::Nothing,
                        rest => Skip::Bytes(rest),
                    };
                    self.advance(take as usize);
                    if self.skip != Skip::Nothing {
                        self.compact();
                        return None;
                    }
                    continue;
                }
            }
            if pending.is_empty() {
                self.compact();
                return None;
            }
            let decided = match head(pending) {
                Head::Counted { .. } | Head::Undecided if self.lines_only => Head::Line,
                other => other,
            };
            if !self.framed_any && !matches!(decided, Head::Undecided) {
                self.framed_any = true;
                self.lines_only = matches!(decided, Head::Line);
            }
            match decided {
                Head::Counted { len, header } => {
                    if len > (self.max_frame as u64).saturating_mul(MAX_SKIPPED_FRAMES) {
                        self.advance(pending.len());
                        self.skip = Skip::All;
                        return Some(Err(FramingError::Implausible {
                            len,
                            max: self.max_frame,
                        }));
                    }
                    if len > self.max_frame as u64 {
                        self.advance(header);
                        self.skip = Skip::Bytes(len);
                        return Some(Err(FramingError::FrameTooLong {
                            len,
                            max: self.max_frame,
                        }));
                    }
                    let len = len as usize;
                    if pending.len() < header + len {
                        self.compact();
                        return None;
                    }
                    let frame = pending[header..header + len].to_vec();
                    self.advance(header + len);
                    if !frame.is_empty() {
                        return Some(Ok(frame));
                    }
                }
                Head::Undecided | Head::Line => {
                    let from = self.scanned.min(pending.len());
                    let Some(at) = pending[from..].iter().position(|&b| b == b'\n') else {
                        self.scanned = pending.len();
                        // One byte more is allowed when it may be the `\r` of `\r\n`.
                        let over = pending.len() > self.max_frame.saturating_add(1)
                            || (pending.len() > self.max_frame && pending.last() != Some(&b'\r'));
                        if over {
                            self.advance(pending.len());
                            self.skip = Skip::Line;
                            return Some(Err(FramingError::LineTooLong {
                                max: self.max_frame,
                            }));
                        }
                        self.compact();
                        return None;
                    };
                    let end = from + at;
                    let line = strip_cr(&pending[..end]);
                    if line.len() > self.max_frame {
                        self.advance(end + 1);
                        return Some(Err(FramingError::LineTooLong {
                            max: self.max_frame,
                        }));
                    }
                    let line = line.to_vec();
                    self.advance(end + 1);
                    if !line.is_empty() {
                        return Some(Ok(line));
                    }
                }
            }
        }
    }

    /// At end of stream, once `next_frame` has returned `None`: the last
    /// line if it was sent without a `\n`, or [`FramingError::Truncated`]
    /// for an octet-counted frame cut short. The framer is then empty.
    pub fn finish(&mut self) -> Option<Result<Vec<u8>, FramingError>> {
        let pending = &self.buf[self.start..];
        let decided = match head(pending) {
            Head::Counted { .. } if self.lines_only => Head::Line,
            other => other,
        };
        let last = match (self.skip, decided) {
            // Reported when its skipping began.
            (Skip::Line | Skip::Bytes(_) | Skip::All, _) => None,
            (Skip::Nothing, _) if pending.is_empty() => None,
            (Skip::Nothing, Head::Counted { .. }) => Some(Err(FramingError::Truncated)),
            (Skip::Nothing, Head::Undecided | Head::Line) => {
                let line = strip_cr(pending);
                (!line.is_empty() && line.len() <= self.max_frame).then(|| Ok(line.to_vec()))
            }
        };
        self.buf.clear();
        self.start = 0;
        self.scanned = 0;
        self.skip = Skip::Nothing;
        self.lines_only = false;
        self.framed_any = false;
        last
    }

    fn advance(&mut self, by: usize) {
        self.start += by;
        self.scanned = 0;
    }

    /// Drops the bytes already framed, and memory a large push left behind.
    fn compact(&mut self) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let keep = self.max_frame.saturating_add(SLACK);
        if self.buf.capacity() > keep.saturating_mul(2) && self.buf.len() <= keep {
            self.buf.shrink_to(keep);
        }
    }
}

/// Bytes kept beyond `max_frame`: an octet count's header, a `\r`.
const SLACK: usize = 32;

fn head(pending: &[u8]) -> Head {
    let digits = pending.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == pending.len() {
        return Head::Undecided;
    }
    if digits == 0 || pending[digits] != b' ' {
        return Head::Line;
    }
    // A counted frame's message is a syslog message, which opens with
    // `<PRI>`: a line such as `9 lives left` is a line.
    // `0 ` alone is an empty counted frame, skipped.
    let empty = pending[..digits].iter().all(|&d| d == b'0');
    match pending.get(digits + 1) {
        None if !empty => return Head::Undecided,
        Some(b) if *b != b'<' && !empty => return Head::Line,
        _ => {}
    }
    // Saturates: a length too large to hold is too large for any limit.
    let len = pending[..digits].iter().fold(0u64, |n, d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    });
    Head::Counted {
        len,
        header: digits + 1,
    }
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIVE_424: &[u8] = br#"<13>1 2026-11-24T10:00:00.123456+00:00 host1 myapp 1234 - [timeQuality tzKnown="1" isSynced="0"][warden@32473 token="wdn_abc"] hello world"#;
    const THREE_164: &[u8] =
        b"<38>Nov 24 10:00:00 host1 sshd[4242]: Failed password for root from 10.0.0.5 port 22 ssh2";

    fn counted(msg: &[u8]) -> Vec<u8> {
        let mut frame = format!("{} ", msg.len()).into_bytes();
        frame.extend_from_slice(msg);
        frame
    }

    /// Every frame after each push, then `finish`; stops at an error.
    fn run(max: usize, chunks: &[&[u8]]) -> (Vec<Vec<u8>>, Option<FramingError>) {
        let mut framer = Framer::new(max);
        let mut frames = Vec::new();
        for chunk in chunks {
            framer.push(chunk);
            while let Some(frame) = framer.next_frame() {
                match frame {
                    Ok(frame) => frames.push(frame),
                    Err(e) => return (frames, Some(e)),
                }
                assert!(framer.buf.len() - framer.start <= max + SLACK + chunk.len());
            }
            assert!(framer.buf.len() <= max + SLACK, "{}", framer.buf.len());
        }
        match framer.finish() {
            Some(Ok(frame)) => frames.push(frame),
            Some(Err(e)) => return (frames, Some(e)),
            None => {}
        }
        (frames, None)
    }

    /// Octet-counted and newline frames mixed, as rsyslog and logger send.
    fn mixed() -> (Vec<u8>, Vec<Vec<u8>>) {
        let mut stream = Vec::new();
        stream.extend(counted(FIVE_424));
        stream.extend_from_slice(THREE_164);
        stream.extend_from_slice(b"\n\n\r\n");
        stream.extend(counted(
            b"<13>Nov 24 10:00:00 host1 root: line\nwith a newline\n",
        ));
        stream.extend_from_slice(b"<13>Nov 24 10:00:00 host1 root: crlf\r\n");
        stream.extend(counted(b"<5>is short"));
        stream.extend_from_slice(b"0 \n"); // An empty octet-counted frame, then an empty line.
        stream.extend_from_slice(b"42\n"); // Digits alone are a line.
        stream.extend_from_slice(b"9 lives left\n"); // No `<PRI>` after the count: a line.
        stream.extend_from_slice(b"<13>Nov 24 10:00:00 host1 root: no newline at the end");
        let frames = vec![
            FIVE_424.to_vec(),
            THREE_164.to_vec(),
            b"<13>Nov 24 10:00:00 host1 root: line\nwith a newline\n".to_vec(),
            b"<13>Nov 24 10:00:00 host1 root: crlf".to_vec(),
            b"<5>is short".to_vec(),
            b"42".to_vec(),
            b"9 lives left".to_vec(),
            b"<13>Nov 24 10:00:00 host1 root: no newline at the end".to_vec(),
        ];
        (stream, frames)
    }

    #[test]
    fn mixed_frames_in_one_push() {
        let (stream, frames) = mixed();
        assert_eq!(run(1024, &[&stream]), (frames, None));
    }

    #[test]
    fn mixed_frames_split_at_every_byte_position() {
        let (stream, frames) = mixed();
        for at in 0..=stream.len() {
            let (a, b) = stream.split_at(at);
            assert_eq!(run(1024, &[a, b]), (frames.clone(), None), "split at {at}");
        }
        for at in (0..stream.len()).step_by(7) {
            for to in (at..=stream.len()).step_by(5) {
                let chunks = [&stream[..at], &stream[at..to], &stream[to..]];
                assert_eq!(run(1024, &chunks), (frames.clone(), None), "{at}..{to}");
            }
        }
    }

    #[test]
    fn mixed_frames_one_byte_at_a_time() {
        let (stream, frames) = mixed();
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(run(1024, &bytes), (frames, None));
    }

    #[test]
    fn frames_parse_as_syslog() {
        let (stream, _) = mixed();
        let (frames, _) = run(1024, &[&stream]);
        let parsed = super::super::syslog::parse(&frames[0], "e".into(), 0).unwrap();
        assert_eq!(parsed.token.as_deref(), Some("wdn_abc"));
        assert_eq!(parsed.event.message, "hello world");
        let parsed = super::super::syslog::parse(&frames[2], "e".into(), 0).unwrap();
        assert_eq!(parsed.event.message, "line\nwith a newline");
    }

    #[test]
    fn frames_up_to_the_limit_pass() {
        let max = 16;
        let mut exact = vec![b'a'; max];
        exact[0] = b'<';
        let mut stream = counted(&exact);
        stream.extend_from_slice(&exact);
        stream.extend_from_slice(b"\r\n");
        stream.extend_from_slice(&exact);
        stream.push(b'\r');
        for at in 0..=stream.len() {
            let (a, b) = stream.split_at(at);
            let (frames, error) = run(max, &[a, b]);
            assert_eq!(error, None, "split at {at}");
            assert_eq!(frames, vec![exact.clone(); 3], "split at {at}");
        }
    }

    #[test]
    fn an_oversized_count_is_skipped_by_its_length() {
        let mut framer = Framer::new(100);
        framer.push(b"5 <hell101 <");
        assert_eq!(framer.next_frame(), Some(Ok(b"<hell".to_vec())));
        let error = FramingError::FrameTooLong { len: 101, max: 100 };
        assert_eq!(framer.next_frame(), Some(Err(error)));
        // Its 101 bytes arrive in pieces and are skipped; the next frame is read.
        framer.push(&[b'z'; 60]);
        assert_eq!(framer.next_frame(), None);
        framer.push(&[b'z'; 40]);
        framer.push(b"<13>more\n");
        assert_eq!(framer.next_frame(), Some(Ok(b"<13>more".to_vec())));
        assert_eq!(framer.next_frame(), None);
        assert_eq!(framer.finish(), None);
        assert_eq!(
            FramingError::FrameTooLong { len: 101, max: 100 }.to_string(),
            "an octet-counted frame declares 101 bytes, more than the limit of 100"
        );
        // Up to sixteen times the limit is still skipped by its length.
        let mut framer = Framer::new(100);
        framer.push(b"1600 <");
        assert_eq!(
            framer.next_frame(),
            Some(Err(FramingError::FrameTooLong {
                len: 1600,
                max: 100
            }))
        );
        framer.push(&[b'z'; 1599]);
        framer.push(b"4 <abc");
        assert_eq!(framer.next_frame(), Some(Ok(b"<abc".to_vec())));
    }

    #[test]
    fn an_implausible_count_ends_the_stream_instead_of_swallowing_it() {
        // Known as soon as the header is complete, and for any number.
        let (_, error) = run(100, &[b"99999999999999999999999999 <"]);
        let error = error.unwrap();
        assert_eq!(
            error,
            FramingError::Implausible {
                len: u64::MAX,
                max: 100
            }
        );
        assert!(error.is_fatal());
        assert!(!FramingError::FrameTooLong { len: 101, max: 100 }.is_fatal());
        // Nothing after it is framed: the connection is to be closed.
        let mut framer = Framer::new(100);
        framer.push(b"1601 <x\n<13>next\n");
        assert!(matches!(
            framer.next_frame(),
            Some(Err(FramingError::Implausible { len: 1601, .. }))
        ));
        framer.push(b"<13>later\n");
        assert_eq!(framer.next_frame(), None);
        assert_eq!(framer.finish(), None);
    }

    #[test]
    fn an_oversized_line_is_reported_without_waiting_for_its_end_and_skipped() {
        let max = 64;
        let line = vec![b'x'; max + 1];
        let bytes: Vec<&[u8]> = line.chunks(1).collect();
        let (frames, error) = run(max, &bytes);
        assert!(frames.is_empty());
        assert_eq!(error, Some(FramingError::LineTooLong { max }));
        // Digits alone count as a line too.
        let digits = vec![b'7'; max + 2];
        assert_eq!(
            run(max, &[&digits]).1,
            Some(FramingError::LineTooLong { max })
        );
        // Reported once, however it arrives; the next line is read.
        for whole in [true, false] {
            let mut framer = Framer::new(max);
            let mut frames = Vec::new();
            let mut stream = vec![b'y'; 200];
            stream.extend_from_slice(b"\nok\n");
            let chunks: Vec<&[u8]> = if whole {
                vec![&stream]
            } else {
                stream.chunks(7).collect()
            };
            for chunk in chunks {
                framer.push(chunk);
                while let Some(frame) = framer.next_frame() {
                    frames.push(frame);
                }
                assert!(framer.buf.len() <= max + SLACK);
            }
            assert_eq!(
                frames,
                vec![Err(FramingError::LineTooLong { max }), Ok(b"ok".to_vec())],
                "whole: {whole}"
            );
        }
    }

    #[test]
    fn a_cut_short_counted_frame_is_reported_at_the_end() {
        let mut framer = Framer::new(100);
        framer.push(b"5 <13>a20 <13>partial");
        assert_eq!(framer.next_frame(), Some(Ok(b"<13>a".to_vec())));
        assert_eq!(framer.next_frame(), None);
        assert_eq!(framer.finish(), Some(Err(FramingError::Truncated)));
        // And the framer is empty after `finish`.
        assert_eq!(framer.next_frame(), None);
        assert_eq!(framer.finish(), None);
    }

    #[test]
    fn a_connection_of_lines_stays_lines() {
        // A logged value with a newline and a count cannot open a counted
        // frame that swallows the lines after it.
        let mut framer = Framer::new(100);
        framer.push(
            b"<13>app: x\n2000 <evil>\n<38>sshd: Failed 1\n5000000 <x>\n<38>sshd: Failed 2\n",
        );
        let mut frames = Vec::new();
        while let Some(frame) = framer.next_frame() {
            frames.push(frame.unwrap());
        }
        assert_eq!(
            frames,
            vec![
                b"<13>app: x".to_vec(),
                b"2000 <evil>".to_vec(),
                b"<38>sshd: Failed 1".to_vec(),
                b"5000000 <x>".to_vec(),
                b"<38>sshd: Failed 2".to_vec(),
            ]
        );
        assert_eq!(framer.finish(), None);
        // After `finish` the next connection decides afresh.
        framer.push(b"4 <1>a");
        assert_eq!(framer.next_frame(), Some(Ok(b"<1>a".to_vec())));
    }

    #[test]
    fn a_large_push_does_not_stay_buffered() {
        let mut framer = Framer::new(64);
        let mut stream = Vec::new();
        for i in 0..10_000 {
            stream.extend_from_slice(format!("<13>message {i}\n").as_bytes());
        }
        framer.push(&stream);
        let mut count = 0;
        while let Some(frame) = framer.next_frame() {
            frame.unwrap();
            count += 1;
        }
        assert_eq!(count, 10_000);
        assert!(framer.buf.capacity() <= 2 * (64 + SLACK));
    }
}
