//! The bound and the handoff: exactly `queue` requests held, the rest closed
//! unread; one program at a time; clients that leave are never run; the
//! `--on-full` modes; panics and a dead handler.

use crate::support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;
use support::{
    Control, Server, TempDir, busy, heavy, overlapped, read_all, read_reply, starts, wait_for,
};

fn send(s: &Server, body: &str) -> TcpStream {
    s.send_post("/held", body)
}

const QUEUE_FULL: &str = "fiddler_dropped_total{reason=\"queue_full\"}";

/// Waits until the listener has turned away the connection just made past
/// a full queue of `queue` (`QUEUE_FULL` past `before`). One taken in to be
/// read or held instead fails here at once, naming the bound it crossed,
/// rather than in a read that waits for an answer never written.
fn wait_turned_away(s: &Server, queue: u64, before: u64) {
    wait_for(Duration::from_millis(5), || {
        let seen = (
            s.metric(QUEUE_FULL),
            s.metric("fiddler_connections{state=\"reading\"}"),
            s.metric("fiddler_queue_depth"),
        );
        match seen {
            (dropped, _, _) if dropped > before => Ok(Ok(())),
            (_, reading, held) if reading > 0 || held > queue => Ok(Err(format!(
                "a full queue of {queue} took another in: (dropped, reading, held) = {seen:?}"
            ))),
            _ => Err(format!("(dropped, reading, held) stayed at {seen:?}")),
        }
    })
    .unwrap();
}

#[test]
fn a_burst_of_three_times_the_queue() {
    let _heavy = heavy();
    const Q: usize = 8;
    // The first runs and is held; the next Q-1 wait.
    let (s, control, client, first) = busy(&["--queue", &Q.to_string()], "0");
    let mut held_clients = vec![client];
    for i in 1..Q {
        held_clients.push(send(&s, &i.to_string()));
    }
    s.wait_metric("fiddler_queue_depth", |d| d == Q as u64);
    // The other 2×Q: closed at accept, nothing read, nothing answered.
    let mut excess: Vec<_> = (0..2 * Q).map(|i| send(&s, &format!("x{i}"))).collect();
    // Each is held, dropped, or (let in as the last place filled) answered
    // 503: once all are, the bound shows at once (a bound one too wide
    // would hold one, and fail here, not in a read).
    let refused = "fiddler_requests_total{route=\"POST /held\",status=\"503\"}";
    wait_for(Duration::from_millis(5), || {
        let seen = (
            s.metric("fiddler_queue_depth"),
            s.metric(QUEUE_FULL),
            s.sample(refused).unwrap_or(0),
        );
        (seen.0 + seen.1 + seen.2 == 3 * Q as u64)
            .then_some(())
            .ok_or(format!("(held, dropped, refused) stayed at {seen:?}"))
    });
    assert_eq!(
        s.metric("fiddler_queue_depth"),
        Q as u64,
        "the queue of {Q} held another"
    );
    for c in &mut excess {
        let (bytes, _) = read_all(c);
        assert!(
            bytes.is_empty(),
            "an excess connection got {:?}",
            String::from_utf8_lossy(&bytes)
        );
    }
    assert_eq!(s.metric(QUEUE_FULL), 2 * Q as u64);
    // Released one by one, every held request is answered, in order.
    first.release();
    for _ in 1..Q {
        control.wait_started().release();
    }
    for (i, c) in held_clients.iter_mut().enumerate() {
        let r = read_reply(c);
        assert_eq!((r.status, r.text()), (200, i.to_string()));
    }
    assert_eq!(starts(&s.dir), Q);
    assert!(!overlapped(&s.dir), "two programs ran at once");
    assert_eq!(s.get("/ok").status, 200);
}

