//! CGI/1.1 mode (RFC 3875): the meta-variables, the header block a program
//! answers with (Status, Location, Content-Type, other fields), and a real
//! CGI program driven by its own client: git's http-backend under `git clone`.

use crate::support;

use std::process::Command;
use support::{Server, TempDir};

const SCRIPT: &str = r#"#!/usr/bin/env python3
import os, sys
q = os.environ.get("QUERY_STRING", "")
out = sys.stdout
if q == "mode=status":
    out.write("Status: 201 Created\nContent-Type: application/json\nX-Extra: yes\n\n{\"ok\": true}")
elif q == "mode=local":
    out.write("Location: /cgi/target?from=local\n\n")
elif q == "mode=client":
    out.write("Location: https://example.com/x\n\nmoved")
elif q == "mode=bad":
    out.write("no header block here")
elif q == "mode=loop":
    out.write("Location: /cgi/again?mode=loop\n\n")
elif q == "mode=env":
    out.write("Content-Type: text/plain\n\n")
    for k, v in sorted(os.environ.items()):
        out.write(f"{k}={v}\n")
    out.write("BODY=" + sys.stdin.read())
else:
    out.write("Content-Type: text/plain\r\n\r\n")
    out.write(os.environ["REQUEST_METHOD"] + " " + os.environ["PATH_INFO"] + "?" + q)
"#;

fn server(dir: TempDir) -> Server {
    let script = dir.script("app.py", SCRIPT);
    let config = format!(
        "[[route]]\npath = \"/cgi/*\"\ncommand = [\"{script}\"]\ncgi = true\ndir = \"/srv\"\n"
    );
    Server::with_config_in(dir, &config, &[])
}

#[test]
fn the_header_block_sets_status_type_and_fields() {
    let s = server(TempDir::new());
    let r = s.get("/cgi/x?mode=status");
    assert_eq!(r.status, 201);
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    assert_eq!(r.header("X-Extra"), Some("yes"));
    assert_eq!(r.text(), "{\"ok\": true}");
    // A local redirect is answered as a GET of the new path, by the server.
    let r = s.raw(b"POST /cgi/x?mode=local HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi");
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "GET /target?from=local")
    );
    // A client redirect: 302 with the Location, the body as written.
    let r = s.get("/cgi/x?mode=client");
    assert_eq!(
        (r.status, r.header("Location"), r.text().as_str()),
        (302, Some("https://example.com/x"), "moved")
    );
    assert_eq!(s.get("/cgi/x?mode=bad").status, 502);
    s.wait_log(|l| {
        l.contains("/cgi/*: `")
            && l.contains("malformed CGI answer: the header block has no blank line")
    });
    assert_eq!(s.get("/cgi/x?mode=loop").status, 502);
    s.wait_log(|l| l.contains("looping local redirect"));
    let r = s.raw(b"HEAD /cgi/y HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(
        (r.status, r.header("Content-Length"), r.body.len()),
        (200, Some("8"), 0)
    );
}

