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

use crate::handler::{Alarm, Event, Handler, Standby};
use crate::light::{self, Color, Thresholds};
use crate::log;
use crate::state::{HandlerState, Part, State};
use crate::sys::SIGKILL;
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, sync_channel};
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

/// Starts the handlers, a standby beside each, and the thread that watches
/// them and the light.
pub fn start_handlers(handlers: Vec<Arc<Handler>>, light: Thresholds) -> io::Result<()> {
    // One event per handler at a time: the next is reported once it is handled.
    let (events, heard) = sync_channel(handlers.len());
    let alarm = Alarm::new(events);
    let mut standbys = Vec::with_capacity(handlers.len());
    for h in &handlers {
        Standby::spawn(Arc::clone(h), alarm.clone())?.activate(h.view.next_generation());
        standbys.push(Some(Standby::spawn(Arc::clone(h), alarm.clone())?));
    }
    let mut watchdog = Watchdog {
        handlers,
        alarm,
        standbys,
        light,
    };
    thread::Builder::new()
        .name("watchdog".into())
        .stack_size(64 * 1024)
        .spawn(move || watchdog.run(&heard))?;
    Ok(())
}

struct Watchdog {
    handlers: Vec<Arc<Handler>>,
    alarm: Alarm,
    /// The standby beside each handler.
    standbys: Vec<Option<Standby>>,
    light: Thresholds,
}

impl Watchdog {
    fn run(&mut self, heard: &Receiver<Event>) {
        loop {
            self.alarm.resting();
            let busy = self
                .handlers
                .iter()
                .any(|h| h.view.state() == HandlerState::Busy);
            let event = if self.light.enabled() || busy {
                self.alarm.ticking();
                heard.recv_timeout(TICK)
            } else {
                heard.recv().map_err(|_| RecvTimeoutError::Disconnected)
            };
            match event {
                Ok(Event::Died(i)) => self.replace(i, "died"),
                Ok(Event::Busy) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            self.look(Instant::now());
        }
    }

    fn look(&mut self, now: Instant) {
        for i in 0..self.handlers.len() {
            let Some(view) = self.handlers.get(i).map(|h| Arc::clone(&h.view)) else {
                continue;
            };
            if let Some(group) = now
                .checked_sub(OVERDUE_SLACK)
                .and_then(|t| view.running.overdue(t))
            {
                let _ = crate::sys::kill_group(group, SIGKILL);
                log::event(format_args!(
                    "watchdog: program group {group} outlived its deadline; killed"
                ));
            }
            if view.overdue(now) {
                // One program per handler, even across the replacement.
                view.running.signal(SIGKILL);
                view.set_due(None);
                self.replace(i, "hung");
            }
        }
        let Some(state) = self.handlers.first().map(|h| Arc::clone(&h.state)) else {
            return;
        };
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
                // How many handlers may work may have changed.
                if let Some(h) = self.handlers.first() {
                    h.inbox.wake();
                }
            }
            if color == Color::Green {
                // A listener waiting for room looks again.
                state.room_freed();
            }
        }
    }

    /// Handler `i`'s standby takes over, and a new standby is made.
    fn replace(&mut self, i: usize, why: &str) {
        let Some(handler) = self.handlers.get(i).map(Arc::clone) else {
            return;
        };
        let generation = handler.view.next_generation();
        let next = match self.standbys.get_mut(i).and_then(Option::take) {
            Some(s) => s,
            None => self.spawn_standby(&handler),
        };
        next.activate(generation);
        let n = handler.state.count_restart(Part::Handler);
        log::event(format_args!(
            "watchdog: handler {i} {why}; its standby took over (restart {n})"
        ));
        let standby = self.spawn_standby(&handler);
        if let Some(slot) = self.standbys.get_mut(i) {
            *slot = Some(standby);
        }
    }

    /// A new standby, trying again (with a pause) while threads cannot be made.
    fn spawn_standby(&self, handler: &Arc<Handler>) -> Standby {
        loop {
            match Standby::spawn(Arc::clone(handler), self.alarm.clone()) {
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
