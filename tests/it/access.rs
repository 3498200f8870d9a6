//! Who may use the server: peers that keep sending bad requests are banned
//! and then closed unread (trusted ones never are), `allow` closes everyone
//! else at accept, and a route's bearer token is required.

use crate::support;

use std::io::Write;
use support::{Server, read_all};

/// Ten malformed requests ban the peer (loopback is trusted by default, so
/// the test trusts no one).
#[test]
fn a_peer_that_keeps_sending_garbage_is_banned_then_closed_unread() {
    let s = Server::with_config(
        "trusted = []\nban_after = 10\nban_seconds = 600\n\
         [[route]]\npath = \"/ok\"\ncommand = [\"echo\", \"ok\"]\n",
        &[],
    );
    for _ in 0..10 {
        assert_eq!(s.raw(b"NOT HTTP AT ALL\r\n\r\n").status, 400);
    }
    s.wait_log(|l| l.contains("banned 127.0.0.1 for 600s"));
    // Closed at accept: not even a good request gets an answer.
    let mut c = s.connect();
    c.write_all(b"GET /ok HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let (bytes, _) = read_all(&mut c);
    assert!(bytes.is_empty(), "a banned peer got {bytes:?}");
    assert_eq!(s.metric("fiddler_dropped_total{reason=\"banned\"}"), 1);
    assert_eq!(s.metric("fiddler_bans_active"), 1);
}

#[test]
fn trusted_peers_are_never_banned() {
    let s = Server::start(&["--route", "GET /ok=echo ok"]);
    for _ in 0..30 {
        assert_eq!(s.raw(b"NOT HTTP AT ALL\r\n\r\n").status, 400);
    }
    assert_eq!(s.get("/ok").text(), "ok\n");
    assert_eq!(s.metric("fiddler_bans_active"), 0);
}

#[test]
fn allow_closes_everyone_else_at_accept() {
    let route = "[[route]]\npath = \"/ok\"\ncommand = [\"echo\", \"ok\"]\n";
    let elsewhere = Server::with_config(&format!("allow = [\"10.0.0.0/8\"]\n{route}"), &[]);
    let mut c = elsewhere.connect();
    c.write_all(b"GET /ok HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    assert!(read_all(&mut c).0.is_empty());
    assert_eq!(
        elsewhere.metric("fiddler_dropped_total{reason=\"not_allowed\"}"),
        1
    );
    let here = Server::with_config(
        &format!("allow = [\"10.0.0.0/8\", \"127.0.0.1\"]\n{route}"),
        &[],
    );
    assert_eq!(here.get("/ok").text(), "ok\n");
}

#[test]
fn a_route_with_a_token_wants_it_as_a_bearer() {
    // The test harness gives the server FIDDLER_TEST_SECRET=must-not-leak.
    let s = Server::with_config(
        "[[route]]\npath = \"/secret\"\ncommand = [\"echo\", \"in\"]\n\
         token_env = \"FIDDLER_TEST_SECRET\"\n",
        &[],
    );
    let get =
        |auth: &str| s.raw(format!("GET /secret HTTP/1.1\r\nHost: t\r\n{auth}\r\n").as_bytes());
    let none = get("");
    assert_eq!(
        (none.status, none.header("WWW-Authenticate")),
        (401, Some("Bearer"))
    );
    assert_eq!(get("Authorization: Bearer must-not-lea\r\n").status, 401);
    assert_eq!(
        get("Authorization: Bearer must-not-leakjunk\r\n").status,
        401
    );
    assert_eq!(get("Authorization: Basic must-not-leak\r\n").status, 401);
    assert_eq!(
        get("Authorization: Bearer must-not-leak\r\n").text(),
        "in\n"
    );
    assert_eq!(
        s.metric("fiddler_requests_total{route=\"ANY /secret\",status=\"401\"}"),
        4
    );
    assert_eq!(s.metric("fiddler_programs_started_total"), 1);
}

/// A client retrying with an expired token is not an attacker: 401s are
/// no strikes, so a peer (behind a shared proxy, everyone) is never banned
/// for them.
#[test]
fn wrong_tokens_never_ban_a_peer() {
    let s = Server::with_config(
        "trusted = []\nban_after = 3\n\
         [[route]]\npath = \"/secret\"\ncommand = [\"echo\", \"in\"]\n\
         token_env = \"FIDDLER_TEST_SECRET\"\n",
        &[],
    );
    for _ in 0..10 {
        let r = s.raw(b"GET /secret HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer expired\r\n\r\n");
        assert_eq!(r.status, 401);
    }
    assert_eq!(s.metric("fiddler_bans_active"), 0);
    let ok =
        s.raw(b"GET /secret HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer must-not-leak\r\n\r\n");
    assert_eq!(ok.text(), "in\n");
}
