//! Warm workers: a route's program, started on the route's first request
//! (or with its handler: `start = "boot"`) and kept running, answers one
//! request at a time. A framed worker (`worker = true`) talks over its stdin
//! and stdout:
//!
//! ```text
//! a request, to the worker:   LEN "\n" ENV   LEN "\n" BODY
//! an answer, from the worker: LEN "\n" ANSWER
//! streamed (`stream = true`): LEN "\n" HEAD   (LEN "\n" PIECE)…   "end " ID "\n"
//! a cancel, to the worker:    "cancel " ID "\n"
//! ```
//!
//! LEN is a byte count in decimal. ENV is the request's CGI meta-variables
//! as `NAME=VALUE` pairs, each ended by a NUL byte (with
//! `FIDDLER_REQUEST_ID` on routes that stream or cancel). ANSWER (and HEAD
//! then the pieces) is what a CGI program writes: a header block
//! (`Status:`, `Content-Type:`, other fields, or none at all), an empty
//! line, the body. Bytes pass untouched. An HTTP worker (`worker = "http"`)
//! serves HTTP on a loopback port (`upstream.rs` talks to it), or is a
//! server someone else runs (`upstream`), ready once its probe answers 200.
//!
//! Owns: one handler's workers (one per worker route), their starts and
//! restarts (at the next request, or at once for a boot worker; but a
//! worker that failed before it ever answered is not started again before a
//! pause that doubles from 0.5 s to 30 s), their recycling (`max_requests`,
//! `max_memory`). The frames' format is `frames.rs`'s; a route's worker
//! settings (`Worker`, `Speaks`, `Start`, `Recycle`) are `route.rs`'s.
//! Must never: give a worker two requests at once (a handler is one thread),
//! keep a worker that failed a request (but one that ended a cancelled
//! request in time, or an HTTP worker whose client left, whose answer passed
//! `max_output`, or that timed out but still answers its probe), restart one in a
//! tight loop, or let one outlive its handler (its group is killed when
//! dropped, and dies with the thread that started it: PDEATHSIG).

use crate::program::{self, Ends, Failure, Group, Output, Run, SCRATCH, Sink, Stdio};
use crate::route::{Recycle, Route, Speaks, Start};
use crate::state::Running;
use crate::stream::Stream;
use crate::template;
use crate::upstream::{self, Forward, Reply};
use std::ffi::OsString;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The pause before a worker that failed may start again, doubled per
/// failure in a row up to the last.
const BACKOFF_FIRST: Duration = Duration::from_millis(500);
const BACKOFF_LAST: Duration = Duration::from_secs(30);

/// One worker route's worker, as a handler keeps it.
struct Slot<'a> {
    route: Arc<Route>,
    /// The worker's process (none for an `upstream` someone else runs).
    group: Option<Group<'a>>,
    /// An HTTP worker, once it is ready: where it listens.
    at: Option<SocketAddr>,
    /// Answers from the running worker.
    served: u64,
    /// Workers in a row that failed before they ever answered.
    failures: u32,
    /// After a failure: no start before this.
    rest_until: Option<Instant>,
}

/// A handler's workers, at most one per worker route.
pub struct Workers<'a> {
    /// Where the handler publishes its running program.
    running: &'a Running,
    slots: Vec<Slot<'a>>,
    scratch: Vec<u8>,
}

