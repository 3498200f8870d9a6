//! The admin endpoint, on its own listener and thread, never queued behind
//! the handler: `GET /health`, `GET /ready` (what a load balancer polls),
//! `GET /metrics` (Prometheus text format 0.0.4) and `GET /status` (JSON).
//!
//! Owns: the admin socket and the admin connections still sending their
//! request, served by one `poll` loop: at most `MAX_WAITING` (a new one
//! evicts the oldest), each with 2 s to send its request, so silent or
//! trickling connections cannot hold a probe back. A peer outside
//! `admin_allow` is closed at accept, unread. An answer is written
//! with a 2 s deadline. Must never: take a lock or wait on the handler; it
//! only reads the atomics in `State` and the routes it was last sent.

use crate::cidr::Cidr;
use crate::exposition;
use crate::http::request::{Head, Limits, parse_head};
use crate::http::response::{Response, Sends};
use crate::http::{RequestError, Status};
use crate::log;
use crate::route::Routes;
use crate::state::{GATE_STALL, HandlerState, State};
use crate::sys::{self, POLLIN, PollFd};
use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::mpsc::Receiver;
use std::thread;
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(2);
/// Most admin connections still sending their request.
const MAX_WAITING: usize = 16;

/// An admin connection whose request has not all come.
struct Waiting {
    stream: TcpStream,
    buf: Vec<u8>,
    by: Instant,
}

/// What a read of a waiting connection came to.
enum Arrived {
    /// The whole head, or a request the parser refused.
    Done(Result<Head, RequestError>),
    More,
    /// Closed, failed, or past its deadline: dropped without an answer.
    Gone,
}

/// Serves the admin socket until the process ends; `reloads` brings the
/// routes that SIGHUP loaded. Idle, it sleeps in `poll` without a timeout.
pub fn run(
    socket: &TcpListener,
    allow: &[Cidr],
    state: &State,
    mut routes: Arc<Routes>,
    reloads: &Receiver<Arc<Routes>>,
) {
    if let Err(e) = socket.set_nonblocking(true) {
        log::event(format_args!("admin: cannot serve: {e}"));
        return;
    }
    let mut waiting: VecDeque<Waiting> = VecDeque::new();
    let mut fds = Vec::new();
    let mut stall_told = false;
    loop {
        fds.clear();
        fds.push(PollFd::new(socket.as_raw_fd(), POLLIN));
        fds.extend(
            waiting
                .iter()
                .map(|w| PollFd::new(w.stream.as_raw_fd(), POLLIN)),
        );
        let now = Instant::now();
        let timeout = waiting
            .iter()
            .map(|w| w.by.saturating_duration_since(now))
            .min();
        if sys::poll(&mut fds, timeout).is_err() {
            thread::sleep(Duration::from_millis(50));
            continue;
        }
        while let Ok(newer) = reloads.try_recv() {
            routes = newer;
        }
        // A stuck gate cannot be restarted in place (it holds the mailbox):
        // /health says so, and a supervisor restarts the process.
        let stalled = state.gate_stalled(Instant::now());
        if stalled && !stall_told {
            log::event(format_args!(
                "admin: the gate has not read its mail for {} s; /health is 503",
                GATE_STALL.as_secs()
            ));
        }
        stall_told = stalled;
        let now = Instant::now();
        let ready: Vec<bool> = fds.iter().skip(1).map(PollFd::ready).collect();
        let mut kept = VecDeque::with_capacity(waiting.len());
        for (mut w, ready) in waiting.drain(..).zip(ready) {
            match if ready { w.read() } else { Arrived::More } {
                Arrived::Done(head) => answer(w.stream, head, state, &routes),
                Arrived::More if w.by > now => kept.push_back(w),
                Arrived::More | Arrived::Gone => {}
            }
        }
        waiting = kept;
        while let Ok((stream, peer)) = socket.accept() {
            let allowed = allow.is_empty() || allow.iter().any(|c| c.contains(peer.ip()));
            if !allowed || stream.set_nonblocking(true).is_err() {
                continue;
            }
            if waiting.len() >= MAX_WAITING {
                waiting.pop_front();
            }
            waiting.push_back(Waiting {
                stream,
                buf: Vec::with_capacity(1024),
                by: Instant::now() + DEADLINE,
            });
        }
    }
}

