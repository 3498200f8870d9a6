//! HTTP/1.1 as clients send it: exact bytes through a program and back, the
//! body framings, 100-continue, and every status the server answers itself.

use crate::support;

use std::io::{Read, Write};
use support::{Server, read_reply};

fn echo(args: &[&str]) -> Server {
    let mut all = vec![
        "--route",
        "POST /echo=cat",
        "--route",
        "GET /x/*=printenv PATH_INFO",
    ];
    all.extend_from_slice(args);
    Server::start(&all)
}

/// Every answer carries these; the server closes after each.
fn assert_framed(r: &support::Reply) {
    assert!(
        r.header("Date").is_some_and(|d| d.ends_with(" GMT")),
        "{r:?}"
    );
    assert_eq!(r.header("Connection"), Some("close"), "{r:?}");
    let len: usize = r
        .header("Content-Length")
        .expect("Content-Length")
        .parse()
        .unwrap();
    assert_eq!(len, r.body.len(), "{r:?}");
}

#[test]
fn exact_bytes_round_trip() {
    let s = echo(&["--max-body", "65536"]);
    let every_byte: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
    let near_max: Vec<u8> = (0..65536u32).map(|i| (i * 7 % 251) as u8).collect();
    for body in [every_byte, Vec::new(), b"hi".to_vec(), near_max] {
        let r = s.post("/echo", &body);
        assert_eq!(r.status, 200);
        assert_framed(&r);
        assert_eq!(r.body, body);
        assert_eq!(r.header("Content-Type"), Some("text/plain; charset=utf-8"));
    }
    let r = s.post("/echo", &vec![b'x'; 65537]);
    assert_eq!(r.status, 413);
    assert_framed(&r);
    // Logged with the request line it refused.
    s.wait_log(|l| l.contains(" POST /echo 413 "));
}

