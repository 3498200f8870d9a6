//! Warm workers: one long-running program answers request after request
//! over the framed protocol; binary bodies pass intact; a worker that hangs,
//! exits mid-answer or writes a bad frame is replaced; one that never starts
//! is not restarted in a loop; recycling after max_requests; and never two
//! requests at once to one worker, under a flood.

use crate::support;

use std::time::Duration;
use support::{Reply, Server, TempDir, heavy, wait_for};

/// A worker in Python that speaks the protocol. Its answer: a header block,
/// then its pid, the request's method, and its body. `misbehave` is Python
/// run on each request, with `n` its count, before it answers.
fn worker(dir: &TempDir, misbehave: &str) -> String {
    dir.script(
        "worker.py",
        &format!(
            r#"#!/usr/bin/env python3
import os, select, sys, time
stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
def frame():
    line = stdin.readline()
    if not line:
        sys.exit(0)
    return stdin.read(int(line))
n = 0
while True:
    env = dict(p.split(b"=", 1) for p in frame().split(b"\0") if p)
    body = frame()
    n += 1
    # Never two requests at once: nothing more may wait on stdin now.
    if select.select([stdin], [], [], 0)[0]:
        open({overlap:?}, "a").write("overlap\n")
{misbehave}
    answer = b"Content-Type: application/octet-stream\n\n%d %s " % (os.getpid(), env[b"REQUEST_METHOD"]) + body
    stdout.write(b"%d\n" % len(answer) + answer)
    stdout.flush()
"#,
            overlap = dir.path("overlap").to_str().unwrap(),
            misbehave = misbehave
                .lines()
                .map(|l| format!("    {l}\n"))
                .collect::<String>(),
        ),
    )
}

/// A server with `POST /w` served by the worker `program`, and `rest` for the route.
fn server(dir: TempDir, program: &str, rest: &str) -> Server {
    let config = format!(
        "[[route]]\nmethod = \"POST\"\npath = \"/w\"\ncommand = [\"python3\", \"{program}\"]\n\
         worker = true\n{rest}"
    );
    Server::with_config_in(dir, &config, &[])
}

/// The pid that answered, and the rest of the answer.
fn pid_and_body(r: &Reply) -> (u32, Vec<u8>) {
    assert_eq!(r.status, 200, "{}", r.text());
    let space = r.body.iter().position(|&b| b == b' ').unwrap();
    let pid = std::str::from_utf8(&r.body[..space])
        .unwrap()
        .parse()
        .unwrap();
    let method_end = space + 1 + r.body[space + 1..].iter().position(|&b| b == b' ').unwrap();
    (pid, r.body[method_end + 1..].to_vec())
}

/// Posts until the answer is not a 503 (a worker resting after a failure).
fn post_until_not_503(s: &Server, body: &[u8]) -> Reply {
    // A 503 says to come back: the rest is at most half a second here.
    wait_for(Duration::from_millis(50), || match s.post("/w", body) {
        r if r.status != 503 => Ok(r),
        _ => Err("still resting".into()),
    })
}

#[test]
fn one_worker_answers_every_request_and_bodies_pass_intact() {
    let dir = TempDir::new();
    let program = worker(&dir, "");
    let s = server(dir, &program, "");
    let all_bytes: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let mut pids = Vec::new();
    for body in [&b"one"[..], b"", &all_bytes, b"\0\n0\n"] {
        let r = s.post("/w", body);
        assert_eq!(r.header("Content-Type"), Some("application/octet-stream"));
        let (pid, echoed) = pid_and_body(&r);
        assert!(
            echoed == body,
            "a body of {} bytes came back changed",
            body.len()
        );
        pids.push(pid);
    }
    assert!(pids.windows(2).all(|w| w[0] == w[1]), "{pids:?}");
    assert_eq!(
        s.metric("fiddler_worker_starts_total{route=\"POST /w\"}"),
        1
    );
    assert_eq!(s.metric("fiddler_programs_started_total"), 4);
}

#[test]
fn a_worker_that_hangs_is_killed_and_the_next_request_gets_a_new_one() {
    let dir = TempDir::new();
    let program = worker(&dir, "if n == 3:\n    time.sleep(3600)");
    // The deadline covers the start too: generous, for a slow machine.
    let s = server(dir, &program, "timeout = 5\nkill_grace = 0\n");
    let (first, _) = pid_and_body(&s.post("/w", b"1"));
    assert_eq!(pid_and_body(&s.post("/w", b"2")).0, first);
    assert_eq!(s.post("/w", b"3").status, 504);
    let (second, body) = pid_and_body(&s.post("/w", b"4"));
    assert_ne!(second, first);
    assert_eq!(body, b"4");
    assert_eq!(
        s.metric("fiddler_worker_starts_total{route=\"POST /w\"}"),
        2
    );
    assert_eq!(
        s.metric("fiddler_program_failures_total{route=\"POST /w\",reason=\"timeout\"}"),
        1
    );
}

#[test]
fn a_worker_that_exits_mid_answer_or_writes_a_bad_frame_is_replaced() {
    for (misbehave, reason, log) in [
        (
            "if n == 2:\n    stdout.write(b'100\\npartial'); stdout.flush(); os._exit(0)",
            "exit",
            "exited with code 0",
        ),
        (
            "if n == 2:\n    stdout.write(b'hello\\n'); stdout.flush()",
            "protocol",
            "broke the worker protocol: `hello` is not a length",
        ),
    ] {
        let dir = TempDir::new();
        let program = worker(&dir, misbehave);
        let s = server(dir, &program, "");
        let (first, _) = pid_and_body(&s.post("/w", b"1"));
        assert_eq!(s.post("/w", b"2").status, 502);
        s.wait_log(|l| l.contains(log));
        // It had answered before: a new one starts at once.
        let (second, _) = pid_and_body(&s.post("/w", b"3"));
        assert_ne!(first, second);
        let failures =
            format!("fiddler_program_failures_total{{route=\"POST /w\",reason=\"{reason}\"}}");
        assert_eq!(s.metric(&failures), 1);
    }
}

