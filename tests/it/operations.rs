//! Operating the server: SIGTERM drains and exits 0, a second one exits at
//! once, SIGHUP reloads routes (and refuses a broken config) and reopens
//! the log file; the log as JSON; /metrics, /status and /ready tell what
//! happened.

use crate::support;

use std::io::{ErrorKind, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::{Server, TempDir, busy, parse_reply, read_all, read_reply, wait_for};

/// Runs a Python snippet with `input` on stdin; panics unless it exits 0.
fn python(code: &str, input: &[u8]) -> String {
    let mut child = Command::new("python3")
        .args(["-c", code])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "python3 -c {code} failed");
    String::from_utf8(out.stdout).unwrap()
}

/// Waits until the file at `path` holds a line that satisfies `pred` (a
/// file offers no way to wait for a write).
fn wait_file_line(path: &std::path::Path, pred: impl Fn(&str) -> bool) -> String {
    wait_for(Duration::from_millis(5), || {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        match text.lines().find(|l| pred(l)) {
            Some(line) => Ok(line.to_owned()),
            None => Err(format!("no such line in {path:?}: {text}")),
        }
    })
}

#[test]
fn sigterm_finishes_running_and_queued_requests_then_exits_0() {
    let (mut s, control, mut first, held) = busy(&[], "first");
    let mut second = s.send_post("/held", "second");
    s.wait_metric("fiddler_queue_depth", |d| d == 2);
    s.signal("TERM");
    s.wait_log(|l| l.contains("draining"));
    let ready = s.admin_get("/ready");
    assert_eq!((ready.status, ready.text().as_str()), (503, "draining\n"));
    assert_eq!(s.admin_get("/health").status, 200);
    assert_eq!(s.metric("fiddler_draining"), 1);
    // No new connection is accepted: the listening socket is shut.
    let refused = TcpStream::connect(s.addr).map(drop).unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::ConnectionRefused);
    // The running request and the queued one both get their answers.
    held.release();
    assert_eq!(read_reply(&mut first).text(), "first");
    control.wait_started().release();
    assert_eq!(read_reply(&mut second).text(), "second");
    assert_eq!(s.wait_exit(), Some(0));
}

#[test]
fn with_a_drain_delay_it_serves_on_with_ready_503_then_drains() {
    // A delay far longer than the test: it is cut short by a second SIGTERM.
    let mut s = Server::start(&["--drain-delay", "600"]);
    s.signal("TERM");
    s.wait_log(|l| l.contains("serving on for 600s (drain_delay)"));
    let ready = s.admin_get("/ready");
    assert_eq!((ready.status, ready.text().as_str()), (503, "draining\n"));
    assert_eq!(s.metric("fiddler_draining"), 1);
    assert!(
        s.admin_get("/status")
            .text()
            .contains("\"phase\":\"leaving\"")
    );
    // New connections are still accepted and served.
    let r = s.post("/echo", b"still here");
    assert_eq!((r.status, r.text().as_str()), (200, "still here"));
    s.signal("TERM");
    assert_eq!(s.wait_exit(), Some(1));

    // A short one passes, and the drain follows as without it.
    let mut s = Server::start(&["--drain-delay", "1"]);
    s.signal("TERM");
    s.wait_log(|l| l.contains("drain_delay over: draining"));
    assert_eq!(s.wait_exit(), Some(0));
}

#[test]
fn past_the_drain_timeout_what_is_held_gets_503_and_the_program_stops() {
    let (mut s, _control, mut first, held) = busy(&["--drain-timeout", "1"], "first");
    let mut second = s.send_post("/held", "second");
    s.wait_metric("fiddler_queue_depth", |d| d == 2);
    s.signal("TERM");
    // The running program is stopped at the deadline: both get 503.
    held.wait_gone();
    for c in [&mut first, &mut second] {
        let r = read_reply(c);
        assert_eq!((r.status, r.header("Retry-After")), (503, Some("1")));
    }
    assert_eq!(s.wait_exit(), Some(0));
    assert!(
        s.log_lines()
            .iter()
            .any(|l| l.contains("the drain timed out"))
    );
    // The queued one never ran, and is counted (the last log line says so:
    // /metrics is gone with the process).
    assert!(
        s.log_lines()
            .iter()
            .any(|l| l.contains("1 request(s) were turned away while draining")),
        "{:?}",
        s.log_lines()
    );
}

