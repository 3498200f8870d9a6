//! One connection whose request is still arriving (or, kept after an
//! answer, whose next request has not begun): its bytes, how far the parse
//! got, and its deadline.
//!
//! Owns: the read buffer of one connection (at most the head limit, then the
//! body limit), and the lease that covers its body. Must never: block (the
//! socket is non-blocking), hold more than the limits, read a body before the
//! gate gave it a lease, answer anything but `100 Continue` itself, or lose
//! a byte that came after its request (it goes with the connection, for the
//! next request: `Conn::early`).

use crate::http::request::{ChunkedDecoder, Framing, Head, Limits, parse_head};
use crate::http::response::CONTINUE;
use crate::http::{RequestError, Status};
use crate::queue::{Body, Lease};
use crate::transport::Conn;
use std::io::{self, IoSlice};
use std::time::{Duration, Instant};

/// Most reads of one connection per wake-up, so one fast sender cannot
/// starve the others.
const READS_PER_WAKE: usize = 4;

/// A complete request, as the gate hands it on.
pub struct Request {
    pub head: Head,
    pub body: Body,
}

enum Phase {
    Head,
    /// The head is complete and announces a body: the gate decides whether
    /// it may be read (`admit`). `rest` is what came after the head.
    Admit {
        head: Head,
        rest: Vec<u8>,
    },
    Length {
        head: Head,
        len: usize,
    },
    Chunked {
        head: Head,
        decoder: ChunkedDecoder,
    },
}

/// What reading did.
pub enum Step {
    /// More bytes are needed.
    Waiting,
    /// The head announces a body of this many bytes (0: chunked, length
    /// unknown): the gate must `admit` it, with a lease, or refuse it.
    Admit(usize),
    /// The request is complete.
    Done(Request),
    /// The request is refused with this status.
    Refused(RequestError),
    /// The client closed or reset before its request was complete.
    Gone,
    /// TLS failed (a bad handshake, plain HTTP on a TLS port).
    BadTls,
}

pub struct Reader {
    pub conn: Conn,
    /// The handshake's deadline while TLS is handshaking, then the request's.
    pub deadline: Instant,
    read_deadline: Instant,
    /// Kept after an answer, and no byte of the next request yet: the
    /// request has this long once its first byte comes.
    idle: Option<Duration>,
    buf: Vec<u8>,
    phase: Phase,
    /// Covers the body's bytes once the gate admitted it.
    lease: Option<Lease>,
}

impl Reader {
    /// A connection whose request must arrive by `read_deadline`, and whose
    /// TLS handshake (if any) must be done by `handshake_deadline`.
    pub fn new(conn: Conn, read_deadline: Instant, handshake_deadline: Instant) -> Reader {
        let deadline = if conn.transport.handshaking() {
            handshake_deadline.min(read_deadline)
        } else {
            read_deadline
        };
        Reader {
            conn,
            deadline,
            read_deadline,
            idle: None,
            buf: Vec::new(),
            phase: Phase::Head,
            lease: None,
        }
    }

    /// A connection kept after its answer: closed quietly at `idle_deadline`
    /// if no request has begun, else its request has `read_timeout` from
    /// its first byte (never less than the idle deadline: a deadline only
    /// moves later).
    pub fn kept(conn: Conn, idle_deadline: Instant, read_timeout: Duration) -> Reader {
        Reader {
            idle: Some(read_timeout),
            ..Reader::new(conn, idle_deadline, idle_deadline)
        }
    }

    /// True while kept and no byte of a next request has come.
    pub fn idle(&self) -> bool {
        self.idle.is_some()
    }

    /// A byte of the request came: a kept connection is idle no longer.
    fn begun(&mut self) {
        if let Some(read_timeout) = self.idle.take() {
            let now = Instant::now();
            self.conn.accepted = now;
            self.read_deadline = self.read_deadline.max(now + read_timeout);
            self.deadline = self.read_deadline;
        }
    }

    /// The head, once it has been parsed (for the access log of a refusal).
    pub fn head(&self) -> Option<&Head> {
        match &self.phase {
            Phase::Head => None,
            Phase::Admit { head, .. }
            | Phase::Length { head, .. }
            | Phase::Chunked { head, .. } => Some(head),
        }
    }

    /// True while the transport has records for the socket (a TLS handshake).
    pub fn wants_write(&self) -> bool {
        self.conn.transport.wants_write()
    }

