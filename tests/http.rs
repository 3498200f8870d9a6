//! HTTP/1.1 as clients send it: exact bytes through a program and back, the
//! body framings, 100-continue, and every status the server answers itself.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

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
            b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n",
            501,
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