impl Waiting {
    /// Reads what has come, without waiting, up to the most a head can
    /// take: past it the parse refuses it, however fast the client sends.
    fn read(&mut self) -> Arrived {
        let limits = Limits {
            max_body: 0,
            ..Limits::default()
        };
        let mut chunk = [0u8; 1024];
        while self.buf.len() <= limits.head_bound() {
            match self.stream.read(&mut chunk) {
                Ok(0) => return Arrived::Gone,
                Ok(n) => self
                    .buf
                    .extend_from_slice(chunk.get(..n).unwrap_or_default()),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Arrived::Gone,
            }
        }
        match parse_head(&self.buf, &limits) {
            Ok(Status::Complete((head, _))) => Arrived::Done(Ok(head)),
            Ok(Status::Partial) => Arrived::More,
            Err(e) => Arrived::Done(Err(e)),
        }
    }
}

/// Answers one request; the write may block up to `DEADLINE`.
fn answer(mut stream: TcpStream, head: Result<Head, RequestError>, state: &State, routes: &Routes) {
    if stream.set_nonblocking(false).is_err() || stream.set_write_timeout(Some(DEADLINE)).is_err() {
        return;
    }
    let response = match head {
        Err(e) => Response::plain(e.status(), &[], Sends::Body),
        Ok(head) => {
            let sends = Sends::to(head.method);
            let text = |status, body: String| {
                Response::new(
                    status,
                    &[("Content-Type", "text/plain; charset=utf-8")],
                    body.into_bytes(),
                    sends,
                )
            };
            match head.path.as_str() {
                "/health" if state.gate_stalled(Instant::now()) => {
                    text(503, "gate stalled\n".into())
                }
                "/health" if state.handlers_in(HandlerState::Failed) > 0 => {
                    text(503, "failed\n".into())
                }
                "/health" => text(200, "ok\n".into()),
                "/ready" if exposition::ready(state) => text(200, "ready\n".into()),
                "/ready" if state.leaving() => text(503, "draining\n".into()),
                "/ready" if !state.warm() => text(503, "warming\n".into()),
                "/ready" if state.shedding() => text(503, "shedding\n".into()),
                "/ready" => text(503, "full\n".into()),
                "/metrics" => Response::new(
                    200,
                    &[("Content-Type", "text/plain; version=0.0.4; charset=utf-8")],
                    exposition::prometheus(state, routes).into_bytes(),
                    sends,
                ),
                "/status" => Response::new(
                    200,
                    &[("Content-Type", "application/json")],
                    exposition::status_json(state, routes).into_bytes(),
                    sends,
                ),
                _ => Response::plain(404, &[], sends),
            }
        }
    };
    let _ = stream.write_all(&response.head);
    let _ = stream.write_all(&response.body);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A head that never ends is read no further than the most a head can
    /// take, and refused, however much the client has sent already.
    #[test]
    fn a_head_that_never_ends_is_read_to_its_bound_and_refused() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (stream, _) = listener.accept().unwrap();
        stream.set_nonblocking(true).unwrap();
        client
            .write_all(b"GET /health HTTP/1.1\r\nX-Pad: ")
            .unwrap();
        // Twice the bound: all of it in the kernel's buffers before the read.
        client.write_all(&[b'a'; 32 * 1024]).unwrap();
        let mut w = Waiting {
            stream,
            buf: Vec::new(),
            by: Instant::now(),
        };
        assert!(matches!(w.read(), Arrived::Done(Err(_))));
        let bound = Limits::default().head_bound();
        assert!(w.buf.len() <= bound + 1024, "{} bytes kept", w.buf.len());
    }
}
