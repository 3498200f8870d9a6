//! The listener: accepts connections and passes those there is room for to
//! the gate.
//!
//! Owns: the listening socket. Per connection it checks the peer against
//! `allow` and the ban list, does one atomic load (is there room?), and then
//! either hands the stream to the gate or closes it: nothing else, no read,
//! no log line, no allocation. With `--on-full
//! backlog` it holds the connection it just accepted and accepts no other
//! until a slot is freed: the kernel's backlog holds or refuses the rest.
//! Once shutdown begins (the signals thread shuts the socket down, which
//! wakes `accept`), it returns.
//! Must never: read from a socket, or spin when accept fails.

use crate::cidr::Cidr;
use crate::config::OnFull;
use crate::gate::{Inbox, ToGate};
use crate::http::response::Response;
use crate::log;
use crate::queue::Conn;
use crate::state::{Dropped, State};
use std::io::{ErrorKind, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::mpsc::Receiver;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

/// Pauses after a failed accept (EMFILE, ENFILE, ENOBUFS…): from the first
/// to the last, doubling, so a persistent failure costs almost nothing.
const BACKOFF_FIRST: Duration = Duration::from_millis(5);
const BACKOFF_LAST: Duration = Duration::from_secs(1);

pub struct Listener {
    pub socket: Arc<TcpListener>,
    pub state: Arc<State>,
    pub inbox: Inbox,
    pub on_full: OnFull,
    /// Peers that may connect (empty: all).
    pub allow: Vec<Cidr>,
    /// A token per freed slot (for `OnFull::Backlog`).
    pub room: Receiver<()>,
}

impl Listener {
    /// Accepts until shutdown begins.
    pub fn run(&self) {
        let mut canned = Canned::default();
        let mut backoff = BACKOFF_FIRST;
        loop {
            if self.state.stopping() {
                return;
            }
            let (stream, peer) = match self.socket.accept() {
                Ok(accepted) => accepted,
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::Interrupted | ErrorKind::ConnectionAborted
                    ) =>
                {
                    continue;
                }
                Err(_) if self.state.stopping() => return,
                Err(e) => {
                    if backoff == BACKOFF_FIRST {
                        log::event(format_args!("listener: accept failed: {e}; backing off"));
                    }
                    thread::sleep(backoff);
                    backoff = (backoff * 2).min(BACKOFF_LAST);
                    continue;
                }
            };
            backoff = BACKOFF_FIRST;
            let ip = peer.ip();
            if !self.allow.is_empty() && !self.allow.iter().any(|c| c.contains(ip)) {
                self.state.count_drop(Dropped::NotAllowed);
                continue;
            }
            if self.state.bans.is_banned(ip, Instant::now()) {
                self.state.count_drop(Dropped::Banned);
                continue;
            }
            if !self.state.has_room() {
                let why = if self.state.shedding() {
                    Dropped::Shedding
                } else {
                    Dropped::QueueFull
                };
                match self.on_full {
                    // Hold this one and accept no other until there is room.
                    OnFull::Backlog => self.wait_for_room(),
                    OnFull::ServiceUnavailable => {
                        let _ = (&stream).write(canned.bytes());
                        self.state.count_drop(why);
                        continue;
                    }
                    OnFull::Close => {
                        self.state.count_drop(why);
                        continue; // dropping the stream closes it
                    }
                }
            }
            let conn = Conn {
                stream,
                peer,
                accepted: Instant::now(),
            };
            // A full mailbox means the gate is behind: the connection is closed.
            self.inbox.offer(ToGate::Accepted(conn));
        }
    }

    /// Blocks until a slot is free (each freed slot sends a token), or
    /// shutdown begins.
    fn wait_for_room(&self) {
        while !self.state.has_room() && !self.state.stopping() {
            if self.room.recv().is_err() {
                thread::sleep(BACKOFF_LAST);
            }
        }
    }
}

/// The 503 for `--on-full 503`, made anew only when its `Date` second changes.
#[derive(Default)]
struct Canned {
    second: u64,
    bytes: Vec<u8>,
}

impl Canned {
    fn bytes(&mut self) -> &[u8] {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if now != self.second || self.bytes.is_empty() {
            let r = Response::unavailable(1, false);
            self.bytes = [r.head, r.body].concat();
            self.second = now;
        }
        &self.bytes
    }
}
