//! What every thread may read: the bound on held requests, the handlers'
//! state (and the program each runs: `Running`) and the counters behind
//! /metrics (the organism's hormones): atomics, and one channel of room
//! tokens for a listener that waits for room.
//!
//! Must never: take a lock, allocate after start-up, or hold anything that
//! grows with traffic.

use crate::epoch::Epoch;
use crate::immune::Bans;
use crate::light::Color;
use crate::metrics::Answers;
use crate::sys;
use std::sync::Arc;
use std::sync::atomic::{
    AtomicBool, AtomicU8, AtomicU32, AtomicU64, AtomicUsize,
    Ordering::{Acquire, Relaxed},
};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

labelled! {
    /// A handler's state, as /metrics shows it.
    pub enum HandlerState {
        Idle => "idle",
        Busy => "busy",
        Failed => "failed",
    }
}

/// How long mail may wait while the gate does not go round its loop before
/// the gate counts as stuck (/health turns 503).
pub const GATE_STALL: Duration = Duration::from_secs(5);

labelled! {
    /// Where the server is in its life. It only moves forward (`fetch_max`),
    /// so the signals thread, the gate and `main` cannot undo each other's
    /// step.
    pub enum Phase {
        Serving => "serving",
        /// SIGTERM with a `drain_delay`: /ready is 503, so load balancers
        /// take the instance out, but it still accepts and serves until the
        /// delay has passed.
        Leaving => "leaving",
        /// SIGTERM: no new connection; the held requests are being finished.
        Draining => "draining",
        /// `drain_timeout` passed: what is still held is answered 503.
        Expired => "expired",
        /// Nothing held, read or written any more: `main` may exit.
        Drained => "drained",
        /// A second SIGTERM: the signals thread ends the process (exit 1).
        Killed => "killed",
    }
}

labelled! {
    /// Why a connection was dropped without an answer (or turned away).
    pub enum Dropped {
        /// Closed at accept: the queue was full.
        QueueFull => "queue_full",
        /// Still sending its request when a newer connection needed its place.
        Evicted => "evicted",
        /// Its client left while the request waited; the program never started.
        ClientGone => "client_gone",
        /// An answer the client did not read in time, or that needed room for a newer one.
        AnswerAbandoned => "answer_abandoned",
        /// Turned away (503, or closed unfinished) because the server is stopping.
        Draining => "draining",
        /// Closed at accept: the peer is banned.
        Banned => "banned",
        /// Closed at accept: the peer is not in `allow`.
        NotAllowed => "not_allowed",
        /// Closed at accept (or per `--on-full`): the light is red.
        Shedding => "shedding",
        /// Closed: its TLS handshake failed or did not finish in time.
        TlsFailed => "tls_failed",
        /// Closed at accept: the gate's mailbox was full (the gate is behind).
        GateBehind => "gate_behind",
    }
}

labelled! {
    /// A part the watchdog restarts.
    pub enum Part {
        Handler => "handler",
        Gate => "gate",
        Listener => "listener",
    }
}

/// The fixed bounds the state counts against.
pub struct Bounds {
    /// Most complete requests held: `queue`.
    pub capacity: usize,
    /// How many handlers run programs.
    pub handlers: usize,
    /// Most bytes of request bodies held: `body_memory`.
    pub body_memory: usize,
    /// Some route's worker starts at boot: not ready until it is up.
    pub boot_workers: bool,
}

