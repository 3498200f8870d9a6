//! A handler: a thread that runs programs, one job at a time (there is one,
//! or `handlers` of them, each with a standby).
//!
//! Owns: the batch it was handed, the running program, and its warm workers
//! (started at boot, or at their route's first request). For each job:
//! drop it if its client is gone, else run its program or send it to its
//! worker (a panic is caught and answered 500), and send the answer back to
//! the gate once the last one is there (`Receipts`).
//! Must never: touch a client socket beyond a one-byte peek and a streamed
//! answer's writes (what the socket takes now), run two programs at once,
//! or let a job's failure end the thread. If the thread dies anyway, a
//! standby (spawned in advance) takes over; see `watchdog`.

use crate::breaker::Verdict;
use crate::cgi;
use crate::frames;
use crate::gate::{Answer, Entry, Inbox, Receipts, Redirect, ToGate};
use crate::http::Method;
use crate::http::response::{Response, Sends};
use crate::log::{self, Escaped};
use crate::program::{self, Run, Sink, Streamed};
use crate::queue::Job;
use crate::route::{Route, Speaks};
use crate::state::{Dropped, HandlerState, HandlerView, Phase, State};
use crate::stream::Stream;
use crate::upstream::{Forward, Reply};
use crate::worker::Workers;
use std::io::{self, ErrorKind};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::mpsc::{RecvTimeoutError, SyncSender, sync_channel};
use std::sync::{Arc, Weak};
use std::thread;
use std::time::{Duration, Instant};

/// What the handler needs, shared by every incarnation of it.
pub struct Handler {
    pub state: Arc<State>,
    /// Which handler this is (0 unless `handlers` > 1), and its view in `state`.
    pub index: usize,
    pub view: Arc<HandlerView>,
    pub inbox: Inbox,
    /// Pause between two jobs.
    pub pace: Duration,
    /// The routes whose workers start with the handler (`start = "boot"`),
    /// as the config had them at start.
    pub boot: Vec<Weak<Route>>,
}

/// Time a job may take past its program's deadline and kill grace before
/// the watchdog holds the handler for hung.
pub const HANG_SLACK: Duration = Duration::from_secs(5);

/// What the handler tells the watchdog.
pub enum Event {
    /// A handler thread died (a panic outside a job).
    Died(usize),
    /// A handler took a batch: there is something to watch.
    Busy,
}

/// How handlers reach the watchdog. Work to watch is told only while the
/// watchdog rests (waits without its tick): a busy server does not wake it
/// for every job.
#[derive(Clone)]
pub struct Alarm {
    events: SyncSender<Event>,
    resting: Arc<AtomicBool>,
}

impl Alarm {
    pub fn new(events: SyncSender<Event>) -> Alarm {
        Alarm {
            events,
            resting: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The watchdog may rest: called before it looks whether any handler
    /// is busy. A swap on both sides: either the watchdog sees the busy
    /// handler, or the handler sees it resting and tells it.
    pub fn resting(&self) {
        self.resting.swap(true, SeqCst);
    }

    /// The watchdog ticks (a handler is busy): nobody need tell it.
    pub fn ticking(&self) {
        self.resting.swap(false, SeqCst);
    }

    /// Handler `index`'s thread died: told whatever the watchdog does.
    fn died(&self, index: usize) {
        let _ = self.events.send(Event::Died(index));
    }

    /// The handler took work (its state says so already).
    fn busy(&self) {
        if self.resting.swap(false, SeqCst) {
            let _ = self.events.try_send(Event::Busy);
        }
    }
}

/// A handler thread spawned in advance, waiting to take over.
pub struct Standby {
    activate: SyncSender<u64>,
}

impl Standby {
    pub fn spawn(handler: Arc<Handler>, alarm: Alarm) -> io::Result<Standby> {
        let (activate, activated) = sync_channel(1);
        thread::Builder::new()
            .name("handler".into())
            .stack_size(256 * 1024)
            .spawn(move || {
                let Ok(generation) = activated.recv() else {
                    return; // never needed
                };
                let _sentinel = Sentinel {
                    handler: &handler,
                    alarm: &alarm,
                };
                handler.serve(generation, &alarm);
            })?;
        Ok(Standby { activate })
    }

    /// Makes this standby the handler of `generation`.
    pub fn activate(self, generation: u64) {
        // Its one message, on a channel of one: never full.
        let _ = self.activate.try_send(generation);
    }
}

/// Reports the death of its thread to the watchdog while unwinding.
struct Sentinel<'a> {
    handler: &'a Handler,
    alarm: &'a Alarm,
}

impl Drop for Sentinel<'_> {
    fn drop(&mut self) {
        if thread::panicking() {
            self.handler.view.set_state(HandlerState::Failed);
            self.alarm.died(self.handler.index);
        }
    }
}

