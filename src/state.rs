//! What every thread may read: the bound on held requests, the handler's state
//! and the counters behind /metrics. Atomics only (the organism's hormones).
//!
//! Must never: take a lock, allocate after start-up, or hold anything that
//! grows with traffic.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::Instant;

/// The handler's state, as /metrics shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandlerState {
    Idle = 0,
    Busy = 1,
    Failed = 2,
}

/// Why a connection was dropped without an answer.
#[derive(Clone, Copy, Debug)]
pub enum Dropped {
    /// Closed at accept: the queue was full.
    QueueFull = 0,
    /// Still sending its request when a newer connection needed its place.
    Evicted = 1,
    /// Its client left while the request waited; the program never started.
    ClientGone = 2,
    /// An answer the client did not read in time, or that needed room for a newer one.
    AnswerAbandoned = 3,
}

impl Dropped {
    pub const ALL: [Dropped; 4] = [
        Dropped::QueueFull,
        Dropped::Evicted,
        Dropped::ClientGone,
        Dropped::AnswerAbandoned,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Dropped::QueueFull => "queue_full",
            Dropped::Evicted => "evicted",
            Dropped::ClientGone => "client_gone",
            Dropped::AnswerAbandoned => "answer_abandoned",
        }
    }
}

/// A part the watchdog restarts.
#[derive(Clone, Copy, Debug)]
pub enum Part {
    Handler = 0,
    Gate = 1,
    Listener = 2,
}

impl Part {
    pub const ALL: [Part; 3] = [Part::Handler, Part::Gate, Part::Listener];

    pub fn name(self) -> &'static str {
        match self {
            Part::Handler => "handler",
            Part::Gate => "gate",
            Part::Listener => "listener",
        }
    }
}

/// The status codes the server can answer with, in /metrics order.
pub const STATUSES: [u16; 16] = [
    200, 204, 400, 404, 405, 408, 413, 414, 417, 431, 500, 501, 502, 503, 504, 505,
];

pub struct State {
    /// Most complete requests held (waiting or running): `queue`.
    pub capacity: usize,
    /// Taken and freed only through `queue::Slot`.
    pub(crate) held: AtomicUsize,
    /// A token per freed slot, for a listener that waits for room (`--on-full backlog`).
    room: SyncSender<()>,
    handler: AtomicU8,
    pub started: Instant,
    restarts: [AtomicU64; Part::ALL.len()],
    pub programs_started: AtomicU64,
    request_ids: AtomicU64,
    /// Connections the gate is reading a request from / writing an answer to.
    pub reading: AtomicUsize,
    pub writing: AtomicUsize,
    answered: [AtomicU64; STATUSES.len()],
    answered_other: AtomicU64,
    dropped: [AtomicU64; Dropped::ALL.len()],
}

impl State {
    /// The state, and the receiving end of the room tokens (for the listener).
    pub fn new(capacity: usize) -> (Arc<State>, Receiver<()>) {
        let (room, room_rx) = sync_channel(1);
        let state = State {
            capacity,
            held: AtomicUsize::new(0),
            room,
            handler: AtomicU8::new(HandlerState::Failed as u8),
            started: Instant::now(),
            restarts: Default::default(),
            programs_started: AtomicU64::new(0),
            request_ids: AtomicU64::new(0),
            reading: AtomicUsize::new(0),
            writing: AtomicUsize::new(0),
            answered: Default::default(),
            answered_other: AtomicU64::new(0),
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

    /// True while one more complete request may be held: the listener's one check.
    pub fn has_room(&self) -> bool {
        self.held() < self.capacity
    }

    /// A slot was freed: wakes a listener that waits for room.
    pub fn room_freed(&self) {
        match self.room.try_send(()) {
            Ok(()) | Err(TrySendError::Full(())) | Err(TrySendError::Disconnected(())) => {}
        }
    }

    pub fn handler_state(&self) -> HandlerState {
        match self.handler.load(Relaxed) {
            0 => HandlerState::Idle,
            1 => HandlerState::Busy,
            _ => HandlerState::Failed,
        }
    }

    pub fn set_handler_state(&self, s: HandlerState) {
        self.handler.store(s as u8, Relaxed);
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

    pub fn count_answer(&self, status: u16) {
        STATUSES
            .iter()
            .position(|&s| s == status)
            .and_then(|i| self.answered.get(i))
            .unwrap_or(&self.answered_other)
            .fetch_add(1, Relaxed);
    }

    /// Answers with a status outside `STATUSES`.
    pub fn answered_other(&self) -> u64 {
        self.answered_other.load(Relaxed)
    }

    pub fn answered(&self) -> impl Iterator<Item = (u16, u64)> + '_ {
        STATUSES
            .iter()
            .zip(&self.answered)
            .map(|(&s, n)| (s, n.load(Relaxed)))
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
