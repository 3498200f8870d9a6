//! The gate: every socket that is being read or written, served by one
//! `poll(2)` loop, so neither the listener nor the handler ever waits on a
//! client.
//!
//! Owns: connections still sending their request or kept idle for their
//! next one (at most `max_reading`; a new one evicts an idle one, else the
//! oldest), answers still being written, the 503s of
//! `--on-full 503` (at most `max_reading`), and the queue's gate side.
//! Turns complete requests into jobs (or into the server's own answers:
//! 404, 405, 503 when full, …; for a head that announces a body, before the
//! body is read, and only then under a lease of `body_memory`) and hands
//! them to the handler.
//! Must never: block on a socket, run a program, or hold more than its bounds.

mod reader;
mod readers;
mod writer;

use crate::breaker::Admit;
use crate::http::request::{Head, Limits, parse_head};
use crate::http::response::{Response, Sends};
use crate::http::{RequestError, Status};
use crate::immune::{Policy, Strikes};
use crate::log::{self, Escaped};
use crate::metrics::RouteStats;
use crate::queue::{Batch, Body, Job, Lease, Queue, Slot};
use crate::route::{Match, Route, Routes};
use crate::state::{Dropped, Phase, State};
use crate::sys::{self, Epoll, POLLIN, POLLOUT, PollFd};
use crate::template;
use crate::transport::Acceptor;
use crate::transport::Conn;
use reader::{Reader, Request, Step};
use readers::Readers;
use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError, sync_channel};
use std::time::{Duration, Instant};
use writer::{After, Writer, Writers};

/// What other threads send to the gate.
pub enum ToGate {
    /// From the listener: a new connection with room for it.
    Accepted(Conn),
    /// From the listener (`--on-full 503`): a new connection without room,
    /// to be answered 503 without being read.
    Refused(Conn),
    /// From the handler: the answer to a job.
    Answer(Answer),
    /// From the handler: a CGI local redirect, to be served as a new GET.
    Redirect(Redirect),
    /// From handler `.0`: it is idle; send its next batch through `.1`.
    Idle(usize, SyncSender<Batch>),
    /// From the signals thread (SIGHUP): the routes to use from now on.
    Routes(Arc<Routes>),
    /// From the signals thread (SIGHUP): the certificate for new connections.
    Tls(Arc<Acceptor>),
}

/// A CGI program's local redirect (RFC 3875 §6.2.2).
pub struct Redirect {
    pub conn: Conn,
    /// The request that was redirected.
    pub head: Head,
    /// The path (and query) to answer as for a GET.
    pub location: String,
    /// How many redirects led here, this one included.
    pub redirects: u8,
}

/// The answer to a request that matched no route: 404, or 405 with `Allow`.
fn unrouted(found: &Match, sends: Sends) -> Option<Response> {
    match found {
        Match::NotFound => Some(Response::plain(404, &[], sends)),
        Match::NotAllowed(allow) => Some(Response::plain(405, &[("Allow", allow)], sends)),
        Match::Run { .. } | Match::Index | Match::Options(_) => None,
    }
}

/// Local redirects one request may go through (a loop ends in 502).
const MAX_REDIRECTS: u8 = 4;

/// An answer on its way to its client.
pub struct Answer {
    pub conn: Conn,
    pub response: Response,
    pub entry: Entry,
    /// Dropped once the gate holds the answer.
    pub receipt: Receipt,
}

/// Travels with an answer to the gate and, dropped there (or wherever the
/// answer is lost), lets its handler run the next program: at most one
/// answer per handler is ever on its way, outside `answer_memory`.
pub struct Receipt(SyncSender<()>);

impl Drop for Receipt {
    fn drop(&mut self) {
        let _ = self.0.try_send(());
    }
}

/// A handler's side of its receipts: one answer on its way at a time.
pub struct Receipts {
    returned: SyncSender<()>,
    back: Receiver<()>,
}

impl Receipts {
    pub fn new() -> Receipts {
        let (returned, back) = sync_channel(1);
        let _ = returned.try_send(());
        Receipts { returned, back }
    }

