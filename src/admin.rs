//! The admin endpoint, on its own listener and thread, never queued behind
//! the handler: `GET /health`, `GET /ready` (what a load balancer polls) and
//! `GET /metrics` (Prometheus text format 0.0.4).
//!
//! Owns: the admin socket and one admin connection at a time, each with short
//! deadlines. Must never: take a lock or wait on the handler; it only reads
//! the atomics in `State`.

use crate::http::Status;
use crate::http::request::{Limits, parse_head};
use crate::http::response::Response;
use crate::route::Routes;
use crate::state::{Dropped, HandlerState, Part, State};
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::thread;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(2);

pub fn run(socket: &TcpListener, state: &Arc<State>, routes: &Routes) {
    for stream in socket.incoming() {
        match stream {
            Ok(stream) => answer(stream, state, routes),
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
                "/health" if state.handler_state() == HandlerState::Failed => {
                    text(503, "failed\n".into())
                }
                "/health" => text(200, "ok\n".into()),
                "/ready" if state.has_room() => text(200, "ready\n".into()),
                "/ready" => text(503, "full\n".into()),
                "/metrics" => Response::new(
                    200,
                    &[("Content-Type", "text/plain; version=0.0.4; charset=utf-8")],
                    metrics(state, routes).into_bytes(),
                    head_only,
                ),
                _ => Response::plain(404, &[], head_only),
            }
        }
    };
    let _ = stream.write_all(&response.head);
    let _ = stream.write_all(&response.body);
}

fn metrics(s: &State, routes: &Routes) -> String {
    let mut m = String::with_capacity(2048);
    let mut family = |name: &str, kind: &str, help: &str| {
        let _ = write!(m, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
    };
    family(
        "fiddler_queue_depth",
        "gauge",
        "Requests held: waiting or running.",
    );
    family(
        "fiddler_queue_capacity",
        "gauge",
        "Most requests held (--queue).",
    );
    family(
        "fiddler_connections",
        "gauge",
        "Connections the gate is reading or writing.",
    );
    family(
        "fiddler_handler_state",
        "gauge",
        "The handler's state, one-hot.",
    );
    family(
        "fiddler_handler_restarts_total",
        "counter",
        "Handler threads replaced.",
    );
    family(
        "fiddler_restarts_total",
        "counter",
        "Restarts of each part.",
    );
    family(
        "fiddler_requests_total",
        "counter",
        "Answers sent, by status.",
    );
    family(
        "fiddler_dropped_total",
        "counter",
        "Connections dropped without an answer.",
    );
    family(
        "fiddler_programs_started_total",
        "counter",
        "Programs started.",
    );
    family(
        "fiddler_log_lines_dropped_total",
        "counter",
        "Log lines dropped (writer behind).",
    );
    family("fiddler_uptime_seconds", "gauge", "Seconds since start.");
    family(
        "fiddler_route_breaker_open",
        "gauge",
        "1 while a route's circuit breaker is open.",
    );
    family("fiddler_build_info", "gauge", "Version.");
    let _ = writeln!(m, "fiddler_queue_depth {}", s.held());
    let _ = writeln!(m, "fiddler_queue_capacity {}", s.capacity);
    let _ = writeln!(
        m,
        "fiddler_connections{{state=\"reading\"}} {}",
        s.reading.load(Relaxed)
    );
    let _ = writeln!(
        m,
        "fiddler_connections{{state=\"writing\"}} {}",
        s.writing.load(Relaxed)
    );
    let now = s.handler_state();
    for (state, name) in [
        (HandlerState::Idle, "idle"),
        (HandlerState::Busy, "busy"),
        (HandlerState::Failed, "failed"),
    ] {
        let _ = writeln!(
            m,
            "fiddler_handler_state{{state=\"{name}\"}} {}",
            u8::from(now == state)
        );
    }
    let _ = writeln!(
        m,
        "fiddler_handler_restarts_total {}",
        s.restarts(Part::Handler)
    );
    for part in Part::ALL {
        let _ = writeln!(
            m,
            "fiddler_restarts_total{{part=\"{}\"}} {}",
            part.name(),
            s.restarts(part)
        );
    }
    for (status, n) in s.answered() {
        let _ = writeln!(m, "fiddler_requests_total{{status=\"{status}\"}} {n}");
    }
    let _ = writeln!(
        m,
        "fiddler_requests_total{{status=\"other\"}} {}",
        s.answered_other()
    );
    for why in Dropped::ALL {
        let _ = writeln!(
            m,
            "fiddler_dropped_total{{reason=\"{}\"}} {}",
            why.name(),
            s.dropped(why)
        );
    }
    let _ = writeln!(
        m,
        "fiddler_programs_started_total {}",
        s.programs_started.load(Relaxed)
    );
    let _ = writeln!(
        m,
        "fiddler_log_lines_dropped_total {}",
        crate::log::dropped()
    );
    let _ = writeln!(
        m,
        "fiddler_uptime_seconds {}",
        s.started.elapsed().as_secs()
    );
    for r in &routes.list {
        let _ = writeln!(
            m,
            "fiddler_route_breaker_open{{route=\"{} {}\"}} {}",
            r.method.as_str(),
            r.pattern.escape_default(),
            u8::from(r.breaker.is_open())
        );
    }
    let _ = writeln!(
        m,
        "fiddler_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    m
}