#[test]
fn a_second_sigterm_kills_the_program_and_exits_at_once() {
    let (mut s, _control, mut first, held) = busy(&[], "first");
    s.signal("TERM");
    s.wait_log(|l| l.contains("draining"));
    s.signal("TERM");
    assert_eq!(s.wait_exit(), Some(1));
    held.wait_gone();
    // Killed with its program: nothing, or the 502 of the killed program if
    // the gate wrote it before the process ended; never a completed answer.
    let (bytes, _) = read_all(&mut first);
    if !bytes.is_empty() {
        assert_eq!(parse_reply(bytes).status, 502);
    }
    assert!(!s.log_lines().iter().any(|l| l.contains("drained; exiting")));
}

#[test]
fn sighup_reloads_routes_keeps_their_counters_and_refuses_a_broken_config() {
    let route = |path: &str, word: &str| {
        format!(
            "[[route]]\nmethod = \"GET\"\npath = \"{path}\"\ncommand = [\"echo\", \"{word}\"]\n"
        )
    };
    let s = Server::with_config(&route("/a", "one"), &[]);
    assert_eq!(s.get("/a").text(), "one\n");
    let config = s.dir.path("fiddler.toml");
    std::fs::write(&config, route("/a", "two") + &route("/b", "bee")).unwrap();
    s.signal("HUP");
    s.wait_log(|l| l.contains("SIGHUP: 2 route(s) loaded"));
    assert_eq!(s.get("/a").text(), "two\n");
    assert_eq!(s.get("/b").text(), "bee\n");
    // The counter of GET /a went on from where it was.
    assert_eq!(
        s.metric("fiddler_requests_total{route=\"GET /a\",status=\"200\"}"),
        2
    );
    std::fs::write(&config, "queue = \"many\"\n").unwrap();
    s.signal("HUP");
    let refused = s.wait_log(|l| l.contains("the config is refused"));
    assert!(refused.contains("fiddler.toml:1:"), "{refused}");
    assert_eq!(s.get("/b").text(), "bee\n");
}

#[test]
fn the_log_file_is_reopened_on_sighup() {
    let dir = TempDir::new();
    let log = dir.path("fiddler.log");
    let rotated = dir.path("fiddler.log.1");
    let log_arg = log.to_str().unwrap().to_owned();
    let s = Server::start_in(dir, &["--route", "GET /x=echo x", "--log-file", &log_arg]);
    assert_eq!(s.get("/x?before").status, 200);
    wait_file_line(&log, |l| l.contains("GET /x?before 200"));
    std::fs::rename(&log, &rotated).unwrap();
    s.signal("HUP");
    // Reopened before the reload logged: its line is the new file's first.
    wait_file_line(&log, |l| l.contains("route(s) loaded"));
    assert_eq!(s.get("/x?after").status, 200);
    wait_file_line(&log, |l| l.contains("GET /x?after 200"));
    assert!(
        !std::fs::read_to_string(&rotated)
            .unwrap()
            .contains("/x?after")
    );
}

#[test]
fn json_log_lines_parse_and_carry_the_timings() {
    let s = Server::start(&["--route", "POST /echo=cat", "--log-format", "json"]);
    assert_eq!(s.post("/echo?a=\"b\"", b"hi").status, 200);
    s.wait_log(|l| l.contains("\"status\":200"));
    let lines: Vec<String> = s
        .log_lines()
        .into_iter()
        .filter(|l| l.starts_with('{'))
        .collect();
    let out = python(
        "import json, sys\n\
         rows = [json.loads(l) for l in sys.stdin]\n\
         a = [r for r in rows if 'status' in r][0]\n\
         print(a['method'], a['target'], a['status'], a['wait_ms'] >= 0, a['run_ms'] >= 0)\n\
         print(any(r.get('event', '').startswith('listening on') for r in rows))",
        lines.join("\n").as_bytes(),
    );
    assert_eq!(out, "POST /echo?a=\"b\" 200 True True\nTrue\n");
}