pub struct State {
    /// Most complete requests held (waiting or running): `queue`.
    pub capacity: usize,
    /// Taken and freed only through `queue::Slot`.
    pub(crate) held: AtomicUsize,
    /// Most bytes of request bodies held, being read or waiting: `body_memory`.
    pub body_memory: usize,
    /// Taken and freed only through `queue::Lease`.
    pub(crate) body_bytes: AtomicUsize,
    /// A token per freed slot, for a listener that waits for room (`--on-full backlog`).
    room: SyncSender<()>,
    /// One per handler (`handlers`, 1 unless configured).
    pub handlers: Box<[Arc<HandlerView>]>,
    /// `handlers = "auto"`: all of them run while the light is green, one
    /// otherwise.
    auto: bool,
    phase: AtomicU8,
    /// The traffic light's color (`light::Color`), set by the watchdog.
    light: AtomicU8,
    /// Set when the light turns red, cleared when it is green again.
    shedding: AtomicBool,
    pub started: Instant,
    restarts: [AtomicU64; Part::ALL.len()],
    programs_started: AtomicU64,
    request_ids: AtomicU64,
    /// Connections the gate is reading a request from / writing an answer
    /// to, and the bytes of those answers (`gate_counts`).
    reading: AtomicUsize,
    writing: AtomicUsize,
    answer_bytes: AtomicUsize,
    /// Answers to requests that matched no route (404, 400, …).
    pub unrouted: Answers,
    /// Banned peers: the gate bans, the listener closes them unread.
    pub bans: Bans,
    /// Messages put in the gate's mailbox, and taken out by the gate.
    mail_sent: AtomicU64,
    mail_read: AtomicU64,
    /// When the gate last went round its loop, in ms since `started`.
    gate_beat: AtomicU64,
    dropped: [AtomicU64; Dropped::ALL.len()],
}

impl State {
    /// The state, and the receiving end of the room tokens (for the listener).
    pub fn new(bounds: Bounds, auto: bool) -> (Arc<State>, Receiver<()>) {
        let Bounds {
            capacity,
            handlers,
            body_memory,
            boot_workers,
        } = bounds;
        let (room, room_rx) = sync_channel(1);
        let state = State {
            capacity,
            held: AtomicUsize::new(0),
            body_memory,
            body_bytes: AtomicUsize::new(0),
            room,
            handlers: (0..handlers.max(1))
                .map(|_| Arc::new(HandlerView::new(!boot_workers)))
                .collect(),
            auto,
            phase: AtomicU8::new(Phase::Serving as u8),
            light: AtomicU8::new(Color::Green as u8),
            shedding: AtomicBool::new(false),
            started: Instant::now(),
            restarts: Default::default(),
            programs_started: AtomicU64::new(0),
            request_ids: AtomicU64::new(0),
            reading: AtomicUsize::new(0),
            writing: AtomicUsize::new(0),
            answer_bytes: AtomicUsize::new(0),
            unrouted: Answers::default(),
            bans: Bans::new(),
            mail_sent: AtomicU64::new(0),
            mail_read: AtomicU64::new(0),
            gate_beat: AtomicU64::new(0),
            dropped: Default::default(),
        };
        (Arc::new(state), room_rx)
    }

    /// A new request id, unique for the life of the process.
    pub fn next_request_id(&self) -> u64 {
        self.request_ids.fetch_add(1, Relaxed) + 1
    }

    /// Requests held now (waiting plus running).
    pub fn held(&self) -> usize {
        self.held.load(Relaxed)
    }

    /// Bytes of request bodies held now (being read, waiting or running).
    pub fn body_bytes(&self) -> usize {
        self.body_bytes.load(Relaxed)
    }

    /// Bytes of `body_memory` free now.
    pub fn body_room(&self) -> usize {
        self.body_memory.saturating_sub(self.body_bytes())
    }

    /// A message went into the gate's mailbox.
    pub fn mail_sent(&self) {
        self.mail_sent.fetch_add(1, Relaxed);
    }

    /// The gate took a message out of its mailbox.
    pub fn mail_read(&self) {
        self.mail_read.fetch_add(1, Relaxed);
    }

    /// The gate's counts, set at each turn of its loop: connections it
    /// reads, connections it writes to, and the bytes of those answers.
    pub fn gate_counts(&self, reading: usize, writing: usize, answer_bytes: usize) {
        self.reading.store(reading, Relaxed);
        self.writing.store(writing, Relaxed);
        self.answer_bytes.store(answer_bytes, Relaxed);
    }

    /// (reading, writing, answer bytes), as the gate last set them.
    pub fn connections(&self) -> (usize, usize, usize) {
        (
            self.reading.load(Relaxed),
            self.writing.load(Relaxed),
            self.answer_bytes.load(Relaxed),
        )
    }

    /// A handler starts a program (or sends a worker a request).
    pub fn program_started(&self) {
        self.programs_started.fetch_add(1, Relaxed);
    }