    /// Waits until the last answer is with the gate; the receipt for the
    /// next one. Dropped unsent, it is back at once.
    pub fn wait(&self) -> Receipt {
        let _ = self.back.recv();
        Receipt(self.returned.clone())
    }
}

/// What the access log says of an answer, besides its status and size.
pub struct Entry {
    pub id: u64,
    pub method: &'static str,
    pub target: String,
    /// For a program's answer: time in the queue, and its run time.
    pub waited: Option<Duration>,
    pub ran: Option<Duration>,
    /// Bytes of a streamed answer its handler sent before the rest.
    pub streamed: usize,
    /// Where the answer is counted: its route's, or none.
    pub stats: Option<Arc<RouteStats>>,
}

impl Entry {
    /// The entry of an answer the gate gives itself.
    fn own(id: u64, method: &'static str, target: &str) -> Entry {
        Entry {
            id,
            method,
            target: target.to_owned(),
            waited: None,
            ran: None,
            streamed: 0,
            stats: None,
        }
    }
}

/// The sending side of the gate's mailbox: a bounded channel plus a wake-up
/// byte on a socket pair, so the gate can sleep in `poll` — written only
/// while it sleeps (or is about to): a busy gate finds its mail on its own.
#[derive(Clone)]
pub struct Inbox {
    tx: SyncSender<ToGate>,
    wake: Arc<UnixStream>,
    asleep: Arc<AtomicBool>,
    /// Counts what is delivered, so a stuck gate shows in /health.
    state: Arc<State>,
}

impl Inbox {
    /// Sends unless the mailbox is full; on failure the message is dropped
    /// (for a connection: closed).
    pub fn offer(&self, msg: ToGate) -> bool {
        let sent = match self.tx.try_send(msg) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
        };
        self.delivered(sent)
    }

    /// Sends, waiting for room. False if the gate is gone for good.
    pub fn send(&self, msg: ToGate) -> bool {
        let sent = self.tx.send(msg).is_ok();
        self.delivered(sent)
    }

    fn delivered(&self, sent: bool) -> bool {
        if sent {
            self.state.mail_sent();
        }
        // A swap on both sides: either the gate reads this message before
        // it sleeps, or this sees it asleep and wakes it.
        if self.asleep.swap(false, SeqCst) {
            self.wake();
        }
        sent
    }

    /// Wakes the gate so it looks at the state again.
    pub fn wake(&self) {
        // A full wake socket already holds a wake-up: WouldBlock is fine.
        let _ = (&*self.wake).write(&[1]);
    }
}

/// The receiving side of the mailbox. It outlives gate restarts.
pub struct Mailbox {
    rx: Receiver<ToGate>,
    wake: UnixStream,
    asleep: Arc<AtomicBool>,
}

pub fn mailbox(capacity: usize, state: Arc<State>) -> io::Result<(Inbox, Mailbox)> {
    let (tx, rx) = sync_channel(capacity);
    let (wake_tx, wake_rx) = UnixStream::pair()?;
    wake_tx.set_nonblocking(true)?;
    wake_rx.set_nonblocking(true)?;
    let asleep = Arc::new(AtomicBool::new(true));
    Ok((
        Inbox {
            tx,
            wake: Arc::new(wake_tx),
            asleep: Arc::clone(&asleep),
            state,
        },
        Mailbox {
            rx,
            wake: wake_rx,
            asleep,
        },
    ))
}

/// The settings the gate needs.
#[derive(Clone)]
pub struct Settings {
    pub limits: Limits,
    /// Who is banned for bad requests, and for how long.
    pub immune: Policy,
    pub max_reading: usize,
    pub read_timeout: Duration,
    /// For a TLS handshake, within `read_timeout`.
    pub handshake_timeout: Duration,
    pub write_timeout: Duration,
    /// How long a connection is kept for its next request (None: closed
    /// after each answer).
    pub keep_alive: Option<Duration>,
    /// Serve TLS with this certificate (None: plain HTTP).
    pub tls: Option<Arc<Acceptor>>,
    pub answer_memory: usize,
}