#[test]
fn clients_that_leave_while_queued_are_never_run() {
    let (s, control, mut first, held) = busy(&["--queue", "10"], "first");
    let leavers: Vec<_> = (0..5).map(|i| send(&s, &i.to_string())).collect();
    s.wait_metric("fiddler_queue_depth", |d| d == 6);
    drop(leavers);
    held.release();
    assert_eq!(read_reply(&mut first).text(), "first");
    // The next request runs; the five that left never did.
    let mut last = send(&s, "last");
    control.wait_started().release();
    assert_eq!(read_reply(&mut last).text(), "last");
    assert_eq!(starts(&s.dir), 2);
    assert_eq!(s.metric("fiddler_dropped_total{reason=\"client_gone\"}"), 5);
}

#[test]
fn on_full_503_answers_503_with_retry_after() {
    let (s, _control, mut first, held) = busy(&["--queue", "1", "--on-full", "503"], "a");
    let mut c = send(&s, "b");
    wait_turned_away(&s, 1, 0);
    let r = read_reply(&mut c);
    assert_eq!(r.status, 503);
    assert_eq!(r.header("Retry-After"), Some("1"));
    assert!(r.header("Date").is_some());
    held.release();
    assert_eq!(read_reply(&mut first).text(), "a");
}

#[test]
fn on_full_503_reads_the_request_it_refused_so_the_503_is_not_reset_away() {
    let (s, _control, mut first, held) = busy(&["--queue", "1", "--on-full", "503"], "a");
    // The head comes first, alone (as Python's http.client sends head and
    // body): the connection is accepted with it, and the 503 written at
    // once, unread...
    let mut c = s.connect();
    c.write_all(b"POST /held HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n")
        .unwrap();
    wait_turned_away(&s, 1, 0);
    let mut status = [0u8; 12];
    c.read_exact(&mut status).unwrap();
    assert_eq!(&status, b"HTTP/1.1 503");
    // ...so the body comes after it. Closing a socket with unread bytes
    // resets it: this write would fail, or the rest of the 503 be lost.
    c.write_all(b"hello").unwrap();
    let (rest, error) = read_all(&mut c);
    assert_eq!(error, None, "the 503 ended in a reset");
    assert!(String::from_utf8_lossy(&rest).ends_with("503 Service Unavailable\n"));
    held.release();
    assert_eq!(read_reply(&mut first).text(), "a");
}

#[test]
fn on_full_backlog_leaves_connections_to_the_kernel() {
    let (s, control, mut first, held) = busy(&["--queue", "1", "--on-full", "backlog"], "a");
    // Not accepted while full, but not refused either: the kernel holds it.
    let mut waiting = send(&s, "b");
    assert_eq!(s.metric("fiddler_dropped_total{reason=\"queue_full\"}"), 0);
    held.release();
    assert_eq!(read_reply(&mut first).text(), "a");
    control.wait_started().release();
    assert_eq!(read_reply(&mut waiting).text(), "b");
}

#[test]
fn a_request_completed_into_a_full_queue_gets_503() {
    let (s, control, mut first, held) = busy(&["--queue", "2"], "a");
    // Accepted while there was room, still sending its request…
    let mut slow = s.connect();
    slow.write_all(b"POST /held HTTP/1.1\r\nHost: t\r\n")
        .unwrap();
    s.wait_metric("fiddler_connections{state=\"reading\"}", |n| n == 1);
    // …when another fills the queue.
    let mut second = send(&s, "b");
    s.wait_metric("fiddler_queue_depth", |d| d == 2);
    slow.write_all(b"Content-Length: 1\r\n\r\nc").unwrap();
    // Refused, not held: the queue of 2 must not take a third.
    wait_for(Duration::from_millis(5), || {
        let seen = (
            s.metric("fiddler_queue_depth"),
            s.sample("fiddler_requests_total{route=\"POST /held\",status=\"503\"}"),
        );
        match seen {
            (3, _) => Ok(Err("the queue of 2 held a third request")),
            (_, Some(1)) => Ok(Ok(())),
            _ => Err(format!("(held, refused) stayed at {seen:?}")),
        }
    })
    .unwrap();
    let r = read_reply(&mut slow);
    assert_eq!((r.status, r.header("Retry-After")), (503, Some("1")));
    held.release();
    control.wait_started().release();
    assert_eq!(read_reply(&mut first).text(), "a");
    assert_eq!(read_reply(&mut second).text(), "b");
}

