//! Warm workers (`worker = true`): a route's program, started on the
//! route's first request and kept running, answers one request at a time
//! over its stdin and stdout, in frames:
//!
//! ```text
//! a request, to the worker:   LEN "\n" ENV   LEN "\n" BODY
//! an answer, from the worker: LEN "\n" ANSWER
//! ```
//!
//! LEN is a byte count in decimal. ENV is the request's CGI meta-variables
//! as `NAME=VALUE` pairs, each ended by a NUL byte. ANSWER is what a CGI
//! program writes: a header block (`Status:`, `Content-Type:`, other
//! fields, or none at all), an empty line, the body. Bytes pass untouched.
//!
//! Owns: one handler's workers (one per worker route), their restarts (at
//! the next request; but a worker that failed before it ever answered is
//! not started again before a pause that doubles from 0.5 s to 30 s), their
//! recycling (`max_requests`, `max_memory`), and the frames.
//! Must never: give a worker two requests at once (a handler is one thread),
//! keep a worker that failed a request, restart one in a tight loop, or let
//! one outlive its handler (its group is killed when dropped, and dies with
//! the thread that started it: PDEATHSIG).

use crate::program::{self, Failure, Group, Output, Run, Running, SCRATCH, Until};
use crate::route::Route;
use std::ffi::OsString;
use std::ops::Range;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest length line: 20 digits (a u64) and its newline.
const MAX_LEN_LINE: usize = 21;
/// The pause before a worker that failed may start again, doubled per
/// failure in a row up to the last.
const BACKOFF_FIRST: Duration = Duration::from_millis(500);
const BACKOFF_LAST: Duration = Duration::from_secs(30);

/// When a worker is replaced by a fresh one although it did nothing wrong.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Recycle {
    /// After this many answers.
    pub max_requests: Option<u64>,
    /// Once its resident memory (VmRSS) passes this many bytes.
    pub max_memory: Option<u64>,
}

/// How far an answer frame at the start of a buffer has come.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    Partial,
    /// The whole answer is at this range, and nothing follows it.
    Whole(Range<usize>),
    /// Its length is over the route's `max_output`.
    TooLong,
    /// Not a frame: the worker broke the protocol.
    Bad(String),
}

/// Reads the answer frame at the start of `buf`.
pub fn answer(buf: &[u8], max: usize) -> Frame {
    let Some(newline) = buf.iter().take(MAX_LEN_LINE).position(|&b| b == b'\n') else {
        return if buf.len() >= MAX_LEN_LINE {
            Frame::Bad("no length line".into())
        } else {
            Frame::Partial
        };
    };
    let digits = buf.get(..newline).unwrap_or_default();
    let len = std::str::from_utf8(digits)
        .ok()
        .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|d| d.parse::<usize>().ok());
    let Some(len) = len else {
        return Frame::Bad(format!("`{}` is not a length", crate::log::Escaped(digits)));
    };
    if len > max {
        return Frame::TooLong;
    }
    let start = newline + 1;
    let end = start + len;
    match buf.len() {
        n if n < end => Frame::Partial,
        n if n > end => Frame::Bad("it wrote more than one answer".into()),
        _ => Frame::Whole(start..end),
    }
}

/// The frames of one request: its environment, then its body.
pub fn request(env: &[(OsString, OsString)], body: &[u8]) -> Vec<u8> {
    let mut pairs = Vec::new();
    for (name, value) in env {
        pairs.extend_from_slice(name.as_bytes());
        pairs.push(b'=');
        pairs.extend_from_slice(value.as_bytes());
        pairs.push(0);
    }
    let mut frames = Vec::with_capacity(pairs.len() + body.len() + 2 * MAX_LEN_LINE);
    for part in [&pairs[..], body] {
        frames.extend_from_slice(format!("{}\n", part.len()).as_bytes());
        frames.extend_from_slice(part);
    }
    frames
}

/// One worker route's worker, as a handler keeps it.
struct Slot<'a> {
    route: Arc<Route>,
    group: Option<Group<'a>>,
    /// Answers from the running worker.
    served: u64,
    /// Workers in a row that failed before they ever answered.
    failures: u32,
    /// After a failure: no start before this.
    rest_until: Option<Instant>,
}

/// A handler's workers, at most one per worker route.
pub struct Workers<'a> {
    /// Where the handler publishes its running program.
    running: &'a Running,
    slots: Vec<Slot<'a>>,
    scratch: Vec<u8>,
}

