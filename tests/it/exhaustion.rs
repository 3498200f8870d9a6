//! Running out of file descriptors: accept fails (EMFILE), the listener backs
//! off without ending its loop, and the server answers again once there is
//! room.

use crate::support;

use std::io::Write;
use support::{Server, heavy};

#[test]
fn out_of_descriptors_the_server_backs_off_and_recovers() {
    let _heavy = heavy();
    let s = Server::with_fd_limit(48, &["--route", "POST /echo=cat", "--read-timeout", "600"]);
    // Connections that began a request take every descriptor the server
    // has (silent ones would wait in the kernel: TCP_DEFER_ACCEPT).
    let begun: Vec<_> = (0..80)
        .map(|_| {
            let mut c = s.connect();
            c.write_all(b"P").unwrap();
            c
        })
        .collect();
    s.wait_log(|l| l.contains("accept failed") && l.contains("Too many open files"));
    drop(begun);
    // The closed connections are let go (read: end of file) and the next
    // request finds descriptors for itself and for its program's pipes.
    let r = s.post("/echo", b"still here");
    assert_eq!((r.status, r.text().as_str()), (200, "still here"));
}
