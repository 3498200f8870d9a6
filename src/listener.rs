//! The listener: accepts connections and passes those there is room for to
//! the gate.
//!
//! Owns: the listening socket. Per connection it checks the peer against
//! `allow` and the ban list, does one atomic load (is there room?), and then
//! either hands the stream to the gate or closes it: nothing else, no read,
//! no log line, no allocation. With `--on-full 503` a stream without room
//! goes to the gate too, which answers 503 without reading. With `--on-full
//! backlog` it holds the connection it just accepted and accepts no other
//! until a slot is freed: the kernel's backlog holds or refuses the rest.
//! Once shutdown begins (the signals thread shuts the socket down, which
//! wakes `accept`), it returns. If accept keeps failing because the socket
//! itself broke (not for want of descriptors or memory), it binds a new one
//! at the same address.
//! Must never: read from a socket, or spin when accept fails.

use crate::cidr::Cidr;
use crate::config::OnFull;
use crate::gate::{Inbox, ToGate};
use crate::log;
use crate::state::{Dropped, Part, State};
use crate::sys;
use crate::transport::Conn;
use crate::transport::Transport;
use std::io::{self, ErrorKind};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

/// Pauses after a failed accept (EMFILE, ENFILE, ENOBUFS…): from the first
/// to the last, doubling, so a persistent failure costs almost nothing.
const BACKOFF_FIRST: Duration = Duration::from_millis(5);
const BACKOFF_LAST: Duration = Duration::from_secs(1);
/// Failures in a row, with the socket itself broken, before it is re-bound.
const BROKEN_STREAK: u32 = 3;

/// The listening socket, which the listener may replace (re-bind) and the
/// signals thread shuts down. The lock is taken only for that, never per
/// connection: the listener accepts on its own handle.
pub struct Door {
    addr: SocketAddr,
    socket: Mutex<Arc<TcpListener>>,
    /// Seconds of TCP_DEFER_ACCEPT.
    hold: u32,
}

impl Door {
    /// The door of `socket`; the kernel holds a new connection until its
    /// first bytes or its close, for up to about `hold` (TCP_DEFER_ACCEPT).
    pub fn new(socket: TcpListener, hold: Duration) -> io::Result<Door> {
        let hold = u32::try_from(hold.as_secs().max(1)).unwrap_or(u32::MAX);
        sys::tune_listener(&socket, hold)?;
        Ok(Door {
            addr: socket.local_addr()?,
            socket: Mutex::new(Arc::new(socket)),
            hold,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn current(&self) -> Arc<TcpListener> {
        Arc::clone(&self.socket.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Shuts the current socket down: `accept` wakes with an error, and the
    /// kernel refuses new connections.
    pub fn shut(&self) -> io::Result<()> {
        sys::shutdown(&*self.current())
    }

    /// Binds a new socket at the same address in place of the current one.
    fn rebind(&self) -> io::Result<Arc<TcpListener>> {
        let mut slot = self.socket.lock().unwrap_or_else(PoisonError::into_inner);
        // The old one stops listening first, so the address is free.
        let _ = sys::shutdown(&**slot);
        let new = TcpListener::bind(self.addr)?;
        sys::tune_listener(&new, self.hold)?;
        let new = Arc::new(new);
        *slot = Arc::clone(&new);
        Ok(new)
    }
}

/// True if `e` says the socket itself is broken (not listening, closed, not
/// a socket), rather than out of descriptors or memory for a while.
fn broken(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(sys::EBADF | sys::EINVAL | sys::ENOTSOCK)
    )
}

pub struct Listener {
    pub door: Arc<Door>,
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
        let mut backoff = BACKOFF_FIRST;
        let mut socket = self.door.current();
        let mut broken_streak = 0;
        loop {
            if self.state.stopping() {
                return;
            }
            let (stream, peer) = match socket.accept() {
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
                Err(e) if broken(&e) && broken_streak + 1 >= BROKEN_STREAK => {
                    broken_streak = 0;
                    match self.door.rebind() {
                        Ok(new) => {
                            socket = new;
                            let n = self.state.count_restart(Part::Listener);
                            log::event(format_args!(
                                "listener: accept kept failing ({e}); re-bound {} (restart {n})",
                                self.door.addr()
                            ));
                        }
                        Err(bind) => {
                            log::event(format_args!(
                                "listener: accept kept failing ({e}); cannot re-bind: {bind}"
                            ));
                            thread::sleep(BACKOFF_LAST);
                        }
                    }
                    continue;
                }
                Err(e) => {
                    broken_streak += u32::from(broken(&e));
                    if backoff == BACKOFF_FIRST {
                        log::event(format_args!("listener: accept failed: {e}; backing off"));
                    }
                    thread::sleep(backoff);
                    backoff = (backoff * 2).min(BACKOFF_LAST);
                    continue;
                }
            };
            backoff = BACKOFF_FIRST;
            broken_streak = 0;
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
                        // The gate writes the 503 (and drains what comes after).
                        // (Counted once: a full mailbox closes it unanswered.)
                        self.state.count_drop(why);
                        self.inbox.offer(ToGate::Refused(conn(stream, peer)));
                        continue;
                    }
                    OnFull::Close => {
                        self.state.count_drop(why);
                        continue; // dropping the stream closes it
                    }
                }
            }
            // Held by the kernel until it sent its first bytes or closed: one
            // that closed unread (a port scan, a TCP health check) ends here,
            // with nothing to hand on.
            if sys::closed_unread(&stream) {
                continue;
            }
            // A full mailbox means the gate is behind: the connection is closed.
            if !self.inbox.offer(ToGate::Accepted(conn(stream, peer))) {
                self.state.count_drop(Dropped::GateBehind);
            }
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

/// A connection just accepted, as the gate takes it.
fn conn(stream: TcpStream, peer: SocketAddr) -> Conn {
    Conn {
        stream,
        transport: Transport::Plain,
        peer,
        accepted: Instant::now(),
        reusable: false,
        early: Vec::new(),
        watched: false,
    }
}
