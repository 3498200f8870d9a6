//! The handoff queue between the gate and the handler.
//!
//! Owns: the jobs waiting for the handler, as one `Vec` that is handed over
//! *whole* (moved through a channel the handler made) when the handler says
//! it is idle — or, with more than one handler, a job at a time to
//! whichever is idle (two while at least two wait for each idle one), so
//! none idles while another has work waiting beyond the one job it holds;
//! `Slot`, the one way to count a held request; and `Lease`, the one way to
//! hold bytes of a request body.
//! Must never: be shared (gate and handler never touch the same batch), or
//! hold more jobs than `queue` slots allow, or body bytes that no lease covers.

use crate::http::request::Head;
use crate::route::Route;
use crate::state::State;
use crate::transport::Conn;
use std::ffi::OsString;
use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::Ordering::{Relaxed, Release};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::time::Instant;

/// A complete request for the handler, with its place in the bound.
pub struct Job {
    pub id: u64,
    pub conn: Conn,
    pub head: Head,
    pub body: Body,
    pub route: Arc<Route>,
    /// The route's command, its placeholders filled from this request.
    pub argv: Vec<OsString>,
    pub script_name: String,
    pub path_info: String,
    /// CGI local redirects that led here (a bound against loops).
    pub redirects: u8,
    /// When it joined the queue.
    pub queued: Instant,
    /// Freed when the job is dropped, whatever its fate.
    pub slot: Slot,
}

pub type Batch = Vec<Job>;

/// The gate's side of the handoff.
pub struct Queue {
    waiting: Batch,
    /// Per handler, set while it waits for work: where to send its next batch.
    idle: Vec<Option<SyncSender<Batch>>>,
}

impl Queue {
    pub fn new(handlers: usize) -> Queue {
        Queue {
            waiting: Batch::new(),
            idle: (0..handlers.max(1)).map(|_| None).collect(),
        }
    }

    pub fn push(&mut self, job: Job) {
        self.waiting.push(job);
    }

    /// Handler `i` is idle and takes its next batch through `tx`.
    pub fn handler_idle(&mut self, i: usize, tx: SyncSender<Batch>) {
        if let Some(slot) = self.idle.get_mut(i) {
            *slot = Some(tx);
        }
    }

    /// Hands waiting jobs to the idle handlers among the first `allowed`:
    /// a lone handler takes them all at once, one of several takes one (or
    /// two, under load). If a handler is gone, its jobs stay here for its
    /// replacement, in order.
    pub fn hand_off(&mut self, allowed: usize) {
        let whole = self.idle.len() == 1;
        // Two each while at least two wait for every idle handler: a busy
        // handler goes on to its next job without a round trip to the gate.
        let idle = self.idle.iter().take(allowed).flatten().count();
        let share = if self.waiting.len() >= 2 * idle { 2 } else { 1 };
        for idle in self.idle.iter_mut().take(allowed) {
            if self.waiting.is_empty() {
                return;
            }
            let Some(tx) = idle.take() else { continue };
            let batch = if whole {
                std::mem::take(&mut self.waiting)
            } else {
                self.waiting
                    .drain(..share.min(self.waiting.len()))
                    .collect()
            };
            if let Err(TrySendError::Full(batch) | TrySendError::Disconnected(batch)) =
                tx.try_send(batch)
            {
                self.waiting.splice(0..0, batch);
            }
        }
    }
}

/// One held request's place in the bound. Taking it is the only way to hold
/// a request; dropping it (answered, failed, or lost with a dead handler)
/// frees the place, so the count cannot leak.
pub struct Slot(Arc<State>);

impl Slot {
    /// A place, if there is room.
    pub fn take(state: &Arc<State>) -> Option<Slot> {
        state
            .held
            .fetch_update(Relaxed, Relaxed, |n| (n < state.capacity).then_some(n + 1))
            .ok()
            .map(|_| Slot(Arc::clone(state)))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        // Release: whoever sees the count fall (`State::nothing_held`) also
        // sees what the holder did before, such as sending its answer.
        self.0.held.fetch_sub(1, Release);
        self.0.room_freed();
    }
}

/// Bytes of request bodies held, counted against `body_memory`. Taking it is
/// the only way to hold them; dropping it (answered, refused, evicted, lost
/// with a dead handler) gives them back, so the count cannot leak.
pub struct Lease {
    state: Arc<State>,
    bytes: usize,
}

impl Lease {
    /// A lease of nothing yet.
    pub fn new(state: &Arc<State>) -> Lease {
        Lease {
            state: Arc::clone(state),
            bytes: 0,
        }
    }

    /// Grows the lease to `bytes` (as a body arrives); false, and
    /// unchanged, if `body_memory` has no room for the difference.
    pub fn cover(&mut self, bytes: usize) -> bool {
        let more = bytes.saturating_sub(self.bytes);
        if more == 0 {
            return true;
        }
        let cap = self.state.body_memory;
        let grown = self
            .state
            .body_bytes
            .fetch_update(Relaxed, Relaxed, |n| {
                n.checked_add(more).filter(|&total| total <= cap)
            })
            .is_ok();
        if grown {
            self.bytes += more;
        }
        grown
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.state.body_bytes.fetch_sub(self.bytes, Relaxed);
    }
}

/// A request body, and the lease that covers it (none when it is empty).
#[derive(Default)]
pub struct Body {
    bytes: Vec<u8>,
    /// Held for its drop: the bytes go back to `body_memory` with the body.
    _lease: Option<Lease>,
}

impl Body {
    /// `bytes`, which `lease` covers.
    pub fn new(bytes: Vec<u8>, lease: Option<Lease>) -> Body {
        Body {
            bytes,
            _lease: lease,
        }
    }
}

impl Deref for Body {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}
