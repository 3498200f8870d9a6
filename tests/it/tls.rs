//! HTTPS (the `https` feature): curl round trips over TLS 1.2 and 1.3, a
//! 2 MB body, plain HTTP on the TLS port, a swarm of stalled handshakes,
//! a client that leaves mid-answer, and a certificate swapped by SIGHUP.
//! The certificates are in tests/tls (made by its make.sh).

#![cfg(feature = "https")]
use crate::support;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use support::{Server, TempDir, heavy, read_all};

const TLS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tls");

/// A config serving TLS with certificate `name` (`one` or `two`), and `rest`.
fn config(name: &str, rest: &str) -> String {
    format!("tls_cert = \"{TLS}/{name}.pem\"\ntls_key = \"{TLS}/{name}.key\"\n{rest}")
}

// A generous read deadline: a slow machine decrypts 2 MB slowly.
const ROUTES: &str = "max_body = \"4M\"\nread_timeout = 300\n\
    [[route]]\nmethod = \"POST\"\npath = \"/echo\"\ncommand = [\"cat\"]\n\
    [[route]]\nmethod = \"GET\"\npath = \"/big\"\ncommand = [\"head\", \"-c\", \"30000000\", \"/dev/zero\"]\n\
    max_output = \"32M\"\n\
    [[route]]\nmethod = \"GET\"\npath = \"/seq\"\ncommand = [\"seq\", \"1\", \"50000\"]\nstream = true\n";

/// curl against the server over TLS, trusting the test CA; returns
/// (stdout, stderr). `-v` output is on stderr.
fn curl(s: &Server, args: &[&str], path: &str) -> (Vec<u8>, String) {
    let url = format!("https://localhost:{}{path}", s.addr.port());
    let out = Command::new("curl")
        .args(["-sS", "-v", "--cacert", &format!("{TLS}/ca.pem")])
        .args(args)
        .arg(url)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "curl failed: {err}");
    (out.stdout, err)
}

#[test]
fn curl_over_tls_1_2_and_1_3() {
    let s = Server::with_config(&config("one", ROUTES), &[]);
    s.wait_log(|l| l.ends_with(&format!(" POST https://{}/echo -> cat", s.addr)));
    for (flags, version) in [
        (&["--tlsv1.2", "--tls-max", "1.2"][..], "TLSv1.2"),
        (&["--tlsv1.3"][..], "TLSv1.3"),
    ] {
        let mut args = flags.to_vec();
        args.extend(["--data-binary", "over tls"]);
        let (body, log) = curl(&s, &args, "/echo");
        assert_eq!(body, b"over tls");
        assert!(
            log.contains(&format!("SSL connection using {version}")),
            "{log}"
        );
        assert!(log.contains("ALPN: server accepted http/1.1"), "{log}");
    }
    // A streamed answer is written by the handler, through TLS too.
    let (body, log) = curl(&s, &[], "/seq");
    let want: String = (1..=50000).map(|i| format!("{i}\n")).collect();
    assert_eq!(String::from_utf8(body).unwrap(), want);
    assert!(
        log.to_lowercase().contains("transfer-encoding: chunked"),
        "{log}"
    );
}