    /// Reads what the socket holds and advances the parse.
    pub fn on_readable(&mut self, scratch: &mut [u8], limits: &Limits) -> Step {
        if self.conn.transport.flush(&self.conn.stream).is_err() {
            return Step::Gone;
        }
        let early = std::mem::take(&mut self.conn.early);
        if !early.is_empty() {
            self.begun();
            if let Some(step) = self.advance(&early, limits) {
                return step;
            }
        }
        let mut reads = 0;
        loop {
            // Plaintext a TLS session holds already is read now: no wake-up
            // would come for it.
            if reads >= READS_PER_WAKE && !self.conn.transport.buffered() {
                return Step::Waiting;
            }
            reads += 1;
            let read = self.conn.transport.read(&self.conn.stream, scratch);
            if !self.conn.transport.handshaking() {
                self.deadline = self.read_deadline;
            }
            let n = match read {
                Ok(0) => return Step::Gone,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Waiting,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::InvalidData => return Step::BadTls,
                Err(_) => return Step::Gone,
            };
            self.begun();
            if let Some(step) = self.advance(scratch.get(..n).unwrap_or_default(), limits) {
                return step;
            }
        }
    }

    /// Parses on with `bytes`: what the gate must hear of, if anything.
    fn advance(&mut self, bytes: &[u8], limits: &Limits) -> Option<Step> {
        match self.feed(bytes, limits) {
            Ok(Status::Partial) => {}
            Ok(Status::Complete(request)) => return Some(Step::Done(request)),
            Err(e) => return Some(Step::Refused(e)),
        }
        match &self.phase {
            Phase::Admit { head, .. } => Some(Step::Admit(match head.framing {
                Framing::Length(n) => usize::try_from(n).unwrap_or(usize::MAX),
                Framing::None | Framing::Chunked => 0,
            })),
            _ => None,
        }
    }

    /// The gate lets the body be read, covered by `lease`, which grows with
    /// the bytes that arrive: `100 Continue` if the client waits for it,
    /// then the bytes that came with the head, then what the socket holds.
    pub fn admit(&mut self, lease: Lease, scratch: &mut [u8], limits: &Limits) -> Step {
        let Phase::Admit { head, rest } = std::mem::replace(&mut self.phase, Phase::Head) else {
            return Step::Refused(RequestError::BadRequest);
        };
        if head.expect_continue && rest.is_empty() && head.minor_version >= 1 {
            // A 25-byte write to a socket that has sent nothing yet does not
            // block; if it fails, the client's own expect timeout covers it.
            let _ = self
                .conn
                .transport
                .write(&self.conn.stream, &[IoSlice::new(CONTINUE)]);
        }
        self.phase = match head.framing {
            Framing::Length(n) => {
                let len = usize::try_from(n).unwrap_or(usize::MAX);
                // One allocation, never copied to grow: its pages become
                // memory only as the bytes (and the lease) arrive.
                self.buf.reserve_exact(len);
                Phase::Length { head, len }
            }
            Framing::Chunked => Phase::Chunked {
                head,
                decoder: ChunkedDecoder::new(limits.max_body),
            },
            Framing::None => Phase::Length { head, len: 0 },
        };
        self.lease = Some(lease);
        match self.feed(&rest, limits) {
            Ok(Status::Partial) => self.on_readable(scratch, limits),
            Ok(Status::Complete(request)) => Step::Done(request),
            Err(e) => Step::Refused(e),
        }
    }

    fn feed(&mut self, bytes: &[u8], limits: &Limits) -> Result<Status<Request>, RequestError> {
        match &mut self.phase {
            Phase::Head => {
                let before = self.buf.len();
                self.buf.extend_from_slice(bytes);
                if !worth_parsing(before, bytes, limits) {
                    return Ok(Status::Partial);
                }
                // The body's size is checked once the head is kept (below),
                // so a 413 is logged with the request it refuses.
                let unbounded = Limits {
                    max_body: u64::MAX,
                    ..*limits
                };
                let Status::Complete((head, n)) = parse_head(&self.buf, &unbounded)? else {
                    return Ok(Status::Partial);
                };
                let rest = self.buf.split_off(n.min(self.buf.len()));
                self.buf = Vec::new();
                let too_large = matches!(head.framing, Framing::Length(n) if n > limits.max_body);
                let status = self.start_body(head, rest);
                if too_large {
                    return Err(RequestError::BodyTooLarge);
                }
                Ok(status)
            }
            Phase::Length { len, .. } => {
                let room = len.saturating_sub(self.buf.len());
                let (body, next) = bytes.split_at_checked(room).unwrap_or((bytes, &[]));
                self.buf.extend_from_slice(body);
                self.conn.early.extend_from_slice(next);
                self.covered()?;
                Ok(self.finish_if_complete())
            }
            Phase::Chunked { decoder, .. } => {
                let status = decoder.feed(bytes, &mut self.buf)?;
                self.covered()?;
                match status {
                    Status::Partial => Ok(Status::Partial),
                    Status::Complete(n) => {
                        let next = bytes.get(n..).unwrap_or_default();
                        self.conn.early.extend_from_slice(next);
                        Ok(self.take())
                    }
                }
            }
            // Nothing is read while the gate decides.
            Phase::Admit { .. } => Ok(Status::Partial),
        }
    }

