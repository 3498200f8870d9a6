//! Forwards one request to an HTTP worker (HTTP/1.1 over loopback, one
//! request per connection) and brings its answer back: to the client as it
//! arrives (`Stream`, chunked), or whole for a client that cannot take
//! chunks (HTTP/1.0, HEAD). Also the probe that says a worker is ready.
//!
//! Must never: wait on the client (the stream takes what the socket takes
//! now), keep more than `max_output` of an answer, pass the deadline, or
//! keep the connection to the worker once the client has left: closing it
//! is how the worker learns to stop.

use crate::http::answer::{AnswerHead, Body, parse_answer_head};
use crate::http::request::{ChunkedDecoder, Head, Limits, connection_tokens};
use crate::http::response::Response;
use crate::http::{Method, Status};
use crate::program::{Failure, SCRATCH, Tail};
use crate::stream::Stream;
use crate::sys::{self, POLLIN, POLLOUT, POLLRDHUP, PollFd};
use std::fmt::Write as _;
use std::io::{self, IoSlice, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

/// Most time to connect to a worker on loopback (it listens, or it does not).
const CONNECT: Duration = Duration::from_secs(5);

/// Fields that are the connection's, not the message's (RFC 9110 §7.6.1),
/// and the framing, which the server sets itself: never passed on, either way.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
];

/// A request field passed on to the worker: not the connection's, and not
/// one the server writes itself (or consumes, as a proxy's credentials).
fn forwarded(name: &str) -> bool {
    let own = [
        "expect",
        "proxy-authorization",
        "http2-settings",
        "x-forwarded-for",
        "x-forwarded-proto",
    ];
    !HOP_BY_HOP.contains(&name) && !own.contains(&name)
}

/// An answer field passed on to the client: not the connection's, not a
/// proxy's challenge (it is for the next client in the chain, here the
/// server: RFC 9110 §11.7.1), and not `Date` (the server writes its own).
fn returned(name: &str) -> bool {
    let own = ["date", "proxy-authenticate", "proxy-authentication-info"];
    !HOP_BY_HOP.contains(&name) && !own.contains(&name)
}

/// One request for the worker.
#[derive(Clone, Copy)]
pub struct Forward<'a> {
    pub head: &'a Head,
    pub body: &'a [u8],
    pub peer: IpAddr,
    pub https: bool,
    pub deadline: Instant,
    pub max_output: usize,
    /// The client's socket, watched for leaving when nothing is streamed.
    pub client: Option<RawFd>,
}

/// A worker's whole answer (its body empty if it was streamed).
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The `Content-Length` it said, if one: a HEAD answer's, passed on.
    pub length: Option<u64>,
}

/// Sends `f` to the worker at `to` and reads its answer: into `stream` as it
/// comes if there is one, else whole into the `Reply`.
pub fn forward(
    to: SocketAddr,
    f: &Forward,
    mut stream: Option<&mut Stream>,
) -> Result<Reply, Failure> {
    let left = time_left(f.deadline)?;
    let upstream = TcpStream::connect_timeout(&to, left.min(CONNECT))
        .map_err(|e| Failure::Upstream(format!("cannot connect to {to}: {e}")))?;
    let _ = upstream.set_nodelay(true);
    upstream.set_nonblocking(true).map_err(Failure::Io)?;
    let head = request_head(f, to);
    let total = head.len() + f.body.len();
    let mut sent = 0;
    let mut answer = Answer::new(f);
    let mut scratch = vec![0u8; SCRATCH];
    let client = stream.as_ref().map(|s| s.fd()).or(f.client);
    loop {
        let left = time_left(f.deadline)?;
        let wants_out = stream.as_ref().is_some_and(|s| s.wants_write());
        let mut fds = [
            (
                Some(upstream.as_raw_fd()),
                POLLIN | if sent < total { POLLOUT } else { 0 },
            ),
            (client, POLLRDHUP | if wants_out { POLLOUT } else { 0 }),
        ]
        .map(|(fd, events)| PollFd::new(fd.unwrap_or(-1), events));
        sys::poll(&mut fds, Some(left)).map_err(Failure::Io)?;
        let [upstream_poll, client_poll] = &fds;
        let client_events = client_poll.revents();
        // POLLRDHUP, POLLHUP or POLLERR: the client closed or reset.
        if client_events & !POLLOUT != 0 {
            return Err(Failure::ClientGone(Tail::default()));
        }
        if let Some(s) = stream.as_deref_mut()
            && client_events & POLLOUT != 0
            && s.flush().is_err()
        {
            return Err(Failure::ClientGone(Tail::default()));
        }
        let events = upstream_poll.revents();
        if events & POLLOUT != 0 && sent < total {
            let slices = [
                IoSlice::new(head.get(sent..).unwrap_or_default()),
                IoSlice::new(
                    f.body
                        .get(sent.saturating_sub(head.len())..)
                        .unwrap_or_default(),
                ),
            ];
            match (&upstream).write_vectored(&slices) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // It stopped reading (it may answer all the same: an early 413).
                Err(_) => sent = total,
            }
        }
        if events & !POLLOUT != 0 {
            for _ in 0..16 {
                match (&upstream).read(&mut scratch) {
                    Ok(0) => return answer.end(),
                    Ok(n) => {
                        let bytes = scratch.get(..n).unwrap_or_default();
                        if answer.feed(bytes, stream.as_deref_mut())? {
                            return Ok(answer.reply());
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        return Err(Failure::Upstream(format!("connection broke: {e}")));
                    }
                }
            }
        }
    }
}