#[test]
fn every_rfc_3875_meta_variable() {
    let s = server(TempDir::new());
    let r = s.raw(
        b"POST /cgi/a/b?mode=env HTTP/1.1\r\nHost: example.org\r\nAuthorization: Basic dTpw\r\n\
          Proxy-Authorization: Basic cHJveHk6cHc=\r\n\
          Content-Type: text/x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    let env = r.text();
    for line in [
        "AUTH_TYPE=Basic",
        "CONTENT_LENGTH=3",
        "CONTENT_TYPE=text/x",
        "GATEWAY_INTERFACE=CGI/1.1",
        "PATH_INFO=/a/b",
        "PATH_TRANSLATED=/srv/a/b",
        "QUERY_STRING=mode=env",
        "REMOTE_ADDR=127.0.0.1",
        "REMOTE_HOST=127.0.0.1",
        "REQUEST_METHOD=POST",
        "SCRIPT_NAME=/cgi",
        "SERVER_NAME=example.org",
        &format!("SERVER_PORT={}", s.addr.port()),
        "SERVER_PROTOCOL=HTTP/1.1",
        concat!("SERVER_SOFTWARE=fiddler_crab/", env!("CARGO_PKG_VERSION")),
        "BODY=abc",
    ] {
        assert!(env.lines().any(|l| l == line), "{line} missing from\n{env}");
    }
    assert!(
        !env.contains("dTpw") && !env.contains("cHJveHk6cHc="),
        "credentials stay out of the environment (RFC 3875 §4.1.18):\n{env}"
    );
}

#[test]
fn git_clone_through_git_http_backend() {
    let dir = TempDir::new();
    let git = |args: &[&str], cwd: &std::path::Path| {
        let out = Command::new("git")
            .args(args)
            .current_dir(cwd)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@t")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@t")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let work = dir.path("work");
    std::fs::create_dir(&work).unwrap();
    git(&["init", "-q", "-b", "main"], &work);
    let payload: String = (0..2000).map(|i| format!("line {i}\n")).collect();
    std::fs::write(work.join("file.txt"), &payload).unwrap();
    git(&["add", "file.txt"], &work);
    git(&["commit", "-q", "-m", "first"], &work);
    git(&["clone", "-q", "--bare", "work", "repo.git"], &dir.0);
    let config = format!(
        "[[route]]\npath = \"/git/*\"\ncommand = [\"/usr/lib/git-core/git-http-backend\"]\ncgi = true\n\
         env = [\"GIT_PROJECT_ROOT={}\", \"GIT_HTTP_EXPORT_ALL=1\"]\n",
        dir.0.display()
    );
    let s = Server::with_config(&config, &[]);
    git(
        &[
            "clone",
            "-q",
            &format!("http://{}/git/repo.git", s.addr),
            "copy",
        ],
        &dir.0,
    );
    assert_eq!(
        std::fs::read_to_string(dir.path("copy/file.txt")).unwrap(),
        payload
    );
    s.wait_log(|l| l.contains(" POST /git/repo.git/git-upload-pack 200 "));
}

/// An absolute-form target's authority names the server, whatever Host
/// says (RFC 9112 §3.2.2); a Host that is no host is refused.
#[test]
fn server_name_comes_from_the_target_then_a_valid_host() {
    let s = server(TempDir::new());
    let r = s.raw(
        b"GET http://target.example:81/cgi/x?mode=env HTTP/1.1\r\nHost: other.example\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    assert!(
        r.text().lines().any(|l| l == "SERVER_NAME=target.example"),
        "{}",
        r.text()
    );
    for host in ["a b", "evil.com/../x", "x@y"] {
        let r = s.raw(format!("GET /cgi/x?mode=env HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes());
        assert_eq!(r.status, 400, "Host: {host}");
    }
}

/// A CGI header value with a control byte (CR included: a header it could
/// split) never reaches the client: the answer is a 502, and the log says
/// why.
#[test]
fn a_cgi_header_with_a_control_byte_is_a_502() {
    for byte in ["\\001", "\\r"] {
        a_cgi_header_holding(byte);
    }
}

fn a_cgi_header_holding(byte: &str) {
    let dir = TempDir::new();
    let program = dir.script(
        "bad.sh",
        &format!("#!/bin/sh\nprintf 'Status: 200\\nX-Bad: a{byte}Set-Cookie: b\\n\\nbody'\n"),
    );
    let s = Server::with_config_in(
        dir,
        &format!("[[route]]\npath = \"/bad\"\ncommand = [\"{program}\"]\ncgi = true\n"),
        &[],
    );
    let r = s.get("/bad");
    assert_eq!(r.status, 502, "{byte}");
    let raw = String::from_utf8_lossy(&r.raw);
    assert!(
        !raw.contains("X-Bad") && !raw.contains("Set-Cookie"),
        "{raw}"
    );
    s.wait_log(|l| l.contains("is not a valid header line"));
}