    pub fn programs_started(&self) -> u64 {
        self.programs_started.load(Relaxed)
    }

    /// The gate goes round its loop.
    pub fn gate_beat(&self) {
        self.gate_beat
            .store(self.since_start(Instant::now()), Relaxed);
    }

    /// True if mail has waited while the gate has not gone round its loop
    /// for `GATE_STALL`: it is stuck (an idle gate, waiting in `poll` with
    /// nothing to read, is not).
    pub fn gate_stalled(&self, now: Instant) -> bool {
        let waiting = self.mail_sent.load(Relaxed) > self.mail_read.load(Relaxed);
        let quiet = self
            .since_start(now)
            .saturating_sub(self.gate_beat.load(Relaxed));
        waiting && u128::from(quiet) > GATE_STALL.as_millis()
    }

    fn since_start(&self, t: Instant) -> u64 {
        Epoch(self.started).ms(t)
    }

    /// True if no request is held; everything their holders did before
    /// letting go (sending the answer to the gate) has happened.
    pub fn nothing_held(&self) -> bool {
        self.held.load(Acquire) == 0
    }

    /// True while one more complete request may be held and the server is
    /// not shedding load: the listener's one check.
    pub fn has_room(&self) -> bool {
        self.held() < self.capacity && !self.shedding()
    }

    /// True once every handler's boot workers are up.
    pub fn warm(&self) -> bool {
        self.handlers.iter().all(|h| h.is_warm())
    }

    /// True while the light says to shed load.
    pub fn shedding(&self) -> bool {
        self.shedding.load(Relaxed)
    }

    pub fn light(&self) -> Color {
        Color::from_index(self.light.load(Relaxed).into())
    }

    /// The light turned `color`: red starts shedding, green ends it.
    pub fn set_light(&self, color: Color) {
        self.light.store(color as u8, Relaxed);
        match color {
            Color::Red => self.shedding.store(true, Relaxed),
            Color::Green => self.shedding.store(false, Relaxed),
            Color::Yellow => {}
        }
    }

    /// A slot was freed: wakes a listener that waits for room.
    pub fn room_freed(&self) {
        match self.room.try_send(()) {
            Ok(()) | Err(TrySendError::Full(())) | Err(TrySendError::Disconnected(())) => {}
        }
    }

    pub fn phase(&self) -> Phase {
        Phase::from_index(self.phase.load(Relaxed).into())
    }

    /// Moves the phase forward to `to` (never back); true if this call moved it.
    pub fn advance(&self, to: Phase) -> bool {
        self.phase.fetch_max(to as u8, Relaxed) < to as u8
    }

    /// True once shutdown has begun: no new work is taken.
    pub fn stopping(&self) -> bool {
        self.phase() >= Phase::Draining
    }

    /// True once SIGTERM came, even while still serving (`drain_delay`):
    /// /ready says 503.
    pub fn leaving(&self) -> bool {
        self.phase() >= Phase::Leaving
    }

    /// How many handlers may take work now: all of them, but with
    /// `handlers = "auto"` only one unless the light is green.
    pub fn handlers_allowed(&self) -> usize {
        if self.auto && self.light() != Color::Green {
            1
        } else {
            self.handlers.len()
        }
    }

    /// Sends `signal` to the group of every running program.
    pub fn signal_programs(&self, signal: i32) {
        for h in &self.handlers {
            h.running.signal(signal);
        }
    }

    /// How many handlers are in state `s`.
    pub fn handlers_in(&self, s: HandlerState) -> usize {
        self.handlers.iter().filter(|h| h.state() == s).count()
    }

    /// Counts a restart of `part`; returns how many it has had.
    pub fn count_restart(&self, part: Part) -> u64 {
        self.restarts
            .get(part as usize)
            .map_or(0, |n| n.fetch_add(1, Relaxed) + 1)
    }

    pub fn restarts(&self, part: Part) -> u64 {
        self.restarts
            .get(part as usize)
            .map_or(0, |n| n.load(Relaxed))
    }

    pub fn count_drop(&self, why: Dropped) {
        if let Some(n) = self.dropped.get(why as usize) {
            n.fetch_add(1, Relaxed);
        }
    }

