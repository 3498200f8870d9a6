//! `stream = true`: stdout reaches the client as the program writes it
//! (chunked), still one program at a time, still stopped if the client leaves.

use crate::support;

use std::io::{Read, Write};
use support::{Control, Server, TempDir, read_all};

/// A program that writes "first", waits for the test, writes "second", and
/// exits with the code in its first argument.
fn streaming_server() -> (Server, Control) {
    let dir = TempDir::new();
    let control = Control::new(&dir.0);
    let script = dir.script(
        "talk.py",
        &format!(
            r#"#!/usr/bin/env python3
import socket, sys
sys.stdout.write("first\n"); sys.stdout.flush()
s = socket.socket(socket.AF_UNIX); s.connect({sock:?}); s.sendall(b"started!"); s.recv(2)
sys.stdout.write("second\n"); sys.stdout.flush()
sys.exit(int(sys.argv[1]))
"#,
            sock = control.socket.to_str().unwrap()
        ),
    );
    let config = format!(
        "[[route]]\npath = \"/ok\"\ncommand = [\"{script}\", \"0\"]\nstream = true\n\
         [[route]]\npath = \"/fails\"\ncommand = [\"{script}\", \"3\"]\nstream = true\n"
    );
    (Server::with_config_in(dir, &config, &[]), control)
}

/// Reads until `want` has arrived (the stream is still open).
fn read_until(c: &mut std::net::TcpStream, got: &mut Vec<u8>, want: &[u8]) {
    let mut buf = [0u8; 1024];
    while !got.windows(want.len()).any(|w| w == want) {
        let n = c.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "closed before {:?}: {:?}",
            String::from_utf8_lossy(want),
            String::from_utf8_lossy(got)
        );
        got.extend_from_slice(&buf[..n]);
    }
}

#[test]
fn output_arrives_as_it_is_written() {
    let (s, control) = streaming_server();
    let mut c = s.connect();
    c.write_all(b"GET /ok HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let held = control.wait_started();
    // The first line is here while the program still waits for us.
    let mut got = Vec::new();
    read_until(&mut c, &mut got, b"6\r\nfirst\n\r\n");
    let head = String::from_utf8_lossy(&got).into_owned();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains("\r\nTransfer-Encoding: chunked\r\n"),
        "{head}"
    );
    assert!(!head.contains("Content-Length"), "{head}");
    held.release();
    let (rest, _) = read_all(&mut c);
    got.extend_from_slice(&rest);
    let text = String::from_utf8(got).unwrap();
    assert!(
        text.ends_with("\r\n\r\n6\r\nfirst\n\r\n7\r\nsecond\n\r\n0\r\n\r\n"),
        "{text:?}"
    );
    // The access log counts every byte sent, not the last chunk's.
    let logged = format!(" GET /ok 200 {} ", text.len());
    s.wait_log(|l| l.contains(&logged));
    // curl reads it as one body.
    let url = format!("http://{}/ok", s.addr);
    let waiter = std::thread::spawn(move || {
        std::process::Command::new("curl")
            .args(["-sS", &url])
            .output()
    });
    control.wait_started().release();
    let out = waiter.join().unwrap().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "first\nsecond\n");
}

#[test]
fn a_failing_stream_is_cut_short_and_a_leaving_client_stops_it() {
    let (s, control) = streaming_server();
    let mut c = s.connect();
    c.write_all(b"GET /fails HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    control.wait_started().release();
    let (got, _) = read_all(&mut c);
    let text = String::from_utf8(got).unwrap();
    // Both lines arrived (in one chunk or two: that is up to the pipe), and
    // no last chunk: the client can tell the answer was cut short.
    assert!(
        text.ends_with("second\n\r\n") && !text.ends_with("0\r\n\r\n"),
        "no last chunk: {text:?}"
    );
    s.wait_log(|l| l.contains("/fails: `") && l.contains("exited with code 3"));
    // A client that leaves mid-stream stops its program.
    let mut c = s.connect();
    c.write_all(b"GET /ok HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let held = control.wait_started();
    read_until(&mut c, &mut Vec::new(), b"first\n");
    drop(c);
    held.wait_gone();
    s.wait_log(|l| l.contains("was stopped: its client left"));
}

#[test]
fn http_1_0_and_head_get_a_whole_answer() {
    let (s, control) = streaming_server();
    let mut c = s.connect();
    c.write_all(b"GET /ok HTTP/1.0\r\n\r\n").unwrap();
    control.wait_started().release();
    let r = support::read_reply(&mut c);
    assert_eq!(
        (r.status, r.header("Content-Length"), r.text().as_str()),
        (200, Some("13"), "first\nsecond\n")
    );
    let mut c = s.connect();
    c.write_all(b"HEAD /ok HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    control.wait_started().release();
    let r = support::read_reply(&mut c);
    assert_eq!(
        (r.status, r.header("Content-Length"), r.body.len()),
        (200, Some("13"), 0)
    );
}
