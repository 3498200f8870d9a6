//! The connections whose requests are still arriving, or kept idle for
//! their next one, in the order they came (an idle one is evicted first,
//! then the oldest), each watched by one epoll set: a wake-up costs what is
//! ready, not what is open.
//!
//! Owns: the readers and the epoll set. A reader is armed (`EPOLLONESHOT`)
//! when it joins and again each time it waits for more; it leaves its
//! registration behind when it leaves (for the queue, or a writer): spent,
//! or armed and then reported once for a descriptor no reader has, which is
//! ignored; the kernel forgets it when the socket closes, and a kept
//! connection that comes back is armed again. So a request costs one
//! `epoll_ctl`, not an add and a remove. Must never: read a socket, or let a
//! reader wait unarmed.

use super::reader::Reader;
use crate::sys::Epoll;
use std::collections::VecDeque;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::Instant;

pub struct Readers {
    list: VecDeque<Reader>,
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
    pub fn push(&mut self, mut reader: Reader) -> bool {
        let write = reader.wants_write();
        let fd = reader.conn.stream.as_raw_fd();
        let watched = if reader.conn.watched {
            self.epoll.modify(fd, write)
        } else {
            self.epoll.add(fd, write)
        }
        .is_ok();
        reader.conn.watched = watched;
        if watched {
            let deadline = reader.deadline;
            self.earliest = Some(self.earliest.map_or(deadline, |e| e.min(deadline)));
            self.list.push_back(reader);
        }
        watched
    }

    /// Takes the i-th reader out (0 is the oldest).
    pub fn remove(&mut self, i: usize) -> Option<Reader> {
        let reader = self.list.remove(i)?;
        if self.list.is_empty() {
            self.earliest = None;
        }
        Some(reader)
    }

    pub fn get(&self, i: usize) -> Option<&Reader> {
        self.list.get(i)
    }

    pub fn get_mut(&mut self, i: usize) -> Option<&mut Reader> {
        self.list.get_mut(i)
    }

    /// Arms the i-th reader again, which waits for more: for reading, and
    /// for writing too if its transport has records to send.
    pub fn rewatch(&mut self, i: usize) {
        if let Some(r) = self.list.get(i) {
            let _ = self
                .epoll
                .modify(r.conn.stream.as_raw_fd(), r.wants_write());
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
            .rposition(|r| r.conn.stream.as_raw_fd() == fd)
    }

    /// Where the oldest idle kept connection stands: the first to make way.
    pub fn first_idle(&self) -> Option<usize> {
        self.list.iter().position(Reader::idle)
    }

    /// Closes every idle kept connection (the server is stopping).
    pub fn close_idle(&mut self) {
        self.list.retain(|r| !r.idle());
    }

    /// Takes out the readers whose deadline has passed. Walks them only
    /// when the earliest deadline may have.
    pub fn expired(&mut self, now: Instant) -> Vec<Reader> {
        if self.earliest.is_none_or(|e| e > now) {
            return Vec::new();
        }
        let mut expired = Vec::new();
        let mut i = 0;
        while let Some(r) = self.list.get(i) {
            if r.deadline <= now {
                expired.extend(self.remove(i));
            } else {
                i += 1;
            }
        }
        self.earliest = self.list.iter().map(|r| r.deadline).min();
        expired
    }

    /// When the next deadline may pass (no later than the earliest).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.earliest
    }
}
