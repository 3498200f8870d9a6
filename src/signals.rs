//! Signals (the organism's toxin). SIGTERM or SIGINT: stop accepting at once
//! (or, with a `drain_delay`, first serve on that long with /ready 503) and
//! drain — held requests finish within `drain_timeout`, then the process
//! exits 0; a second one kills the running program and exits at once.
//! SIGHUP: reopen the log file and reload the routes from the config.
//!
//! Owns: the signals thread (the read end of the signal pipe, the command
//! line to reload from) and the drain that `main` runs once the listener has
//! stopped. Must never: do more in the signal handler than write a byte
//! (that is `sys::forward_signals`), or install routes from a config that
//! did not load.

use crate::config::{self, Command};
use crate::gate::{Inbox, ToGate};
use crate::listener::Door;
use crate::log;
use crate::route::Routes;
use crate::state::{Dropped, Phase, State};
use crate::sys::{self, POLLIN, PollFd, SIGHUP, SIGINT, SIGKILL, SIGTERM, SIGUSR1};
use std::ffi::OsString;
use std::io::{self, ErrorKind, PipeReader, Read};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::time::{Duration, Instant};

/// After the drain expired: how long the last answers (503s) have to go out.
const LAST_WORDS: Duration = Duration::from_secs(2);

/// What the signals thread acts on.
pub struct Signals {
    pub pipe: PipeReader,
    pub state: Arc<State>,
    /// Shut down on the first SIGTERM, so nothing new is accepted.
    pub door: Arc<Door>,
    pub inbox: Inbox,
    /// New routes for the admin endpoint (the gate gets them by its inbox).
    pub admin: Option<SyncSender<Arc<Routes>>>,
    /// The command line, read again on SIGHUP.
    pub args: Vec<OsString>,
    /// The routes in force, whose counters a reload carries over.
    pub routes: Arc<Routes>,
    /// After SIGTERM, how long to serve on before the drain begins.
    pub drain_delay: Duration,
}

/// Makes SIGTERM, SIGINT and SIGHUP write to a pipe (instead of ending the
/// process) before any other thread starts; returns its read end. Debug
/// builds (the tests') also catch SIGUSR1: it breaks the listening socket,
/// which only the re-bind can mend.
pub fn catch() -> io::Result<PipeReader> {
    let test_hook: &[i32] = if cfg!(debug_assertions) {
        &[SIGUSR1]
    } else {
        &[]
    };
    sys::forward_signals(&[&[SIGTERM, SIGINT, SIGHUP], test_hook].concat())
}

