//! Slow clients cost nothing: sockets that never send wait in the kernel,
//! and sockets that stall or trickle their head a byte at a time cannot
//! lock out a prompt client, because the oldest still-reading connection
//! makes way for a new one.

use crate::support;

use std::io::Write;
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use support::{Server, heavy, wait_within};

const MAX_READING: usize = 20;

#[test]
fn slowloris_cannot_lock_out_a_prompt_client() {
    let _heavy = heavy();
    // A read timeout far longer than the test: only eviction can make room.
    let s = Server::start(&[
        "--route",
        "POST /echo=cat",
        "--max-reading",
        &MAX_READING.to_string(),
        "--read-timeout",
        "600",
    ]);
    let silent: Vec<TcpStream> = (0..MAX_READING + 100).map(|_| s.connect()).collect();
    let stalled: Vec<TcpStream> = (0..MAX_READING + 100).map(|_| begun(&s)).collect();
    let tricklers: Vec<TcpStream> = (0..MAX_READING + 100).map(|_| s.connect()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let trickle = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let head = b"POST /echo HTTP/1.1\r\nHost: t\r\nX-Slow: ";
            let mut sent = 0;
            while !stop.load(Ordering::Relaxed) {
                // One header byte per socket per round: the load a slowloris
                // client makes, not a wait for anything.
                for mut t in &tricklers {
                    let _ = t.write_all(&[*head.get(sent).unwrap_or(&b'a')]);
                }
                sent += 1;
                std::thread::sleep(Duration::from_millis(200));
            }
            tricklers
        })
    };
    s.wait_metric("fiddler_dropped_total{reason=\"evicted\"}", |n| n >= 200);
    for i in 0..10 {
        let body = format!("prompt {i}");
        let r = s.post("/echo", body.as_bytes());
        assert_eq!((r.status, r.text()), (200, body));
    }
    assert!(s.metric("fiddler_connections{state=\"reading\"}") <= MAX_READING as u64);
    stop.store(true, Ordering::Relaxed);
    let tricklers = trickle.join().unwrap();
    drop((silent, stalled, tricklers));
}

/// A connection that has sent nothing is the kernel's to hold
/// (TCP_DEFER_ACCEPT): it takes no place among the connections read.
#[test]
fn a_silent_connection_waits_in_the_kernel() {
    let s = Server::start(&["--route", "POST /echo=cat", "--read-timeout", "600"]);
    let silent: Vec<TcpStream> = (0..50).map(|_| s.connect()).collect();
    // Accepted after them, answered: had they been taken in, they would
    // be read now.
    assert_eq!(s.post("/echo", b"prompt").text(), "prompt");
    assert_eq!(s.metric("fiddler_connections{state=\"reading\"}"), 0);
    drop(silent);
}

/// A connection that sent the start of a request and stopped.
fn begun(s: &Server) -> TcpStream {
    let mut c = s.connect();
    c.write_all(b"POST /echo HTTP/1.1\r\n").unwrap();
    c
}

#[test]
fn answers_nobody_reads_are_bounded_in_bytes() {
    let _heavy = heavy();
    // 20 MB answers and room for one: a socket that is never read takes about
    // 4 MB of it, and 16 + 16 MB left over do not fit in 24.
    let s = Server::with_config(
        "answer_memory = \"24M\"\nwrite_timeout = 600\n[[route]]\npath = \"/big\"\n\
         command = [\"head\", \"-c\", \"20000000\", \"/dev/zero\"]\nmax_output = \"20M\"\n",
        &[],
    );
    let mut first = s.connect();
    first
        .write_all(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    s.wait_metric("fiddler_connections{state=\"writing\"}", |n| n == 1);
    // The handler is not held by the reader that never reads: the next
    // program runs, and its answer pushes the oldest unread one out.
    let mut second = s.connect();
    second
        .write_all(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    s.wait_metric("fiddler_dropped_total{reason=\"answer_abandoned\"}", |n| {
        n == 1
    });
    let (got, _) = support::read_all(&mut first);
    assert!(got.len() < 20_000_000, "the first answer was cut short");
    let r = support::read_reply(&mut second);
    assert_eq!((r.status, r.body.len()), (200, 20_000_000));
}

/// The oldest still-reading connection makes way, never a newer one: a
/// client halfway through its head when others arrive keeps its place.
#[test]
fn the_oldest_reader_is_evicted_not_the_newest() {
    let _heavy = heavy();
    let s = Server::start(&[
        "--route",
        "POST /echo=cat",
        "--max-reading",
        "5",
        "--read-timeout",
        "600",
    ]);
    let evicted = "fiddler_dropped_total{reason=\"evicted\"}";
    let stalled: Vec<TcpStream> = (0..5).map(|_| begun(&s)).collect();
    s.wait_metric("fiddler_connections{state=\"reading\"}", |n| n == 5);
    let mut prompt = s.connect();
    prompt
        .write_all(b"POST /echo HTTP/1.1\r\nHost: t\r\n")
        .unwrap();
    s.wait_metric(evicted, |n| n == 1);
    let newer: Vec<TcpStream> = (0..3).map(|_| begun(&s)).collect();
    s.wait_metric(evicted, |n| n == 4);
    prompt.write_all(b"Content-Length: 2\r\n\r\nhi").unwrap();
    let r = support::read_reply(&mut prompt);
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "hi"),
        "the reader evicted was not the oldest"
    );
    drop((stalled, newer));
}

/// An answer its client does not read is closed at `write_timeout`, and
/// counted.
#[test]
fn an_unread_answer_is_closed_at_write_timeout() {
    let _heavy = heavy();
    let s = Server::with_config(
        "write_timeout = 1\n[[route]]\npath = \"/big\"\n\
         command = [\"head\", \"-c\", \"20000000\", \"/dev/zero\"]\nmax_output = \"20M\"\n",
        &[],
    );
    let mut c = s.connect();
    c.write_all(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    // Closed at its deadline, 1 s: within 30 s, or the deadline is not kept.
    let abandoned = "fiddler_dropped_total{reason=\"answer_abandoned\"}";
    wait_within(
        Duration::from_secs(30),
        Duration::from_millis(5),
        || match s.metric(abandoned) {
            1 => Ok(()),
            n => Err(format!(
                "write_timeout = 1 did not close the unread answer: {abandoned} {n}"
            )),
        },
    );
    assert_eq!(s.metric("fiddler_connections{state=\"writing\"}"), 0);
    let (got, _) = support::read_all(&mut c);
    assert!(got.len() < 20_000_000, "the answer was cut at the deadline");
}
