//! Times kept in atomics: milliseconds since an epoch, in a `u64`.
//!
//! Owns nothing but the conversion. Must never: depend on another module of
//! the crate (the counters, the breaker and the ban list all stand on it).

use std::time::Instant;

/// Where times kept in atomics count from: they are stored as milliseconds
/// since an epoch.
#[derive(Clone, Copy, Debug)]
pub struct Epoch(pub Instant);

impl Epoch {
    pub fn now() -> Epoch {
        Epoch(Instant::now())
    }

    /// Milliseconds from the epoch to `t` (0 before it).
    pub fn ms(self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.0).as_millis()).unwrap_or(u64::MAX)
    }
}