/// A worker that dies before it ever answers rests before it is started
/// again: a burst of requests starts it once, not once each.
#[test]
fn a_worker_that_never_starts_is_not_restarted_in_a_loop() {
    let dir = TempDir::new();
    let program = dir.script("dies.sh", "#!/bin/sh\nexit 3\n");
    let config = format!(
        "[[route]]\nmethod = \"POST\"\npath = \"/w\"\ncommand = [\"{program}\"]\nworker = true\n"
    );
    let s = Server::with_config_in(dir, &config, &[]);
    assert_eq!(s.post("/w", b"x").status, 502);
    for _ in 0..5 {
        let r = s.post("/w", b"x");
        assert_eq!((r.status, r.header("Retry-After")), (503, Some("1")));
    }
    assert_eq!(
        s.metric("fiddler_worker_starts_total{route=\"POST /w\"}"),
        1
    );
    s.wait_log(|l| l.contains("is resting after a failure"));
    // Once rested, it is tried again (and fails again).
    assert_eq!(post_until_not_503(&s, b"x").status, 502);
    assert_eq!(
        s.metric("fiddler_worker_starts_total{route=\"POST /w\"}"),
        2
    );
}

#[test]
fn a_worker_is_recycled_after_max_requests() {
    let dir = TempDir::new();
    let program = worker(&dir, "");
    let s = server(dir, &program, "max_requests = 2\n");
    let pids: Vec<u32> = (0..5)
        .map(|i| pid_and_body(&s.post("/w", i.to_string().as_bytes())).0)
        .collect();
    assert_eq!(pids[0], pids[1]);
    assert_ne!(pids[1], pids[2]);
    assert_eq!(pids[2], pids[3]);
    assert_ne!(pids[3], pids[4]);
    assert_eq!(
        s.metric("fiddler_worker_starts_total{route=\"POST /w\"}"),
        3
    );
}

/// Many clients at once: every request gets its turn, one at a time.
#[test]
fn a_flood_reaches_the_worker_one_request_at_a_time() {
    let _heavy = heavy();
    let dir = TempDir::new();
    let program = worker(&dir, "time.sleep(0.002)");
    let s = server(dir, &program, "");
    let clients: Vec<_> = (0..40)
        .map(|i| s.send_post("/w", &format!("request {i}")))
        .collect();
    for (i, mut c) in clients.into_iter().enumerate() {
        let r = support::read_reply(&mut c);
        assert_eq!(pid_and_body(&r).1, format!("request {i}").as_bytes());
    }
    assert!(
        !s.dir.path("overlap").exists(),
        "two requests reached the worker at once"
    );
    assert_eq!(
        s.metric("fiddler_worker_starts_total{route=\"POST /w\"}"),
        1
    );
}

/// A worker that dies while idle is found dead by its next request, even if
/// another program's end reaped orphans in between: that request gets a
/// new worker.
#[test]
fn a_worker_that_died_idle_is_noticed_even_after_other_programs_ended() {
    let dir = TempDir::new();
    let program = worker(&dir, "");
    let s = server(
        dir,
        &program,
        "timeout = 30\n[[route]]\npath = \"/once\"\ncommand = [\"true\"]\n",
    );
    let (pid, _) = pid_and_body(&s.post("/w", b"1"));
    let killed = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    // Dead, not dying: SIGKILL is delivered when the kernel next runs it,
    // and a request sent before that would reach a live worker.
    wait_for(Duration::from_millis(5), || {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat)
                if !stat
                    .rsplit(')')
                    .next()
                    .unwrap()
                    .trim_start()
                    .starts_with('Z') =>
            {
                Err(format!("worker {pid} is still running"))
            }
            _ => Ok(()),
        }
    });
    // Another program runs and ends: reaping its orphans must leave the
    // dead worker to its own handler.
    assert_eq!(s.get("/once").status, 200);
    let (new, body) = pid_and_body(&s.post("/w", b"2"));
    assert_ne!(new, pid);
    assert_eq!(body, b"2");
    s.wait_log(|l| l.contains("its worker ended while idle (signal: 9"));
    assert_eq!(
        s.metric("fiddler_worker_starts_total{route=\"POST /w\"}"),
        2
    );
}

/// While a worker works, its handler waits in poll(2): the worker's stdin,
/// open but with nothing left to write, must not wake it over and over.
#[test]
fn a_handler_does_not_spin_while_its_worker_works() {
    let dir = TempDir::new();
    let program = worker(&dir, "time.sleep(1)");
    let s = server(dir, &program, "");
    pid_and_body(&s.post("/w", b"warm up"));
    let ticks = |pid: u32| -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .collect();
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    };
    let before = ticks(s.pid());
    pid_and_body(&s.post("/w", b"one second"));
    // A spinning handler burns most of that second (about 60 ticks of 100);
    // a waiting one, none worth counting. Counts of CPU time, not of time.
    let used = ticks(s.pid()) - before;
    assert!(
        used < 30,
        "the server used {used} ticks while its worker slept"
    );
}
