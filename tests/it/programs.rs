//! Programs behind routes, and how each way of failing is answered: crash,
//! hang, missing, flooding stdout; the environment they see; no deadlock
//! when a program writes before it reads.

use crate::support;

use std::io::Write;
use std::process::Command;
use support::{Server, TempDir, wait_for};

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
    std::fs::write(dir.path("data.txt"), "not a program\n").unwrap();
    // Executable, but no `#!`: execvp would hand it to /bin/sh; never here.
    let no_shebang = dir.script("no-shebang", "echo from a shell\n");
    let not_executable = dir.path("data.txt").display().to_string();
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
path = "/not-in-path"
command = ["no-such-program-in-path"]
[[route]]
path = "/not-executable"
command = ["{not_executable}"]
[[route]]
path = "/no-shebang"
command = ["{no_shebang}"]
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
    s.wait_log(|l| {
        l.contains("`/no/such/program` could not start: no such file (or no such interpreter")
    });
    assert_eq!(s.get("/not-in-path").status, 502);
    s.wait_log(|l| l.contains("`no-such-program-in-path` could not start: not in its PATH"));
    assert_eq!(s.get("/not-executable").status, 502);
    s.wait_log(|l| l.contains("data.txt` could not start: Permission denied"));
    assert_eq!(s.get("/no-shebang").status, 502);
    s.wait_log(|l| l.contains("no-shebang` could not start: Exec format error"));
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
fn a_route_env_overrides_path_and_the_program_is_found_in_it() {
    let dir = TempDir::new();
    dir.script("only-here", "#!/bin/sh\necho \"$PATH $SERVER_NAME\"\n");
    let config = format!(
        r#"
[[route]]
path = "/own"
command = ["only-here"]
env = ["PATH={}:/usr/bin:/bin", "SERVER_NAME=set by the route"]
"#,
        dir.0.display()
    );
    let s = Server::with_config(&config, &[]);
    let r = s.get("/own");
    assert_eq!(
        r.text(),
        format!("{}:/usr/bin:/bin set by the route\n", dir.0.display())
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

#[test]
fn a_program_that_ignores_sigterm_is_killed_after_the_grace() {
    let dir = TempDir::new();
    let stubborn = dir.script(
        "stubborn.sh",
        &format!(
            "#!/bin/sh\ntrap '' TERM\necho $$ > {}/pid\nsleep 1000 & wait\nwait\n",
            dir.0.display()
        ),
    );
    let polite = dir.script(
        "polite.sh",
        &format!(
            "#!/bin/sh\ntrap 'echo bye > {}/bye; exit 0' TERM\nsleep 1000 & wait\n",
            dir.0.display()
        ),
    );
    let s = Server::with_config(
        &format!(
            "[[route]]\npath = \"/stubborn\"\ncommand = [\"{stubborn}\"]\ntimeout = 1\nkill_grace = 1\n\
             [[route]]\npath = \"/polite\"\ncommand = [\"{polite}\"]\ntimeout = 1\n"
        ),
        &[],
    );
    assert_eq!(s.get("/stubborn").status, 504);
    let pid = std::fs::read_to_string(dir.path("pid")).unwrap();
    assert!(!std::path::Path::new(&format!("/proc/{}", pid.trim())).exists());
    // SIGTERM first: a program that cleans up on it gets to.
    assert_eq!(s.get("/polite").status, 504);
    assert_eq!(std::fs::read_to_string(dir.path("bye")).unwrap(), "bye\n");
}

#[test]
fn a_client_that_leaves_stops_its_program() {
    let dir = TempDir::new();
    let control = support::Control::new(&dir.0);
    let program = control.program(&dir);
    let s = Server::start_in(
        dir,
        &[
            "--route",
            &format!("POST /held={program}"),
            "--route",
            "GET /ok=echo ok",
        ],
    );
    let mut c = s.connect();
    c.write_all(b"POST /held HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\nx")
        .unwrap();
    let held = control.wait_started();
    drop(c);
    // The program is stopped without being released.
    held.wait_gone();
    s.wait_log(|l| l.contains("was stopped: its client left"));
    // Counted just after the log line: wait for it rather than race it.
    s.wait_metric("fiddler_dropped_total{reason=\"client_gone\"}", |n| n == 1);
    assert_eq!(s.get("/ok").text(), "ok\n");
}

#[test]
fn resource_limits_apply_to_the_program() {
    let config = r#"
[[route]]
path = "/memory"
command = ["python3", "-c", "b = bytearray(400 * 1024 * 1024)"]
memory = "200M"
[[route]]
path = "/cpu"
command = ["sh", "-c", "while :; do :; done"]
cpu = 1
[[route]]
path = "/files"
command = ["python3", "-c", "fs = [open('/dev/null') for _ in range(64)]"]
open_files = 16
[[route]]
path = "/dir"
command = ["pwd"]
dir = "/usr"
[[route]]
path = "/nice"
command = ["nice"]
nice = 7
[[route]]
path = "/user"
command = ["sh", "-c", "echo $(id -u) $(id -g) $(id -G)"]
uid = 65534
gid = 65534
[[route]]
path = "/signals"
command = ["grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"]
"#;
    let s = Server::with_config(config, &[]);
    assert_eq!(s.get("/memory").status, 502);
    s.wait_log(|l| l.contains("/memory: `python3` exited with code 1"));
    assert_eq!(s.get("/cpu").status, 504, "SIGXCPU at the CPU limit");
    s.wait_log(|l| {
        l.contains("/cpu: `sh` killed by signal 24 (SIGXCPU: over its CPU-seconds limit)")
    });
    assert_eq!(s.get("/files").status, 502);
    s.wait_log(|l| l.contains("Too many open files"));
    assert_eq!(s.get("/dir").text(), "/usr\n");
    assert_eq!(s.get("/nice").text(), "7\n");
    // As root, the ids change (and the supplementary groups are dropped);
    // otherwise the program cannot start.
    let root = Command::new("id").arg("-u").output().unwrap().stdout == b"0\n";
    let r = s.get("/user");
    if root {
        assert_eq!(r.text(), "65534 65534 65534\n");
    } else {
        assert_eq!(r.status, 502);
    }
    // Nothing of the server's signal handling is inherited: no signal
    // blocked, and none ignored but those ignored where the server was
    // started (std ignores SIGPIPE in the server, and in this test).
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let ignored = status
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:\t"))
        .unwrap();
    let sigpipe = 1 << (13 - 1);
    let ignored = u64::from_str_radix(ignored, 16).unwrap() & !sigpipe;
    assert_eq!(
        s.get("/signals").text(),
        format!("SigBlk:\t0000000000000000\nSigIgn:\t{ignored:016x}\n")
    );
}

#[test]
fn placeholders_fill_one_argument_each_whatever_they_hold() {
    let config = r#"
[[route]]
path = "/args/*"
command = ["printf", "[%s]\n", "{query.a}", "--lang={header.x-lang}", "{path}"]
[[route]]
path = "/lenient"
command = ["printf", "[%s]", "{query.a}"]
missing = "empty"
"#;
    let s = Server::with_config(config, &[]);
    let hostile = "%3B%20rm%20-rf%20%2F%20%24(id)%0A%60x%60+'q'";
    let r = s.raw(
        format!(
            "GET /args/a/../b%20c?a={hostile} HTTP/1.1\r\nHost: t\r\nX-Lang: \"fr\"; $HOME\r\n\r\n"
        )
        .as_bytes(),
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        r.text(),
        "[; rm -rf / $(id)\n`x` 'q']\n[--lang=\"fr\"; $HOME]\n[/b c]\n"
    );
    // 100 KB never reaches a program: the request line is over 8 KiB.
    let big = "x".repeat(100_000);
    let r =
        s.raw(format!("GET /args/?a={big} HTTP/1.1\r\nHost: t\r\nX-Lang: fr\r\n\r\n").as_bytes());
    assert_eq!(r.status, 414);
    // 5 KB fits in a header but not in an argument (max_arg: 4 KiB).
    let long = "y".repeat(5000);
    let r =
        s.raw(format!("GET /args/?a=1 HTTP/1.1\r\nHost: t\r\nX-Lang: {long}\r\n\r\n").as_bytes());
    assert_eq!(r.status, 400);
    s.wait_log(|l| l.contains("refused: {header.x-lang} makes an argument longer than max_arg"));
    assert_eq!(s.get("/args/x").status, 400, "no ?a= and no X-Lang");
    s.wait_log(|l| l.contains("refused: {query.a} is missing from the request"));
    assert_eq!(s.get("/lenient").text(), "[]");
    assert_eq!(s.metric("fiddler_programs_started_total"), 2);
}

#[test]
fn fifty_megabytes_of_output_pass_through() {
    let s = Server::with_config(
        "answer_memory = \"64M\"\n[[route]]\npath = \"/big\"\ncommand = [\"head\", \"-c\", \"50000000\", \"/dev/urandom\"]\nmax_output = \"50M\"\n",
        &[],
    );
    let r = s.get("/big");
    assert_eq!((r.status, r.body.len()), (200, 50_000_000));
}

#[test]
fn the_circuit_breaker_opens_cools_down_and_closes() {
    let dir = TempDir::new();
    // Crashes (killed by a signal) until the file `healthy` exists.
    let flaky = dir.script(
        "flaky.sh",
        &format!(
            "#!/bin/sh\n[ -e {}/healthy ] && {{ echo up; exit 0; }}\nkill -9 $$\n",
            dir.0.display()
        ),
    );
    let s = Server::with_config(
        &format!(
            "[[route]]\npath = \"/flaky\"\ncommand = [\"{flaky}\"]\nbreaker_failures = 2\nbreaker_cooldown = 1\n"
        ),
        &[],
    );
    let open = "fiddler_route_breaker_open{route=\"ANY /flaky\"}";
    assert_eq!(s.get("/flaky").status, 502);
    assert_eq!(s.metric(open), 0);
    assert_eq!(s.get("/flaky").status, 502);
    assert_eq!(s.metric(open), 1);
    // Open: answered at once, the program not started.
    let r = s.get("/flaky");
    assert_eq!((r.status, r.header("Retry-After")), (503, Some("1")));
    assert_eq!(s.metric("fiddler_programs_started_total"), 2);
    // After the cool-down one trial runs; it fails, so the breaker opens again.
    // The first answer that is not the breaker's 503.
    let past_the_breaker = || {
        let start = std::time::Instant::now();
        loop {
            let r = s.get("/flaky");
            if r.status != 503 || start.elapsed() > support::DEADLINE {
                return r;
            }
            // Between two looks: the cool-down is a time, with nothing to wait on.
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    };
    let trial = past_the_breaker();
    assert_eq!(trial.status, 502);
    assert_eq!(s.get("/flaky").status, 503);
    // Healthy again: the next trial succeeds and closes it.
    std::fs::write(dir.path("healthy"), "").unwrap();
    let trial = past_the_breaker();
    assert_eq!((trial.status, trial.text().as_str()), (200, "up\n"));
    assert_eq!(s.metric(open), 0);
    assert_eq!(s.get("/flaky").status, 200);
}

#[test]
fn a_program_run_as_another_user_does_not_outlive_a_killed_server() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new();
    // The program runs as nobody: it writes its pid where nobody may.
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o777)).unwrap();
    let pid_file = dir.path("pid");
    let script = format!(
        "echo $$ > {0}.tmp && mv {0}.tmp {0} && exec sleep 1000",
        pid_file.display()
    );
    let config = format!(
        "[[route]]\npath = \"/sleep\"\ncommand = [\"/bin/sh\", \"-c\", {script:?}]\nuid = 65534\ngid = 65534\n"
    );
    let mut s = Server::with_config_in(dir, &config, &[]);
    if Command::new("id").arg("-u").output().unwrap().stdout != b"0\n" {
        // Only root may change ids: the program cannot start.
        assert_eq!(s.get("/sleep").status, 502);
        return;
    }
    let mut c = s.connect();
    c.write_all(b"GET /sleep HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    // Neither a file nor another user's process offers a way to wait.
    let every = std::time::Duration::from_millis(5);
    let pid = wait_for(every, || {
        std::fs::read_to_string(&pid_file).map_err(|e| format!("no pid file: {e}"))
    });
    s.kill();
    // Changing ids clears a parent-death signal set before them: it is set
    // after. Gone, or dead and waiting for init to reap it.
    wait_for(every, || {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim()));
        match stat {
            Ok(st) if !st.rsplit(") ").next().unwrap().starts_with('Z') => {
                Err(format!("the program outlived the server: {st}"))
            }
            _ => Ok(()),
        }
    });
}

