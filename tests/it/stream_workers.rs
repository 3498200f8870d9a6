//! Framed workers that stream (`worker = true`, `stream = true`) and stop a
//! request when asked (`cancel_grace`), with `support/stream_worker.py`:
//! pieces reach the client as written, a request whose client leaves is
//! cancelled and the same worker answers the next one with its own answer,
//! a worker that ignores the cancel is killed.

use crate::support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;
use support::{Reply, Server, TempDir, dechunk, read_reply, read_until, wait_for};

const WORKER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/support/stream_worker.py"
);

/// A server with `POST /s` served by the streaming test worker, which may
/// take `grace` seconds to stop a cancelled request.
fn server(grace: u64, extra: &str) -> (Server, PathBuf) {
    let dir = TempDir::new();
    let control = dir.0.clone();
    let toml = format!(
        "[[route]]\nmethod = \"POST\"\npath = \"/s\"\n\
         command = [\"python3\", \"{WORKER}\", \"{}\"]\n\
         worker = true\nstream = true\ncancel_grace = {grace}\n{extra}",
        control.display()
    );
    (Server::with_config_in(dir, &toml, &[]), control)
}

fn send(s: &Server, body: &str) -> TcpStream {
    s.send_post("/s", body)
}

fn text(r: &Reply) -> String {
    String::from_utf8(dechunk(&r.body).expect("a whole chunked answer")).unwrap()
}

/// The worker's pid and the body it echoed, from a `pid` request.
fn pid(s: &Server, tag: &str) -> String {
    let r = read_reply(&mut send(s, &format!("pid {tag}")));
    assert_eq!(r.status, 200);
    let answer = text(&r);
    let mut words = answer.split(' ');
    assert_eq!(words.next(), Some("pid"));
    let pid = words.next().unwrap().to_owned();
    assert_eq!(words.collect::<Vec<_>>(), ["pid", tag], "{answer}");
    pid
}

#[test]
fn pieces_reach_the_client_as_the_worker_writes_them() {
    let (s, dir) = server(5, "");
    let mut c = send(&s, "wait");
    let first = read_until(&mut c, "one\n");
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    assert!(
        first.contains("X-Worker-Pid: "),
        "the worker's head: {first}"
    );
    assert!(first.contains("Transfer-Encoding: chunked"), "{first}");
    std::fs::write(dir.join("release"), "").unwrap();
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).unwrap();
    let whole = [first.as_bytes(), &rest].concat();
    let r = support::parse_reply(whole);
    assert_eq!(text(&r), "one\ntwo\n");
}

#[test]
fn a_client_that_leaves_is_cancelled_and_the_worker_answers_the_next() {
    let (s, _dir) = server(5, "");
    let before = pid(&s, "first");
    let mut c = send(&s, "ticks");
    read_until(&mut c, "tick");
    drop(c);
    s.wait_metric(
        "fiddler_worker_cancels_total{route=\"POST /s\",outcome=\"kept\"}",
        |n| n == 1,
    );
    // The same process, and the next request's own answer, not ticks.
    assert_eq!(pid(&s, "second"), before);
    s.wait_log(|l| l.contains("cancelled, as its client left; the worker stopped and is kept"));
}

#[test]
fn a_cancel_that_comes_after_the_end_never_stops_the_next_request() {
    let (s, dir) = server(5, "");
    let before = pid(&s, "first");
    let mut c = send(&s, "slowend");
    read_until(&mut c, "one\n");
    drop(c);
    // The cancel is on the worker's stdin, unread; the request then ends
    // on its own, and the cancel is read after it.
    wait_for(Duration::from_millis(5), || {
        dir.join("cancel-seen")
            .exists()
            .then_some(())
            .ok_or("the worker saw no cancel".to_owned())
    });
    std::fs::write(dir.join("release"), "").unwrap();
    s.wait_metric(
        "fiddler_worker_cancels_total{route=\"POST /s\",outcome=\"kept\"}",
        |n| n == 1,
    );
    assert_eq!(pid(&s, "next"), before);
    assert_eq!(pid(&s, "after"), before);
}

#[test]
fn a_worker_that_ignores_the_cancel_is_killed_after_cancel_grace() {
    let (s, _dir) = server(1, "");
    let before = pid(&s, "first");
    let mut c = send(&s, "deaf");
    read_until(&mut c, "tick");
    drop(c);
    s.wait_metric(
        "fiddler_worker_cancels_total{route=\"POST /s\",outcome=\"killed\"}",
        |n| n == 1,
    );
    assert_ne!(pid(&s, "second"), before);
}

#[test]
fn a_deadline_mid_stream_cuts_the_answer_short_and_keeps_the_worker() {
    let (s, _dir) = server(5, "timeout = 1\n");
    let before = pid(&s, "first");
    let r = read_reply(&mut send(&s, "ticks"));
    assert_eq!(r.status, 200);
    assert!(
        dechunk(&r.body).is_none(),
        "an answer cut short has no last chunk"
    );
    s.wait_metric(
        "fiddler_worker_cancels_total{route=\"POST /s\",outcome=\"kept\"}",
        |n| n == 1,
    );
    assert_eq!(pid(&s, "second"), before);
}

#[test]
fn past_max_output_the_stream_is_cut_and_the_worker_replaced() {
    let (s, _dir) = server(5, "max_output = \"1M\"\n");
    let before = pid(&s, "first");
    let r = read_reply(&mut send(&s, "big 3000000"));
    assert_eq!(r.status, 200);
    assert!(dechunk(&r.body).is_none());
    assert_ne!(pid(&s, "second"), before);
}

#[test]
fn broken_framing_cuts_the_answer_and_replaces_the_worker() {
    let (s, _dir) = server(5, "");
    let before = pid(&s, "first");
    let r = read_reply(&mut send(&s, "broken"));
    assert_eq!(r.status, 200);
    assert!(r.text().contains("one\n"), "{r:?}");
    assert!(
        dechunk(&r.body).is_none(),
        "an answer cut short has no last chunk"
    );
    assert_ne!(pid(&s, "second"), before);
    assert_eq!(
        s.metric("fiddler_program_failures_total{route=\"POST /s\",reason=\"protocol\"}"),
        1
    );
}

#[test]
fn http_1_0_and_head_get_the_whole_answer() {
    let (s, dir) = server(5, "");
    std::fs::write(dir.join("release"), "").unwrap();
    let mut c = s.connect();
    c.write_all(b"POST /s HTTP/1.0\r\nContent-Length: 4\r\n\r\nwait")
        .unwrap();
    let r = read_reply(&mut c);
    assert_eq!((r.status, r.text().as_str()), (200, "one\ntwo\n"));
    assert_eq!(r.header("Content-Length"), Some("8"));
    assert!(r.header("X-Worker-Pid").is_some());
}