impl Handler {
    /// Takes batches from the gate and serves them, until the gate is gone
    /// or a newer generation took over (this one hung and was replaced:
    /// what is left of its batch is dropped, its connections closed).
    fn serve(&self, generation: u64, alarm: &Alarm) {
        let in_charge = || self.view.generation() == generation;
        // This thread's warm workers: they end with it.
        let mut workers = Workers::new(&self.view.running);
        let receipts = Receipts::new();
        while in_charge() {
            self.warm(&mut workers);
            let (tx, rx) = sync_channel(1);
            self.view.set_state(HandlerState::Idle);
            if !self.inbox.send(ToGate::Idle(self.index, tx)) {
                return;
            }
            // A boot worker that failed is started again when its rest ends,
            // work or none (its /ready is 503 meanwhile).
            let batch = loop {
                let got = match workers.next_warm() {
                    Some(wait) => rx.recv_timeout(wait),
                    None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                };
                match got {
                    Ok(batch) => break Some(batch),
                    Err(RecvTimeoutError::Timeout) => self.warm(&mut workers),
                    Err(RecvTimeoutError::Disconnected) => break None,
                }
            };
            // None: the gate restarted and lost our request: ask again.
            let Some(batch) = batch else { continue };
            self.view.set_state(HandlerState::Busy);
            alarm.busy();
            for job in batch {
                if !in_charge() {
                    return;
                }
                self.serve_job(job, generation, &mut workers, &receipts);
                self.warm(&mut workers);
                if !self.pace.is_zero() {
                    thread::sleep(self.pace);
                }
            }
        }
    }

    /// Starts the boot workers that are not up, and says in `/ready`
    /// whether all of them are.
    fn warm(&self, workers: &mut Workers) {
        // Called after every job: nothing to do, and no allocation, for a
        // server without boot workers.
        if self.boot.is_empty() {
            return;
        }
        let boot: Vec<Arc<Route>> = self.boot.iter().filter_map(Weak::upgrade).collect();
        if !workers.all_warm(&boot) {
            self.view.set_warm(false);
            workers.warm(&boot);
        }
        self.view.set_warm(workers.all_warm(&boot));
    }

    fn serve_job(&self, job: Job, generation: u64, workers: &mut Workers, receipts: &Receipts) {
        if client_gone(&job.conn.stream) {
            self.state.count_drop(Dropped::ClientGone);
            return;
        }
        let route = &job.route;
        // A worker's start has a time of its own.
        let start = route
            .worker
            .as_ref()
            .map_or(Duration::ZERO, |w| w.start_timeout);
        self.view.set_due(Some(
            Instant::now() + start + route.timeout + route.kill_grace + HANG_SLACK,
        ));
        #[cfg(debug_assertions)]
        test_hook(self, &job, false);
        self.serve_admitted(job, workers, receipts);
        if self.view.generation() == generation {
            self.view.set_due(None);
        }
    }