#[test]
fn two_megabytes_through_tls() {
    let s = Server::with_config(&config("one", ROUTES), &[]);
    let dir = TempDir::new();
    let big: Vec<u8> = (0..2_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let file = dir.path("big.bin");
    std::fs::write(&file, &big).unwrap();
    let at_file = format!("@{}", file.display());
    let (body, _) = curl(&s, &["--data-binary", &at_file, "-H", "Expect:"], "/echo");
    assert!(
        body == big,
        "the body came back changed ({} bytes)",
        body.len()
    );
}

/// Plain HTTP on the TLS port: no HTTP answer, the peer marked (with
/// ban_after = 1 and nobody trusted, marked means banned), the server fine.
#[test]
fn plain_http_on_the_tls_port_is_closed_and_marked() {
    let s = Server::with_config(
        &config("one", &format!("trusted = []\nban_after = 1\n{ROUTES}")),
        &[],
    );
    let mut c = s.connect();
    c.write_all(b"GET /echo HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let (bytes, _) = read_all(&mut c);
    assert!(!bytes.starts_with(b"HTTP/"), "{bytes:?}");
    s.wait_log(|l| l.contains("banned 127.0.0.1"));
    assert_eq!(s.metric("fiddler_dropped_total{reason=\"tls_failed\"}"), 1);
    assert_eq!(s.metric("fiddler_bans_active"), 1);
}

/// A real ClientHello, from Python's ssl module.
fn client_hello() -> Vec<u8> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import ssl, sys\n\
             ctx = ssl.create_default_context()\n\
             i, o = ssl.MemoryBIO(), ssl.MemoryBIO()\n\
             s = ctx.wrap_bio(i, o, server_hostname='localhost')\n\
             try:\n    s.do_handshake()\nexcept ssl.SSLWantReadError:\n    pass\n\
             sys.stdout.buffer.write(o.read())",
        ])
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success() && out.stdout.first() == Some(&0x16));
    out.stdout
}

/// 200 clients send a ClientHello and never go on; a normal HTTPS request is
/// still answered, and the stalled ones end at the handshake deadline.
#[test]
fn stalled_handshakes_do_not_hold_up_a_real_client() {
    let _heavy = heavy();
    let s = Server::with_config(
        &config("one", &format!("handshake_timeout = 2\n{ROUTES}")),
        &[],
    );
    let hello = client_hello();
    let mut stalled: Vec<_> = (0..200)
        .map(|_| {
            let mut c = s.connect();
            c.write_all(&hello).unwrap();
            c
        })
        .collect();
    s.wait_metric("fiddler_connections{state=\"reading\"}", |n| n >= 200);
    let (body, _) = curl(&s, &["--data-binary", "through"], "/echo");
    assert_eq!(body, b"through");
    // Each stalled client got the server's first flight, then was closed.
    for c in &mut stalled {
        let (bytes, _) = read_all(c);
        assert_eq!(bytes.first(), Some(&0x16), "a handshake record first");
    }
    s.wait_metric("fiddler_dropped_total{reason=\"tls_failed\"}", |n| n == 200);
}

#[test]
fn a_client_that_leaves_mid_answer_costs_nothing() {
    let s = Server::with_config(&config("one", ROUTES), &[]);
    let url = format!("https://localhost:{}/big", s.addr.port());
    let mut client = Command::new("curl")
        .args(["-sS", "--cacert", &format!("{TLS}/ca.pem"), &url])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = vec![0u8; 100_000];
    client
        .stdout
        .take()
        .unwrap()
        .read_exact(&mut first)
        .unwrap();
    // The pipe is closed: curl fails its next write and drops the connection.
    let _ = client.wait();
    assert!(first.iter().all(|&b| b == 0));
    let (body, _) = curl(&s, &["--data-binary", "next"], "/echo");
    assert_eq!(body, b"next");
}

#[test]
fn sighup_swaps_the_certificate_and_refuses_a_broken_one() {
    let s = Server::with_config(&config("one", ROUTES), &[]);
    let subject = |s: &Server| curl(s, &["--data-binary", "x"], "/echo").1;
    assert!(subject(&s).contains("subject: CN=one"));
    let file = s.dir.path("fiddler.toml");
    std::fs::write(&file, config("two", ROUTES)).unwrap();
    s.signal("HUP");
    s.wait_log(|l| l.contains("and the TLS certificate loaded"));
    assert!(subject(&s).contains("subject: CN=two"));
    // A certificate file that is no certificate: refused, `two` stays.
    let bad = s.dir.path("bad.pem");
    std::fs::write(&bad, "not a certificate\n").unwrap();
    let broken = format!(
        "tls_cert = \"{}\"\ntls_key = \"{TLS}/one.key\"\n{ROUTES}",
        bad.display()
    );
    std::fs::write(&file, broken).unwrap();
    s.signal("HUP");
    let refused = s.wait_log(|l| l.contains("the config is refused"));
    assert!(refused.contains("bad.pem"), "{refused}");
    assert!(subject(&s).contains("subject: CN=two"));
}