    /// The head is complete: a request without a body is too (what came
    /// after it is the next one's); one with a body waits for the gate's
    /// decision.
    fn start_body(&mut self, head: Head, rest: Vec<u8>) -> Status<Request> {
        match head.framing {
            Framing::None | Framing::Length(0) => {
                self.conn.early = rest;
                self.phase = Phase::Length { head, len: 0 };
                self.take()
            }
            Framing::Length(_) | Framing::Chunked => {
                self.phase = Phase::Admit { head, rest };
                Status::Partial
            }
        }
    }

    /// Grows the lease over the body read so far; without room in
    /// `body_memory` the request is refused (503) mid-body.
    fn covered(&mut self) -> Result<(), RequestError> {
        let len = self.buf.len();
        if self.lease.as_mut().is_some_and(|l| l.cover(len)) {
            Ok(())
        } else {
            Err(RequestError::NoRoom)
        }
    }

    fn finish_if_complete(&mut self) -> Status<Request> {
        match &self.phase {
            Phase::Length { len, .. } if self.buf.len() >= *len => self.take(),
            _ => Status::Partial,
        }
    }

    fn take(&mut self) -> Status<Request> {
        match std::mem::replace(&mut self.phase, Phase::Head) {
            Phase::Length { head, .. } | Phase::Chunked { head, .. } => Status::Complete(Request {
                head,
                body: Body::new(std::mem::take(&mut self.buf), self.lease.take()),
            }),
            phase @ (Phase::Head | Phase::Admit { .. }) => {
                self.phase = phase;
                Status::Partial
            }
        }
    }
}

/// Whether a head that had `before` bytes and got `bytes` is worth parsing
/// again: on its first bytes (which may be no HTTP at all), when a line
/// ended, when it just passed a limit (the request line's, the head's), and
/// whenever it is past the most a head can take (then the parse refuses it:
/// the limits count from the request line, after any empty lines, so the
/// crossing alone can leave it a few bytes short, and the buffer would grow
/// without end). Never for each byte of a line that trickles in: a client
/// that sends its head a byte at a time costs the gate O(bytes), not
/// O(bytes²).
fn worth_parsing(before: usize, bytes: &[u8], limits: &Limits) -> bool {
    let after = before + bytes.len();
    let crossed = |limit: usize| before < limit && after >= limit;
    before == 0
        || bytes.contains(&b'\n')
        || crossed(limits.max_line)
        || crossed(limits.max_head + 1)
        || after > limits.head_bound()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A head trickled a byte at a time is parsed a bounded number of
    /// times: at each line's end and at each limit, not at every byte.
    #[test]
    fn a_trickled_head_is_parsed_at_line_ends_and_limits_only() {
        let limits = Limits::default();
        let line = format!("GET /{} HTTP/1.1\r\n", "a".repeat(limits.max_line - 20));
        let head = format!(
            "{line}X-Long: {}\r\n",
            "b".repeat(limits.max_head - line.len())
        );
        let parses = (0..head.len())
            .filter(|&i| worth_parsing(i, &head.as_bytes()[i..=i], &limits))
            .count();
        // The first byte, two line ends, the two limits.
        assert!(parses <= 5, "{parses} parses of a {}-byte head", head.len());
    }

    /// A head that never ends is refused by the time it passes the most a
    /// head can take, even when empty lines before it put the limits a few
    /// bytes further than the buffer's length says.
    #[test]
    fn a_head_that_never_ends_is_refused_at_its_bound() {
        let limits = Limits::default();
        let mut buf = b"\n".repeat(8);
        buf.extend_from_slice(b"GET /x/a HTTP/1.1\r\nHost: a\r\nX-Pad: ");
        buf.resize(limits.max_head, b'a');
        assert!(matches!(parse_head(&buf, &limits), Ok(Status::Partial)));
        // Then a byte at a time, as a client might send it.
        let refused = (0..=limits.head_bound()).find_map(|_| {
            let before = buf.len();
            buf.push(b'a');
            let parsed = worth_parsing(before, b"a", &limits).then(|| parse_head(&buf, &limits));
            matches!(parsed, Some(Err(_))).then_some(buf.len())
        });
        assert_eq!(refused, Some(limits.head_bound() + 1));
    }
}