    fn serve_admitted(&self, mut job: Job, workers: &mut Workers, receipts: &Receipts) {
        let sends = Sends::to(job.head.method);
        let start = Instant::now();
        let outcome = if self.state.phase() >= Phase::Expired {
            // Shutting down and out of time: this one will not run.
            self.state.count_drop(Dropped::Draining);
            Outcome::Answer(Response::unavailable(1, sends))
        } else {
            catch_unwind(AssertUnwindSafe(|| self.execute(&mut job, workers))).unwrap_or_else(
                |_| {
                    log::event(format_args!(
                        "{} {}: the job panicked; answered 500",
                        job.id, job.route.pattern
                    ));
                    Outcome::Answer(Response::plain(500, &[], sends))
                },
            )
        };
        let Job {
            id,
            conn,
            head,
            slot,
            redirects,
            queued,
            route,
            ..
        } = job;
        let (response, streamed) = match outcome {
            Outcome::Answer(response) => (response, 0),
            Outcome::Streamed(rest, sent) => (rest, sent),
            Outcome::Redirect(location) => {
                let redirect = Redirect {
                    conn,
                    head,
                    location,
                    redirects: redirects.saturating_add(1),
                };
                self.inbox.send(ToGate::Redirect(redirect));
                return;
            }
            Outcome::ClientGone => {
                // The client left while its program ran: nobody to answer.
                self.state.count_drop(Dropped::ClientGone);
                return;
            }
            Outcome::CutShort => return,
        };
        let ran = start.elapsed();
        // The last answer is with the gate before this one is sent: outside
        // the gate's `answer_memory`, a handler holds at most one answer on
        // its way and the output of the program it runs. Waited for only
        // now: meanwhile the gate took it, most often.
        let receipt = receipts.wait();
        let message = ToGate::Answer(Answer {
            conn,
            response,
            entry: Entry {
                id,
                method: head.method.as_str(),
                target: head.target,
                waited: Some(start.saturating_duration_since(queued)),
                ran: Some(ran),
                streamed,
                stats: Some(Arc::clone(&route.stats)),
            },
            receipt,
        });
        self.inbox.send(message);
        // The slot is freed only now, once the answer is with the gate.
        drop(slot);
    }

    /// Runs the job's program (or sends it to the route's worker) and says
    /// what to do with what it gave: run, record, answer.
    // Out of line, as when it was one function: inlined into `serve`, the
    // three steps cost 0.9 KB more of the binary.
    #[inline(never)]
    fn execute(&self, job: &mut Job, workers: &mut Workers) -> Outcome {
        #[cfg(debug_assertions)]
        test_hook(self, job, true);
        self.state.program_started();
        let route = Arc::clone(&job.route);
        let (id, method) = (job.id, job.head.method);
        let started = Instant::now();
        let (result, stream) = self.run(job, &route, workers);
        let recorded = record(&route, id, &result, started.elapsed());
        answer(
            &route,
            id,
            method,
            self.state.phase(),
            result,
            stream,
            recorded,
        )
    }

    /// Step one: runs the job's program, or hands the request to the route's
    /// worker. Returns what it gave, and the stream its answer went out on
    /// if it streams (then its head went with its first bytes).
    fn run<'j>(
        &self,
        job: &'j mut Job,
        route: &Arc<Route>,
        workers: &mut Workers,
    ) -> (Result<Done, program::Failure>, Option<Stream<'j>>) {
        let mut env = cgi::environment(job);
        // A worker that streams or may be cancelled needs each request's id.
        if route.worker.is_some() && (route.stream || route.cancel_grace.is_some()) {
            env.push(("FIDDLER_REQUEST_ID".into(), job.id.to_string().into()));
        }
        let speaks = route.worker.as_ref().map(|w| &w.speaks);
        let http = matches!(speaks, Some(Speaks::Http { .. }));
        // Chunked needs HTTP/1.1; HEAD has no body to stream. An HTTP
        // worker's answer always streams.
        let streams = (route.stream || http)
            && Sends::to(job.head.method) == Sends::Body
            && job.head.minor_version >= 1;
        let client = job.conn.stream.as_raw_fd();
        let (peer, https) = (job.conn.peer.ip(), job.conn.transport.is_tls());
        // A worker's head comes with its answer (`Stream::begin`).
        let mut stream = streams.then(|| {
            let head = match route.worker {
                Some(_) => Vec::new(),
                None => {
                    Response::chunked_head(200, &[("Content-Type", route.content_type.as_str())])
                }
            };
            Stream::new(&mut job.conn, 200, head, route.max_output)
        });
        let run = Run {
            argv: &job.argv,
            env: &env,
            stdin: &job.body,
            deadline: Instant::now() + route.timeout,
            max_output: route.max_output,
            kill_grace: route.kill_grace,
            client: route.cancel_on_disconnect.then_some(client),
            sandbox: &route.sandbox,
            running: &self.view.running,
        };
        let result = match speaks {
            Some(Speaks::Http { .. }) => {
                let forward = Forward {
                    head: &job.head,
                    body: &job.body,
                    peer,
                    https,
                    deadline: run.deadline,
                    max_output: route.max_output,
                    client: run.client,
                };
                workers
                    .forward(route, &forward, stream.as_mut())
                    .map(Done::Reply)
            }
            Some(Speaks::Frames) => {
                let frames = frames::request(&env, &job.body);
                let run = Run {
                    stdin: &frames,
                    ..run
                };
                let sink = if route.stream {
                    Sink::Frames(Streamed::new(stream.as_mut(), job.id, &route.content_type))
                } else {
                    Sink::Frame
                };
                workers.serve(route, &run, sink, job.id).map(Done::Output)
            }
            None => {
                let sink = match stream.as_mut() {
                    Some(s) => Sink::Stream(s),
                    None => Sink::Collect,
                };
                program::run(&run, sink).map(Done::Output)
            }
        };
        (result, stream)
    }
}

