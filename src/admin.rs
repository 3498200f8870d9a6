//! The admin endpoint, on its own listener and thread, never queued behind
//! the handler: `GET /health`, `GET /ready` (what a load balancer polls),
//! `GET /metrics` (Prometheus text format 0.0.4) and `GET /status` (JSON).
//!
//! Owns: the admin socket and one admin connection at a time, each with short
//! deadlines. Must never: take a lock or wait on the handler; it only reads
//! the atomics in `State` and the routes it was last sent.

use crate::http::Status;
use crate::http::request::{Limits, parse_head};
use crate::http::response::Response;
use crate::log;
use crate::metrics;
use crate::route::Routes;
use crate::state::{HandlerState, State};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::mpsc::Receiver;
use std::thread;
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(2);

/// Serves admin connections one at a time; `reloads` brings the routes
/// that SIGHUP loaded.
pub fn run(
    socket: &TcpListener,
    state: &State,
    mut routes: Arc<Routes>,
    reloads: &Receiver<Arc<Routes>>,
) {
    let mut stall_told = false;
    for stream in socket.incoming() {
        while let Ok(newer) = reloads.try_recv() {
            routes = newer;
        }
        // A stuck gate cannot be restarted in place (it holds the mailbox):
        // /health says so, and a supervisor restarts the process.
        let stalled = state.gate_stalled(Instant::now());
        if stalled && !stall_told {
            log::event(format_args!(
                "watchdog: the gate has not read its mail for 5 s; /health is 503"
            ));
        }
        stall_told = stalled;
        match stream {
            Ok(stream) => answer(stream, state, &routes),
            Err(_) => thread::sleep(Duration::from_millis(50)),
        }
    }
}

fn answer(mut stream: TcpStream, state: &State, routes: &Routes) {
    let _ = stream.set_read_timeout(Some(DEADLINE));
    let _ = stream.set_write_timeout(Some(DEADLINE));
    let limits = Limits {
        max_body: 0,
        ..Limits::default()
    };
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let head = loop {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(chunk.get(..n).unwrap_or_default()),
        }
        match parse_head(&buf, &limits) {
            Ok(Status::Complete((head, _))) => break Ok(head),
            Ok(Status::Partial) => {}
            Err(e) => break Err(e),
        }
    };
    let response = match head {
        Err(e) => Response::plain(e.status(), &[], false),
        Ok(head) => {
            let head_only = head.method == crate::http::Method::Head;
            let text = |status, body: String| {
                Response::new(
                    status,
                    &[("Content-Type", "text/plain; charset=utf-8")],
                    body.into_bytes(),
                    head_only,
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
                "/ready" if metrics::ready(state) => text(200, "ready\n".into()),
                "/ready" if state.stopping() => text(503, "draining\n".into()),
                "/ready" if state.shedding() => text(503, "shedding\n".into()),
                "/ready" => text(503, "full\n".into()),
                "/metrics" => Response::new(
                    200,
                    &[("Content-Type", "text/plain; version=0.0.4; charset=utf-8")],
                    metrics::prometheus(state, routes).into_bytes(),
                    head_only,
                ),
                "/status" => Response::new(
                    200,
                    &[("Content-Type", "application/json")],
                    metrics::status_json(state, routes).into_bytes(),
                    head_only,
                ),
                _ => Response::plain(404, &[], head_only),
            }
        }
    };
    let _ = stream.write_all(&response.head);
    let _ = stream.write_all(&response.body);
}