impl<'a> Workers<'a> {
    pub fn new(running: &'a Running) -> Workers<'a> {
        Workers {
            running,
            slots: Vec::new(),
            scratch: vec![0; SCRATCH],
        }
    }

    /// Serves request `id` (its frames are `run.stdin`) with `route`'s framed
    /// worker, started first if it is not running; its answer goes to `sink`
    /// (one frame, or streamed frames). A request stopped by its client or
    /// its deadline is cancelled, if the route says so: the worker is kept
    /// if it ends the request within `cancel_grace`, else killed.
    pub fn serve(
        &mut self,
        route: &Arc<Route>,
        run: &Run,
        sink: Sink,
        id: u64,
    ) -> Result<Output, Failure> {
        let running = self.running;
        let ends = match sink {
            Sink::Frames(_) => Ends::AtEndMark,
            _ => Ends::AtFrame,
        };
        let slot = slot_of(&mut self.slots, route).ok_or_else(lost)?;
        slot.up(running)?;
        let mut group = slot.group.take().ok_or_else(lost)?;
        let result = group.serve(run, &mut self.scratch, sink);
        match &result {
            Ok(_) => {
                slot.failures = 0;
                slot.served += 1;
                if !slot.worn(&group) {
                    slot.group = Some(group);
                }
            }
            Err(failure @ (Failure::ClientGone(_) | Failure::Timeout(_)))
                if let Some(grace) = route.cancel_grace =>
            {
                group.publish(Some(Instant::now() + grace + run.kill_grace));
                let kept = group.cancel(id, grace, ends, run, &mut self.scratch);
                route.stats.cancelled(kept);
                let why = match failure {
                    Failure::ClientGone(_) => "its client left",
                    _ => "its deadline passed",
                };
                crate::log::event(format_args!(
                    "{id} {}: cancelled, as {why}; the worker {}",
                    route.pattern,
                    if kept {
                        "stopped and is kept"
                    } else {
                        "did not stop in cancel_grace and is killed"
                    }
                ));
                if kept {
                    group.publish(None);
                    slot.group = Some(group);
                } else {
                    group.stop(run.kill_grace, &mut self.scratch);
                }
            }
            Err(failure) => {
                group.stop(run.kill_grace, &mut self.scratch);
                // A client that left says nothing of the worker.
                if !matches!(failure, Failure::ClientGone(_)) {
                    slot.failed();
                }
            }
        }
        result
    }

    /// Sends one request to `route`'s HTTP worker, started first if it is
    /// not ready, and brings back its answer (into `stream`, if any).
    pub fn forward(
        &mut self,
        route: &Arc<Route>,
        f: &Forward,
        stream: Option<&mut Stream>,
    ) -> Result<Reply, Failure> {
        let running = self.running;
        let slot = slot_of(&mut self.slots, route).ok_or_else(lost)?;
        slot.up(running)?;
        let to = slot.at.ok_or_else(lost)?;
        // The start had a time of its own: the request's begins now.
        let f = &Forward {
            deadline: Instant::now() + route.timeout,
            ..*f
        };
        let end = f.deadline + route.kill_grace;
        if let Some(group) = &slot.group {
            group.publish(Some(end));
        }
        let result = upstream::forward(to, f, stream);
        if let Some(group) = &slot.group {
            group.publish(None);
        }
        let grace = route.kill_grace;
        match &result {
            Ok(_) => {
                slot.failures = 0;
                slot.served += 1;
                if slot.group.as_ref().is_some_and(|g| slot.worn(g)) {
                    slot.stop(grace, &mut self.scratch);
                }
            }
            // Closing the connection stopped the request; the worker stays.
            Err(Failure::ClientGone(_) | Failure::OutputCap(_)) => {}
            // Kept only if it is still ready.
            Err(Failure::Timeout(_)) => {
                if !upstream::probe(to, slot.ready_path(), PROBE_WAIT) {
                    slot.stop(grace, &mut self.scratch);
                }
            }
            Err(_) => {
                slot.stop(grace, &mut self.scratch);
                slot.failed();
            }
        }
        result
    }

    /// Starts the workers of `routes` that start at boot and are not up
    /// (and not resting after a failure); returns once each is ready or
    /// has failed. Says what failed in the log.
    pub fn warm(&mut self, routes: &[Arc<Route>]) {
        let running = self.running;
        for route in routes.iter().filter(|r| boots(r)) {
            let Some(slot) = slot_of(&mut self.slots, route) else {
                continue;
            };
            if let Err(e) = slot.up(running)
                && !matches!(e, Failure::Resting(_))
            {
                crate::log::event(format_args!(
                    "route {} {}: worker not started: {e}",
                    route.method.as_str(),
                    route.pattern
                ));
            }
        }
    }

    /// True if the boot workers of `routes` are all up.
    pub fn all_warm(&mut self, routes: &[Arc<Route>]) -> bool {
        routes.iter().filter(|r| boots(r)).all(|route| {
            self.slots
                .iter_mut()
                .find(|s| Arc::ptr_eq(&s.route, route))
                .is_some_and(Slot::is_up)
        })
    }

    /// How long until a boot worker that is down may start again (None:
    /// all are up).
    pub fn next_warm(&mut self) -> Option<Duration> {
        let now = Instant::now();
        self.slots
            .iter_mut()
            .filter(|s| boots(&s.route))
            .filter_map(|s| (!s.is_up()).then_some(s.rest_until))
            .map(|rest| rest.map_or(Duration::ZERO, |t| t.saturating_duration_since(now)))
            .min()
    }
}

/// `route`'s slot, made if it has none. Workers of routes no longer in the
/// table (a reload) are let go first; one whose route was reloaded is
/// replaced.
fn slot_of<'s, 'a>(slots: &'s mut Vec<Slot<'a>>, route: &Arc<Route>) -> Option<&'s mut Slot<'a>> {
    slots.retain(|s| {
        let replaced = !Arc::ptr_eq(&s.route, route) && s.route.same_place(route);
        Arc::strong_count(&s.route) > 1 && !replaced
    });
    if !slots.iter().any(|s| Arc::ptr_eq(&s.route, route)) {
        slots.push(Slot {
            route: Arc::clone(route),
            group: None,
            at: None,
            served: 0,
            failures: 0,
            rest_until: None,
        });
    }
    slots.iter_mut().find(|s| Arc::ptr_eq(&s.route, route))
}

/// How long a probe of a worker whose request timed out may take.
const PROBE_WAIT: Duration = Duration::from_secs(1);
/// The pause between two probes of a worker that is starting.
const PROBE_EVERY: Duration = Duration::from_millis(50);

fn lost() -> Failure {
    Failure::Spawn(std::io::ErrorKind::NotFound.into())
}

fn boots(route: &Route) -> bool {
    route
        .worker
        .as_ref()
        .is_some_and(|w| w.start == Start::Boot)
}

impl<'a> Slot<'a> {
    /// True if the worker can take a request now (one that died while idle
    /// is not).
    fn is_up(&mut self) -> bool {
        if let Some(status) = self.group.as_mut().and_then(Group::exited) {
            crate::log::event(format_args!(
                "route {} {}: its worker ended while idle ({status}); a new one starts",
                self.route.method.as_str(),
                self.route.pattern
            ));
            self.group = None;
            self.at = None;
        }
        let http = self
            .route
            .worker
            .as_ref()
            .is_some_and(|w| matches!(w.speaks, Speaks::Http { .. }));
        if http {
            self.at.is_some()
        } else {
            self.group.is_some()
        }
    }

