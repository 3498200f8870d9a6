//! HTTP workers (`worker = "http"`): a program that serves HTTP on the port
//! it is given (here `support/http_worker.py`, stdlib only) behind the
//! queue, one request at a time, streamed back, cancelled by closing, and
//! restarted when it dies or answers garbage.

use crate::support;

use std::io::{Read, Write};
use std::time::Duration;
use support::{Reply, Server, TempDir, read_reply, read_until, wait_for, wait_within};

const WORKER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/http_worker.py");

/// A server with `ANY /v1/*` served by the test worker, plus `extra` config.
fn server(dir: TempDir, extra: &str) -> Server {
    let control = dir.0.to_str().unwrap().to_owned();
    let toml = format!(
        "[[route]]\npath = \"/v1/*\"\n\
         command = [\"python3\", \"{WORKER}\", \"{{port}}\", \"{control}\"]\n\
         worker = \"http\"\nready = \"/health\"\n{extra}"
    );
    Server::with_config_in(dir, &toml, &[])
}

/// An answer's body as text, de-chunked if it came in chunks.
fn text(r: &Reply) -> String {
    match r.header("Transfer-Encoding") {
        Some("chunked") => {
            String::from_utf8_lossy(&support::dechunk(&r.body).unwrap()).into_owned()
        }
        _ => r.text(),
    }
}

/// The pid of the worker that answers now.
fn worker_pid(s: &Server) -> String {
    let r = s.get("/v1/pid");
    assert_eq!(r.status, 200, "{}", r.text());
    text(&r).split(' ').next().unwrap().to_owned()
}

fn requests(dir: &TempDir) -> usize {
    std::fs::read_to_string(dir.path("requests")).map_or(0, |s| s.lines().count())
}

#[test]
fn requests_pass_through_with_forwarded_fields_and_large_bodies() {
    let dir = TempDir::new();
    let s = server(dir, "max_output = \"8M\"\n");
    let r = s.get("/v1/pid");
    assert_eq!(r.status, 200, "{}", r.text());
    let text = text(&r);
    let (pid, seen) = text.split_once(' ').unwrap();
    assert!(pid.parse::<u32>().is_ok(), "{text}");
    assert_eq!(seen, "127.0.0.1|http");
    assert_eq!(r.header("X-Upstream-Pid"), Some(pid));
    // Large both ways: 900 kB up (under max_body), 900 kB back.
    let body: Vec<u8> = (0..900_000u32).map(|i| (i % 251) as u8).collect();
    let r = s.post("/v1/echo", &body);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Transfer-Encoding"), Some("chunked"));
    assert_eq!(support::dechunk(&r.body).unwrap(), body);
    // A chunked answer comes through whole.
    let r = s.get("/v1/chunked");
    assert_eq!(support::dechunk(&r.body).unwrap(), b"alpha beta gamma");
    // HTTP/1.0 gets a whole answer with its length.
    let r = s.raw(b"GET /v1/chunked HTTP/1.0\r\n\r\n");
    assert_eq!(
        (r.status, r.body.as_slice()),
        (200, &b"alpha beta gamma"[..])
    );
    assert_eq!(r.header("Content-Length"), Some("16"));
}

#[test]
fn events_reach_the_client_as_they_are_written() {
    let dir = TempDir::new();
    let release = dir.path("release");
    let s = server(dir, "");
    let mut c = s.connect();
    c.write_all(b"GET /v1/sse HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    // The first event arrives while the worker still holds the second.
    let first = read_until(&mut c, "data: one");
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    assert!(first.contains("Content-Type: text/event-stream"), "{first}");
    std::fs::write(&release, "").unwrap();
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).unwrap();
    let rest = String::from_utf8_lossy(&rest);
    assert!(rest.contains("data: two"), "{rest}");
    assert!(rest.ends_with("0\r\n\r\n"), "{rest}");
}

#[test]
fn the_worker_never_sees_two_requests_at_once() {
    let _heavy = support::heavy();
    let dir = TempDir::new();
    let overlap = dir.path("overlap");
    let s = server(dir, "");
    let clients: Vec<_> = (0..20)
        .map(|i| s.send_post("/v1/echo", &format!("request {i}")))
        .collect();
    for (i, mut c) in clients.into_iter().enumerate() {
        let r = read_reply(&mut c);
        assert_eq!(r.status, 200);
        assert_eq!(
            support::dechunk(&r.body).unwrap(),
            format!("request {i}").as_bytes()
        );
    }
    let seen = std::fs::read_to_string(&overlap).unwrap_or_default();
    assert!(
        seen.is_empty(),
        "two requests reached the worker at once: {seen}"
    );
}

/// Waits until the worker wrote who it is to `left` (it does so when its
/// connection closes): promptly after the client left, 30 s at the most.
fn upstream_closed(left: &std::path::Path) -> String {
    wait_within(Duration::from_secs(30), Duration::from_millis(5), || {
        std::fs::read_to_string(left)
            .map_err(|e| format!("the upstream stayed open after its client left: {e}"))
    })
}

