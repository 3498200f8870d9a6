//! What the server counts: per route (`RouteStats`: answers by status, the
//! program-time histogram, failures by `Reason`) and per server for answers
//! that had no route (`Answers`). `exposition.rs` shows them.
//!
//! Must never: take a lock or allocate when counting (fixed arrays of
//! atomics; unknown statuses share one counter), grow with traffic, or know
//! a thread, a route or a program (the counters stand below them all).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

labelled! {
    /// What broke, as /metrics counts it (`fiddler_program_failures_total`).
    pub enum Reason {
        Spawn => "spawn",
        Exit => "exit",
        Signal => "signal",
        Timeout => "timeout",
        OutputCap => "output_cap",
        Pipe => "pipe",
        Protocol => "protocol",
        Upstream => "upstream",
    }
}

/// The statuses counted one by one, in /metrics order; others share `other`.
pub const STATUSES: [u16; 27] = [
    200, 201, 202, 204, 301, 302, 303, 304, 307, 308, 400, 401, 403, 404, 405, 408, 413, 414, 417,
    429, 431, 500, 501, 502, 503, 504, 505,
];

/// Answers sent, by status.
#[derive(Default)]
pub struct Answers {
    by_status: [AtomicU64; STATUSES.len()],
    other: AtomicU64,
}

impl Answers {
    pub fn count(&self, status: u16) {
        STATUSES
            .iter()
            .position(|&s| s == status)
            .and_then(|i| self.by_status.get(i))
            .unwrap_or(&self.other)
            .fetch_add(1, Relaxed);
    }

    /// (status, count) for each status answered at least once; "other" last.
    pub fn seen(&self) -> impl Iterator<Item = (String, u64)> + '_ {
        STATUSES
            .iter()
            .zip(&self.by_status)
            .map(|(s, n)| (s.to_string(), n.load(Relaxed)))
            .chain([("other".to_owned(), self.other.load(Relaxed))])
            .filter(|&(_, n)| n > 0)
    }

    pub fn total(&self) -> u64 {
        self.by_status
            .iter()
            .chain([&self.other])
            .map(|n| n.load(Relaxed))
            .sum()
    }
}

/// Upper bounds of the program-time buckets: as /metrics shows them, and in
/// microseconds (the last bucket, +Inf, is implied). Integers only: float
/// formatting would add tens of KB to the binary.
pub const BUCKETS: [(&str, u64); 13] = [
    ("0.01", 10_000),
    ("0.05", 50_000),
    ("0.1", 100_000),
    ("0.25", 250_000),
    ("0.5", 500_000),
    ("1", 1_000_000),
    ("2.5", 2_500_000),
    ("5", 5_000_000),
    ("10", 10_000_000),
    ("30", 30_000_000),
    ("60", 60_000_000),
    ("120", 120_000_000),
    ("300", 300_000_000),
];

/// A histogram of program run times with fixed buckets.
#[derive(Default)]
pub struct Histogram {
    /// Runs per bucket (not cumulative); the last is +Inf.
    pub counts: [AtomicU64; BUCKETS.len() + 1],
    pub sum_micros: AtomicU64,
}

impl Histogram {
    fn observe(&self, d: Duration) {
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let i = BUCKETS
            .iter()
            .position(|&(_, bound)| micros <= bound)
            .unwrap_or(BUCKETS.len());
        if let Some(n) = self.counts.get(i) {
            n.fetch_add(1, Relaxed);
        }
        self.sum_micros.fetch_add(micros, Relaxed);
    }
}

/// What one route has done. Carried over when SIGHUP reloads a route with
/// the same method and path, so its counters never go back.
#[derive(Default)]
pub struct RouteStats {
    pub answers: Answers,
    pub seconds: Histogram,
    pub failures: [AtomicU64; Reason::ALL.len()],
    /// Warm workers started (worker routes only).
    pub worker_starts: AtomicU64,
    /// Requests a worker was asked to stop: it stopped (kept), or not (killed).
    pub cancels: [AtomicU64; 2],
}

impl RouteStats {
    /// A worker was asked to stop a request: `kept` if it did in time.
    pub fn cancelled(&self, kept: bool) {
        if let Some(n) = self.cancels.get(usize::from(!kept)) {
            n.fetch_add(1, Relaxed);
        }
    }

    /// A warm worker of the route was started.
    pub fn worker_started(&self) {
        self.worker_starts.fetch_add(1, Relaxed);
    }

    /// One run of the route's program: how long, and what broke if anything.
    pub fn ran(&self, took: Duration, failure: Option<Reason>) {
        self.seconds.observe(took);
        if let Some(n) = failure.and_then(|r| self.failures.get(r as usize)) {
            n.fetch_add(1, Relaxed);
        }
    }
}

impl std::fmt::Debug for RouteStats {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("RouteStats")
    }
}
