//! Nothing a program starts outlives its request, however it detaches: a
//! `setsid` grandchild leaves the program's process group, but not its
//! cgroup, which is killed when the request ends — only that program's,
//! with two handlers running two at once — and at the server's end, or by
//! the next server if it was killed.
//!
//! These need a writable cgroup v2, as the server runs in CI (root). Where
//! there is none, the server logs that it has none, and so do these tests.

use crate::support;

use std::io::Write;
use std::time::Duration;
use support::{Control, Server, TempDir, wait_for, wait_within};

/// The pids of processes whose command line is `sleep SECONDS`.
fn sleeping(seconds: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|pid: &u32| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c == format!("sleep\0{seconds}\0").as_bytes())
        })
        .collect()
}

/// Waits until no `sleep SECONDS` runs. Every caller waits on a program
/// whose cgroup was killed before what the test saw (an answer, a server's
/// start): it is gone at once, and 10 s is for a loaded machine to show it.
fn wait_gone(seconds: &str) {
    wait_within(
        Duration::from_secs(10),
        Duration::from_millis(5),
        || match sleeping(seconds)[..] {
            [] => Ok(()),
            ref left => Err(format!("sleep {seconds} outlived its request: {left:?}")),
        },
    );
}

fn wait_running(seconds: &str) {
    wait_for(Duration::from_millis(5), || match sleeping(seconds)[..] {
        [] => Err(format!("no sleep {seconds} runs")),
        _ => Ok(()),
    });
}

/// True if this server could make its cgroup for programs. As root with a
/// cgroup v2 mounted (CI), it must have: the tests cannot pass by skipping.
fn has_cgroups(s: &Server) -> bool {
    let has = !s
        .log_lines()
        .iter()
        .any(|l| l.contains("no cgroup for programs"));
    let root = is_root();
    let v2 = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .contains(" - cgroup2 ");
    assert!(
        has || !(root && v2),
        "root with a cgroup v2, yet no cgroup: {:?}",
        s.log_lines()
    );
    has
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
}

/// A program that starts `sleep SECONDS` in a session of its own and
/// answers once it has left the program's process group.
fn escaping(dir: &TempDir, seconds: &str) -> String {
    let mark = dir.path(&format!("escaped-{seconds}"));
    dir.script(
        &format!("escape-{seconds}.sh"),
        &format!(
            "#!/bin/sh
setsid sh -c 'echo $$ > {m}; exec sleep {seconds}' &
             while [ ! -s {m} ]; do sleep 0.01; done
echo hi
",
            m = mark.display()
        ),
    )
}

#[test]
fn a_setsid_grandchild_dies_with_its_request() {
    let dir = TempDir::new();
    let program = escaping(&dir, "1017");
    let s = Server::with_config_in(
        dir,
        &format!("[[route]]\npath = \"/escape\"\ncommand = [\"{program}\"]\n"),
        &[],
    );
    let r = s.get("/escape");
    assert_eq!((r.status, r.text().as_str()), (200, "hi\n"));
    if has_cgroups(&s) {
        wait_gone("1017");
    }
}

#[test]
fn with_two_handlers_only_the_finished_programs_descendants_die() {
    let dir = TempDir::new();
    let control = Control::new(&dir.0);
    let held = control.program(&dir);
    let escape = escaping(&dir, "1019");
    let config = format!(
        "handlers = 2\n\
         [[route]]\nmethod = \"POST\"\npath = \"/held\"\n\
         command = [\"sh\", \"-c\", \"setsid sleep 1018 & exec {held}\"]\n\
         [[route]]\npath = \"/escape\"\ncommand = [\"{escape}\"]\n"
    );
    let s = Server::with_config_in(dir, &config, &[]);
    if !has_cgroups(&s) {
        return;
    }
    let mut c = s.send_post("/held", "x");
    let first = control.wait_started();
    wait_running("1018");
    // The other handler runs and ends a program that leaves a grandchild.
    assert_eq!(s.get("/escape").status, 200);
    wait_gone("1019");
    assert!(
        !sleeping("1018").is_empty(),
        "the running program's grandchild was killed"
    );
    first.release();
    assert_eq!(support::read_reply(&mut c).status, 200);
    wait_gone("1018");
}

#[test]
fn a_grandchild_does_not_outlive_a_killed_server() {
    let dir = TempDir::new();
    let control = Control::new(&dir.0);
    let held = control.program(&dir);
    let config = format!(
        "[[route]]\nmethod = \"POST\"\npath = \"/held\"\n\
         command = [\"sh\", \"-c\", \"setsid sleep 1020 & exec {held}\"]\n"
    );
    let mut s = Server::with_config_in(dir, &config, &[]);
    if !has_cgroups(&s) {
        return;
    }
    let mut c = s.connect();
    c.write_all(b"POST /held HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\nx")
        .unwrap();
    let _held = control.wait_started();
    wait_running("1020");
    s.kill();
    // The next server ends what a server that died left behind.
    let next = Server::start(&[]);
    assert!(has_cgroups(&next));
    wait_gone("1020");
}

/// Where there is no cgroup, the process group alone bounds a program: a
/// hung program's background child (still in its group) dies with it.
#[test]
fn without_a_cgroup_the_process_group_dies_with_a_hung_program() {
    if !is_root() {
        return;
    }
    let dir = TempDir::new();
    let config = dir.path("fiddler.toml");
    let mark = dir.path("child.pid");
    std::fs::write(
        &config,
        format!(
            "[[route]]\npath = \"/hang\"\ntimeout = 1\ncommand = [\"sh\", \"-c\", \
             \"sleep 1021 & echo $! $$ > {}; exec sleep 1022\"]\n",
            mark.display()
        ),
    )
    .unwrap();
    let s = Server::without_cgroups(dir, &["-c", config.to_str().unwrap()]);
    s.wait_log(|l| l.contains("no cgroup for programs"));
    let mut c = s.connect();
    c.write_all(b"GET /hang HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    // The child's pid, then the program's (which becomes sleep 1022).
    let pids: Vec<u32> = wait_for(Duration::from_millis(5), || {
        let text = std::fs::read_to_string(&mark).unwrap_or_default();
        let pids: Vec<u32> = text
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        match pids.len() {
            2 => Ok(pids),
            _ => Err(format!("the program has not started: {text:?}")),
        }
    });
    let (child, program) = (pids[0], pids[1]);
    let runs = |pid: u32, seconds: &str| sleeping(seconds).contains(&pid);
    wait_for(Duration::from_millis(5), || match runs(program, "1022") {
        true => Ok(()),
        false => Err("the program never became sleep 1022".into()),
    });
    // At its deadline the program is signalled with its whole group: once
    // it is gone, the child must follow within moments.
    wait_for(Duration::from_millis(5), || match runs(program, "1022") {
        true => Err("the hung program was never stopped".into()),
        false => Ok(()),
    });
    wait_within(
        Duration::from_secs(10),
        Duration::from_millis(5),
        || match runs(child, "1021") {
            true => Err(format!(
                "the hung program's process group left its child {child}"
            )),
            false => Ok(()),
        },
    );
    assert_eq!(support::read_reply(&mut c).status, 504);
}