/// Step two: records a run: its time and what broke in the route's
/// counters, its verdict in the route's breaker, its stderr in the log.
fn record(
    route: &Route,
    id: u64,
    result: &Result<Done, program::Failure>,
    took: Duration,
) -> Recorded {
    // An exit code the route maps to a status (`exit_status`) is the
    // program's answer that the request was bad: no failure of its own.
    let mapped = match result {
        Err(program::Failure::Exit(code, _)) => route.status_for_exit(*code),
        _ => None,
    };
    let failure = match result {
        Err(f) if mapped.is_none() => f.reason(),
        _ => None,
    };
    route.stats.ran(took, failure);
    match result {
        // The client left: that says nothing of the program.
        Err(f) if mapped.is_none() && f.status().is_none() => {}
        Err(f) if mapped.is_none() && f.is_breakdown() => route.breaker.record(Verdict::BrokeDown),
        _ => route.breaker.record(Verdict::Answered),
    }
    let stderr = match result {
        Ok(Done::Output(out)) => out.stderr.as_bytes(),
        Ok(Done::Reply(_)) => &[],
        Err(f) => f.stderr(),
    };
    for line in stderr.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        log::event(format_args!("{id} stderr: {}", Escaped(line)));
    }
    Recorded {
        mapped,
        stderr: if route.explain {
            stderr.to_vec()
        } else {
            Vec::new()
        },
    }
}

/// What the answer needs of a recorded run.
struct Recorded {
    /// The status its exit code maps to (`exit_status`), if any.
    mapped: Option<u16>,
    /// The end of its stderr, for `explain` (empty without it).
    stderr: Vec<u8>,
}

/// Step three: the answer, from what the run gave or how it failed
/// (logged here). A streamed answer gives its rest; one that failed
/// after its head went out can only be cut short.
fn answer(
    route: &Route,
    id: u64,
    method: Method,
    phase: Phase,
    result: Result<Done, program::Failure>,
    stream: Option<Stream>,
    recorded: Recorded,
) -> Outcome {
    let sends = Sends::to(method);
    let cut_short = stream.as_ref().is_some_and(Stream::started);
    let (status, problem) = match result {
        Ok(_) if let Some(stream) = stream => {
            let status = stream.status();
            let (rest, sent) = stream.finish();
            let rest = Response {
                status,
                head: Vec::new(),
                body: rest,
            };
            return Outcome::Streamed(rest, sent);
        }
        Ok(Done::Reply(reply)) => {
            let headers: Vec<(&str, &str)> = reply
                .headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            return Outcome::Answer(match sends {
                Sends::Body => Response::new(reply.status, &headers, reply.body, sends),
                Sends::HeadOnly => Response::head_only(reply.status, &headers, reply.length),
            });
        }
        // A worker answers with a CGI header block too.
        Ok(Done::Output(out)) if route.cgi || route.worker.is_some() => {
            match cgi::parse(&out.stdout) {
                Ok(reply) => return cgi_outcome(reply, out.stdout, route, sends),
                Err(e) => (Some(502), format!("wrote a malformed CGI answer: {e}")),
            }
        }
        Ok(Done::Output(out)) => {
            let content_type = [("Content-Type", route.content_type.as_str())];
            return Outcome::Answer(Response::new(200, &content_type, out.stdout, sends));
        }
        // Stopped by shutdown at the end of the drain: that is no
        // fault of the program's, and the client should go elsewhere.
        Err(failure) if phase == Phase::Expired && failure.status().is_some() => {
            (Some(503), format!("{failure} (the drain timed out)"))
        }
        Err(failure) => (recorded.mapped.or(failure.status()), failure.to_string()),
    };
    let program = route.command.first().map_or("", String::as_str);
    let program = Escaped(program.as_bytes());
    log::event(format_args!(
        "{id} {} {}: `{program}` {problem}",
        method.as_str(),
        route.pattern,
    ));
    match status {
        // A streamed answer already went out with its status: it can
        // only be cut short (no last chunk), so the client sees it is
        // incomplete.
        Some(_) if cut_short => Outcome::CutShort,
        Some(503) => Outcome::Answer(Response::unavailable(1, sends)),
        Some(status) if route.explain => {
            let mut why = format!("`{program}` {problem}\n").into_bytes();
            if !recorded.stderr.is_empty() {
                why.extend_from_slice(b"stderr (its end):\n");
                why.extend_from_slice(&recorded.stderr);
            }
            Outcome::Answer(Response::explained(status, &why, sends))
        }
        Some(status) => Outcome::Answer(Response::plain(status, &[], sends)),
        None => Outcome::ClientGone,
    }
}