#[test]
fn a_program_does_not_outlive_a_killed_server() {
    let dir = TempDir::new();
    let control = support::Control::new(&dir.0);
    let program = control.program(&dir);
    let mut s = Server::start_in(dir, &["--route", &format!("POST /held={program}")]);
    let mut c = s.connect();
    c.write_all(b"POST /held HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\nx")
        .unwrap();
    let held = control.wait_started();
    s.kill();
    // Its program gets SIGKILL with it (parent-death signal): its end closes.
    held.wait_gone();
}

/// A descriptor the server inherited never reaches a program: programs get
/// 0, 1 and 2 and nothing else.
#[test]
fn inherited_descriptors_do_not_reach_programs() {
    let dir = TempDir::new();
    let fds = dir.script(
        "fds.sh",
        "#!/bin/sh\nif [ -e /proc/self/fd/7 ]; then echo leaked; else echo clean; fi\n",
    );
    let s = Server::with_inherited_fd(&["--route", &format!("GET /fds={fds}")]);
    let server_fd = format!("/proc/{}/fd/7", s.pid());
    assert!(
        std::path::Path::new(&server_fd).exists(),
        "the server itself holds the inherited descriptor"
    );
    let r = s.get("/fds");
    assert_eq!((r.status, r.text().as_str()), (200, "clean\n"));
}