#[test]
fn metrics_and_status_count_what_happened() {
    let s = Server::start(&["--route", "POST /echo=cat", "--route", "GET /fail=false"]);
    for _ in 0..5 {
        assert_eq!(s.post("/echo", b"x").status, 200);
    }
    assert_eq!(s.get("/fail").status, 502);
    assert_eq!(s.get("/nowhere").status, 404);
    let m = |sample: &str| s.metric(sample);
    assert_eq!(
        m("fiddler_requests_total{route=\"POST /echo\",status=\"200\"}"),
        5
    );
    assert_eq!(
        m("fiddler_requests_total{route=\"GET /fail\",status=\"502\"}"),
        1
    );
    assert_eq!(m("fiddler_requests_total{route=\"-\",status=\"404\"}"), 1);
    assert_eq!(m("fiddler_program_seconds_count{route=\"POST /echo\"}"), 5);
    assert_eq!(
        m("fiddler_program_seconds_bucket{route=\"POST /echo\",le=\"+Inf\"}"),
        5
    );
    assert_eq!(
        m("fiddler_program_failures_total{route=\"GET /fail\",reason=\"exit\"}"),
        1
    );
    assert_eq!(
        m("fiddler_program_failures_total{route=\"POST /echo\",reason=\"exit\"}"),
        0
    );
    assert_eq!(m("fiddler_programs_started_total"), 6);
    s.wait_metric("fiddler_handler_state{state=\"idle\"}", |n| n == 1);
    let status = s.admin_get("/status");
    assert_eq!(status.header("Content-Type"), Some("application/json"));
    let out = python(
        "import json, sys\n\
         d = json.load(sys.stdin)\n\
         print(d['phase'], d['ready'], d['handlers']['idle'], d['programs_started'],\n\
               d['queue']['depth'], d['unrouted_answers'],\n\
               [(r['method'], r['path'], r['answers']) for r in d['routes']])",
        &status.body,
    );
    assert_eq!(
        out,
        "serving True 1 6 0 1 [('POST', '/echo', 5), ('GET', '/fail', 1)]\n"
    );
}

/// /metrics of a server that answered 200, 502 and 404: every family of a
/// server without warm workers has samples.
fn metrics_with_samples() -> String {
    let s = Server::start(&["--route", "POST /echo=cat", "--route", "GET /fail=false"]);
    assert_eq!(s.post("/echo", b"x").status, 200);
    assert_eq!(s.get("/fail").status, 502);
    assert_eq!(s.get("/nowhere").status, 404);
    s.admin_get("/metrics").text()
}

/// /metrics as Prometheus's own parser (Python's `prometheus_client`, the
/// Debian package, as scrapers and agents use it) reads it: every family
/// typed and holding its samples, none split into untyped pieces.
#[test]
fn metrics_parse_as_prometheus_text() {
    let text = metrics_with_samples().into_bytes();
    let mut parser = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import sys\n\
             from prometheus_client.parser import text_string_to_metric_families as parse\n\
             for f in parse(sys.stdin.read()):\n\
             \x20   print(f.type, len(f.samples), f.name)",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    parser.stdin.take().unwrap().write_all(&text).unwrap();
    let out = parser.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the parser failed (Debian: apt-get install python3-prometheus-client): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let families = String::from_utf8(out.stdout).unwrap();
    let types = text
        .split(|&b| b == b'\n')
        .filter(|l| l.starts_with(b"# TYPE "))
        .count();
    assert_eq!(families.lines().count(), types, "{families}");
    for family in families.lines() {
        let mut words = family.split(' ');
        let (kind, samples) = (words.next().unwrap(), words.next().unwrap());
        assert!(
            kind != "unknown" && samples != "0",
            "a family without its type or samples: {family}\n{families}"
        );
    }
    // Two routes, each with its buckets (to +Inf), _sum and _count.
    assert!(
        families.contains("histogram 32 fiddler_program_seconds\n"),
        "{families}"
    );
}

/// The Grafana dashboard in deploy/ asks only for metrics /metrics emits.
#[test]
fn the_grafana_dashboard_asks_for_metrics_that_exist() {
    let metrics = metrics_with_samples();
    let emitted: Vec<&str> = metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/grafana/fiddler_crab.json"
    );
    let dashboard = std::fs::read_to_string(path).unwrap();
    let queries: Vec<&str> = dashboard
        .lines()
        .filter(|l| l.contains("\"expr\":") || l.contains("label_values("))
        .collect();
    assert!(queries.len() >= 10, "{queries:?}");
    for query in queries {
        for name in query.split("fiddler_").skip(1) {
            let mut rest = name.split(|c: char| !c.is_ascii_alphanumeric() && c != '_');
            let name = format!("fiddler_{}", rest.next().unwrap());
            assert!(
                emitted.contains(&name.as_str()),
                "{name} is not in /metrics: {query}"
            );
        }
    }
}