/// True if a worker at `to` answers a GET of `path` with 200 within `wait`.
pub fn probe(to: SocketAddr, path: &str, wait: Duration) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&to, wait) else {
        return false;
    };
    let by = Instant::now() + wait;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {to}\r\nConnection: close\r\n\r\n");
    if s.set_write_timeout(Some(wait)).is_err() || s.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let limits = Limits::default();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while let Some(left) = by.checked_duration_since(Instant::now()) {
        if left.is_zero() || s.set_read_timeout(Some(left)).is_err() {
            return false;
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(chunk.get(..n).unwrap_or_default()),
        }
        match parse_answer_head(&buf, &limits, Method::Get) {
            Ok(Status::Complete((head, _))) => return head.status == 200,
            Ok(Status::Partial) => {}
            Err(_) => return false,
        }
    }
    false
}

fn time_left(deadline: Instant) -> Result<Duration, Failure> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
        .ok_or_else(|| Failure::Timeout(Tail::default()))
}

/// The head of the request as the worker gets it: the client's method,
/// target (origin-form) and fields, less the connection's, with
/// `X-Forwarded-For`/`-Proto` added and the body's length.
fn request_head(f: &Forward, to: SocketAddr) -> Vec<u8> {
    let h = f.head;
    let mut out = format!(
        "{} {} HTTP/1.1\r\n",
        h.method.as_str(),
        origin_form(&h.target)
    );
    let named = connection_tokens(&h.headers);
    let mut forwarded_for = String::new();
    for field in &h.headers {
        let name = field.name.to_ascii_lowercase();
        let value = String::from_utf8_lossy(&field.value);
        if name == "x-forwarded-for" {
            let _ = write!(forwarded_for, "{value}, ");
        }
        if !forwarded(&name) || named.contains(&name) || name == "host" {
            continue;
        }
        let _ = write!(out, "{}: {value}\r\n", field.name);
    }
    // Always one, whatever the client's `Connection` lists (RFC 9112 §3.2).
    let _ = match h.host() {
        Some(host) => write!(out, "Host: {host}\r\n"),
        None => write!(out, "Host: {to}\r\n"),
    };
    let proto = if f.https { "https" } else { "http" };
    let _ = write!(
        out,
        "X-Forwarded-For: {forwarded_for}{}\r\nX-Forwarded-Proto: {proto}\r\n",
        f.peer
    );
    if !f.body.is_empty() || h.framing != crate::http::request::Framing::None {
        let _ = write!(out, "Content-Length: {}\r\n", f.body.len());
    }
    out.push_str("Connection: close\r\n\r\n");
    out.into_bytes()
}

/// A target in origin-form: an absolute-form one loses its scheme and
/// authority (`http://h/p?q` → `/p?q`).
fn origin_form(target: &str) -> String {
    if target.starts_with('/') || target == "*" {
        return target.to_owned();
    }
    let rest = target.split_once("://").map_or("", |(_, rest)| rest);
    match rest.find(['/', '?']) {
        Some(i) if rest.get(i..i + 1) == Some("/") => rest.get(i..).unwrap_or("/").to_owned(),
        Some(i) => format!("/{}", rest.get(i..).unwrap_or_default()),
        None => "/".to_owned(),
    }
}

/// How far the worker's answer has come.
enum Phase {
    Head(Vec<u8>),
    Body(Body),
}

struct Answer {
    phase: Phase,
    /// The request's: the answer to a HEAD has no body.
    method: Method,
    max_output: usize,
    limits: Limits,
    status: u16,
    headers: Vec<(String, String)>,
    /// Its `Content-Length`, if it said one.
    said: Option<u64>,
    /// The body so far, when it is not streamed.
    body: Vec<u8>,
    /// Body bytes so far, for `max_output`.
    length: usize,
    chunks: ChunkedDecoder,
    decoded: Vec<u8>,
}

/// The limits of a worker's answer head: four times a request's, so that
/// a worker that copies a request's fields into its answer (CORS's
/// allow-headers, a debug echo) stays within them.
fn answer_limits(max_output: usize) -> Limits {
    let request = Limits::default();
    Limits {
        max_line: request.max_line,
        max_head: 4 * request.max_head,
        max_headers: 4 * request.max_headers,
        max_body: u64::try_from(max_output).unwrap_or(u64::MAX),
    }
}

impl Answer {
    fn new(f: &Forward) -> Answer {
        let max_output = f.max_output;
        Answer {
            phase: Phase::Head(Vec::new()),
            method: f.head.method,
            max_output,
            limits: answer_limits(max_output),
            status: 0,
            headers: Vec::new(),
            said: None,
            body: Vec::new(),
            length: 0,
            chunks: ChunkedDecoder::new(u64::try_from(max_output).unwrap_or(u64::MAX)),
            decoded: Vec::new(),
        }
    }