#[test]
fn a_panicking_job_is_answered_500() {
    let s = Server::start(&[
        "--route",
        "GET /panic=fiddler-crab:panic",
        "--route",
        "GET /ok=echo ok",
    ]);
    assert_eq!(s.get("/panic").status, 500);
    s.wait_log(|l| l.contains("test hook: a job panics"));
    assert_eq!(s.get("/ok").text(), "ok\n");
    assert_eq!(s.metric("fiddler_handler_restarts_total"), 0);
}

#[test]
fn a_dead_handler_is_replaced_by_its_standby() {
    let mut s = Server::start(&[
        "--route",
        "GET /die=fiddler-crab:die",
        "--route",
        "GET /ok=echo ok",
    ]);
    let mut c = s.connect();
    c.write_all(b"GET /die HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let (bytes, _) = read_all(&mut c);
    assert!(bytes.is_empty(), "the job died with its thread: no answer");
    s.wait_metric("fiddler_handler_restarts_total", |n| n == 1);
    assert_eq!(s.get("/ok").text(), "ok\n");
    // And again: the new standby takes over in turn.
    let mut c = s.connect();
    c.write_all(b"GET /die HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert!(read_all(&mut c).0.is_empty());
    s.wait_metric("fiddler_handler_restarts_total", |n| n == 2);
    assert_eq!(s.get("/ok").text(), "ok\n");
    assert!(s.alive());
}

#[test]
fn two_handlers_run_two_programs_at_once_and_the_queue_bounds_the_total() {
    let (s, control, mut a, held_a) = busy(&["--handlers", "2", "--queue", "3"], "a");
    let mut b = send(&s, "b");
    let held_b = control.wait_started();
    s.wait_metric("fiddler_handler_state{state=\"busy\"}", |n| n == 2);
    let mut c = send(&s, "c");
    s.wait_metric("fiddler_queue_depth", |d| d == 3);
    // Both handlers hold their programs: the third cannot have started.
    assert_eq!(starts(&s.dir), 2);
    let mut excess = send(&s, "d");
    wait_turned_away(&s, 3, 0);
    assert!(read_all(&mut excess).0.is_empty());
    held_b.release();
    assert_eq!(read_reply(&mut b).text(), "b");
    control.wait_started().release();
    assert_eq!(read_reply(&mut c).text(), "c");
    held_a.release();
    assert_eq!(read_reply(&mut a).text(), "a");
    assert_eq!(starts(&s.dir), 3);
}

/// `handlers = "auto"`: two while the light is green, one while it is
/// yellow (available memory is always under 1000 GiB, always over 1 KiB).
#[test]
fn auto_handlers_follow_the_light() {
    for (yellow, allowed) in [("1000G", 1), ("1K", 2)] {
        let dir = TempDir::new();
        let control = Control::new(&dir.0);
        let config = format!(
            "handlers = \"auto\"\nmax_handlers = 2\nmemory_yellow = \"{yellow}\"\n\
             [[route]]\nmethod = \"POST\"\npath = \"/held\"\ncommand = {:?}\n",
            control.program(&dir).split(' ').collect::<Vec<_>>()
        );
        let s = Server::with_config_in(dir, &config, &[]);
        let color = if allowed == 1 { "yellow" } else { "green" };
        s.wait_metric(&format!("fiddler_light{{color=\"{color}\"}}"), |n| n == 1);
        s.wait_metric("fiddler_handlers_allowed", |n| n == allowed);
        let mut first = send(&s, "1");
        let held = control.wait_started();
        let mut second = send(&s, "2");
        s.wait_metric("fiddler_queue_depth", |d| d == 2);
        if allowed == 2 {
            control.wait_started().release();
        } else {
            assert_eq!(starts(&s.dir), 1, "yellow: one at a time");
        }
        held.release();
        if allowed == 1 {
            control.wait_started().release();
        }
        assert_eq!(read_reply(&mut first).text(), "1");
        assert_eq!(read_reply(&mut second).text(), "2");
    }
}
