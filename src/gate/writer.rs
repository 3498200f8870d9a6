//! Answers being written to clients that read slowly, closes that wait for
//! a client to finish sending what will never be read, and connections kept
//! for their next request once their answer is out.
//!
//! Owns: every unfinished answer, oldest first, bounded in number and in the
//! bytes they hold (all of an answer's memory, not only what is left to
//! send): a new answer that needs room closes the oldest ones.
//! Must never: block on a socket, keep an answer past its deadline, or read
//! a kept connection (the gate's readers do).

use crate::http::response::Response;
use crate::transport::Conn;
use std::collections::VecDeque;
use std::io::{self, IoSlice, Read};
use std::mem;
use std::net::Shutdown;
use std::time::{Duration, Instant};

/// How long a refused request's connection is drained after its answer, so
/// that closing it does not reset the answer away (a lingering close).
const LINGER: Duration = Duration::from_secs(2);

/// What becomes of a connection once its answer is out.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum After {
    /// Closed.
    Close,
    /// Read and discarded until the client closes (or `LINGER` passes):
    /// its request was not read whole.
    Linger,
    /// Kept, for the client's next request.
    Keep,
}

pub struct Writer {
    pub conn: Conn,
    response: Response,
    sent: usize,
    after: After,
    done_writing: bool,
    pub deadline: Instant,
}

/// What writing did.
enum Progress {
    /// Needs the socket to be writable (or, lingering, readable) again.
    Pending,
    /// Finished or failed: drop it.
    Finished,
    /// Written whole, and the connection is kept.
    Kept,
}

impl Writer {
    pub fn new(conn: Conn, response: Response, after: After, deadline: Instant) -> Writer {
        Writer {
            conn,
            response,
            sent: 0,
            after,
            done_writing: false,
            deadline,
        }
    }

    /// Bytes of memory the answer holds: all of it until it is written (a
    /// buffer is freed whole, never in part).
    fn held(&self) -> usize {
        self.response.head.capacity() + self.response.body.capacity()
    }

    /// Waits for readability (lingering) or writability (sending).
    pub fn wants_read(&self) -> bool {
        self.done_writing
    }

    /// Writes as much as the socket takes now; then closes, lingers or
    /// keeps the connection.
    fn on_ready(&mut self, scratch: &mut [u8]) -> Progress {
        if self.done_writing {
            return self.drain(scratch);
        }
        loop {
            let (head, body) = (&self.response.head, &self.response.body);
            let slices = if self.sent < head.len() {
                [
                    IoSlice::new(head.get(self.sent..).unwrap_or_default()),
                    IoSlice::new(body),
                ]
            } else {
                [
                    IoSlice::new(body.get(self.sent - head.len()..).unwrap_or_default()),
                    IoSlice::new(&[]),
                ]
            };
            if slices.iter().all(|s| s.is_empty()) {
                break;
            }
            match self.conn.transport.write(&self.conn.stream, &slices) {
                Ok(0) => return Progress::Finished,
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Progress::Pending,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Progress::Finished,
            }
        }
        // TLS: the records still held (after close_notify, unless kept) go
        // out first.
        let flushed = match self.after {
            After::Keep => self.conn.transport.flush(&self.conn.stream),
            After::Close | After::Linger => self.conn.transport.finish(&self.conn.stream),
        };
        match (flushed, self.after) {
            (Ok(true), After::Keep) => return Progress::Kept,
            // Its drop closes it: the FIN follows the answer.
            (Ok(true), After::Close) | (Err(_), _) => return Progress::Finished,
            (Ok(true), After::Linger) => {}
            (Ok(false), _) => return Progress::Pending,
        }
        // Lingering: the FIN now, then what the client still sends is read.
        let _ = self.conn.stream.shutdown(Shutdown::Write);
        self.done_writing = true;
        self.deadline = self.deadline.min(Instant::now() + LINGER);
        // The answer is no longer needed while lingering.
        self.response.head = Vec::new();
        self.response.body = Vec::new();
        self.drain(scratch)
    }

    fn drain(&mut self, scratch: &mut [u8]) -> Progress {
        loop {
            match self.conn.stream.read(scratch) {
                Ok(0) => return Progress::Finished,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Progress::Pending,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Progress::Finished,
            }
        }
    }
}

/// The set of unfinished answers.
pub struct Writers {
    list: VecDeque<Writer>,
    /// Connections whose answer is out, kept for their next request.
    kept: Vec<Conn>,
    bytes: usize,
    max_count: usize,
    max_bytes: usize,
}

impl Writers {
    pub fn new(max_count: usize, max_bytes: usize) -> Writers {
        Writers {
            list: VecDeque::new(),
            kept: Vec::new(),
            bytes: 0,
            max_count,
            max_bytes,
        }
    }

    /// Tries to send `w` at once; what is left joins the set, after closing as
    /// many of the oldest as needed to make room. Returns how many were closed.
    pub fn add(&mut self, mut w: Writer, scratch: &mut [u8]) -> usize {
        match w.on_ready(scratch) {
            Progress::Pending => {}
            Progress::Finished => return 0,
            Progress::Kept => {
                self.kept.push(w.conn);
                return 0;
            }
        }
        let mut closed = 0;
        while !self.list.is_empty()
            && (self.list.len() >= self.max_count || self.bytes + w.held() > self.max_bytes)
        {
            if let Some(old) = self.list.pop_front() {
                self.bytes = self.bytes.saturating_sub(old.held());
                closed += usize::from(!old.done_writing);
            }
        }
        self.bytes += w.held();
        self.list.push_back(w);
        closed
    }

    /// The connections kept since the last call.
    pub fn take_kept(&mut self) -> Vec<Conn> {
        mem::take(&mut self.kept)
    }

    /// True while kept connections wait for `take_kept`.
    pub fn has_kept(&self) -> bool {
        !self.kept.is_empty()
    }

    /// Bytes the unfinished answers hold.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn iter(&self) -> impl Iterator<Item = &Writer> {
        self.list.iter()
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Serves the writers whose sockets are ready (`ready[i]` for the i-th) and
    /// closes those past their deadline. Returns how many answers were abandoned
    /// unfinished (deadline passed before the client read them).
    pub fn serve(
        &mut self,
        ready: impl Fn(usize) -> bool,
        now: Instant,
        scratch: &mut [u8],
    ) -> usize {
        let mut abandoned = 0;
        let mut i = 0;
        let mut index = 0;
        while let Some(w) = self.list.get_mut(i) {
            let before = w.held();
            let progress = if ready(index) {
                w.on_ready(scratch)
            } else {
                Progress::Pending
            };
            let expired = matches!(progress, Progress::Pending) && w.deadline <= now;
            self.bytes = self.bytes.saturating_sub(before.saturating_sub(w.held()));
            if !matches!(progress, Progress::Pending) || expired {
                abandoned += usize::from(expired && !w.done_writing);
                self.bytes = self.bytes.saturating_sub(w.held());
                if let (Some(w), Progress::Kept) = (self.list.remove(i), progress) {
                    self.kept.push(w.conn);
                }
            } else {
                i += 1;
            }
            index += 1;
        }
        abandoned
    }

    /// The earliest deadline among them.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.list.iter().map(|w| w.deadline).min()
    }
}
