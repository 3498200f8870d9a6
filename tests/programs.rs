//! Programs behind routes, and how each way of failing is answered: crash,
//! hang, missing, flooding stdout; the environment they see; no deadlock
//! when a program writes before it reads.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use support::{Server, TempDir};

#[test]
fn failing_programs_get_5xx_and_the_server_goes_on() {
    let dir = TempDir::new();
    let crash = dir.script(
        "crash.sh",
        "#!/bin/sh\necho partial\necho 'it broke' >&2\nexit 3\n",
    );
    let hang = dir.script(
        "hang.sh",
        &format!(
            "#!/bin/sh\necho $$ > {}/hang.pid\nsleep 1000 &\nsleep 1000\n",
            dir.0.display()
        ),
    );
    let flood = dir.script("flood.sh", "#!/bin/sh\nexec yes flood\n");
    let killed = dir.script("killed.sh", "#!/bin/sh\nkill -9 $$\n");
    let config = format!(
        r#"
[[route]]
path = "/crash"
command = ["{crash}"]
[[route]]
path = "/hang"
command = ["{hang}"]
timeout = 1
[[route]]
path = "/flood"
command = ["{flood}"]
max_output = 100000
[[route]]
path = "/missing"
command = ["/no/such/program"]
[[route]]
path = "/killed"
command = ["{killed}"]
[[route]]
path = "/ok"
command = ["echo", "fine"]
"#
    );
    let s = Server::with_config(&config, &[]);
    let r = s.get("/crash");
    assert_eq!(r.status, 502);
    s.wait_log(|l| l.contains("stderr: it broke"));
    s.wait_log(|l| l.contains("/crash: `") && l.contains("exited with code 3"));

    let r = s.get("/hang");
    assert_eq!(r.status, 504);
    s.wait_log(|l| l.contains("ran past its deadline"));
    // The whole group is gone, the script and its background sleep: killed
    // and reaped (the server adopts its programs' orphans).
    let pid: u32 = std::fs::read_to_string(dir.path("hang.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let in_group: Vec<u32> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| {
            std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|st| {
                let fields: Vec<&str> = st.rsplit(") ").next().unwrap().split(' ').collect();
                fields.get(2) == Some(&pid.to_string().as_str())
            })
        })
        .collect();
    assert!(
        in_group.is_empty(),
        "left of the hung program's group: {in_group:?}"
    );

    assert_eq!(s.get("/flood").status, 502);
    s.wait_log(|l| l.contains("wrote more than max_output"));
    assert_eq!(s.get("/missing").status, 502);
    s.wait_log(|l| l.contains("`/no/such/program` could not start"));
    assert_eq!(s.get("/killed").status, 502);
    s.wait_log(|l| l.contains("killed by signal 9"));
    let r = s.get("/ok");
    assert_eq!((r.status, r.text().as_str()), (200, "fine\n"));
}

#[test]
fn a_program_that_writes_before_it_reads_does_not_deadlock() {
    let dir = TempDir::new();
    // 8 MB out before reading a 1 MB body: both pipes must be served at once.
    let script = dir.script(
        "both.py",
        "#!/usr/bin/env python3\nimport sys\nsys.stdout.buffer.write(b'o' * 8_000_000)\n\
         sys.stdout.buffer.write(sys.stdin.buffer.read())\n",
    );
    let s = Server::start(&[
        "--route",
        &format!("POST /both={script}"),
        "--max-body",
        "2M",
    ]);
    let body: Vec<u8> = (0..1_000_000u32).map(|i| (i % 256) as u8).collect();
    let r = s.post("/both", &body);
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), 9_000_000);
    assert!(r.body[..8_000_000].iter().all(|&b| b == b'o'));
    assert_eq!(&r.body[8_000_000..], &body[..]);
}

#[test]
fn a_program_that_exits_before_reading_its_body() {
    let s = Server::start(&["--route", "POST /early=echo early", "--max-body", "4M"]);
    let r = s.post("/early", &vec![b'z'; 3_000_000]);
    assert_eq!((r.status, r.text().as_str()), (200, "early\n"));
}

#[test]
fn the_environment_is_clean_and_carries_the_request() {
    let config = r#"
[[route]]
method = "POST"
path = "/env/*"
command = ["env"]
env = ["ROUTE_VAR=from the route", "FIDDLER_TEST_SECRET"]
[[route]]
method = "POST"
path = "/plain"
command = ["env"]
content_type = "application/x-env"
"#;
    let s = Server::with_config(config, &[]);
    let body = b"12345";
    let r = s.raw(
        &[
            &b"POST /env/a/b?x=1&y=%20 HTTP/1.1\r\nHost: example.org:8080\r\nContent-Type: text/x\r\n\
               X-Custom: one\r\nX-Custom: two\r\nProxy: http://evil\r\nX_Under: no\r\nContent-Length: 5\r\n\r\n"[..],
            body,
        ]
        .concat(),
    );
    assert_eq!(r.status, 200);
    let env = r.text();
    let has = |line: &str| env.lines().any(|l| l == line);
    for line in [
        "REQUEST_METHOD=POST",
        "SCRIPT_NAME=/env",
        "PATH_INFO=/a/b",
        "QUERY_STRING=x=1&y=%20",
        "CONTENT_LENGTH=5",
        "CONTENT_TYPE=text/x",
        "REMOTE_ADDR=127.0.0.1",
        "SERVER_PROTOCOL=HTTP/1.1",
        "SERVER_NAME=example.org",
        "GATEWAY_INTERFACE=CGI/1.1",
        "HTTP_X_CUSTOM=one, two",
        "HTTP_HOST=example.org:8080",
        "ROUTE_VAR=from the route",
        // Passed on by name from the server's environment.
        "FIDDLER_TEST_SECRET=must-not-leak",
    ] {
        assert!(has(line), "{line} missing from\n{env}");
    }
    assert!(!env.contains("HTTP_PROXY"), "httpoxy: {env}");
    assert!(!env.contains("X_UNDER"), "{env}");
    assert!(env.lines().any(|l| l.starts_with("SERVER_PORT=")));
    // Without the route asking for it, the server's environment stays out.
    let r = s.post("/plain", b"");
    assert_eq!(r.header("Content-Type"), Some("application/x-env"));
    assert!(!r.text().contains("FIDDLER_TEST_SECRET"), "{}", r.text());
    assert!(r.text().lines().any(|l| l.starts_with("PATH=")));
    assert!(
        !r.text().contains("CONTENT_LENGTH"),
        "no body, no CONTENT_LENGTH"
    );
}

#[test]
fn arguments_are_never_given_to_a_shell() {
    let s = Server::start(&["--route", "GET /a=echo $(id) ; ls > /tmp/x"]);
    let r = s.get("/a");
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "$(id) ; ls > /tmp/x\n")
    );
}