pub struct Gate {
    settings: Settings,
    routes: Arc<Routes>,
    state: Arc<State>,
    readers: Readers,
    writers: Writers,
    /// The 503s of `--on-full 503`: apart, so that a flood of them never
    /// makes a real answer give way.
    refusals: Writers,
    strikes: Strikes,
    queue: Queue,
    scratch: Vec<u8>,
    fds: Vec<PollFd>,
}

impl Gate {
    /// A gate whose readers wait in `epoll`.
    pub fn new(
        settings: Settings,
        routes: Arc<Routes>,
        state: Arc<State>,
        epoll: Arc<Epoll>,
    ) -> Gate {
        let writers = Writers::new(state.capacity, settings.answer_memory);
        let refusals = Writers::new(settings.max_reading, settings.answer_memory);
        let queue = Queue::new(state.handlers.len());
        Gate {
            readers: Readers::new(settings.max_reading, epoll),
            strikes: Strikes::new(settings.immune.clone()),
            settings,
            routes,
            state,
            writers,
            refusals,
            queue,
            scratch: vec![0; 16 * 1024],
            fds: Vec::new(),
        }
    }

    /// Serves forever (returns only if the mailbox's senders are all gone).
    pub fn run(&mut self, mailbox: &Mailbox) {
        loop {
            let now = Instant::now();
            self.state.gate_beat();
            self.expire_readers(now);
            // From here on, mail wakes the gate; what came before is read now.
            mailbox.asleep.swap(true, SeqCst);
            self.read_mailbox(mailbox);
            // Connections kept since the last turn go back among the readers
            // (read at most once a turn: a pipelining client cannot hold the gate).
            for conn in self.writers.take_kept() {
                self.resume(conn, now);
            }
            self.queue.hand_off(self.state.handlers_allowed());
            if self.state.stopping() {
                self.readers.close_idle();
                self.check_drained(mailbox);
            }
            self.state.gate_counts(
                self.readers.len(),
                self.writers.len(),
                self.writers.bytes() + self.refusals.bytes(),
            );
            // The readers wait in their epoll set, which is readable while
            // any of them is ready: this set holds the writers alone.
            self.fds.clear();
            self.fds.push(PollFd::new(mailbox.wake.as_raw_fd(), POLLIN));
            self.fds.push(PollFd::new(self.readers.fd(), POLLIN));
            for w in self.writers.iter().chain(self.refusals.iter()) {
                let events = if w.wants_read() { POLLIN } else { POLLOUT };
                self.fds
                    .push(PollFd::new(w.conn.stream.as_raw_fd(), events));
            }
            let next = self
                .readers
                .next_deadline()
                .into_iter()
                .chain(self.writers.next_deadline())
                .chain(self.refusals.next_deadline())
                .min();
            let timeout = if self.writers.has_kept() {
                Some(Duration::ZERO)
            } else {
                next.map(|d| d.saturating_duration_since(now))
            };
            let polled = sys::poll(&mut self.fds, timeout);
            mailbox.asleep.swap(false, SeqCst);
            if polled.is_err() {
                // EINVAL/ENOMEM: nothing to do but try again shortly.
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            // The poll set is taken out while the sets it describes change.
            let fds = std::mem::take(&mut self.fds);
            let ready = |i: usize| fds.get(i).is_some_and(PollFd::ready);
            let writers = self.writers.len();
            let now = Instant::now();
            let abandoned = self.writers.serve(|i| ready(2 + i), now, &mut self.scratch);
            self.refusals
                .serve(|i| ready(2 + writers + i), now, &mut self.scratch);
            for _ in 0..abandoned {
                self.state.count_drop(Dropped::AnswerAbandoned);
            }
            if ready(1) {
                self.serve_readers();
            }
            if ready(0) {
                // One read of the wake-up bytes: any left (rarely) make the
                // next poll return at once.
                let _ = (&mailbox.wake).read(&mut self.scratch);
                self.read_mailbox(mailbox);
            }
            self.fds = fds;
        }
    }

    /// While stopping: once the drain has expired, requests still arriving
    /// are given up; once nothing is held, read or written, the server is
    /// drained and `main` is told (a room token wakes it).
    fn check_drained(&mut self, mailbox: &Mailbox) {
        if self.state.phase() >= Phase::Expired {
            while self.readers.remove(0).is_some() {
                self.state.count_drop(Dropped::Draining);
            }
        }
        if !self.state.nothing_held() {
            return;
        }
        // The last answers were sent before their slots were freed.
        self.read_mailbox(mailbox);
        if self.readers.is_empty()
            && self.writers.is_empty()
            && self.refusals.is_empty()
            && self.state.nothing_held()
        {
            self.state.advance(Phase::Drained);
            self.state.room_freed();
        }
    }

    fn read_mailbox(&mut self, mailbox: &Mailbox) {
        loop {
            let msg = mailbox.rx.try_recv();
            if msg.is_ok() {
                self.state.mail_read();
            }
            match msg {
                Ok(ToGate::Accepted(conn)) => self.accept(conn),
                Ok(ToGate::Refused(conn)) => self.refuse_full(conn),
                Ok(ToGate::Answer(Answer {
                    conn,
                    response,
                    entry,
                    receipt,
                })) => {
                    self.send(conn, response, After::Keep, &entry);
                    // Now counted in `answer_memory`: the handler may go on.
                    drop(receipt);
                }
                Ok(ToGate::Redirect(r)) => self.redirect(r),
                Ok(ToGate::Idle(i, tx)) => self.queue.handler_idle(i, tx),
                Ok(ToGate::Routes(routes)) => self.routes = routes,
                Ok(ToGate::Tls(acceptor)) => self.settings.tls = Some(acceptor),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return,
            }
        }
    }

    fn accept(&mut self, mut conn: Conn) {
        if conn.stream.set_nonblocking(true).is_err() {
            return;
        }
        if let Some(tls) = &self.settings.tls {
            match tls.session() {
                Ok(session) => conn.transport = session,
                Err(_) => return,
            }
        }
        // An idle kept connection makes way (it loses nothing), else the
        // oldest still-reading one: slow senders can never lock out a client
        // that sends promptly. That one is read once first: a request that
        // arrived since the last poll goes on, not away.
        if self.readers.len() >= self.settings.max_reading {
            if let Some(i) = self.readers.first_idle() {
                self.readers.remove(i);
            } else if !self.read(0) {
                self.readers.remove(0);
                self.state.count_drop(Dropped::Evicted);
            }
        }
        let read_by = conn.accepted + self.settings.read_timeout;
        let handshake_by = conn.accepted + self.settings.handshake_timeout;
        // Most clients send their request with the connection: reading it now
        // fills the queue (and so closes the listener's door) as early as can be.
        if self.readers.push(Reader::new(conn, read_by, handshake_by)) {
            self.read(self.readers.len().saturating_sub(1));
        }
    }

    /// A connection whose answer is out waits for its next request among
    /// the readers, if there is room; what came with the last request is
    /// read at once. With no room, one that brought its next request takes
    /// an idle one's place (the idle one loses nothing); else it is closed,
    /// as at its idle deadline.
    fn resume(&mut self, mut conn: Conn, now: Instant) {
        let Some(keep_alive) = self.settings.keep_alive else {
            return;
        };
        if self.state.stopping() {
            return;
        }
        let read_now = !conn.early.is_empty() || conn.transport.buffered();
        if self.readers.len() >= self.settings.max_reading {
            match self.readers.first_idle() {
                Some(i) if read_now => {
                    self.readers.remove(i);
                }
                _ => return,
            }
        }
        let reader = Reader::kept(conn, now + keep_alive, self.settings.read_timeout);
        if self.readers.push(reader) && read_now {
            self.read(self.readers.len().saturating_sub(1));
        }
    }

    /// Reads the connections their epoll set says are ready.
    fn serve_readers(&mut self) {
        let ready = self.readers.ready();
        for &fd in &ready {
            if let Some(i) = self.readers.position(fd) {
                self.read(i);
            }
        }
        self.readers.done_with(ready);
    }

    /// Reads the i-th connection; true if it left the set (complete, refused
    /// or gone).
    fn read(&mut self, i: usize) -> bool {
        let Some(r) = self.readers.get_mut(i) else {
            return false;
        };
        let mut step = r.on_readable(&mut self.scratch, &self.settings.limits);
        if let Step::Admit(_) = step
            && let Some(answer) = self
                .readers
                .get(i)
                .and_then(Reader::head)
                .and_then(|h| self.head_answer(h))
            && let Some(r) = self.readers.remove(i)
        {
            self.answer_unread(r, answer);
            return true;
        }
        let Some(r) = self.readers.get_mut(i) else {
            return false;
        };
        if let Step::Admit(announced) = step {
            // A body that cannot fit in what `body_memory` has left now is
            // refused before it is read. One that fits is read under a lease
            // of the bytes that arrived: a client that announces much and
            // sends little holds little.
            step = if announced <= self.state.body_room() {
                let lease = Lease::new(&self.state);
                r.admit(lease, &mut self.scratch, &self.settings.limits)
            } else {
                Step::Refused(RequestError::NoRoom)
            };
        }
        if let Step::Waiting = step {
            self.readers.rewatch(i);
            return false;
        }
        let Some(r) = self.readers.remove(i) else {
            return false;
        };
        match step {
            Step::Waiting | Step::Admit(_) | Step::Gone => {}
            Step::BadTls => {
                self.state.count_drop(Dropped::TlsFailed);
                self.mark(r.conn.peer.ip());
            }
            Step::Done(request) => self.dispatch(r.conn, request, 0),
            Step::Refused(e) => self.refuse(r, e),
        }
        true
    }

    fn expire_readers(&mut self, now: Instant) {
        // An idle kept connection is closed quietly: it owes no request.
        for r in self.readers.expired(now).into_iter().filter(|r| !r.idle()) {
            self.refuse(r, RequestError::Timeout);
        }
    }

    /// Answers 503 to a connection there is no room for, unread (it is not
    /// logged: the listener counted it). Its request, sent after the answer
    /// came, is drained while the client reads: closing a socket with unread
    /// bytes resets it, and the reset can destroy the 503 before it is read.
    fn refuse_full(&mut self, conn: Conn) {
        // (`--on-full 503` and TLS are refused together by the config.)
        if conn.stream.set_nonblocking(true).is_err() {
            return;
        }
        let deadline = conn.accepted + self.settings.write_timeout;
        let w = Writer::new(
            conn,
            Response::unavailable(1, Sends::Body),
            After::Linger,
            deadline,
        );
        self.refusals.add(w, &mut self.scratch);
    }

    fn refuse(&mut self, r: Reader, e: RequestError) {
        if r.conn.transport.handshaking() {
            // No answer can pass before the handshake is done.
            self.state.count_drop(Dropped::TlsFailed);
            self.mark(r.conn.peer.ip());
            return;
        }
        let sends = r.head().map_or(Sends::Body, |h| Sends::to(h.method));
        let response = if e.is_clients_fault() {
            self.mark(r.conn.peer.ip());
            Response::plain(e.status(), &[], sends)
        } else {
            Response::unavailable(1, sends)
        };
        let id = self.new_id();
        let entry = r.head().map_or(Entry::own(id, "-", "-"), |h| {
            Entry::own(id, h.method.as_str(), &h.target)
        });
        self.send(r.conn, response, After::Linger, &entry);
    }

    /// Answers a request whose head decided its answer, without reading its
    /// body (what the client sends is drained after the answer).
    fn answer_unread(&mut self, r: Reader, (response, stats): (Response, Option<Arc<RouteStats>>)) {
        if self.state.stopping() {
            self.state.count_drop(Dropped::Draining);
        }
        let id = self.new_id();
        let entry = r.head().map_or(Entry::own(id, "-", "-"), |h| Entry {
            stats,
            ..Entry::own(id, h.method.as_str(), &h.target)
        });
        self.send(r.conn, response, After::Linger, &entry);
    }

    /// A bad request from `ip`: enough of them ban it.
    fn mark(&mut self, ip: IpAddr) {
        let now = Instant::now();
        if self.strikes.mark(ip, &self.state.bans, now) {
            let ban_for = self.strikes.ban_for();
            self.state.bans.ban(ip, now + ban_for);
            log::event(format_args!(
                "banned {ip} for {}s: too many bad requests",
                ban_for.as_secs()
            ));
        }
    }

    /// Serves a local redirect as a GET of its location, with the headers of
    /// the request that was redirected (less its body's).
    fn redirect(&mut self, r: Redirect) {
        let mut raw =
            format!("GET {} HTTP/1.{}\r\n", r.location, r.head.minor_version).into_bytes();
        for h in &r.head.headers {
            let framing = [
                "content-length",
                "transfer-encoding",
                "content-type",
                "expect",
            ];
            if !framing.iter().any(|f| h.name.eq_ignore_ascii_case(f)) {
                raw.extend_from_slice(h.name.as_bytes());
                raw.extend_from_slice(b": ");
                raw.extend_from_slice(&h.value);
                raw.extend_from_slice(b"\r\n");
            }
        }
        raw.extend_from_slice(b"\r\n");
        let head = match parse_head(&raw, &self.settings.limits) {
            Ok(Status::Complete((head, _))) if r.redirects <= MAX_REDIRECTS => head,
            _ => {
                let id = self.new_id();
                log::event(format_args!(
                    "{id} {}: bad or looping local redirect to `{}`",
                    Escaped(r.head.target.as_bytes()),
                    Escaped(r.location.as_bytes())
                ));
                let response = Response::plain(502, &[], Sends::to(r.head.method));
                let entry = Entry::own(id, r.head.method.as_str(), &r.head.target);
                self.send(r.conn, response, After::Close, &entry);
                return;
            }
        };
        let request = Request {
            head,
            body: Body::default(),
        };
        self.dispatch(r.conn, request, r.redirects);
    }

    /// A complete request: the server's own answer, or a job for the handler.
    fn dispatch(&mut self, mut conn: Conn, request: Request, redirects: u8) {
        let id = self.new_id();
        let Request { head, body } = request;
        conn.reusable = self.settings.keep_alive.is_some() && head.persistent();
        if !conn.reusable {
            conn.early = Vec::new();
        }
        let sends = Sends::to(head.method);
        let routes = Arc::clone(&self.routes);
        let found = routes.find(head.method, &head.path);
        // Test hook (debug builds, the tests'): a route whose command is
        // `fiddler-crab:stall-gate` stops the gate for ever.
        #[cfg(debug_assertions)]
        if let Match::Run { route, .. } = &found
            && route
                .command
                .first()
                .is_some_and(|c| c == "fiddler-crab:stall-gate")
        {
            loop {
                std::thread::park();
            }
        }
        let stats = match &found {
            Match::Run { route, .. } => Some(Arc::clone(&route.stats)),
            _ => None,
        };
        let response = match found {
            Match::Run {
                route,
                script_name,
                path_info,
            } => match self.admit(route, &head, path_info, id) {
                Ok((argv, slot)) => {
                    let job = Job {
                        id,
                        script_name: script_name.to_owned(),
                        path_info: path_info.to_owned(),
                        route: Arc::clone(route),
                        argv,
                        redirects,
                        conn,
                        head,
                        body,
                        queued: Instant::now(),
                        slot,
                    };
                    self.queue.push(job);
                    self.queue.hand_off(self.state.handlers_allowed());
                    return;
                }
                Err(refused) => refused,
            },
            Match::Index => Response::new(
                200,
                &[("Content-Type", "text/plain; charset=utf-8")],
                self.routes.index_text().into_bytes(),
                sends,
            ),
            Match::Options(allow) => {
                Response::new(200, &[("Allow", &allow)], Vec::new(), Sends::Body)
            }
            not_routed @ (Match::NotFound | Match::NotAllowed(_)) => {
                unrouted(&not_routed, sends).unwrap_or_else(|| Response::plain(404, &[], sends))
            }
        };
        let entry = Entry {
            stats,
            ..Entry::own(id, head.method.as_str(), &head.target)
        };
        self.send(conn, response, After::Keep, &entry);
    }

    /// The answer a request gets whatever its body holds, decided from its
    /// head alone (before the body is read, so `100 Continue` is sent only
    /// for a body that will be used): no route (404, 405), or a route that
    /// would refuse it (`refusal`). With the route's counters, if any.
    fn head_answer(&self, head: &Head) -> Option<(Response, Option<Arc<RouteStats>>)> {
        let sends = Sends::to(head.method);
        match self.routes.find(head.method, &head.path) {
            Match::Run { route, .. } => self
                .refusal(route, head)
                .or_else(|| {
                    // Only a look: the breaker's own admission, which may
                    // let one trial through, is the dispatch's.
                    route
                        .breaker
                        .is_open()
                        .then(|| Response::unavailable(1, sends))
                })
                .map(|r| (r, Some(Arc::clone(&route.stats)))),
            found => unrouted(&found, sends).map(|r| (r, None)),
        }
    }

    /// What a request for `route` gets instead of a place in the queue
    /// because of the server's state or its own head: 503 while stopping,
    /// 401 without the route's token.
    fn refusal(&self, route: &Route, head: &Head) -> Option<Response> {
        let sends = Sends::to(head.method);
        if self.state.stopping() {
            // A load balancer should take this one elsewhere.
            return Some(Response::unavailable(1, sends));
        }
        // A wrong token is no strike: a client retrying with an expired
        // one is not an attacker, and behind a shared proxy a ban would
        // lock everyone out. Guessing a token is hopeless anyway.
        if let Some(token) = &route.token
            && !token.admits(head.header("authorization"))
        {
            return Some(Response::plain(
                401,
                &[("WWW-Authenticate", "Bearer")],
                sends,
            ));
        }
        None
    }

    /// Whether a request for `route` may take a place in the queue: its
    /// command's arguments and its slot, or the answer it gets instead.
    fn admit(
        &mut self,
        route: &Route,
        head: &Head,
        path_info: &str,
        id: u64,
    ) -> Result<(Vec<OsString>, Slot), Response> {
        let sends = Sends::to(head.method);
        if let Some(refused) = self.refusal(route, head) {
            if self.state.stopping() {
                self.state.count_drop(Dropped::Draining);
            }
            return Err(refused);
        }
        if let Admit::No(secs) = route.breaker.admit() {
            return Err(Response::unavailable(secs, sends));
        }
        // A worker was started with its command: a request fills nothing.
        let argv = match route.worker {
            Some(_) => Vec::new(),
            None => template::fill(
                &route.args,
                head,
                path_info,
                route.missing,
                route.max_arg,
                route.dashes,
            )
            .map_err(|e| {
                log::event(format_args!("{id} {}: refused: {e}", route.pattern));
                if route.explain {
                    Response::explained(400, e.to_string().as_bytes(), sends)
                } else {
                    Response::plain(400, &[], sends)
                }
            })?,
        };
        let slot = Slot::take(&self.state).ok_or_else(|| Response::unavailable(1, sends))?;
        Ok((argv, slot))
    }

    /// Logs the answer and starts writing it. `After::Keep` keeps the
    /// connection only if its client, the server's state and the answer
    /// (whole, its head not sent yet) allow it; else it is closed.
    fn send(&mut self, conn: Conn, mut response: Response, after: After, entry: &Entry) {
        let after = match after {
            After::Keep if conn.reusable && !self.state.stopping() && response.keep_alive() => {
                After::Keep
            }
            After::Keep | After::Close => After::Close,
            After::Linger => After::Linger,
        };
        match &entry.stats {
            Some(stats) => stats.answers.count(response.status),
            None => self.state.unrouted.count(response.status),
        }
        log::access(&log::Access {
            id: entry.id,
            peer: conn.peer,
            method: entry.method,
            target: entry.target.as_bytes(),
            status: response.status,
            bytes: entry.streamed + response.len(),
            total: conn.accepted.elapsed(),
            waited: entry.waited,
            ran: entry.ran,
        });
        let deadline = Instant::now() + self.settings.write_timeout;
        let closed = self.writers.add(
            Writer::new(conn, response, after, deadline),
            &mut self.scratch,
        );
        for _ in 0..closed {
            self.state.count_drop(Dropped::AnswerAbandoned);
        }
    }

    fn new_id(&self) -> u64 {
        self.state.next_request_id()
    }
}