impl Signals {
    /// Reads signals until the pipe fails (it never closes: its write end
    /// lives as long as the process); between two, begins the drain once a
    /// `drain_delay` has passed.
    pub fn run(mut self) {
        let mut byte = [0u8; 1];
        let mut drain_at = None;
        loop {
            let now = Instant::now();
            if drain_at.is_some_and(|at| at <= now) {
                drain_at = None;
                self.drain(format_args!("drain_delay over"));
            }
            let mut fds = [PollFd::new(self.pipe.as_raw_fd(), POLLIN)];
            let wait = drain_at.map(|at: Instant| at.saturating_duration_since(now));
            if sys::poll(&mut fds, wait).is_ok_and(|n| n == 0) {
                continue;
            }
            match self.pipe.read(&mut byte) {
                Ok(1) => {
                    let [sig] = byte;
                    if let Some(delay) = self.on(i32::from(sig)) {
                        drain_at = Some(Instant::now() + delay);
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Ok(_) | Err(_) => return,
            }
        }
    }

    /// Acts on one signal; returns the delay after which to begin the drain,
    /// if it is not begun now.
    fn on(&mut self, sig: i32) -> Option<Duration> {
        match sig {
            SIGTERM | SIGINT if self.state.advance(Phase::Leaving) => {
                if self.drain_delay.is_zero() {
                    self.drain(format_args!("signal {sig}"));
                    return None;
                }
                log::event(format_args!(
                    "signal {sig}: /ready is 503; serving on for {}s (drain_delay), then draining",
                    self.drain_delay.as_secs()
                ));
                return Some(self.drain_delay);
            }
            SIGTERM | SIGINT => {
                // A second one. Before anything is killed: a drain that then ends must
                // not let `main` exit 0 first.
                self.state.advance(Phase::Killed);
                self.state.signal_programs(SIGKILL);
                crate::cgroup::end_all();
                log::event(format_args!(
                    "signal {sig} again: exiting at once, {} request(s) unfinished",
                    self.state.held()
                ));
                log::flush(LAST_WORDS);
                std::process::exit(1);
            }
            SIGHUP => {
                log::reopen();
                self.reload();
            }
            SIGUSR1 if cfg!(debug_assertions) => {
                let _ = self.door.shut();
            }
            _ => {}
        }
        None
    }

    /// Begins the drain: the listening socket is shut (new connections are
    /// refused), and what is held is finished.
    fn drain(&self, why: std::fmt::Arguments) {
        if !self.state.advance(Phase::Draining) {
            return; // a second signal came first
        }
        if let Err(e) = self.door.shut() {
            log::event(format_args!("cannot stop listening: {e}"));
        }
        log::event(format_args!(
            "{why}: draining; {} request(s) held; no new connection",
            self.state.held()
        ));
        // A listener waiting for room (`--on-full backlog`) and the gate
        // both look at the phase again.
        self.state.room_freed();
        self.inbox.wake();
    }

    /// Reads the config again and hands its routes to the gate and the
    /// admin endpoint; held requests keep the routes they came with.
    fn reload(&mut self) {
        let mut certificate = "";
        let routes = match config::from_args(self.args.iter().cloned()) {
            Ok(Command::Run(c)) => {
                if let Some(tls) = c.tls {
                    self.inbox.send(ToGate::Tls(tls));
                    certificate = " and the TLS certificate";
                }
                Arc::new(c.routes.carry_over(&self.routes))
            }
            Ok(_) => return,
            Err(e) => {
                log::event(format_args!(
                    "SIGHUP: the config is refused, the routes in force stay: {e}"
                ));
                return;
            }
        };
        self.inbox.send(ToGate::Routes(Arc::clone(&routes)));
        if let Some(admin) = &self.admin {
            let _ = admin.try_send(Arc::clone(&routes));
        }
        log::event(format_args!(
            "SIGHUP: {} route(s){certificate} loaded (other settings apply at the next start)",
            routes.list.len()
        ));
        self.routes = routes;
    }
}

/// Runs on the main thread once the listener has stopped: waits until the
/// gate says everything is drained, or until `timeout`; then what is still
/// held is answered 503, the running program is stopped, and after a short
/// while for the last answers the caller exits.
pub fn drain(state: &State, woken: &Receiver<()>, inbox: &Inbox, timeout: Duration) {
    drain_or_expire(state, woken, inbox, timeout);
    let turned = state.dropped(Dropped::Draining);
    if turned > 0 {
        log::event(format_args!(
            "{turned} request(s) were turned away while draining (503)"
        ));
    }
    // Killed by a second signal: the signals thread ends the process, with
    // its own exit code.
    while state.phase() == Phase::Killed {
        std::thread::park();
    }
}

fn drain_or_expire(state: &State, woken: &Receiver<()>, inbox: &Inbox, timeout: Duration) {
    if wait_drained(state, woken, inbox, Instant::now() + timeout) {
        if state.phase() == Phase::Drained {
            log::event(format_args!("drained; exiting"));
        }
        return;
    }
    state.advance(Phase::Expired);
    log::event(format_args!(
        "the drain timed out after {}s: {} request(s) held get 503",
        timeout.as_secs(),
        state.held()
    ));
    state.signal_programs(SIGTERM);
    inbox.wake();
    if !wait_drained(state, woken, inbox, Instant::now() + LAST_WORDS) {
        state.signal_programs(SIGKILL);
        log::event(format_args!(
            "exiting with {} request(s) unanswered",
            state.held()
        ));
    }
}

/// Waits for `Phase::Drained` until `deadline`. Each freed slot wakes the
/// gate to look again; the gate's own token says it is done.
fn wait_drained(state: &State, woken: &Receiver<()>, inbox: &Inbox, deadline: Instant) -> bool {
    loop {
        if state.phase() >= Phase::Drained {
            return true;
        }
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            return false;
        };
        match woken.recv_timeout(left) {
            Ok(()) => inbox.wake(),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return false,
        }
    }
}