#[test]
fn a_client_that_leaves_closes_the_upstream_and_the_worker_stays() {
    let dir = TempDir::new();
    let left = dir.path("left");
    let s = server(dir, "");
    let pid = worker_pid(&s);
    let mut c = s.connect();
    c.write_all(b"GET /v1/ticks HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    read_until(&mut c, "data: tick");
    drop(c);
    // The worker saw its connection close (it writes down who it is then).
    let who = upstream_closed(&left);
    assert_eq!(who, pid);
    // The same worker answers the next request.
    assert_eq!(worker_pid(&s), pid);
    assert_eq!(
        s.metric("fiddler_worker_starts_total{route=\"ANY /v1/*\"}"),
        1
    );
}

/// Before the first byte of the answer too: a client that leaves while the
/// worker is still silent (a long prompt) closes the upstream connection.
#[test]
fn a_client_that_leaves_before_any_answer_closes_the_upstream() {
    let dir = TempDir::new();
    let left = dir.path("left");
    let requests_file = dir.path("requests");
    // A deadline far off: only the client's leaving may close the upstream.
    let s = server(dir, "timeout = 600\n");
    let pid = worker_pid(&s);
    let mut c = s.connect();
    c.write_all(b"GET /v1/quiet HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    wait_for(Duration::from_millis(5), || {
        let seen = std::fs::read_to_string(&requests_file).unwrap_or_default();
        seen.contains("/v1/quiet").then_some(()).ok_or(seen)
    });
    drop(c);
    let who = upstream_closed(&left);
    assert_eq!(who, pid);
    assert_eq!(worker_pid(&s), pid);
}

#[test]
fn a_worker_that_crashes_or_answers_garbage_gets_502_and_is_restarted() {
    let dir = TempDir::new();
    let s = server(dir, "");
    let first = worker_pid(&s);
    assert_eq!(s.get("/v1/crash").status, 502);
    assert_ne!(worker_pid(&s), first);
    assert_eq!(s.get("/v1/garbage").status, 502);
    assert_eq!(s.get("/v1/pid").status, 200);
    assert_eq!(
        s.metric("fiddler_worker_starts_total{route=\"ANY /v1/*\"}"),
        3
    );
    assert_eq!(
        s.metric("fiddler_program_failures_total{route=\"ANY /v1/*\",reason=\"upstream\"}"),
        2
    );
}

/// What a worker answers reaches the client as HTTP allows: a field it
/// copies from a large request (CORS) fits, and the worker is kept; a 204
/// has no body and no chunks; a HEAD answer keeps the length the worker
/// said; a proxy's challenge stays with the server.
/// The worker always gets a `Host`: the target's for an absolute-form
/// request, and the client's even if its `Connection` names it.
#[test]
fn answers_and_hosts_pass_as_http_allows() {
    let dir = TempDir::new();
    let s = server(dir, "");
    let pid = worker_pid(&s);
    // The request head within its 16 KiB, the answer head past it.
    let big = "a".repeat(16_300);
    let r = s.raw(
        format!(
            "GET /v1/cors HTTP/1.1\r\nHost: t\r\nAccess-Control-Request-Headers: {big}\r\n\r\n"
        )
        .as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("Access-Control-Allow-Headers"), Some(big.as_str()));
    assert_eq!(worker_pid(&s), pid);
    let r = s.raw(b"GET /v1/empty HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!((r.status, r.header("X-A")), (204, Some("1")));
    assert_eq!(
        (r.header("Transfer-Encoding"), r.header("Content-Length")),
        (None, None)
    );
    assert!(r.body.is_empty(), "{:?}", r.body);
    let r = s.raw(b"HEAD /v1/sized HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!((r.status, r.header("Content-Length")), (200, Some("5000")));
    assert!(r.body.is_empty(), "{:?}", r.body);
    let r = s.get("/v1/proxyauth");
    assert_eq!((r.status, r.header("Proxy-Authenticate")), (200, None));
    let r = s.raw(b"GET /v1/host HTTP/1.1\r\nHost: t:1\r\nConnection: host\r\n\r\n");
    assert_eq!(text(&r), "t:1");
    let r = s.raw(b"GET http://b.example/v1/host HTTP/1.1\r\nHost: a.example\r\n\r\n");
    assert_eq!(text(&r), "b.example");
}

#[test]
fn a_boot_worker_keeps_ready_at_503_until_it_answers_its_probe() {
    let dir = TempDir::new();
    std::fs::write(dir.path("slow"), "").unwrap();
    let ready = dir.path("ready");
    let s = server(dir, "start = \"boot\"\nstart_timeout = 600\n");
    // Started with the server: not ready while its probe says 503.
    let r = s.admin_get("/ready");
    assert_eq!((r.status, r.text().as_str()), (503, "warming\n"));
    // A request meanwhile waits in the queue for it.
    let mut waiting = s.send_post("/v1/echo", "queued");
    s.wait_metric("fiddler_queue_depth", |n| n == 1);
    std::fs::write(&ready, "").unwrap();
    let r = read_reply(&mut waiting);
    assert_eq!(
        (r.status, support::dechunk(&r.body).unwrap()),
        (200, b"queued".to_vec())
    );
    assert_eq!(s.admin_get("/ready").status, 200);
}

#[test]
fn an_upstream_someone_else_runs_is_forwarded_to() {
    let dir = TempDir::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut upstream = Upstream(
        std::process::Command::new("python3")
            .args([WORKER, &port.to_string(), dir.0.to_str().unwrap()])
            .spawn()
            .unwrap(),
    );
    let toml = format!(
        "[[route]]\npath = \"/v1/*\"\nupstream = \"http://127.0.0.1:{port}\"\n\
         worker = \"http\"\nready = \"/health\"\n"
    );
    let s = Server::with_config(&toml, &[]);
    assert_eq!(worker_pid(&s), upstream.0.id().to_string());
    assert_eq!(requests(&dir), 1);
    upstream.0.kill().unwrap();
    upstream.0.wait().unwrap();
    assert_eq!(s.get("/v1/pid").status, 502);
}

/// A server the test runs itself, killed however the test ends.
struct Upstream(std::process::Child);

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