    pub fn dropped(&self, why: Dropped) -> u64 {
        self.dropped
            .get(why as usize)
            .map_or(0, |n| n.load(Relaxed))
    }
}

/// What every thread may read of one handler: its state, which incarnation
/// is in charge, when its job must be done, and its running program.
pub struct HandlerView {
    state: AtomicU8,
    /// An older incarnation that wakes up (it hung and was replaced) must stop.
    generation: AtomicU64,
    /// When the current job must be done, in ms since `epoch` (0: no job).
    due: AtomicU64,
    epoch: Epoch,
    /// The running program, for the watchdog and for shutdown to stop it
    /// from outside the handler.
    pub running: Running,
    /// Its boot workers (`start = "boot"`) are all up.
    warm: AtomicBool,
}

impl HandlerView {
    fn new(warm: bool) -> HandlerView {
        HandlerView {
            // Starting is not failing: /health is 200 from the first moment.
            state: AtomicU8::new(HandlerState::Idle as u8),
            generation: AtomicU64::new(0),
            due: AtomicU64::new(0),
            epoch: Epoch::now(),
            running: Running::new(),
            warm: AtomicBool::new(warm),
        }
    }

    pub fn is_warm(&self) -> bool {
        self.warm.load(Relaxed)
    }

    pub fn set_warm(&self, warm: bool) {
        self.warm.store(warm, Relaxed);
    }

    pub fn state(&self) -> HandlerState {
        HandlerState::from_index(self.state.load(Relaxed).into())
    }

    pub fn set_state(&self, s: HandlerState) {
        self.state.store(s as u8, Relaxed);
    }

    /// The generation of the incarnation in charge.
    pub fn generation(&self) -> u64 {
        self.generation.load(Relaxed)
    }

    /// A new incarnation takes charge: returns its generation.
    pub fn next_generation(&self) -> u64 {
        self.generation.fetch_add(1, Relaxed) + 1
    }

    /// Never 0, which means "no job".
    fn ms(&self, t: Instant) -> u64 {
        self.epoch.ms(t).max(1)
    }

    /// A job began that must be done by `due` (None: it is done).
    pub fn set_due(&self, due: Option<Instant>) {
        self.due.store(due.map_or(0, |t| self.ms(t)), Relaxed);
    }

    /// True if the handler is busy past the end of its job: it hangs.
    pub fn overdue(&self, now: Instant) -> bool {
        let due = self.due.load(Relaxed);
        self.state() == HandlerState::Busy && due != 0 && due < self.ms(now)
    }
}

/// The program that runs now, as other threads see it: its process group
/// (0: none) and the time by which it must be gone (its deadline plus the
/// kill grace), in milliseconds since `epoch`.
pub struct Running {
    group: AtomicU32,
    end: AtomicU64,
    epoch: Epoch,
}

impl Running {
    pub fn new() -> Running {
        Running {
            group: AtomicU32::new(0),
            end: AtomicU64::new(0),
            epoch: Epoch::now(),
        }
    }

    /// Publishes a program that started: its group, and when it must end.
    pub fn start(&self, group: u32, end: Instant) {
        self.end.store(self.epoch.ms(end), Relaxed);
        self.group.store(group, Relaxed);
    }

    /// Unpublishes `group`, unless another program was published since (by
    /// a handler that replaced a hung one).
    pub fn end(&self, group: u32) {
        let _ = self.group.compare_exchange(group, 0, Relaxed, Relaxed);
    }

    /// The running program's group, if any.
    pub fn group(&self) -> Option<u32> {
        Some(self.group.load(Relaxed)).filter(|&g| g != 0)
    }

    /// The running program's group if it should have ended by `now`.
    pub fn overdue(&self, now: Instant) -> Option<u32> {
        self.group()
            .filter(|_| self.end.load(Relaxed) < self.epoch.ms(now))
    }

    /// Sends `signal` to the running program's whole group, if there is one.
    pub fn signal(&self, signal: i32) {
        if let Some(group) = self.group() {
            let _ = sys::kill_group(group, signal);
        }
    }
}
