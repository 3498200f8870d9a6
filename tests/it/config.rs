//! Start-up: a bad config or flag is refused with its place and exit code 2;
//! --help and --version; the access log and --quiet.

use crate::support;

use std::process::{Command, Stdio};
use support::{BIN, Server, TempDir};

/// Runs the binary to its end (killed, and the test failed, past the deadline).
fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let child = Command::new(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    let Ok(out) = rx.recv_timeout(support::DEADLINE) else {
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        panic!("fiddler_crab {args:?} did not exit");
    };
    let out = out.unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_config_exits_2_naming_file_and_line() {
    let dir = TempDir::new();
    let path = dir.path("bad.toml");
    std::fs::write(
        &path,
        "queue = 4\n\n[[route]]\npath = \"/a\"\ncommand = \"not an array\"\n",
    )
    .unwrap();
    let (code, _, err) = run(&["-c", path.to_str().unwrap()]);
    assert_eq!(code, Some(2));
    assert_eq!(
        err.trim(),
        format!(
            "fiddler_crab: {}:5: expected an array of strings, found a string",
            path.display()
        )
    );
    let (code, _, err) = run(&["-c", dir.path("missing.toml").to_str().unwrap()]);
    assert_eq!(code, Some(2));
    assert!(err.contains("cannot read the config file"), "{err}");
    for (args, message) in [
        (&["--queue", "0"][..], "--queue: 0 is out of range"),
        (
            &["--on-full", "drop"][..],
            "--on-full: expected close, 503 or backlog",
        ),
        (
            &["--route", "GET nopath=cat"][..],
            "--route: path `nopath` must start with /",
        ),
        (&["--frobnicate"][..], "--frobnicate: unknown option"),
        (
            &["--listen", "300.1.1.1:80"][..],
            "--listen: `300.1.1.1:80` is not an address",
        ),
    ] {
        let (code, _, err) = run(args);
        assert_eq!(code, Some(2), "{args:?}");
        assert!(err.contains(message), "{args:?}: {err}");
    }
}

#[test]
fn check_validates_and_looks_for_each_program() {
    let dir = TempDir::new();
    let script = dir.script("ok.sh", "#!/bin/sh\necho ok\n");
    std::fs::write(dir.path("plain.txt"), "not a program\n").unwrap();
    let path = dir.path("fiddler.toml");
    let config = format!(
        r#"
[[route]]
path = "/ok"
command = ["{script}"]
[[route]]
path = "/in-path"
command = ["cat"]
[[route]]
path = "/relative"
command = ["./plain.txt"]
dir = "{dir}"
[[route]]
path = "/missing"
command = ["no-such-program-anywhere"]
[[route]]
path = "/script"
command = ["python3", "/no/such/upper.py"]
[[route]]
path = "/code"
command = ["python3", "-c", "print(1)", "/no/such/output"]
"#,
        dir = dir.0.display()
    );
    std::fs::write(&path, config).unwrap();
    let (code, out, err) = run(&["--check", "-c", path.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert_eq!(
        out.trim(),
        "fiddler_crab: config ok, 6 route(s), 3 cannot run"
    );
    assert_eq!(
        err.lines().collect::<Vec<_>>(),
        [
            "fiddler_crab: route ANY /relative: `./plain.txt` is not an executable file",
            "fiddler_crab: route ANY /missing: `no-such-program-anywhere` is not in its PATH",
            "fiddler_crab: route ANY /script: `/no/such/upper.py`, the script `python3` is to run, does not exist",
        ]
    );
    let (code, out, _) = run(&["--check", "--route", "POST /a=cat"]);
    assert_eq!(
        (code, out.trim()),
        (Some(0), "fiddler_crab: config ok, 1 route(s)")
    );
    // Quotes in a --route reach the program as they are: a warning (the
    // config is valid), at start and in --check.
    let quoted = "GET /py=python3 -c \"print(1)\"";
    let (code, _, err) = run(&["--check", "--route", quoted]);
    assert_eq!(code, Some(0));
    assert!(
        err.contains("warning: --route 'GET /py=python3 -c \"print(1)\"': quotes are passed"),
        "{err}"
    );
    let s = Server::start(&["--route", quoted]);
    s.wait_log(|l| {
        l.contains("warning: --route") && l.contains("write the route in a config file")
    });
    let (code, _, err) = run(&["--check", "--queue", "many"]);
    assert_eq!(code, Some(2), "{err}");
    // Started anyway, the server says which routes cannot run.
    let s = Server::start(&["--route", "POST /missing=no-such-program-anywhere"]);
    s.wait_log(|l| {
        l.contains("route POST /missing: `no-such-program-anywhere` is not in its PATH: its requests will get 502")
    });
}

/// Two routes for one method and path are refused, both places named; a
/// misspelt key is unknown, with the key it resembles.
#[test]
fn check_refuses_a_route_twice_and_suggests_a_misspelt_key() {
    let dir = TempDir::new();
    let path = dir.path("fiddler.toml");
    let file = path.to_str().unwrap();
    let cases = [
        (
            "[[route]]\nmethod = \"GET\"\npath = \"/x\"\ncommand = [\"true\"]\n\
             [[route]]\nmethod = \"GET\"\npath = \"/x\"\ncommand = [\"false\"]\n",
            format!("{file}:5: `GET /x` is routed twice: here and at {file}:1"),
        ),
        (
            "[[route]]\npath = \"/x\"\ncomand = [\"true\"]\n",
            format!("{file}:3: unknown route setting `comand` (did you mean `command`?)"),
        ),
    ];
    for (config, expected) in cases {
        std::fs::write(&path, config).unwrap();
        let (code, _, err) = run(&["--check", "-c", file]);
        assert_eq!(code, Some(2));
        assert!(err.contains(&expected), "{err}");
    }
}

/// At start the log says what is served: each route's URL and what it
/// runs, the admin URLs, and whether this is the demo.
#[test]
fn start_up_lines_say_what_is_served() {
    let s = Server::start(&["--route", "POST /echo=cat", "--route", "GET /x/*=echo hi"]);
    s.wait_log(|l| l.ends_with(&format!(" POST http://{}/echo -> cat", s.addr)));
    s.wait_log(|l| l.ends_with(&format!(" GET http://{}/x/* -> echo hi", s.addr)));
    let admin = s.admin.unwrap();
    // Logged after the routes and the demo line, if there were one.
    s.wait_log(|l| {
        l.contains(&format!(
            "admin on {admin} (http://{admin}/metrics, /status"
        ))
    });
    assert!(!s.log_lines().iter().any(|l| l.contains("demo mode")));
    let demo = Server::start(&[]);
    demo.wait_log(|l| l.ends_with(&format!(" POST http://{}/echo -> cat", demo.addr)));
    demo.wait_log(|l| {
        l.ends_with(&format!(
            " demo mode (no route given): GET http://{}/ lists the routes",
            demo.addr
        ))
    });
}

#[test]
fn help_and_version() {
    let (code, out, _) = run(&["--help"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("--on-full close|503|backlog"));
    assert!(out.contains("/health /ready /metrics /status"), "{out}");
    // The keys of the file, a route's among them.
    assert!(
        out.contains(" answer_memory ") && out.contains(" exit_status "),
        "{out}"
    );
    let (code, out, _) = run(&["--version"]);
    assert_eq!(
        (code, out.trim()),
        (Some(0), concat!("fiddler_crab ", env!("CARGO_PKG_VERSION")))
    );
}

#[test]
fn a_port_in_use_is_a_clear_error() {
    let s = Server::start(&[]);
    let (code, _, err) = run(&["--listen", &s.addr.to_string(), "--admin", "off"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains(&format!("cannot listen on {}", s.addr)),
        "{err}"
    );
}

#[test]
fn access_log_and_quiet() {
    let s = Server::start(&["--route", "POST /echo=cat"]);
    assert_eq!(s.post("/echo?q=1", b"abc").status, 200);
    let line = s.wait_log(|l| l.contains(" POST /echo?q=1 "));
    // time, id, peer, method, target, status, bytes, ms, queue wait, run time
    let fields: Vec<&str> = line.split(' ').collect();
    assert_eq!(fields.len(), 10, "{line}");
    assert!(
        fields[0].ends_with('Z') && fields[0].contains('T'),
        "{line}"
    );
    assert!(fields[2].starts_with("127.0.0.1:"), "{line}");
    assert_eq!(&fields[3..6], ["POST", "/echo?q=1", "200"]);
    assert!(fields[7].ends_with("ms"), "{line}");
    assert!(
        fields[8].starts_with("wait=") && fields[8].ends_with("ms"),
        "{line}"
    );
    assert!(
        fields[9].starts_with("run=") && fields[9].ends_with("ms"),
        "{line}"
    );
    let quiet = Server::start(&[
        "--route",
        "POST /echo=cat",
        "--route",
        "GET /gone=/no/such",
        "--quiet",
    ]);
    assert_eq!(quiet.post("/echo", b"abc").status, 200);
    // A later event line (logged in order) proves the log is flowing, and
    // that the access line never came.
    assert_eq!(quiet.get("/gone").status, 502);
    quiet.wait_log(|l| l.contains("could not start"));
    assert!(!quiet.log_lines().iter().any(|l| l.contains(" POST /echo ")));
}

/// A bad key is reported as the key's fault, a bad certificate as the
/// certificate's, each with the flag (or file:line) that named it.
#[cfg(feature = "https")]
#[test]
fn tls_errors_name_the_file_at_fault() {
    let tls = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tls");
    let (cert, key, other_key) = (
        format!("{tls}/one.pem"),
        format!("{tls}/one.key"),
        format!("{tls}/two.key"),
    );
    let cases = [
        (
            &cert,
            &cert,
            format!("--tls-key: {cert}: not a PEM private key"),
        ),
        (
            &key,
            &key,
            format!("--tls-cert: {key}: holds no certificate"),
        ),
        (
            &cert,
            &other_key,
            format!("--tls-key: {other_key}: does not make a TLS server with the certificate"),
        ),
    ];
    for (c, k, expected) in cases {
        let (code, _, err) = run(&["--tls-cert", c, "--tls-key", k]);
        assert_eq!(code, Some(2));
        assert!(err.contains(&expected), "{err}");
    }
}

/// Without the `https` feature, asking for TLS is a config error that says
/// how to get it.
#[cfg(not(feature = "https"))]
#[test]
fn tls_needs_the_https_feature() {
    let (code, _, err) = run(&["--tls-cert", "c.pem", "--tls-key", "k.pem"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--tls-cert: this build has no TLS"), "{err}");
    assert!(err.contains("--features https"), "{err}");
}
