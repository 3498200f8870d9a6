//! Streams an answer to its client as it comes, in the chunked transfer
//! coding (a program's stdout on a route with `stream = true`, a streaming
//! worker's pieces, an HTTP worker's body), without ever waiting on the
//! client: each write takes what the socket takes now, the rest waits in a
//! buffer, and a client that lets that buffer pass `cap` is dropped.
//!
//! Must never: block on the socket, or hold more than `cap` unsent bytes
//! (plus one chunk's framing).

use crate::http::response;
use crate::transport::Conn;
use std::fmt::Write as _;
use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, RawFd};

/// The client left, or reads too slowly to keep up: the program is stopped.
#[derive(Debug)]
pub struct Gone;

pub struct Stream<'a> {
    conn: &'a mut Conn,
    /// The response's status, and its head, sent with the first chunk.
    status: u16,
    head: Vec<u8>,
    pending: Vec<u8>,
    cap: usize,
    started: bool,
    /// Bytes the socket took so far (for the access log).
    sent: usize,
}

impl<'a> Stream<'a> {
    /// A stream whose answer has `status` and `head` (built by
    /// `Response::chunked_head`).
    pub fn new(conn: &'a mut Conn, status: u16, head: Vec<u8>, cap: usize) -> Stream<'a> {
        Stream {
            conn,
            status,
            head,
            pending: Vec::new(),
            cap,
            started: false,
            sent: 0,
        }
    }

    pub fn fd(&self) -> RawFd {
        self.conn.stream.as_raw_fd()
    }

    /// True once the head went out: the status can no longer change.
    pub fn started(&self) -> bool {
        self.started
    }

    /// Sets the status and head before the first chunk (an HTTP worker's,
    /// known only once it answers). False once the head went out.
    pub fn begin(&mut self, status: u16, head: Vec<u8>) -> bool {
        if self.started {
            return false;
        }
        (self.status, self.head) = (status, head);
        true
    }

    pub fn status(&self) -> u16 {
        self.status
    }

    /// True while bytes wait for the socket to be writable.
    pub fn wants_write(&self) -> bool {
        !self.pending.is_empty() || self.conn.transport.wants_write()
    }

    /// Sends `data` as one chunk (the head first, the first time).
    pub fn push(&mut self, data: &[u8]) -> Result<(), Gone> {
        if data.is_empty() {
            return Ok(());
        }
        if !self.started {
            self.pending.append(&mut self.head);
            self.started = true;
        }
        let mut size = String::with_capacity(12);
        let _ = write!(size, "{:x}\r\n", data.len());
        self.pending.extend_from_slice(size.as_bytes());
        self.pending.extend_from_slice(data);
        self.pending.extend_from_slice(b"\r\n");
        self.flush()?;
        if self.pending.len() > self.cap {
            return Err(Gone);
        }
        Ok(())
    }

    /// Writes what the socket takes now.
    pub fn flush(&mut self) -> Result<(), Gone> {
        let Conn {
            stream, transport, ..
        } = &mut *self.conn;
        transport.flush(stream).map_err(|_| Gone)?;
        while !self.pending.is_empty() {
            match transport.write(stream, &[IoSlice::new(&self.pending)]) {
                Ok(0) => return Err(Gone),
                Ok(n) => {
                    self.pending.drain(..n.min(self.pending.len()));
                    self.sent += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Err(Gone),
            }
        }
        Ok(())
    }

    /// What is left to send, with the last chunk that ends the body (the
    /// gate writes it), and how many bytes went out already. A program
    /// that wrote nothing gives an empty body; a 204 or 304 has none.
    pub fn finish(mut self) -> (Vec<u8>, usize) {
        if !self.started {
            self.pending.append(&mut self.head);
        }
        if !response::bodiless(self.status) {
            self.pending.extend_from_slice(b"0\r\n\r\n");
        }
        (self.pending, self.sent)
    }
}
