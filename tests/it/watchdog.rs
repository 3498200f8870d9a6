//! The watchdog: a hung handler is replaced and its program killed, and a
//! red traffic light sheds load.

use crate::support;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;
use support::{Control, Server, TempDir, read_all, wait_for};

/// The test hook `fiddler-crab:hang` starts the held program, publishes it
/// as running and hangs the handler for ever: nothing but the watchdog can
/// end the program or serve the next request.
#[test]
fn a_hung_handler_is_replaced_and_its_program_killed() {
    let dir = TempDir::new();
    let control = Control::new(&dir.0);
    let route = format!("GET /hang=fiddler-crab:hang {}", control.program(&dir));
    let s = Server::start_in(
        dir,
        &[
            "--route",
            &route,
            "--route",
            "GET /ok=echo ok",
            "--timeout",
            "1",
        ],
    );
    let mut stuck = s.connect();
    stuck
        .write_all(b"GET /hang HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let held = control.wait_started();
    held.wait_gone();
    s.wait_log(|l| l.contains("outlived its deadline; killed"));
    s.wait_metric("fiddler_handler_restarts_total", |n| n == 1);
    s.wait_log(|l| l.contains("handler 0 hung; its standby took over"));
    assert_eq!(s.get("/ok").text(), "ok\n");
    // The new handler goes idle again once the answer is with the gate.
    s.wait_metric("fiddler_handler_state{state=\"idle\"}", |n| n == 1);
}

/// Available memory is always below a red line of 1000 GiB.
#[test]
fn a_red_light_sheds_new_connections() {
    let s = Server::with_config(
        "memory_red = \"1000G\"\n[[route]]\npath = \"/ok\"\ncommand = [\"echo\", \"ok\"]\n",
        &[],
    );
    wait_for(Duration::from_millis(5), || {
        match s.admin_get("/ready").text().as_str() {
            "shedding\n" => Ok(()),
            _ => Err("the light never turned red".into()),
        }
    });
    assert_eq!(s.metric("fiddler_light{color=\"red\"}"), 1);
    assert_eq!(s.metric("fiddler_shedding"), 1);
    let mut c = s.connect();
    c.write_all(b"GET /ok HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    assert!(read_all(&mut c).0.is_empty(), "shed unread");
    assert_eq!(s.metric("fiddler_dropped_total{reason=\"shedding\"}"), 1);
    s.wait_log(|l| l.contains("the light is red; shedding load"));
}

/// Debug builds break the listening socket on SIGUSR1 (a test hook): accept
/// fails until the listener binds a new one at the same address.
#[test]
fn a_listener_whose_socket_broke_binds_a_new_one() {
    let s = Server::start(&["--route", "GET /ok=echo ok"]);
    assert_eq!(s.get("/ok").text(), "ok\n");
    s.signal("USR1");
    s.wait_log(|l| l.contains("listener: accept kept failing") && l.contains("re-bound"));
    assert_eq!(s.get("/ok").text(), "ok\n");
    assert_eq!(s.metric("fiddler_restarts_total{part=\"listener\"}"), 1);
}

/// The test hook `fiddler-crab:stall-gate` stops the gate for ever; mail
/// then waits unread, and /health says so.
#[test]
fn a_stuck_gate_turns_health_503() {
    let s = Server::start(&["--route", "GET /stall=fiddler-crab:stall-gate"]);
    assert_eq!(s.admin_get("/health").status, 200);
    let mut stuck = s.connect();
    stuck
        .write_all(b"GET /stall HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    // Mail the stuck gate will never read (a connection that sent a byte:
    // a silent one would wait in the kernel).
    let mut waiting = s.connect();
    waiting.write_all(b"G").unwrap();
    wait_for(Duration::from_millis(50), || {
        match s.admin_get("/health").text().as_str() {
            "gate stalled\n" => Ok(()),
            _ => Err("/health never saw the stuck gate".into()),
        }
    });
    s.wait_log(|l| l.contains("the gate has not read its mail"));
    // Its mailbox (max-reading 256 + queue 64 + 512 places, one taken by
    // `waiting`, one perhaps by a handler saying it is idle) fills, and
    // what does not fit is closed and counted.
    let more: Vec<TcpStream> = (0..837)
        .map(|_| {
            let mut c = s.connect();
            c.write_all(b"G").unwrap();
            c
        })
        .collect();
    s.wait_metric("fiddler_dropped_total{reason=\"gate_behind\"}", |n| n > 0);
    drop(more);
}
