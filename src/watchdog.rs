//! The watchdog (the organism's neurons): keeps the parts alive and the
//! machine out of the red. A dead handler is replaced at once by its standby
//! (spawned in advance: the stem cell), and a new standby is made; a hung
//! handler (past its job's deadline, kill grace and `HANG_SLACK`) is
//! replaced the same way, after its program is killed; a program that
//! outlives its deadline is killed even if its handler is stuck; the gate
//! and the listener are restarted in place if they ever panic; the traffic
//! light is sampled and sheds load while red. Every restart is counted and
//! logged once.
//!
//! Must never: serve a request, restart in a tight loop, or wake while
//! there is nothing to watch (an idle server with no light costs nothing).

use crate::handler::{Event, Handler, Standby};
use crate::light::{self, Color, Thresholds};
use crate::log;
use crate::state::{HandlerState, Part, State};
use crate::sys::SIGKILL;
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::thread;
use std::time::{Duration, Instant};

/// Pause before a part that panicked runs again, so a part that panics at
/// once cannot spin.
const RESTART_PAUSE: Duration = Duration::from_millis(100);
/// How often the watchdog looks while the handler is busy or the light is on.
const TICK: Duration = Duration::from_secs(1);
/// How long a program may outlive its deadline and kill grace before the
/// watchdog kills its group itself (the handler should have).
const OVERDUE_SLACK: Duration = Duration::from_secs(2);

/// Starts the handler and the thread that watches it and the light.
pub fn start_handler(handler: Arc<Handler>, light: Thresholds) -> io::Result<()> {
    // One event at a time: the next is reported once this one is handled.
    let (events, heard) = sync_channel(1);
    Standby::spawn(Arc::clone(&handler), events.clone())?.activate(handler.state.next_generation());
    let standby = Standby::spawn(Arc::clone(&handler), events.clone())?;
    let mut watchdog = Watchdog {
        handler,
        events,
        standby: Some(standby),
        light,
    };
    thread::Builder::new()
        .name("watchdog".into())
        .stack_size(64 * 1024)
        .spawn(move || watchdog.run(&heard))?;
    Ok(())
}

struct Watchdog {
    handler: Arc<Handler>,
    events: SyncSender<Event>,
    standby: Option<Standby>,
    light: Thresholds,
}

impl Watchdog {
    fn run(&mut self, heard: &Receiver<Event>) {
        loop {
            let state = &self.handler.state;
            let watching = self.light.enabled() || state.handler_state() == HandlerState::Busy;
            let event = if watching {
                heard.recv_timeout(TICK)
            } else {
                heard.recv().map_err(|_| RecvTimeoutError::Disconnected)
            };
            match event {
                Ok(Event::Died) => self.replace("died"),
                Ok(Event::Busy) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            self.look(Instant::now());
        }
    }

    fn look(&mut self, now: Instant) {
        let state = Arc::clone(&self.handler.state);
        if let Some(group) = now
            .checked_sub(OVERDUE_SLACK)
            .and_then(|t| state.running.overdue(t))
        {
            let _ = crate::sys::kill_group(group, SIGKILL);
            log::event(format_args!(
                "watchdog: program group {group} outlived its deadline; killed"
            ));
        }
        if state.handler_state() == HandlerState::Busy && state.handler_overdue(now) {
            // One program at a time, even across the replacement.
            state.running.signal(SIGKILL);
            state.set_due(None);
            self.replace("hung");
        }
        if self.light.enabled() {
            let before = state.light();
            let color = self.light.color(light::sample());
            state.set_light(color);
            if color != before {
                log::event(format_args!(
                    "watchdog: the light is {}{}",
                    color.name(),
                    if state.shedding() {
                        "; shedding load"
                    } else {
                        ""
                    }
                ));
            }
            if color == Color::Green {
                // A listener waiting for room looks again.
                state.room_freed();
            }
        }
    }

    /// The standby becomes the handler, and a new standby is made.
    fn replace(&mut self, why: &str) {
        let state = &self.handler.state;
        let generation = state.next_generation();
        let next = match self.standby.take() {
            Some(s) => s,
            None => self.spawn_standby(),
        };
        next.activate(generation);
        let n = state.count_restart(Part::Handler);
        log::event(format_args!(
            "watchdog: the handler {why}; its standby took over (restart {n})"
        ));
        self.standby = Some(self.spawn_standby());
    }

    /// A new standby, trying again (with a pause) while threads cannot be made.
    fn spawn_standby(&self) -> Standby {
        loop {
            match Standby::spawn(Arc::clone(&self.handler), self.events.clone()) {
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