impl<'a> Workers<'a> {
    pub fn new(running: &'a Running) -> Workers<'a> {
        Workers {
            running,
            slots: Vec::new(),
            scratch: vec![0; SCRATCH],
        }
    }

    /// Serves one request (its frames are `run.stdin`) with `route`'s
    /// worker, started first if it is not running. `start` is how to start
    /// it: the route's command with only PATH and the route's variables.
    pub fn serve(&mut self, route: &Arc<Route>, run: &Run, start: &Run) -> Result<Output, Failure> {
        // Workers of routes no longer in the table (a reload) are let go;
        // one whose route was reloaded is replaced.
        self.slots.retain(|s| {
            let replaced = !Arc::ptr_eq(&s.route, route) && s.route.same_place(route);
            Arc::strong_count(&s.route) > 1 && !replaced
        });
        let at = match self.slots.iter().position(|s| Arc::ptr_eq(&s.route, route)) {
            Some(at) => at,
            None => {
                self.slots.push(Slot {
                    route: Arc::clone(route),
                    group: None,
                    served: 0,
                    failures: 0,
                    rest_until: None,
                });
                self.slots.len() - 1
            }
        };
        let Some(slot) = self.slots.get_mut(at) else {
            return Err(Failure::Spawn(std::io::ErrorKind::NotFound.into()));
        };
        if let Some(left) = slot
            .rest_until
            .and_then(|t| t.checked_duration_since(Instant::now()))
        {
            return Err(Failure::Resting(left));
        }
        let mut group = match slot.group.take() {
            Some(group) => group,
            None => {
                route.stats.worker_started();
                slot.served = 0;
                match program::spawn(start, self.running, true) {
                    Ok(group) => group,
                    Err(e) => {
                        slot.failed();
                        return Err(e);
                    }
                }
            }
        };
        let result = group.serve(run, &mut self.scratch, None, Until::Frame);
        match &result {
            Ok(_) => {
                slot.failures = 0;
                slot.served += 1;
                if !route
                    .worker
                    .is_some_and(|r| r.worn(slot.served, group.id()))
                {
                    slot.group = Some(group);
                }
            }
            Err(failure) => {
                group.stop(run.kill_grace, &mut self.scratch);
                // A client that left says nothing of the worker.
                if !matches!(failure, Failure::ClientGone(_)) {
                    slot.failed();
                }
            }
        }
        result
    }
}

impl Slot<'_> {
    /// The worker failed: if it never answered, it rests before the next start.
    fn failed(&mut self) {
        if self.served > 0 {
            self.failures = 0;
            return;
        }
        self.failures = self.failures.saturating_add(1);
        let pause = BACKOFF_FIRST
            .saturating_mul(1 << self.failures.saturating_sub(1).min(16))
            .min(BACKOFF_LAST);
        self.rest_until = Some(Instant::now() + pause);
    }
}

impl Recycle {
    /// True if a worker that gave `served` answers should now make way.
    fn worn(self, served: u64, pid: u32) -> bool {
        self.max_requests.is_some_and(|n| served >= n)
            || self
                .max_memory
                .is_some_and(|max| resident(pid).is_some_and(|rss| rss > max))
    }
}

/// A process's resident memory in bytes (`VmRSS` in /proc/PID/status).
fn resident(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    crate::light::kib_field(&status, "VmRSS:")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames() {
        assert_eq!(answer(b"", 100), Frame::Partial);
        assert_eq!(answer(b"12", 100), Frame::Partial);
        assert_eq!(answer(b"5\nhel", 100), Frame::Partial);
        assert_eq!(answer(b"5\nhello", 100), Frame::Whole(2..7));
        assert_eq!(answer(b"0\n", 100), Frame::Whole(2..2));
        assert_eq!(
            answer(b"5\nhello!", 100),
            Frame::Bad("it wrote more than one answer".into())
        );
        assert_eq!(answer(b"500\n", 100), Frame::TooLong);
        assert_eq!(
            answer(b"x\n", 100),
            Frame::Bad("`x` is not a length".into())
        );
        assert_eq!(answer(b"\n", 100), Frame::Bad("`` is not a length".into()));
        assert_eq!(
            answer(&[b'9'; 40], 100),
            Frame::Bad("no length line".into())
        );
        let env = [(OsString::from("A"), OsString::from("1=2"))];
        assert_eq!(request(&env, b"body\0"), b"6\nA=1=2\x005\nbody\x00");
        assert_eq!(request(&[], b""), b"0\n0\n");
    }
}
