//! The handoff queue between the gate and the handler.
//!
//! Owns: the jobs waiting for the handler, as one `Vec` that is handed over
//! *whole* (moved through a channel the handler made) when the handler says
//! it is idle; and `Slot`, the one way to count a held request.
//! Must never: be shared (gate and handler never touch the same batch), or
//! hold more jobs than `queue` slots allow.

use crate::http::request::Head;
use crate::route::Route;
use crate::state::State;
use std::ffi::OsString;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::Ordering::{Relaxed, Release};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::time::Instant;

/// A client connection and where it came from.
pub struct Conn {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    pub accepted: Instant,
}

/// A complete request for the handler, with its place in the bound.
pub struct Job {
    pub id: u64,
    pub conn: Conn,
    pub head: Head,
    pub body: Vec<u8>,
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
#[derive(Default)]
pub struct Queue {
    waiting: Batch,
    /// Set while the handler waits for work: where to send the next batch.
    idle: Option<SyncSender<Batch>>,
}

impl Queue {
    pub fn push(&mut self, job: Job) {
        self.waiting.push(job);
    }

    /// The handler is idle and takes its next batch through `tx`.
    pub fn handler_idle(&mut self, tx: SyncSender<Batch>) {
        self.idle = Some(tx);
    }

    /// Hands every waiting job to an idle handler at once. If the handler is
    /// gone, the batch stays here for its replacement.
    pub fn hand_off(&mut self) {
        if self.waiting.is_empty() {
            return;
        }
        let Some(tx) = self.idle.take() else { return };
        match tx.try_send(std::mem::take(&mut self.waiting)) {
            Ok(()) => {}
            Err(TrySendError::Full(batch) | TrySendError::Disconnected(batch)) => {
                self.waiting = batch;
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