#[test]
fn ready_turns_503_while_the_queue_is_full_and_back() {
    let (s, _control, mut first, held) = busy(&["--queue", "1"], "a");
    let r = s.admin_get("/ready");
    assert_eq!((r.status, r.text().as_str()), (503, "full\n"));
    held.release();
    assert_eq!(read_reply(&mut first).text(), "a");
    wait_for(Duration::from_millis(5), || {
        match s.admin_get("/ready").status {
            200 => Ok(()),
            _ => Err("/ready stayed 503".into()),
        }
    });
}

#[test]
fn slow_admin_clients_do_not_hold_a_probe_back() {
    let s = Server::start(&[]);
    let admin = s.admin.unwrap();
    // More connections than the admin port keeps waiting, silent or
    // trickling a byte at a time: none of them may delay a probe.
    let silent: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(admin).unwrap())
        .collect();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let trickle = {
        let done = std::sync::Arc::clone(&done);
        let mut c = TcpStream::connect(admin).unwrap();
        std::thread::spawn(move || {
            // The pace of a slowloris, not a wait for anything: it keeps
            // going until the probe has its answer.
            for &b in b"GET /ready HTTP/1.1\r\nX-Slow: "
                .iter()
                .chain(std::iter::repeat(&b'a'))
            {
                if done.load(std::sync::atomic::Ordering::Relaxed) || c.write_all(&[b]).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    let r = s.admin_get("/ready");
    assert_eq!((r.status, r.text().as_str()), (200, "ready\n"));
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    trickle.join().unwrap();
    drop(silent);
}

/// The admin port answers only `admin_allow`: anyone else is closed at
/// accept, unread, and the routes, counters and bans stay unseen.
#[test]
fn the_admin_port_answers_only_admin_allow() {
    let open = Server::with_config("admin_allow = [\"127.0.0.0/8\"]\n", &[]);
    assert_eq!(open.admin_get("/health").status, 200);
    let closed = Server::with_config("admin_allow = [\"10.0.0.0/8\"]\n", &[]);
    let mut c = std::net::TcpStream::connect(closed.admin.unwrap()).unwrap();
    c.set_read_timeout(Some(support::DEADLINE)).unwrap();
    let _ = c.write_all(b"GET /status HTTP/1.1\r\nHost: t\r\n\r\n");
    let (got, _) = support::read_all(&mut c);
    assert!(
        got.is_empty(),
        "a peer outside admin_allow got {:?}",
        String::from_utf8_lossy(&got)
    );
    // The server itself goes on.
    assert_eq!(closed.get("/").status, 200);
}

/// The admin port, too, evicts its oldest waiting connection, never the
/// newest: a probe halfway through its request keeps its place.
#[test]
fn the_admin_port_evicts_its_oldest_waiting_connection() {
    let s = Server::start(&[]);
    let admin = s.admin.unwrap();
    // The admin port keeps 16 waiting; these are the oldest.
    let silent: Vec<TcpStream> = (0..16)
        .map(|_| TcpStream::connect(admin).unwrap())
        .collect();
    let mut probe = TcpStream::connect(admin).unwrap();
    probe.set_read_timeout(Some(support::DEADLINE)).unwrap();
    probe.write_all(b"GET /ready HTTP/1.1\r\n").unwrap();
    let newer: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(admin).unwrap()).collect();
    probe.write_all(b"Host: t\r\n\r\n").unwrap();
    let r = read_reply(&mut probe);
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "ready\n"),
        "the admin port evicted a newer connection than the oldest"
    );
    drop((silent, newer));
}

/// A request that completes while the server drains is turned away with 503
/// and counted as `draining`.
#[test]
fn a_request_arriving_during_the_drain_is_refused_and_counted() {
    let (s, _control, mut running, held) = busy(&[], "x");
    let mut late = s.connect();
    late.write_all(b"GET /ok HTTP/1.1\r\n").unwrap();
    s.wait_metric("fiddler_connections{state=\"reading\"}", |n| n == 1);
    s.signal("TERM");
    s.wait_log(|l| l.contains("draining"));
    late.write_all(b"Host: t\r\n\r\n").unwrap();
    let r = read_reply(&mut late);
    assert_eq!(r.status, 503);
    assert_eq!(s.metric("fiddler_dropped_total{reason=\"draining\"}"), 1);
    held.release();
    assert_eq!(read_reply(&mut running).status, 200);
}
