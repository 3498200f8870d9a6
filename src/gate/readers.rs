//! The connections whose requests are still arriving, or kept idle for
//! their next one, in the order they came (an idle one is evicted first,
//! then the oldest), each watched by one epoll set: a wake-up costs what is
//! ready, not what is open.
//!
//! Owns: the readers and the epoll set, kept in step: a reader is watched
//! from the moment it joins until the moment it leaves (for the queue, a
//! writer, or its close). Must never: let a reader leave still watched (the
//! set would report a descriptor someone else now owns), or read a socket.

use super::reader::Reader;
use crate::sys::Epoll;
use std::collections::VecDeque;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::Instant;

pub struct Readers {
    list: VecDeque<Watched>,
    /// Made once, before the first connection is accepted (out of
    /// descriptors, a gate could not make its own), and kept across the
    /// gate's restarts: a reader lost with a gate that panicked was closed,
    /// and so left the set.
    epoll: Arc<Epoll>,
    /// The descriptors the last look found ready.
    ready: Vec<RawFd>,
    /// No reader's deadline is before it (a bound kept without a walk: a
    /// reader's deadline only moves later), so most wake-ups need no walk.
    earliest: Option<Instant>,
}

struct Watched {
    reader: Reader,
    /// Watched for writing too (a TLS handshake's records wait to go out).
    write: bool,
}

impl Readers {
    pub fn new(capacity: usize, epoll: Arc<Epoll>) -> Readers {
        Readers {
            list: VecDeque::with_capacity(capacity),
            epoll,
            ready: Vec::new(),
            earliest: None,
        }
    }

    /// The descriptor that is readable while any reader is ready.
    pub fn fd(&self) -> RawFd {
        self.epoll.as_raw_fd()
    }

    /// Adds a reader as the newest; false if it cannot be watched: it is
    /// dropped (closed) then, as it could never be read.
    pub fn push(&mut self, reader: Reader) -> bool {
        let write = reader.wants_write();
        let watched = self
            .epoll
            .add(reader.conn.stream.as_raw_fd(), write)
            .is_ok();
        if watched {
            let deadline = reader.deadline;
            self.earliest = Some(self.earliest.map_or(deadline, |e| e.min(deadline)));
            self.list.push_back(Watched { reader, write });
        }
        watched
    }

    /// Takes the i-th reader out (0 is the oldest).
    pub fn remove(&mut self, i: usize) -> Option<Reader> {
        let w = self.list.remove(i)?;
        let _ = self.epoll.remove(w.reader.conn.stream.as_raw_fd());
        if self.list.is_empty() {
            self.earliest = None;
        }
        Some(w.reader)
    }

    pub fn get(&self, i: usize) -> Option<&Reader> {
        self.list.get(i).map(|w| &w.reader)
    }

    pub fn get_mut(&mut self, i: usize) -> Option<&mut Reader> {
        self.list.get_mut(i).map(|w| &mut w.reader)
    }

    /// Watches the i-th reader for writing as well, or no longer, as its
    /// transport now needs.
    pub fn rewatch(&mut self, i: usize) {
        let Some(w) = self.list.get_mut(i) else {
            return;
        };
        let write = w.reader.wants_write();
        if write != w.write
            && self
                .epoll
                .modify(w.reader.conn.stream.as_raw_fd(), write)
                .is_ok()
        {
            w.write = write;
        }
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The descriptors of the readers ready now (without waiting).
    pub fn ready(&mut self) -> Vec<RawFd> {
        let mut ready = std::mem::take(&mut self.ready);
        self.epoll.ready(&mut ready);
        ready
    }

    /// Gives back the list `ready` returned, for its allocation.
    pub fn done_with(&mut self, ready: Vec<RawFd>) {
        self.ready = ready;
    }

    /// Where the reader of `fd` stands now (looked for from the newest:
    /// a prompt client's request comes with its connection).
    pub fn position(&self, fd: RawFd) -> Option<usize> {
        self.list
            .iter()
            .rposition(|w| w.reader.conn.stream.as_raw_fd() == fd)
    }

    /// Where the oldest idle kept connection stands: the first to make way.
    pub fn first_idle(&self) -> Option<usize> {
        self.list.iter().position(|w| w.reader.idle())
    }

    /// Closes every idle kept connection (the server is stopping).
    pub fn close_idle(&mut self) {
        let epoll = &self.epoll;
        self.list.retain(|w| {
            let idle = w.reader.idle();
            if idle {
                let _ = epoll.remove(w.reader.conn.stream.as_raw_fd());
            }
            !idle
        });
    }

    /// Takes out the readers whose deadline has passed. Walks them only
    /// when the earliest deadline may have.
    pub fn expired(&mut self, now: Instant) -> Vec<Reader> {
        if self.earliest.is_none_or(|e| e > now) {
            return Vec::new();
        }
        let mut expired = Vec::new();
        let mut i = 0;
        while let Some(w) = self.list.get(i) {
            if w.reader.deadline <= now {
                expired.extend(self.remove(i));
            } else {
                i += 1;
            }
        }
        self.earliest = self.list.iter().map(|w| w.reader.deadline).min();
        expired
    }

    /// When the next deadline may pass (no later than the earliest).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.earliest
    }
}