#[test]
fn chunked_body_is_dechunked() {
    let s = echo(&[]);
    let r = s.raw(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
          5\r\nhello\r\n1;ext=1\r\n \r\nb\r\nfrom chunks\r\n0\r\nTrailer: x\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "hello from chunks");
    let r = s.raw(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n");
    assert_eq!(r.status, 400);
}

#[test]
fn expect_100_continue() {
    let s = echo(&[]);
    let mut c = s.connect();
    c.write_all(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
    )
    .unwrap();
    let mut interim = [0u8; 25];
    c.read_exact(&mut interim).unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    c.write_all(b"hello").unwrap();
    let r = read_reply(&mut c);
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "hello");
    // Too large: 413 at once, no 100.
    let r = s.raw(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999\r\nExpect: 100-continue\r\n\r\n");
    assert_eq!(r.status, 413);
    assert!(!String::from_utf8_lossy(&r.raw).contains("100 Continue"));
    let r =
        s.raw(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nExpect: teapot\r\n\r\nx");
    assert_eq!(r.status, 417);
}

/// The answer the head alone decides (no route, wrong method, no token) is
/// sent before the body is read, and without `100 Continue`: a client that
/// waits for it never uploads a body nobody will read.
#[test]
fn a_head_that_decides_the_answer_gets_it_without_100_continue() {
    let s = Server::with_config(
        "[[route]]\nmethod = \"POST\"\npath = \"/echo\"\ncommand = [\"cat\"]\n\
         [[route]]\nmethod = \"POST\"\npath = \"/secret\"\ncommand = [\"cat\"]\n\
         token_env = \"FIDDLER_TEST_SECRET\"\n",
        &[],
    );
    for (path, status) in [("/nope", 404), ("/secret", 401)] {
        let r = s.raw(
            format!(
                "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\nExpect: 100-continue\r\n\r\n"
            )
            .as_bytes(),
        );
        assert_eq!(r.status, status, "{path}");
        assert!(
            !String::from_utf8_lossy(&r.raw).contains("100 Continue"),
            "{path}: {}",
            String::from_utf8_lossy(&r.raw)
        );
    }
    let r = s
        .raw(b"PUT /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 9\r\nExpect: 100-continue\r\n\r\n");
    assert_eq!((r.status, r.header("Allow")), (405, Some("POST, OPTIONS")));
    assert!(!String::from_utf8_lossy(&r.raw).contains("100 Continue"));
}

#[test]
fn curl_round_trip() {
    let s = echo(&[]);
    let url = format!("http://{}/echo", s.addr);
    let out = std::process::Command::new("curl")
        .args(["-sS", "-d", "hi", &url])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, b"hi");
    // curl sends Expect: 100-continue for bodies over 1 KiB.
    let big = "b".repeat(300_000);
    let out = std::process::Command::new("curl")
        .args(["-sS", "--data-binary", "@-", &url])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(big.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout.len(), big.len());
}

#[test]
fn statuses_the_server_answers_itself() {
    let s = echo(&["--read-timeout", "1"]);
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(9000));
    let many_headers = format!(
        "GET /x HTTP/1.1\r\nHost: t\r\n{}\r\n",
        "X-A: b\r\n".repeat(100)
    );
    let cases: Vec<(&[u8], u16)> = vec![
        (b"garbage\r\n\r\n", 400),
        (b"GET /x HTTP/1.1\r\n\r\n", 400), // no Host
        (b"\x00\x01\x02\r\n\r\n", 400),
        // A TLS ClientHello's first bytes, no line end: 400 at once, not 408.
        (b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03", 400),
        (b"GET /nothing HTTP/1.1\r\nHost: t\r\n\r\n", 404),
        (b"GET /echo HTTP/1.1\r\nHost: t\r\n\r\n", 405),
        (
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2000000\r\n\r\n",
            413,
        ),
        (long_target.as_bytes(), 414),
        (many_headers.as_bytes(), 431),
        (
            b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            501,
        ),
        // Chunked not last: the body's end cannot be known (RFC 9112 §6.3).
        (
            b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n",
            400,
        ),
        // A chunk's data ends in CRLF, not a lone LF (RFC 9112 §7.1).
        (
            b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\n0\r\n\r\n",
            400,
        ),
        (b"BREW /echo HTTP/1.1\r\nHost: t\r\n\r\n", 501),
        (b"GET /x HTTP/2.0\r\nHost: t\r\n\r\n", 505),
        (b"GET /x HTTP/1.1\r\nHost: t\r\n", 408), // never finished
    ];
    for (request, want) in cases {
        let r = s.raw(request);
        assert_eq!(r.status, want, "{}", String::from_utf8_lossy(request));
        assert_framed(&r);
    }
    let r = s.raw(b"GET /echo HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(r.header("Allow"), Some("POST, OPTIONS"));
    let r = s.raw(b"OPTIONS /x/y HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(
        (r.status, r.header("Allow")),
        (200, Some("GET, HEAD, OPTIONS"))
    );
}

#[test]
fn head_answers_like_get_without_a_body() {
    let s = echo(&[]);
    let get = s.get("/x/some/where");
    assert_eq!(get.status, 200);
    assert_eq!(get.text(), "/some/where\n");
    let head = s.raw(b"HEAD /x/some/where HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(head.status, 200);
    assert_eq!(head.header("Content-Length"), Some("12"));
    assert!(head.body.is_empty());
}

#[test]
fn http_1_0_and_absolute_targets() {
    let s = echo(&[]);
    let r = s.raw(b"GET /x/a HTTP/1.0\r\n\r\n");
    assert_eq!((r.status, r.text().as_str()), (200, "/a\n"));
    let r = s.raw(b"GET http://example.com/x/b%20c HTTP/1.1\r\nHost: example.com\r\n\r\n");
    assert_eq!((r.status, r.text().as_str()), (200, "/b c\n"));
    let r = s.raw(b"GET /x/../x/./d HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!((r.status, r.text().as_str()), (200, "/d\n"));
}

#[test]
fn demo_with_no_arguments() {
    // The demo binds 127.0.0.1:8080 by default; here only the ports differ.
    let s = Server::start(&[]);
    let r = s.post("/echo", b"hi");
    assert_eq!((r.status, r.text().as_str()), (200, "hi"));
    let r = s.get("/");
    assert_eq!(r.status, 200);
    assert!(r.text().contains("POST /echo -> cat"), "{}", r.text());
}

/// Paths have one spelling: an encoded slash is refused (it would let
/// `/files%2fx` pose as `/files/x`), and repeated slashes are merged.
#[test]
fn encoded_slashes_are_refused_and_repeated_slashes_merged() {
    let s = Server::with_config(
        "[[route]]\npath = \"/files/*\"\ncommand = [\"printf\", \"[%s]\", \"{path}\"]\n",
        &[],
    );
    assert_eq!(s.get("/files%2fx").status, 400);
    assert_eq!(s.get("/files/a%2Fb").status, 400);
    let r = s.get("//files//etc///passwd");
    assert_eq!((r.status, r.text().as_str()), (200, "[/etc/passwd]"));
}

/// A chunked body over `max_body` is refused with 413 once it passes the
/// limit, and the program never runs.
#[test]
fn an_oversized_chunked_body_gets_413() {
    let s = echo(&["--max-body", "1000"]);
    let chunk = "x".repeat(600);
    let r = s.raw(
        format!(
            "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
             258\r\n{chunk}\r\n258\r\n{chunk}\r\n0\r\n\r\n"
        )
        .as_bytes(),
    );
    assert_eq!(r.status, 413);
    assert_eq!(s.metric("fiddler_programs_started_total"), 0);
}

/// `--keep-alive`: a kept connection and the bytes on it.
fn kept(args: &[&str]) -> Server {
    let mut all = vec!["--keep-alive", "600"];
    all.extend_from_slice(args);
    echo(&all)
}

/// A GET on a new connection that asks for the close.
fn closing_get(s: &Server, path: &str) -> support::Reply {
    s.raw(format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes())
}

#[test]
fn a_kept_connection_answers_in_order_and_closes_when_asked() {
    let s = kept(&[]);
    let mut c = s.connect();
    c.write_all(b"GET /x/a HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let r = support::read_one(&mut c);
    assert_eq!((r.status, r.text().as_str()), (200, "/a\n"));
    assert_eq!(r.header("Connection"), Some("keep-alive"));
    // Pipelined, in one write: a body, a GET, and the last one closes.
    c.write_all(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc\
          GET /x/b HTTP/1.1\r\nHost: t\r\n\r\n\
          GET /nothing HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    for (status, body, connection) in [
        (200, "abc", "keep-alive"),
        (200, "/b\n", "keep-alive"),
        (404, "404 Not Found\n", "close"),
    ] {
        let r = support::read_one(&mut c);
        assert_eq!((r.status, r.text().as_str()), (status, body), "{r:?}");
        assert_eq!(r.header("Connection"), Some(connection), "{r:?}");
    }
    assert_eq!(support::read_all(&mut c), (Vec::new(), None));
    // HTTP/1.0 is kept only if it asks.
    let r = s.raw(b"GET /x/c HTTP/1.0\r\n\r\n");
    assert_eq!((r.status, r.header("Connection")), (200, Some("close")));
    let mut c = s.connect();
    c.write_all(b"GET /x/d HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .unwrap();
    let r = support::read_one(&mut c);
    assert_eq!(
        (r.status, r.header("Connection")),
        (200, Some("keep-alive"))
    );
    // `close` wins, whatever else it lists (RFC 9112 §9.6).
    let mut c = s.connect();
    c.write_all(b"GET /x/d HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n")
        .unwrap();
    let r = support::read_one(&mut c);
    assert_eq!((r.status, r.header("Connection")), (200, Some("close")));
    // Off (the default): every answer closes.
    let r = echo(&[]).get("/x/e");
    assert_eq!((r.status, r.header("Connection")), (200, Some("close")));
}

/// What closing made safe stays safe on a kept connection: a request whose
/// framing is refused, or whose body was never read, ends the connection,
/// and nothing after it is taken for a request.
#[test]
fn framing_errors_and_unread_bodies_end_a_kept_connection() {
    let s = kept(&[]);
    let smuggled = "GET /x/smuggled HTTP/1.1\r\nHost: t\r\n\r\n";
    let cases = [
        // Both framings (RFC 9112 §6.3): 400.
        format!(
            "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\
             Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"
        ),
        // Two different lengths: 400.
        format!(
            "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\
             Content-Length: 6\r\n\r\nhello!{smuggled}"
        ),
        // A bad chunk size: 400.
        format!(
            "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{smuggled}"
        ),
        // Answered from its head (404), its body never read: a request
        // hidden in the body is never run.
        format!(
            "POST /nothing HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{smuggled}",
            smuggled.len()
        ),
    ];
    for (case, want) in cases.iter().zip([400, 400, 400, 404]) {
        let mut c = s.connect();
        c.write_all(b"GET /x/first HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        assert_eq!(
            support::read_one(&mut c).header("Connection"),
            Some("keep-alive")
        );
        c.write_all(case.as_bytes()).unwrap();
        let (rest, _) = support::read_all(&mut c);
        let r = support::parse_reply(rest);
        assert_eq!(r.status, want, "{case}");
        assert_eq!(r.header("Connection"), Some("close"), "{case}");
        let len: usize = r.header("Content-Length").unwrap().parse().unwrap();
        assert_eq!(r.body.len(), len, "nothing after the answer: {case}");
    }
    assert!(!s.log_lines().iter().any(|l| l.contains("/x/smuggled")));
}

/// A request on a kept connection takes its place in the queue only once it
/// is complete: half a request holds nothing.
#[test]
fn a_kept_connection_takes_a_slot_only_when_its_request_is_complete() {
    let s = kept(&["--queue", "1"]);
    let mut c = s.connect();
    c.write_all(b"GET /x/a HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(support::read_one(&mut c).status, 200);
    c.write_all(b"GET /x/b HTTP/1.1\r\nHost: t\r\n").unwrap();
    s.wait_log(|l| l.contains(" GET /x/a 200 "));
    // The one slot is free for another client meanwhile.
    assert_eq!(closing_get(&s, "/x/other").text(), "/other\n");
    c.write_all(b"\r\n").unwrap();
    assert_eq!(support::read_one(&mut c).text(), "/b\n");
}

/// An idle kept connection is the first to make way for a new one, before
/// a client still sending; and at its deadline it is closed without a word.
#[test]
fn idle_kept_connections_make_way_first_and_close_quietly() {
    let s = kept(&["--max-reading", "2"]);
    let mut slow = s.connect();
    slow.write_all(b"GET /x/slow HTTP/1.1\r\n").unwrap();
    let mut idle = s.connect();
    idle.write_all(b"GET /x/a HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(support::read_one(&mut idle).status, 200);
    s.wait_metric("fiddler_connections{state=\"reading\"}", |n| n == 2);
    assert_eq!(closing_get(&s, "/x/new").text(), "/new\n");
    // (The client still sending first: had it been evicted, this fails at once.)
    slow.write_all(b"Host: t\r\n\r\n").unwrap();
    assert_eq!(support::read_one(&mut slow).text(), "/slow\n");
    assert_eq!(support::read_all(&mut idle), (Vec::new(), None));
    assert_eq!(s.metric("fiddler_dropped_total{reason=\"evicted\"}"), 0);

    let s = echo(&["--keep-alive", "1"]);
    let mut c = s.connect();
    c.write_all(b"GET /x/a HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(support::read_one(&mut c).status, 200);
    assert_eq!(support::read_all(&mut c), (Vec::new(), None));
    assert!(!s.log_lines().iter().any(|l| l.contains(" 408 ")));
}

/// A kept connection that comes back with its next request already sent
/// (pipelined) while `max_reading` is full takes an idle one's place: that
/// request is answered, not lost with its connection.
#[test]
fn a_pipelined_request_takes_an_idle_connections_place() {
    let dir = support::TempDir::new();
    let control = support::Control::new(&dir.0);
    let args = ["--keep-alive", "600", "--max-reading", "2"];
    let s = support::held_server(dir, &control, &args);
    let mut idle = s.connect();
    idle.write_all(b"GET /ok HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(support::read_one(&mut idle).text(), "ok\n");
    // Two requests in one write; the first is held while the readers fill.
    let mut pipelined = s.connect();
    pipelined
        .write_all(
            b"POST /held HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\na\
              GET /ok HTTP/1.1\r\nHost: t\r\n\r\n",
        )
        .unwrap();
    let held = control.wait_started();
    let mut sending = s.connect();
    sending.write_all(b"GET /ok HTTP/1.1\r\n").unwrap();
    s.wait_metric("fiddler_connections{state=\"reading\"}", |n| n == 2);
    held.release();
    assert_eq!(support::read_one(&mut pipelined).text(), "a");
    assert_eq!(support::read_one(&mut pipelined).text(), "ok\n");
    assert_eq!(support::read_all(&mut idle), (Vec::new(), None));
}

/// SIGTERM closes idle kept connections at once: the drain does not wait
/// for their deadline.
#[test]
fn a_drain_closes_idle_kept_connections() {
    let mut s = kept(&["--drain-timeout", "600"]);
    let mut c = s.connect();
    c.write_all(b"GET /x/a HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(support::read_one(&mut c).status, 200);
    s.signal("TERM");
    assert_eq!(support::read_all(&mut c), (Vec::new(), None));
    assert_eq!(s.wait_exit(), Some(0));
}
