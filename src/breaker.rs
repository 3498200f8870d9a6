//! A route's circuit breaker: after `threshold` consecutive failures of its
//! program (could not start, killed by a signal, past its deadline) the route
//! answers 503 at once for `cooldown`; then one request goes through to test
//! it, and its result closes the breaker or opens it again.
//!
//! Must never: take a lock (atomics only; the gate asks, the handler tells),
//! or stay open for ever because a test request never ran (a trial expires).

use crate::epoch::Epoch;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Breaker {
    /// Consecutive failures that open it; 0 turns it off.
    threshold: u32,
    cooldown: Duration,
    failures: AtomicU32,
    /// Milliseconds since `epoch` until which it is open.
    open_until: AtomicU64,
    /// Milliseconds since `epoch` until which a trial request is out.
    trial_until: AtomicU64,
    epoch: Epoch,
}

/// What one run of a route's program says of it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It gave an answer (whatever the status).
    Answered,
    /// It broke down (`Failure::is_breakdown`): a count towards opening.
    BrokeDown,
}

/// What the gate should do with a request for the route.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit {
    Yes,
    /// Open: answer 503 with `Retry-After` of this many seconds.
    No(u64),
}

impl Breaker {
    pub fn new(threshold: u32, cooldown: Duration) -> Breaker {
        Breaker {
            threshold,
            cooldown,
            failures: AtomicU32::new(0),
            open_until: AtomicU64::new(0),
            trial_until: AtomicU64::new(0),
            epoch: Epoch::now(),
        }
    }

    fn now(&self) -> u64 {
        self.epoch.ms(Instant::now())
    }

    fn cooldown_ms(&self) -> u64 {
        u64::try_from(self.cooldown.as_millis()).unwrap_or(u64::MAX)
    }

    pub fn is_open(&self) -> bool {
        self.threshold > 0 && self.failures.load(Relaxed) >= self.threshold
    }

    pub fn admit(&self) -> Admit {
        self.admit_at(self.now())
    }

    /// The result of one run of the route's program.
    pub fn record(&self, run: Verdict) {
        self.record_at(run, self.now());
    }

    fn admit_at(&self, now: u64) -> Admit {
        if !self.is_open() {
            return Admit::Yes;
        }
        let open_until = self.open_until.load(Relaxed);
        if now < open_until {
            return Admit::No((open_until - now).div_ceil(1000));
        }
        // Cooled down: one trial at a time, itself bounded by the cool-down.
        let trial = self.trial_until.load(Relaxed);
        let until = now.saturating_add(self.cooldown_ms());
        if now >= trial
            && self
                .trial_until
                .compare_exchange(trial, until, Relaxed, Relaxed)
                .is_ok()
        {
            Admit::Yes
        } else {
            Admit::No(trial.saturating_sub(now).div_ceil(1000).max(1))
        }
    }

    fn record_at(&self, run: Verdict, now: u64) {
        if self.threshold == 0 {
            return;
        }
        if run == Verdict::Answered {
            self.failures.store(0, Relaxed);
            self.trial_until.store(0, Relaxed);
            return;
        }
        let n = self.failures.fetch_add(1, Relaxed).saturating_add(1);
        if n >= self.threshold {
            self.open_until
                .store(now.saturating_add(self.cooldown_ms()), Relaxed);
            self.trial_until.store(0, Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_the_threshold_and_lets_one_trial_through() {
        let b = Breaker::new(2, Duration::from_secs(10));
        b.record_at(Verdict::BrokeDown, 0);
        b.record_at(Verdict::Answered, 0);
        b.record_at(Verdict::BrokeDown, 0);
        assert!(!b.is_open(), "a success resets the count");
        assert_eq!(b.admit_at(0), Admit::Yes);
        b.record_at(Verdict::BrokeDown, 1000);
        assert!(b.is_open());
        assert_eq!(b.admit_at(1000), Admit::No(10));
        assert_eq!(b.admit_at(10_500), Admit::No(1));
        // Cooled down: one trial goes through, the next waits for its result.
        assert_eq!(b.admit_at(11_000), Admit::Yes);
        assert_eq!(b.admit_at(11_001), Admit::No(10));
        // A trial that never reports expires after another cool-down.
        assert_eq!(b.admit_at(21_000), Admit::Yes);
        b.record_at(Verdict::BrokeDown, 21_500);
        assert_eq!(b.admit_at(21_500), Admit::No(10));
        assert_eq!(b.admit_at(31_500), Admit::Yes);
        b.record_at(Verdict::Answered, 31_600);
        assert!(!b.is_open());
        assert_eq!(b.admit_at(31_600), Admit::Yes);
        let off = Breaker::new(0, Duration::ZERO);
        off.record_at(Verdict::BrokeDown, 0);
        assert_eq!(off.admit_at(0), Admit::Yes);
    }
}