/// What a program or worker gave.
enum Done {
    Output(program::Output),
    Reply(Reply),
}

/// What became of a job.
enum Outcome {
    Answer(Response),
    /// The rest of a streamed answer, after the bytes already sent.
    Streamed(Response, usize),
    /// A CGI local redirect: answer as for a GET of this path.
    Redirect(String),
    /// The client left while the program ran: nobody to answer.
    ClientGone,
    /// A streamed answer whose program failed: the connection is closed.
    CutShort,
}

/// The answer for a CGI program's reply.
fn cgi_outcome(reply: cgi::Reply, mut stdout: Vec<u8>, route: &Route, sends: Sends) -> Outcome {
    match reply {
        cgi::Reply::LocalRedirect(location) => Outcome::Redirect(location),
        cgi::Reply::Document {
            status,
            content_type,
            headers,
            body_start,
        } => {
            stdout.drain(..body_start.min(stdout.len()));
            let content_type = content_type.as_deref().unwrap_or(&route.content_type);
            let mut all = vec![("Content-Type", content_type)];
            all.extend(headers.iter().map(|(n, v)| (n.as_str(), v.as_str())));
            Outcome::Answer(Response::new(status, &all, stdout, sends))
        }
    }
}

/// True if the client closed or reset its connection while its request
/// waited. A client that half-closes after its request counts as gone too,
/// as with nginx: clients that give up close, and this is the only sign.
fn client_gone(stream: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    match stream.peek(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != ErrorKind::WouldBlock && e.kind() != ErrorKind::Interrupted,
    }
}

/// Test hooks, in debug builds only (the tests run the debug binary), for
/// what no real program can make happen: a route whose command is
/// `fiddler-crab:panic` panics inside its job;
/// `fiddler-crab:die` panics outside it, killing the handler thread;
/// `fiddler-crab:hang PROGRAM ARG…` starts the program in a group of its
/// own, publishes it as running, and then hangs the handler for ever.
#[cfg(debug_assertions)]
#[allow(clippy::panic)] // the panics are the point: they prove the restarts
fn test_hook(handler: &Handler, job: &Job, inside_job: bool) {
    use std::os::unix::process::CommandExt;
    let mut argv = job.route.command.iter();
    match (argv.next().map(String::as_str), inside_job) {
        (Some("fiddler-crab:panic"), true) => std::panic::panic_any("test hook: a job panics"),
        (Some("fiddler-crab:die"), false) => std::panic::panic_any("test hook: the handler dies"),
        (Some("fiddler-crab:hang"), false) => {
            if let Some(program) = argv.next() {
                let started = std::process::Command::new(program)
                    .args(argv)
                    .process_group(0)
                    .spawn();
                if let Ok(child) = started {
                    let end = Instant::now() + job.route.timeout + job.route.kill_grace;
                    handler.view.running.start(child.id(), end);
                }
            }
            loop {
                thread::park();
            }
        }
        _ => {}
    }
}