    /// Takes bytes from the worker; true once the answer is whole.
    fn feed(&mut self, bytes: &[u8], mut stream: Option<&mut Stream>) -> Result<bool, Failure> {
        let Phase::Head(buf) = &mut self.phase else {
            return self.body_bytes(bytes, stream);
        };
        buf.extend_from_slice(bytes);
        loop {
            let parsed = parse_answer_head(buf, &self.limits, self.method);
            let (head, n) = match parsed {
                Ok(Status::Complete(done)) => done,
                Ok(Status::Partial) => return Ok(false),
                Err(crate::http::RequestError::BodyTooLarge) => {
                    return Err(Failure::OutputCap(Tail::default()));
                }
                Err(_) => return Err(Failure::Upstream("a malformed answer head".into())),
            };
            let rest = buf.split_off(n.min(buf.len()));
            if head.status == 101 {
                return Err(Failure::Upstream("it switched protocols".into()));
            }
            if head.status < 200 {
                // An interim answer (103 Early Hints…): the real one follows.
                *buf = rest;
                continue;
            }
            self.begin(head, stream.as_deref_mut());
            return self.body_bytes(&rest, stream);
        }
    }

    fn begin(&mut self, head: AnswerHead, stream: Option<&mut Stream>) {
        let AnswerHead {
            status,
            headers,
            body,
        } = head;
        let named = connection_tokens(&headers);
        self.said = headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
            .and_then(|h| std::str::from_utf8(&h.value).ok()?.parse().ok());
        self.headers = headers
            .iter()
            .filter(|h| {
                let name = h.name.to_ascii_lowercase();
                returned(&name) && !named.contains(&name)
            })
            .filter_map(|h| Some((h.name.clone(), String::from_utf8(h.value.clone()).ok()?)))
            .collect();
        self.status = status;
        if let Some(s) = stream {
            s.begin(status, Response::chunked_head(status, &self.pairs()));
        }
        self.phase = Phase::Body(body);
    }

    fn pairs(&self) -> Vec<(&str, &str)> {
        self.headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect()
    }

    /// Body bytes as they came; true once the body is whole.
    fn body_bytes(&mut self, bytes: &[u8], stream: Option<&mut Stream>) -> Result<bool, Failure> {
        let Phase::Body(framing) = self.phase else {
            return Ok(false);
        };
        match framing {
            Body::Empty => Ok(true),
            Body::UntilClose => self.emit(bytes, stream).map(|()| false),
            Body::Length(n) => {
                let want = usize::try_from(n).unwrap_or(usize::MAX);
                let take = want.saturating_sub(self.length).min(bytes.len());
                let whole = self.length + take >= want;
                self.emit(bytes.get(..take).unwrap_or_default(), stream)
                    .map(|()| whole)
            }
            Body::Chunked => {
                // The buffer is kept for the next read: taken, used, put back.
                let mut decoded = std::mem::take(&mut self.decoded);
                decoded.clear();
                let whole = match self.chunks.feed(bytes, &mut decoded) {
                    Ok(Status::Complete(_)) => true,
                    Ok(Status::Partial) => false,
                    Err(crate::http::RequestError::BodyTooLarge) => {
                        return Err(Failure::OutputCap(Tail::default()));
                    }
                    Err(_) => return Err(Failure::Upstream("a malformed chunk".into())),
                };
                let emitted = self.emit(&decoded, stream);
                self.decoded = decoded;
                emitted.map(|()| whole)
            }
        }
    }

    /// Body bytes to the client (or kept), within `max_output`.
    fn emit(&mut self, data: &[u8], stream: Option<&mut Stream>) -> Result<(), Failure> {
        self.length += data.len();
        if self.length > self.max_output {
            return Err(Failure::OutputCap(Tail::default()));
        }
        match stream {
            Some(s) => s
                .push(data)
                .map_err(|_| Failure::ClientGone(Tail::default())),
            None => {
                self.body.extend_from_slice(data);
                Ok(())
            }
        }
    }

    /// The worker closed the connection: the end of an answer that runs
    /// until then, else an answer cut short.
    fn end(self) -> Result<Reply, Failure> {
        match self.phase {
            Phase::Body(Body::UntilClose | Body::Empty) => Ok(self.reply()),
            Phase::Head(_) => Err(Failure::Upstream("it closed without an answer".into())),
            Phase::Body(_) => Err(Failure::Upstream("it closed mid-answer".into())),
        }
    }

    fn reply(self) -> Reply {
        Reply {
            status: self.status,
            headers: self.headers,
            body: self.body,
            length: self.said,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_in_origin_form() {
        for (target, origin) in [
            ("/v1/chat?x=1", "/v1/chat?x=1"),
            ("*", "*"),
            ("http://h:1/v1/a?b", "/v1/a?b"),
            ("http://h?q", "/?q"),
            ("http://h", "/"),
        ] {
            assert_eq!(origin_form(target), origin);
        }
    }
}