    /// Makes sure the worker is up: started (an HTTP one: until its probe
    /// answers 200, within `start_timeout`), unless it rests after a failure.
    fn up(&mut self, running: &'a Running) -> Result<(), Failure> {
        if self.is_up() {
            return Ok(());
        }
        if let Some(left) = self
            .rest_until
            .and_then(|t| t.checked_duration_since(Instant::now()))
        {
            return Err(Failure::Resting(left));
        }
        let route = Arc::clone(&self.route);
        let Some(worker) = &route.worker else {
            return Err(lost());
        };
        self.served = 0;
        let by = Instant::now() + worker.start_timeout;
        let started = match &worker.speaks {
            Speaks::Frames => {
                route.stats.worker_started();
                let argv = template::with_port(&route.args, 0);
                start(&route, running, by, Stdio::Frames, &argv).map(|g| (Some(g), None))
            }
            Speaks::Http {
                ready,
                upstream: Some(to),
            } => wait_ready(None, *to, ready, by).map(|()| (None, Some(*to))),
            Speaks::Http {
                ready,
                upstream: None,
            } => {
                route.stats.worker_started();
                let port = free_port().map_err(Failure::Spawn)?;
                let argv = template::with_port(&route.args, port);
                let mut group = start(&route, running, by, Stdio::ServerLog, &argv)?;
                let to = SocketAddr::from(([127, 0, 0, 1], port));
                wait_ready(Some(&mut group), to, ready, by).map(|()| (Some(group), Some(to)))
            }
        };
        match started {
            Ok((group, at)) => {
                if let Some(group) = &group {
                    group.publish(None);
                }
                (self.group, self.at) = (group, at);
                Ok(())
            }
            Err(e) => {
                self.failed();
                Err(e)
            }
        }
    }