/// A request's value that begins an argument and starts with `-` would be
/// an option of the program (`sort -o FILE` writes FILE): refused with 400
/// unless the route allows options; inside an argument it passes.
#[test]
fn a_request_value_never_becomes_an_option() {
    let dir = TempDir::new();
    let pwned = dir.path("pwned");
    let config = r#"
[[route]]
path = "/sort"
command = ["sort", "{query.k}"]
[[route]]
path = "/opt"
command = ["printf", "[%s]", "--key={query.k}"]
[[route]]
path = "/allowed"
command = ["printf", "[%s]", "{query.k}"]
allow_options = true
"#;
    let s = Server::with_config(config, &[]);
    let r = s.get(&format!("/sort?k=-o{}", pwned.display()));
    assert_eq!(r.status, 400);
    assert!(!pwned.exists(), "sort wrote the file a request named");
    s.wait_log(|l| l.contains("refused: {query.k} begins an argument with `-`"));
    assert_eq!(s.get("/opt?k=-x").text(), "[--key=-x]");
    assert_eq!(s.get("/allowed?k=-x").text(), "[-x]");
    assert_eq!(s.metric("fiddler_bans_active"), 0);
}

/// `explain` puts the reason in the body of an error the server answers;
/// `exit_status` maps a program's exit code to a status, and such an exit
/// is the program's answer, not a failure. Both are off by default.
#[test]
fn explain_and_exit_status() {
    let config = r#"
[[route]]
path = "/strict"
command = ["sh", "-c", "echo 'no name given' >&2; exit 2"]
exit_status = { 2 = 400, 3 = 422 }
breaker_failures = 1
[[route]]
path = "/crash"
command = ["sh", "-c", "echo boom >&2; exit 3"]
explain = true
[[route]]
path = "/hello"
command = ["echo", "{query.name}"]
explain = true
[[route]]
path = "/quiet"
command = ["sh", "-c", "echo boom >&2; exit 3"]
"#;
    let s = Server::with_config(&format!("explain = true\n{config}"), &[]);
    for _ in 0..2 {
        let r = s.get("/strict");
        assert_eq!(r.status, 400);
        assert_eq!(
            r.text(),
            "400 Bad Request\n`sh` exited with code 2\nstderr (its end):\nno name given\n"
        );
    }
    // No failure: the breaker (open after one) never opened.
    assert_eq!(
        s.metric("fiddler_program_failures_total{route=\"ANY /strict\",reason=\"exit\"}"),
        0
    );
    let r = s.get("/crash");
    assert_eq!(r.status, 502);
    assert_eq!(
        r.text(),
        "502 Bad Gateway\n`sh` exited with code 3\nstderr (its end):\nboom\n"
    );
    let r = s.get("/hello");
    assert_eq!(r.status, 400);
    assert_eq!(
        r.text(),
        "400 Bad Request\n{query.name} is missing from the request\n"
    );
    // `explain = true` at the top is every route's default.
    assert!(s.get("/quiet").text().contains("boom"));
    // Off by default: the status alone.
    let plain = Server::with_config(config, &[]);
    assert_eq!(plain.get("/quiet").text(), "502 Bad Gateway\n");
    assert_eq!(plain.get("/strict").text(), "400 Bad Request\n");
    // --explain turns it on for routes given on the command line too.
    let flag = Server::start(&["--explain", "--route", "GET /f=false"]);
    assert_eq!(
        flag.get("/f").text(),
        "502 Bad Gateway\n`false` exited with code 1\n"
    );
}
