//! The watchdog: keeps the parts alive. A dead handler is replaced at once by
//! its standby (spawned in advance), and a new standby is made; the gate and
//! the listener are restarted in place if they ever panic. Every restart is
//! counted and logged once.
//!
//! Must never: serve a request, or restart in a tight loop.

use crate::handler::{Handler, Standby};
use crate::log;
use crate::state::{Part, State};
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread;
use std::time::Duration;

/// Pause before a part that panicked runs again, so a part that panics at
/// once cannot spin.
const RESTART_PAUSE: Duration = Duration::from_millis(100);

/// Starts the handler and the thread that watches it.
pub fn start_handler(handler: Arc<Handler>) -> io::Result<()> {
    // One death at a time: the next is reported once this one is handled.
    let (deaths, died) = sync_channel(1);
    Standby::spawn(Arc::clone(&handler), deaths.clone())?.activate();
    let standby = Standby::spawn(Arc::clone(&handler), deaths.clone())?;
    thread::Builder::new()
        .name("watchdog".into())
        .stack_size(64 * 1024)
        .spawn(move || watch(&handler, &deaths, &died, standby))?;
    Ok(())
}

fn watch(handler: &Arc<Handler>, deaths: &SyncSender<()>, died: &Receiver<()>, standby: Standby) {
    let mut standby = Some(standby);
    while died.recv().is_ok() {
        let next = standby
            .take()
            .unwrap_or_else(|| spawn_standby(handler, deaths));
        next.activate();
        let n = handler.state.count_restart(Part::Handler);
        log::event(format_args!(
            "watchdog: the handler died; its standby took over (restart {n})"
        ));
        standby = Some(spawn_standby(handler, deaths));
    }
}

/// A new standby, trying again (with a pause) while threads cannot be made.
fn spawn_standby(handler: &Arc<Handler>, deaths: &SyncSender<()>) -> Standby {
    loop {
        match Standby::spawn(Arc::clone(handler), deaths.clone()) {
            Ok(s) => return s,
            Err(e) => {
                log::event(format_args!(
                    "watchdog: cannot start a standby handler: {e}"
                ));
                thread::sleep(RESTART_PAUSE * 10);
            }
        }
    }
}

/// Runs `body` until it returns; if it panics, counts a restart of `part`
/// and runs it again.
pub fn restarting(part: Part, state: &State, mut body: impl FnMut()) {
    loop {
        match catch_unwind(AssertUnwindSafe(&mut body)) {
            Ok(()) => return,
            Err(_) => {
                let n = state.count_restart(part);
                log::event(format_args!(
                    "watchdog: the {} panicked; restarted (restart {n})",
                    part.name()
                ));
                thread::sleep(RESTART_PAUSE);
            }
        }
    }
}