    /// Stops the worker (SIGTERM, then SIGKILL after `grace`): the next
    /// request starts a new one.
    fn stop(&mut self, grace: Duration, scratch: &mut [u8]) {
        if let Some(mut group) = self.group.take() {
            group.stop(grace, scratch);
        }
        self.at = None;
    }

    fn ready_path(&self) -> &str {
        match self.route.worker.as_ref().map(|w| &w.speaks) {
            Some(Speaks::Http { ready, .. }) => ready,
            _ => "/",
        }
    }

    /// True if the worker gave enough answers, or grew enough, to make way.
    fn worn(&self, group: &Group) -> bool {
        self.route
            .worker
            .as_ref()
            .is_some_and(|w| w.recycle.worn(self.served, group.id()))
    }

    /// The worker failed: if it never answered, it rests before the next start.
    fn failed(&mut self) {
        if self.served > 0 {
            self.failures = 0;
            return;
        }
        self.failures = self.failures.saturating_add(1);
        let pause = BACKOFF_FIRST
            .saturating_mul(1 << self.failures.saturating_sub(1).min(16))
            .min(BACKOFF_LAST);
        self.rest_until = Some(Instant::now() + pause);
    }
}

/// Starts a worker's process: the route's command (`argv`, filled), with
/// only PATH and the route's variables in its environment.
fn start<'r>(
    route: &Route,
    running: &'r Running,
    by: Instant,
    stdio: Stdio,
    argv: &[OsString],
) -> Result<Group<'r>, Failure> {
    let env = route.base_environment();
    let run = Run {
        argv,
        env: &env,
        stdin: &[],
        deadline: by,
        max_output: route.max_output,
        kill_grace: route.kill_grace,
        client: None,
        sandbox: &route.sandbox,
        running,
    };
    program::spawn(&run, running, stdio)
}

/// Probes `to` until it answers a GET of `path` with 200: fails if the
/// worker's process exits first, or at `by`.
fn wait_ready(
    mut group: Option<&mut Group>,
    to: SocketAddr,
    path: &str,
    by: Instant,
) -> Result<(), Failure> {
    loop {
        let left = by.saturating_duration_since(Instant::now());
        if upstream::probe(to, path, left.min(PROBE_WAIT)) {
            return Ok(());
        }
        if group.as_deref_mut().and_then(Group::exited).is_some() {
            return Err(Failure::Upstream("it exited before it was ready".into()));
        }
        if Instant::now() >= by {
            return Err(Failure::Upstream(format!(
                "GET {path} did not answer 200 within start_timeout"
            )));
        }
        std::thread::sleep(PROBE_EVERY.min(by.saturating_duration_since(Instant::now())));
    }
}

/// A loopback port free now, for a worker to listen on.
fn free_port() -> std::io::Result<u16> {
    Ok(
        std::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))?
            .local_addr()?
            .port(),
    )
}

impl Recycle {
    /// True if a worker that gave `served` answers should now make way.
    fn worn(self, served: u64, pid: u32) -> bool {
        self.max_requests.is_some_and(|n| served >= n)
            || self
                .max_memory
                .is_some_and(|max| resident(pid).is_some_and(|rss| rss > max))
    }
}

/// A process's resident memory in bytes (`VmRSS` in /proc/PID/status).
fn resident(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    crate::light::kib_field(&status, "VmRSS:")
}
