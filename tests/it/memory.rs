//! Memory has a ceiling: answers nobody reads are bounded by
//! `answer_memory`, request bodies by `body_memory`, and the process's peak
//! resident memory (measured, not computed) stays under those caps plus a
//! small constant, however many clients try to pin memory.

use crate::support;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;
use support::{Server, heavy, read_reply, wait_for};

const MIB: u64 = 1024 * 1024;
/// What the server may hold beyond its caps: code, stacks, read buffers,
/// the mark table, the answer on its way from the handler.
const CONSTANT: u64 = 16_000_000;

/// The process's peak resident memory so far, in bytes.
fn peak_rss(s: &Server) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", s.pid())).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

#[test]
fn answers_nobody_reads_stay_within_answer_memory() {
    let _heavy = heavy();
    let s = Server::with_config(
        "answer_memory = \"16M\"\nqueue = 64\n\
         [[route]]\nmethod = \"POST\"\npath = \"/big\"\n\
         command = [\"head\", \"-c\", \"5000000\", \"/dev/zero\"]\n",
        &[],
    );
    // 40 clients ask for 5 MB each and never read: 200 MB if all were kept.
    let clients: Vec<TcpStream> = (0..40).map(|_| s.send_post("/big", "hi")).collect();
    s.wait_metric("fiddler_programs_started_total", |n| n == 40);
    s.wait_metric("fiddler_queue_depth", |n| n == 0);
    let peak = peak_rss(&s);
    assert!(
        peak < 16 * MIB + CONSTANT,
        "peak RSS {peak} bytes with answer_memory 16 MiB"
    );
    // Room was made by closing the oldest: at most three 5 MB answers fit.
    let writing = s.metric("fiddler_connections{state=\"writing\"}");
    assert!(writing <= 3, "{writing} answers kept in 16 MiB");
    let abandoned = s.metric("fiddler_dropped_total{reason=\"answer_abandoned\"}");
    assert!(
        abandoned >= 30,
        "only {abandoned} answers closed to make room"
    );
    assert!(s.metric("fiddler_memory_bytes{use=\"answers\"}") <= 16 * MIB);
    drop(clients);
}

#[test]
fn bodies_held_stay_within_body_memory_and_the_rest_get_503() {
    let _heavy = heavy();
    // The first request's program never ends: every later one stays held.
    let s = Server::with_config(
        "body_memory = \"32M\"\nqueue = 500\n\
         [[route]]\nmethod = \"POST\"\npath = \"/up\"\ncommand = [\"sleep\", \"3600\"]\n",
        &[],
    );
    let body = vec![b'x'; MIB as usize];
    let head = format!("POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: {MIB}\r\n\r\n");
    // 500 valid requests with 1 MiB bodies, all sent whole: 500 MiB if held.
    let clients: Vec<TcpStream> = (0..500)
        .map(|_| {
            let mut c = s.connect();
            c.write_all(head.as_bytes()).unwrap();
            c.write_all(&body).unwrap();
            c
        })
        .collect();
    // Exactly 32 bodies of 1 MiB fit in 32 MiB; the others were refused
    // (before their bodies were read, or when a body that came beside
    // another outgrew what was left).
    let refused = "fiddler_requests_total{route=\"-\",status=\"503\"}";
    wait_for(Duration::from_millis(5), || match s.sample(refused) {
        Some(468) => Ok(()),
        n => Err(format!("{refused} is {n:?}")),
    });
    // The 32 not refused are held once the gate has read them whole.
    s.wait_metric("fiddler_queue_depth", |n| n == 32);
    assert_eq!(s.metric("fiddler_memory_bytes{use=\"bodies\"}"), 32 * MIB);
    let peak = peak_rss(&s);
    assert!(
        peak < 32 * MIB + CONSTANT,
        "peak RSS {peak} bytes with body_memory 32 MiB"
    );
    // The last client was refused: 503, come back later, not a strike.
    let mut last = clients.into_iter().last().unwrap();
    let reply = read_reply(&mut last);
    assert_eq!(reply.status, 503);
    assert_eq!(reply.header("Retry-After"), Some("1"));
    assert_eq!(s.metric("fiddler_bans_active"), 0);
}

#[test]
fn a_body_announced_but_not_sent_holds_nothing() {
    let _heavy = heavy();
    let s = Server::with_config(
        "body_memory = \"1M\"\nread_timeout = 600\n\
         [[route]]\nmethod = \"POST\"\npath = \"/echo\"\ncommand = [\"cat\"]\n",
        &[],
    );
    let size = 600_000;
    // A slow client announces 600 kB and sends ten bytes of it: it holds
    // ten bytes, and a second 600 kB body still fits in 1 MiB.
    let mut slow = s.connect();
    let head = format!("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {size}\r\n\r\n");
    slow.write_all(head.as_bytes()).unwrap();
    slow.write_all(b"0123456789").unwrap();
    s.wait_metric("fiddler_memory_bytes{use=\"bodies\"}", |n| n == 10);
    let body = vec![b'p'; size as usize];
    let r = s.post("/echo", &body);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, body);
    // The slow one is still being read, and still holds its ten bytes.
    assert_eq!(s.metric("fiddler_connections{state=\"reading\"}"), 1);
    assert_eq!(s.metric("fiddler_memory_bytes{use=\"bodies\"}"), 10);
    slow.write_all(&vec![b's'; size as usize - 10]).unwrap();
    assert_eq!(read_reply(&mut slow).status, 200);
}
